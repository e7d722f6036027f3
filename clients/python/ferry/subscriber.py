"""Subscriber: a long-poll consume loop with flow control, lease extension and batched commits.

Threading model: one thread pulls (Consume, long poll), `concurrency` worker threads run the
handler, one thread extends leases and sends commits. The handler's return ACKs the message;
raising ferry.Retry / ferry.DeadLetter chooses RETRY / DEAD_LETTER; any other exception is a
RETRY on the group's backoff with the exception as its reason (kept if it was the last attempt).

Ordered groups (or ordered topics): the broker hands a queue to one consumer at a time and a
batch may hold several messages of one queue; they run one after another, in offset order. When
one is retried, the rest of its queue's batch is released unprocessed (RETRY now), so nothing
overtakes it.
"""
from __future__ import annotations

import collections
import datetime as _dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Tuple

import grpc

from ferry._backoff import Backoff
from ferry.errors import DeadLetter, FerryError, Retry, from_rpc_error
from ferry.v1 import admin_pb2, broker_pb2

log = logging.getLogger("ferry.subscriber")

_MAX_REASON_BYTES = 4096
_COMMIT_BATCH = 100       # entries per Commit
_COMMIT_LINGER = 0.010    # seconds an ACK waits for company


@dataclass
class Message:
    """A delivered message. `receipt` settles it; the Subscriber does that for you."""
    topic: str
    queue: int
    offset: int
    key: str
    payload: bytes
    headers: Dict[str, str]
    delivery_attempt: int
    produced_at: _dt.datetime
    receipt: str

    @property
    def id(self) -> str:
        """The outbox id (header ferry-outbox-id) for process_once, else "topic/queue/offset"."""
        return self.headers.get("ferry-outbox-id") or f"{self.topic}/{self.queue}/{self.offset}"

    @classmethod
    def from_proto(cls, m: broker_pb2.DeliveredMessage) -> "Message":
        return cls(m.topic, m.queue, m.offset, m.key, m.payload, dict(m.headers),
                   m.delivery_attempt, m.produced_at.ToDatetime(_dt.timezone.utc), m.receipt)


@dataclass
class Stats:
    """Counters of a Subscription (read them any time)."""
    received: int = 0
    acked: int = 0
    retried: int = 0
    dead_lettered: int = 0
    released: int = 0
    stale_receipts: int = 0      # settled too late: the lease had expired, redelivered
    invalid_receipts: int = 0
    lease_extensions: int = 0
    handler_errors: int = 0
    max_outstanding_seen: int = 0


@dataclass
class _InFlight:
    msg: Message
    size: int
    received_at: float
    lease_until: float
    chain: Optional[Tuple[str, int]] = None
    started: bool = False
    done: bool = False


@dataclass
class _Settle:
    item: _InFlight
    outcome: int
    delay_ms: Optional[int] = None
    reason: str = ""
    sent_at: float = field(default_factory=time.monotonic)


def _reason(text: str) -> str:
    data = text.replace("\0", " ").encode("utf-8")[:_MAX_REASON_BYTES]
    return data.decode("utf-8", errors="ignore")


