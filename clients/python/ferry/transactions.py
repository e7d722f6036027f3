"""Broker transactions (RocketMQ's transactional messages) and the back-check answerer.

    with client.begin_transaction("shop", check_ref=order_id) as txn:
        txn.publish("orders", payload, key=order_id)   # a half message: invisible until commit
        txn.ack("billing", message)                    # an ACK that takes effect with the commit
        ... your local transaction ...
    # leaving the block commits; an exception rolls back

If the process dies before deciding, the broker asks a Checker of the producer group:

    checker = client.on_check("shop", lambda check: db_has_order(check.check_ref))
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import queue
import socket
import threading
import uuid
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Union

import grpc

from ferry._backoff import Backoff
from ferry.errors import FerryError, from_rpc_error
from ferry.publisher import PublishResult, _message
from ferry.v1 import broker_pb2

log = logging.getLogger("ferry.transactions")

COMMIT = broker_pb2.TRANSACTION_COMMIT
ROLLBACK = broker_pb2.TRANSACTION_ROLLBACK
UNKNOWN = broker_pb2.TRANSACTION_UNKNOWN


class Transaction:
    """A PREPARED transaction at the broker. Calls are retried on retryable errors (produce with
    dedup ids, end with the same decision: both are safe to repeat)."""

    def __init__(self, client, transaction_id: str, producer_group: str):
        self._client = client
        self.id = transaction_id
        self.producer_group = producer_group
        self.state: Optional[int] = None

    @classmethod
    def begin(cls, client, producer_group: str, *, check_ref: str = "",
              timeout: Optional[float] = None) -> "Transaction":
        request = broker_pb2.BeginTransactionRequest(
            producer_group=producer_group, check_ref=check_ref,
            timeout_ms=int(timeout * 1000) if timeout else 0)
        # Not retried: a retry after an unknown outcome would begin a second transaction (the
        # first one is then resolved by back-checks).
        response = client.call(client.broker.BeginTransaction, request)
        return cls(client, response.transaction_id, producer_group)

    def publish(self, topic: str, payload: Union[bytes, str], *, key: str = "",
                headers: Optional[Mapping[str, str]] = None,
                dedup_id: Optional[str] = None) -> PublishResult:
        """Stores one half message (see publish_many)."""
        return self.publish_many(topic, [dict(payload=payload, key=key, headers=headers,
                                              dedup_id=dedup_id)])[0]

    def publish_many(self, topic: str, messages: Iterable[Mapping[str, Any]]) -> List[PublishResult]:
        """Stores half messages: dicts with payload and optionally key, headers, dedup_id."""
        msgs = [_message(m["payload"], m.get("key", ""), m.get("headers"), m.get("dedup_id"),
                         None, None) for m in messages]
        request = broker_pb2.ProduceRequest(topic=topic, messages=msgs, transaction_id=self.id)
        response = self._client.call_with_retry(self._client.broker.Produce, request)
        return [PublishResult(r.queue, r.offset, r.duplicate, r.delayed, r.delayed_id, m.dedup_id)
                for m, r in zip(msgs, response.results)]

    def ack(self, group: str, messages: Sequence[Any]) -> None:
        """Attaches ACKs of delivered messages (ferry.Message or receipt strings) to this
        transaction: they take effect if and only if it commits."""
        if not isinstance(messages, (list, tuple)):
            messages = [messages]
        request = broker_pb2.CommitRequest(group=group, transaction_id=self.id)
        for m in messages:
            request.entries.add(receipt=m if isinstance(m, str) else m.receipt,
                                outcome=broker_pb2.ACK)
        results = self._client.call_with_retry(self._client.broker.Commit, request).results
        bad = [r.detail for r in results if r.status not in (broker_pb2.TRANSACTION_PENDING,
                                                             broker_pb2.ALREADY_COMMITTED)]
        if bad:
            raise FerryError(grpc.StatusCode.FAILED_PRECONDITION,
                             f"{len(bad)} ACKs not attached: {bad[0]}")

    def commit(self) -> int:
        """Makes the half messages visible and the attached ACKs take effect; returns how many
        messages it made visible."""
        return self._end(COMMIT)

    def rollback(self) -> int:
        return self._end(ROLLBACK)

    def _end(self, decision: int) -> int:
        request = broker_pb2.EndTransactionRequest(transaction_id=self.id, decision=decision)
        response = self._client.call_with_retry(self._client.broker.EndTransaction, request)
        self.state = response.state
        return response.messages

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.state is not None:
            return
        if exc_type is None:
            self.commit()
        else:
            try:
                self.rollback()
            except FerryError as e:  # the back-check resolves it; the original error matters
                log.warning("rollback of %s failed (%s); back-checks will resolve it", self.id, e)


def _decision(answer: Any) -> int:
    if answer is True or answer == "commit":
        return COMMIT
    if answer is False or answer == "rollback":
        return ROLLBACK
    if answer is None or answer == "unknown":
        return UNKNOWN
    if answer in (COMMIT, ROLLBACK, UNKNOWN):
        return answer
    raise ValueError(f"a check handler returns True/False/None, 'commit'/'rollback'/'unknown' "
                     f"or a TransactionDecision, not {answer!r}")


class Checker:
    """Answers back-checks on the CheckTransaction stream, reconnecting with backoff.

    handler(check) gets a broker_pb2.TransactionCheck (transaction_id, check_ref,
    producer_group, topics, messages, check_number) and returns True (commit), False
    (rollback) or None (unknown: asked again later); an exception answers UNKNOWN.
    """

    def __init__(self, client, producer_groups: Union[str, Sequence[str]],
                 handler: Callable[[broker_pb2.TransactionCheck], Any],
                 checker_id: Optional[str] = None):
        self._client = client
        self._groups = [producer_groups] if isinstance(producer_groups, str) else list(producer_groups)
        self._handler = handler
        self.checker_id = checker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.checks = 0
        self.answers = 0
        self.connects = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._call = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ferry-checker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        self._thread.join()

    def __enter__(self) -> "Checker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        backoff = Backoff(0.1, 5.0)
        while not self._stop.is_set():
            outbox: "queue.Queue[Optional[broker_pb2.CheckTransactionRequest]]" = queue.Queue()
            outbox.put(broker_pb2.CheckTransactionRequest(subscribe=broker_pb2.CheckSubscribe(
                producer_groups=self._groups, checker_id=self.checker_id)))

            def requests():
                while True:
                    r = outbox.get()
                    if r is None:
                        return
                    yield r

            call = self._client.broker.CheckTransaction(requests(), metadata=self._client.metadata,
                                                        wait_for_ready=True)
            with self._lock:
                self._call = call
            if self._stop.is_set():
                call.cancel()
            try:
                call.initial_metadata()  # sent by the broker once the subscription is registered
                if not call.done():
                    self.connects += 1
                    self.connected.set()
                    backoff.reset()
                for response in call:
                    if response.HasField("rejected"):
                        log.warning("back-check answer for %s refused: %s",
                                    response.rejected.transaction_id, response.rejected.reason)
                        continue
                    check = response.check
                    self.checks += 1
                    try:
                        decision = _decision(self._handler(check))
                    except Exception as e:  # noqa: BLE001 - an error is "cannot tell yet"
                        log.warning("check handler failed for %s: %r; answering UNKNOWN",
                                    check.transaction_id, e)
                        decision = UNKNOWN
                    outbox.put(broker_pb2.CheckTransactionRequest(answer=broker_pb2.CheckAnswer(
                        transaction_id=check.transaction_id, check_id=check.check_id,
                        decision=decision)))
                    self.answers += 1
                error = None
            except grpc.RpcError as e:
                error = from_rpc_error(e)
            finally:
                outbox.put(None)
                self.connected.clear()
            if self._stop.is_set():
                return
            if error is not None and not error.retryable and error.code != grpc.StatusCode.CANCELLED:
                log.error("back-check stream refused: %s; trying again", error)
            wait = backoff.next()
            log.info("back-check stream ended (%s); reconnecting in %.2f s", error, wait)
            self._stop.wait(wait)
