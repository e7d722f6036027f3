"""Publisher: batching, retries with dedup ids, order per key.

Threading model: publish() only queues the message and returns a concurrent.futures.Future;
one background thread cuts batches (per topic: `max_messages`, `max_bytes` or `max_latency`,
Pub/Sub's defaults 100 / 1 MB / 10 ms) and a pool of `max_in_flight` threads sends them.

Every message carries a dedup id (generated when the caller gives none), so a batch retried
after an UNAVAILABLE whose outcome was unknown is recognised by the broker, not stored twice.
Order per key: keyed messages go to one of `lanes` lanes per topic by crc32(key); a lane has at
most one batch in flight (retries included), so a key's messages are stored in publish order
while the lanes of a topic send in parallel. Messages without a key have a lane of their own
with no such limit. When a keyed batch fails for good, its keys are paused (as Pub/Sub's
ordering keys): their queued messages and later publishes fail with FAILED_PRECONDITION until
resume_publish(topic, key), so that nothing of a key is stored after a message that was not.
"""
from __future__ import annotations

import collections
import datetime as _dt
import logging
import threading
import time
import uuid
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Optional, Tuple, Union

import grpc

from ferry._backoff import Backoff
from ferry.errors import FerryError
from ferry.v1 import broker_pb2

log = logging.getLogger("ferry.publisher")

# The broker's limits for one Produce.
_MAX_BATCH_MESSAGES = 1000
_MAX_BATCH_BYTES = 16 << 20


@dataclass(frozen=True)
class PublishResult:
    """Where the message was stored (queue/offset are 0 for a delayed message). `duplicate`:
    the caller's dedup id had been stored before (a generated id found stored is this publish's
    own earlier attempt, whose answer was lost: not a duplicate)."""
    queue: int
    offset: int
    duplicate: bool
    delayed: bool
    delayed_id: int
    dedup_id: str