class Subscription:
    """Runs `handler(message)` for the messages of `topic` in consumer group `group`.

    max_outstanding_messages / max_outstanding_bytes: received and not yet settled (flow
      control: nothing more is pulled past either).
    concurrency: handler threads.
    lease: seconds each delivery is leased for; extended while the handler runs, every
      lease/3, for at most `max_lease_extension` seconds after it was received.
    ordered: None asks the broker whether the group or topic is ordered (admin read; falls back
      to unordered when not allowed); True/False says so.
    start_position: "earliest" or "latest", for a group that does not exist yet.
    """

    def __init__(self, client, topic: str, group: str, handler: Callable[[Message], None], *,
                 max_outstanding_messages: int = 1000, max_outstanding_bytes: int = 100 << 20,
                 concurrency: int = 10, lease: float = 30.0, max_lease_extension: float = 3600.0,
                 ordered: Optional[bool] = None, start_position: str = "earliest",
                 max_wait: float = 5.0):
        if max_outstanding_messages < 1 or concurrency < 1:
            raise ValueError("max_outstanding_messages and concurrency must be at least 1")
        if not 1.0 <= lease <= 43200.0:
            raise ValueError("lease must be 1 s to 12 h")
        self.topic, self.group = topic, group
        self._client = client
        self._handler = handler
        self._max_msgs = max_outstanding_messages
        self._max_bytes = max_outstanding_bytes
        self._lease = lease
        self._max_extension = max_lease_extension
        self._max_wait_ms = int(max_wait * 1000)
        self._start = {"earliest": broker_pb2.START_POSITION_EARLIEST,
                       "latest": broker_pb2.START_POSITION_LATEST}[start_position]
        self.stats = Stats()
        self.error: Optional[BaseException] = None  # why the subscription stopped on its own
        self._lock = threading.Condition()
        self._in_flight: Dict[str, _InFlight] = {}   # receipt -> item, until settled
        self._bytes = 0
        self._chains: Dict[Tuple[str, int], Deque[_InFlight]] = {}
        self._settles: List[_Settle] = []
        self._stopping = False     # no more pulling, no new handler starts
        self._stopped = threading.Event()
        self._pull_call = None
        self._ordered = self._is_ordered() if ordered is None else ordered
        self._workers = ThreadPoolExecutor(concurrency, thread_name_prefix="ferry-handler")
        self._puller = threading.Thread(target=self._pull_loop, name="ferry-pull", daemon=True)
        self._keeper = threading.Thread(target=self._keeper_loop, name="ferry-lease", daemon=True)
        self._puller.start()
        self._keeper.start()

    # -- API ---------------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops pulling; messages not started are released (delivered again now, to anyone);
        running handlers get up to `timeout` seconds to finish; then the commits are sent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            call = self._pull_call
            self._lock.notify_all()
        if call is not None:
            call.cancel()
        self._puller.join()
        with self._lock:
            for item in list(self._in_flight.values()):
                if not item.started and not item.done:
                    self._release(item, "released: the subscriber stopped before handling it")
            while any(i.started and not i.done for i in self._in_flight.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            # Everything settled (or given up on): the keeper sends what is left and exits.
            while self._settles and time.monotonic() < deadline:
                self._lock.notify_all()
                self._lock.wait(0.05)
            self._stopped.set()
            self._lock.notify_all()
        self._keeper.join()
        self._workers.shutdown(wait=False)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the subscription stopped (stop(), or a fatal error: see .error)."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- pulling -----------------------------------------------------------------------------
    def _is_ordered(self) -> bool:
        """Asks the broker (retrying while it is unreachable: guessing "unordered" would break an
        ordered group's order). A caller without admin reads gets a warning and unordered."""
        admin = self._client.admin_stub
        try:
            topic = self._client.call_with_retry(
                admin.DescribeTopic, admin_pb2.DescribeTopicRequest(name=self.topic))
            if topic.topic.ordered:
                return True
            group = self._client.call_with_retry(
                admin.DescribeGroup, admin_pb2.DescribeGroupRequest(name=self.group))
            return group.group.ordered
        except FerryError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:
                return False  # a group created by this subscription: not ordered
            if e.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                log.warning("cannot tell whether %s/%s is ordered (%s): handling messages "
                            "concurrently; pass ordered=True for an ordered group",
                            self.topic, self.group, e)
                return False
            raise

    def _pull_loop(self) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            with self._lock:
                while not self._stopping and (len(self._in_flight) >= self._max_msgs
                                              or self._bytes >= self._max_bytes):
                    self._lock.wait()
                if self._stopping:
                    return
                want = min(self._max_msgs - len(self._in_flight), 1000)
                request = broker_pb2.ConsumeRequest(
                    group=self.group, topic=self.topic, max_messages=want,
                    max_wait_ms=self._max_wait_ms, visibility_timeout_ms=int(self._lease * 1000),
                    start_position=self._start)
                self._pull_call = self._client.broker.Consume.future(
                    request, timeout=self._client.timeout + self._max_wait_ms / 1000,
                    metadata=self._client.metadata, wait_for_ready=True)
                call = self._pull_call
            try:
                response = call.result()
                backoff.reset()
            except grpc.RpcError as e:
                if call.cancelled() or self._stopping:
                    return
                err = from_rpc_error(e)
                if not err.retryable:
                    log.error("consume %s/%s failed: %s; the subscription stops", self.topic,
                              self.group, err)
                    self.error = err
                    threading.Thread(target=self.stop, daemon=True).start()
                    return
                wait = backoff.next()
                log.warning("consume %s/%s failed: %s; again in %.2f s", self.topic, self.group,
                            err, wait)
                time.sleep(wait)
                continue
            except grpc.FutureCancelledError:
                return
            self._dispatch(response.messages)

    def _dispatch(self, delivered) -> None:
        now = time.monotonic()
        with self._lock:
            for m in delivered:
                item = _InFlight(Message.from_proto(m), m.ByteSize(), now, now + self._lease)
                self._in_flight[m.receipt] = item
                self._bytes += item.size
                self.stats.received += 1
                if self._ordered:
                    item.chain = (m.topic, m.queue)
                    chain = self._chains.get(item.chain)
                    if chain is not None:
                        chain.append(item)  # runs after the ones before it
                        continue
                    self._chains[item.chain] = collections.deque()
                self._workers.submit(self._handle, item)
            self.stats.max_outstanding_seen = max(self.stats.max_outstanding_seen,
                                                  len(self._in_flight))

    # -- handling ----------------------------------------------------------------------------
    def _handle(self, item: _InFlight) -> None:
        with self._lock:
            if self._stopping or item.done:
                self._release(item, "released: the subscriber stopped before handling it")
                self._next_in_chain(item, released=True)
                return
            item.started = True
        settle: _Settle
        failed = False
        try:
            self._handler(item.msg)
            settle = _Settle(item, broker_pb2.ACK)
        except Retry as r:
            settle = _Settle(item, broker_pb2.RETRY,
                             None if r.delay is None else int(r.delay * 1000), _reason(r.reason))
        except DeadLetter as d:
            settle = _Settle(item, broker_pb2.DEAD_LETTER, reason=_reason(d.reason or "rejected"))
        except Exception as e:  # noqa: BLE001 - a failed handler is a RETRY
            failed = True
            log.warning("handler failed on %s/%d/%d (attempt %d): %r", item.msg.topic,
                        item.msg.queue, item.msg.offset, item.msg.delivery_attempt, e)
            settle = _Settle(item, broker_pb2.RETRY, reason=_reason(f"{type(e).__name__}: {e}"))
        with self._lock:
            self.stats.handler_errors += failed
            item.done = True
            self._settles.append(settle)
            self._next_in_chain(item, released=settle.outcome == broker_pb2.RETRY)
            self._lock.notify_all()

    def _next_in_chain(self, item: _InFlight, released: bool) -> None:
        """Ordered: starts the next message of the item's queue, or releases the rest after a
        RETRY (they must not overtake it). Called with the lock held."""
        if item.chain is None:
            return
        chain = self._chains.get(item.chain)
        if chain is None:
            return
        if released:
            while chain:
                self._release(chain.popleft(),
                              "released: an earlier message of its queue is being retried")
        if chain:
            self._workers.submit(self._handle, chain.popleft())
        else:
            del self._chains[item.chain]

    def _release(self, item: _InFlight, why: str) -> None:
        if item.done:
            return
        item.done = True
        self.stats.released += 1
        self._settles.append(_Settle(item, broker_pb2.RETRY, 0, why))
        self._lock.notify_all()

    # -- leases and commits ------------------------------------------------------------------
    def _keeper_loop(self) -> None:
        next_extend = time.monotonic() + 1.0
        while True:
            with self._lock:
                while not self._settles and not self._stopped.is_set():
                    left = next_extend - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(left)
                if self._settles and len(self._settles) < _COMMIT_BATCH and not self._stopping:
                    oldest = self._settles[0].sent_at
                    linger = oldest + _COMMIT_LINGER - time.monotonic()
                    if linger > 0:
                        self._lock.wait(linger)
                batch, self._settles = self._settles[:1000], self._settles[1000:]
                stopped = self._stopped.is_set() and not batch
            if batch:
                self._commit(batch)
            if stopped:
                return
            if time.monotonic() >= next_extend:
                self._extend()
                next_extend = time.monotonic() + max(0.5, min(self._lease / 3, 5.0))

    def _commit(self, batch: List[_Settle]) -> None:
        request = broker_pb2.CommitRequest(group=self.group)
        for s in batch:
            e = request.entries.add(receipt=s.item.msg.receipt, outcome=s.outcome, reason=s.reason)
            if s.delay_ms is not None:
                e.retry_delay_ms = s.delay_ms
        try:
            # Commit is idempotent: retried for as long as a lease could still be valid.
            results = self._client.call_with_retry(self._client.broker.Commit, request,
                                                   retry_for=self._lease).results
        except FerryError as e:
            log.error("commit of %d messages in %s failed: %s; they are delivered again when "
                      "their leases end", len(batch), self.group, e)
            results = None
        with self._lock:
            for i, s in enumerate(batch):
                r = results[i] if results is not None else None
                if r is not None:
                    self._count(s, r)
                item = self._in_flight.pop(s.item.msg.receipt, None)
                if item is not None:
                    self._bytes -= item.size
            self._lock.notify_all()

    def _count(self, s: _Settle, r: broker_pb2.CommitResult) -> None:
        st = r.status
        if st == broker_pb2.STALE_RECEIPT:
            self.stats.stale_receipts += 1
            log.warning("stale receipt for %s/%d/%d in %s: its lease had ended and it was "
                        "delivered again (%s)", s.item.msg.topic, s.item.msg.queue,
                        s.item.msg.offset, self.group, r.detail)
        elif st == broker_pb2.INVALID_RECEIPT or st == broker_pb2.TOPIC_NOT_FOUND:
            self.stats.invalid_receipts += 1
            log.error("commit refused for %s/%d/%d: %s", s.item.msg.topic, s.item.msg.queue,
                      s.item.msg.offset, r.detail)
        elif st == broker_pb2.DEAD_LETTERED:
            self.stats.dead_lettered += 1
        elif st == broker_pb2.RETRY_SCHEDULED:
            if not s.reason.startswith("released:"):  # released ones are counted as such
                self.stats.retried += 1
        else:
            self.stats.acked += 1

    def _extend(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [i for i in self._in_flight.values()
                   if not i.done and i.lease_until - now < self._lease * 2 / 3
                   and now - i.received_at < self._max_extension]
        for start in range(0, len(due), 1000):
            chunk = due[start:start + 1000]
            request = broker_pb2.ExtendLeaseRequest(
                group=self.group, receipts=[i.msg.receipt for i in chunk],
                visibility_timeout_ms=int(self._lease * 1000))
            try:
                results = self._client.call(self._client.broker.ExtendLease, request).results
            except FerryError as e:
                log.warning("extending %d leases in %s failed: %s", len(chunk), self.group, e)
                continue
            with self._lock:
                for item, r in zip(chunk, results):
                    if r.status == broker_pb2.LEASE_EXTENDED:
                        item.lease_until = now + self._lease
                        self.stats.lease_extensions += 1
                    elif not item.done:
                        log.warning("lease of %s/%d/%d not extended: %s", item.msg.topic,
                                    item.msg.queue, item.msg.offset, r.detail)