def _message(payload: Union[bytes, str], key: str, headers: Optional[Mapping[str, str]],
             dedup_id: Optional[str], delay: Union[None, float, _dt.timedelta],
             deliver_at: Optional[_dt.datetime]) -> broker_pb2.ProducedMessage:
    if isinstance(payload, str):
        payload = payload.encode()
    m = broker_pb2.ProducedMessage(key=key or "", payload=payload, headers=dict(headers or {}),
                                   dedup_id=dedup_id or uuid.uuid4().hex)
    if delay is not None and deliver_at is not None:
        raise ValueError("set delay or deliver_at, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, _dt.timedelta) else float(delay)
        if seconds < 0:
            raise ValueError("delay must not be negative")
        m.delay_ms = int(seconds * 1000)
    if deliver_at is not None:
        m.deliver_at.FromDatetime(deliver_at)
    return m


class _Pending:
    __slots__ = ("msg", "future", "size", "generated")

    def __init__(self, msg: broker_pb2.ProducedMessage, future: Future, generated: bool):
        self.msg = msg
        self.future = future
        self.size = msg.ByteSize()
        self.generated = generated  # the dedup id is ours: found stored = our own first attempt


class _Lane:
    def __init__(self, topic: str, ordered: bool) -> None:
        self.topic = topic
        self.ordered = ordered                  # keyed: one batch in flight at a time
        self.pending: Deque[_Pending] = collections.deque()
        self.pending_bytes = 0
        self.first_at = 0.0                     # when the oldest pending message was queued
        self.ready: Deque[List[_Pending]] = collections.deque()  # cut, waiting to be sent
        self.in_flight = 0


class Publisher:
    """Publishes through `client` in batches. Thread-safe; close() (or `with`) flushes.

    max_messages / max_bytes / max_latency: when a topic's batch is sent.
    max_in_flight: batches being sent at once (all topics).
    lanes: keyed lanes per topic (each sends one batch at a time, in order).
    retry_for: how long (seconds) a batch is retried on retryable errors before its futures fail.
    max_outstanding: publish() blocks while this many messages are unsent (back-pressure).
    """

    def __init__(self, client, *, max_messages: int = 100, max_bytes: int = 1 << 20,
                 max_latency: float = 0.010, max_in_flight: int = 8, retry_for: float = 600.0,
                 max_outstanding: int = 100_000, lanes: int = 8,
                 timeout: Optional[float] = None):
        if not 1 <= max_messages <= _MAX_BATCH_MESSAGES:
            raise ValueError(f"max_messages must be 1 to {_MAX_BATCH_MESSAGES}")
        if not 1 <= max_bytes <= _MAX_BATCH_BYTES:
            raise ValueError(f"max_bytes must be 1 to {_MAX_BATCH_BYTES}")
        self._client = client
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._max_latency = max_latency
        self._max_in_flight = max_in_flight
        self._retry_for = retry_for
        self._max_outstanding = max_outstanding
        self._timeout = timeout
        self._lanes = max(1, lanes)
        self._lock = threading.Condition()
        self._topics: Dict[Tuple[str, int], _Lane] = {}  # (topic, lane; -1: no key)
        self._outstanding = 0     # queued or in flight, not yet resolved
        self._in_flight = 0
        self._flushing = 0        # flush() callers waiting
        self._closed = False
        self._paused: Dict[Tuple[str, str], BaseException] = {}  # (topic, key) -> why
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="ferry-publish")
        self._thread = threading.Thread(target=self._run, name="ferry-publisher", daemon=True)
        self._thread.start()

    # -- API ---------------------------------------------------------------------------------
    def publish(self, topic: str, payload: Union[bytes, str], *, key: str = "",
                headers: Optional[Mapping[str, str]] = None, dedup_id: Optional[str] = None,
                delay: Union[None, float, _dt.timedelta] = None,
                deliver_at: Optional[_dt.datetime] = None) -> "Future[PublishResult]":
        """Queues one message; the future resolves to a PublishResult once the broker stored it
        (or raises FerryError). `delay` in seconds or a timedelta; `deliver_at` a datetime."""
        pending = _Pending(_message(payload, key, headers, dedup_id, delay, deliver_at), Future(),
                           generated=not dedup_id)
        with self._lock:
            while self._outstanding >= self._max_outstanding and not self._closed:
                self._lock.wait()
            if self._closed:
                raise RuntimeError("publisher is closed")
            if key and (topic, key) in self._paused:
                pending.future.set_exception(self._paused_error(topic, key))
                return pending.future
            lane = zlib.crc32(key.encode()) % self._lanes if key else -1
            t = self._topics.get((topic, lane))
            if t is None:
                t = self._topics[(topic, lane)] = _Lane(topic, lane >= 0)
            if not t.pending:
                t.first_at = time.monotonic()
            t.pending.append(pending)
            t.pending_bytes += pending.size
            self._outstanding += 1
            if len(t.pending) >= self._max_messages or t.pending_bytes >= self._max_bytes:
                self._lock.notify_all()
            elif len(t.pending) == 1:
                self._lock.notify_all()  # starts the linger timer
        return pending.future

    def resume_publish(self, topic: str, key: str) -> None:
        """Publishing `key` to `topic` again after a failure paused it."""
        with self._lock:
            self._paused.pop((topic, key), None)

    def _paused_error(self, topic: str, key: str) -> FerryError:
        return FerryError(grpc.StatusCode.FAILED_PRECONDITION,
                          f"publishing key {key!r} to {topic} is paused: an earlier message of the "
                          f"key failed ({self._paused[(topic, key)]}); call "
                          f"resume_publish({topic!r}, {key!r})")

    def _pause_locked(self, t: "_Lane", batch: List["_Pending"], error: BaseException) -> int:
        """Pauses the keys of a failed batch and fails their queued messages; returns how many."""
        for p in batch:
            self._paused[(t.topic, p.msg.key)] = error
        failed = 0
        kept: Deque[_Pending] = collections.deque()
        for p in t.pending:
            if (t.topic, p.msg.key) in self._paused:
                p.future.set_exception(self._paused_error(t.topic, p.msg.key))
                t.pending_bytes -= p.size
                failed += 1
            else:
                kept.append(p)
        t.pending = kept
        ready: Deque[List[_Pending]] = collections.deque()
        for b in t.ready:
            rest = []
            for p in b:
                if (t.topic, p.msg.key) in self._paused:
                    p.future.set_exception(self._paused_error(t.topic, p.msg.key))
                    failed += 1
                else:
                    rest.append(p)
            if rest:
                ready.append(rest)
        t.ready = ready
        return failed

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends everything queued now and waits until it is resolved; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushing += 1
            self._lock.notify_all()
            try:
                while self._outstanding > 0:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._lock.wait(left)
                return True
            finally:
                self._flushing -= 1

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes, then stops the threads. publish() raises afterwards."""
        self.flush(timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the batching thread -----------------------------------------------------------------
    def _cut(self, t: _Lane) -> List[_Pending]:
        batch: List[_Pending] = []
        size = 0
        while t.pending and len(batch) < self._max_messages:
            p = t.pending[0]
            if batch and size + p.size > self._max_bytes:
                break
            batch.append(t.pending.popleft())
            size += p.size
        t.pending_bytes -= size
        if t.pending:
            t.first_at = time.monotonic()
        return batch

    def _run(self) -> None:
        with self._lock:
            while not (self._closed and self._outstanding == 0):
                now = time.monotonic()
                wake = None
                for t in self._topics.values():
                    while t.pending and (self._flushing or self._closed
                                         or len(t.pending) >= self._max_messages
                                         or t.pending_bytes >= self._max_bytes
                                         or now - t.first_at >= self._max_latency):
                        t.ready.append(self._cut(t))
                    if t.pending:
                        due = t.first_at + self._max_latency - now
                        wake = due if wake is None else min(wake, due)
                    # Ready batches leave in order; a keyed lane waits for its batch in flight.
                    while (t.ready and self._in_flight < self._max_in_flight
                           and not (t.ordered and t.in_flight)):
                        t.in_flight += 1
                        self._in_flight += 1
                        self._pool.submit(self._send, t, t.ready.popleft())
                self._lock.wait(None if wake is None else max(wake, 0.0005))

    # -- a sender thread ---------------------------------------------------------------------
    def _send(self, t: _Lane, batch: List[_Pending]) -> None:
        topic = t.topic
        request = broker_pb2.ProduceRequest(topic=topic, messages=[p.msg for p in batch])
        deadline = time.monotonic() + self._retry_for
        backoff = Backoff(0.1, 10.0)
        error: Optional[BaseException] = None
        response = None
        while True:
            try:
                response = self._client.call(self._client.broker.Produce, request, self._timeout)
                break
            except FerryError as e:
                wait = backoff.next()
                if not e.retryable or time.monotonic() + wait > deadline:
                    error = e
                    break
                log.info("produce to %s failed (%s); retrying %d messages in %.2f s with the "
                         "same dedup ids", topic, e, len(batch), wait)
                time.sleep(wait)
            except BaseException as e:  # noqa: BLE001 - resolved into the futures
                error = e
                break
        # Futures first: flush() returns once they are all resolved.
        if error is not None:
            for p in batch:
                p.future.set_exception(error)
        else:
            for p, r in zip(batch, response.results):
                p.future.set_result(PublishResult(r.queue, r.offset,
                                                  r.duplicate and not p.generated, r.delayed,
                                                  r.delayed_id, p.msg.dedup_id))
        with self._lock:
            if error is not None and t.ordered:
                self._outstanding -= self._pause_locked(t, batch, error)
            t.in_flight -= 1
            self._in_flight -= 1
            self._outstanding -= len(batch)
            self._lock.notify_all()
