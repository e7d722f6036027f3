#!/usr/bin/python3
"""Ferry from Python: produce, consume-and-commit, and a transaction decided by a back-check.

Stubs are generated from proto/ by ./run.sh (protoc with Debian's grpc_python_plugin), and the
script uses Debian's python3-grpcio, so run it with /usr/bin/python3 (a pyenv python does not
see Debian's packages).

    FERRY_BROKER=127.0.0.1:7420 ./run.sh        # FERRY_TOKEN too if the broker runs --auth

Each step prints one line; any failure raises and the script exits non-zero.
"""
import os
import queue
import sys
import threading
import uuid

sys.path.insert(0, os.environ.get("FERRY_PY_GEN", os.path.join(os.path.dirname(__file__), "gen")))

import grpc  # noqa: E402
from ferry.v1 import admin_pb2, admin_pb2_grpc, broker_pb2, broker_pb2_grpc  # noqa: E402

BROKER = os.environ.get("FERRY_BROKER", "127.0.0.1:7420")
TOKEN = os.environ.get("FERRY_TOKEN", "")
METADATA = [("authorization", "Bearer " + TOKEN)] if TOKEN else []
TOPIC = "example.python." + uuid.uuid4().hex[:8]
GROUP = "python-readers"
PRODUCER_GROUP = "python-shop-" + uuid.uuid4().hex[:8]


def create_topic(admin):
    try:
        admin.CreateTopic(
            admin_pb2.CreateTopicRequest(topic=admin_pb2.TopicConfig(name=TOPIC, queues=2)),
            metadata=METADATA, timeout=10)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    print(f"topic {TOPIC} ready")


def produce(broker):
    req = broker_pb2.ProduceRequest(topic=TOPIC)
    for i in range(3):
        req.messages.add(key="order-42", payload=f"event {i}".encode(),
                         headers={"type": "created"}, dedup_id=f"order-42-{i}")
    resp = broker.Produce(req, metadata=METADATA, timeout=10)
    where = [(r.queue, r.offset) for r in resp.results]
    print(f"produced 3 messages, all on queue {where[0][0]}: offsets {[o for _, o in where]}")
    # The same dedup_id again is recognised, not stored twice.
    again = broker.Produce(broker_pb2.ProduceRequest(topic=TOPIC, messages=[req.messages[0]]),
                           metadata=METADATA, timeout=10)
    assert again.results[0].duplicate, "a repeated dedup_id must be reported as a duplicate"
    print("re-sent message 0: duplicate=True, not stored again")


def consume(broker, want):
    """Consumes until `want` payloads arrived, ACKing each batch; returns the payloads."""
    got = []
    for _ in range(20):
        resp = broker.Consume(broker_pb2.ConsumeRequest(group=GROUP, topic=TOPIC, max_messages=10,
                                                        max_wait_ms=1000),
                              metadata=METADATA, timeout=10)
        if not resp.messages:
            if len(got) >= want:
                break
            continue
        got += [m.payload.decode() for m in resp.messages]
        commit = broker_pb2.CommitRequest(group=GROUP)
        for m in resp.messages:
            commit.entries.add(receipt=m.receipt, outcome=broker_pb2.ACK)
        results = broker.Commit(commit, metadata=METADATA, timeout=10).results
        assert all(r.status == broker_pb2.COMMITTED for r in results), results
    return got


class Checker:
    """Answers the broker's back-checks for one producer group on a bidirectional stream."""

    def __init__(self, broker, producer_group, decide):
        self._out = queue.Queue()
        self._out.put(broker_pb2.CheckTransactionRequest(
            subscribe=broker_pb2.CheckSubscribe(producer_groups=[producer_group],
                                                checker_id="python-example")))
        self._decide = decide
        self._call = broker.CheckTransaction(self._requests(), metadata=METADATA)
        self.answered = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _requests(self):
        while True:
            item = self._out.get()
            if item is None:
                return
            yield item

    def _run(self):
        try:
            for resp in self._call:
                if not resp.HasField("check"):
                    continue  # a refused answer (resp.rejected): nothing to answer
                check = resp.check
                decision = self._decide(check)
                self.answered.append((check.check_ref, decision))
                self._out.put(broker_pb2.CheckTransactionRequest(answer=broker_pb2.CheckAnswer(
                    transaction_id=check.transaction_id, check_id=check.check_id,
                    decision=decision)))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise

    def close(self):
        self._out.put(None)
        self._call.cancel()


def transaction(broker):
    # The application's own record of what it committed: the checker consults it.
    committed_orders = set()

    def decide(check):
        return (broker_pb2.TRANSACTION_COMMIT if check.check_ref in committed_orders
                else broker_pb2.TRANSACTION_UNKNOWN)

    checker = Checker(broker, PRODUCER_GROUP, decide)
    # Half message: stored, invisible until the transaction commits.
    half = broker_pb2.ProduceRequest(
        topic=TOPIC, transactional=broker_pb2.TransactionOptions(
            producer_group=PRODUCER_GROUP, check_ref="order-77"))
    half.messages.add(key="order-77", payload=b"order 77 paid")
    txn = broker.Produce(half, metadata=METADATA, timeout=10).transaction_id
    assert consume(broker, 0) == [], "a half message must stay invisible"
    print(f"transaction {txn}: half message stored, invisible")
    # The local commit happens; the producer 'crashes' before EndTransaction. The broker's
    # back-check asks the checker, which finds the order committed: COMMIT.
    committed_orders.add("order-77")
    got = consume(broker, 1)
    assert got == ["order 77 paid"], got
    assert ("order-77", broker_pb2.TRANSACTION_COMMIT) in checker.answered
    print("back-check answered COMMIT: the message was delivered")

    # An explicit ROLLBACK: the half message is never delivered.
    other = broker_pb2.ProduceRequest(
        topic=TOPIC, transactional=broker_pb2.TransactionOptions(producer_group=PRODUCER_GROUP))
    other.messages.add(payload=b"never")
    txn2 = broker.Produce(other, metadata=METADATA, timeout=10).transaction_id
    ended = broker.EndTransaction(broker_pb2.EndTransactionRequest(
        transaction_id=txn2, decision=broker_pb2.TRANSACTION_ROLLBACK), metadata=METADATA,
        timeout=10)
    assert ended.state == broker_pb2.TXN_ROLLED_BACK
    assert consume(broker, 0) == []
    print("rolled back transaction: nothing delivered")
    checker.close()


def main():
    with grpc.insecure_channel(BROKER) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        broker = broker_pb2_grpc.BrokerStub(channel)
        create_topic(admin)
        produce(broker)
        got = consume(broker, 3)
        assert got == ["event 0", "event 1", "event 2"], got
        print(f"consumed and ACKed in order: {got}")
        # Errors are gRPC status codes with a message naming the field.
        try:
            broker.Produce(broker_pb2.ProduceRequest(topic="bad topic!"), metadata=METADATA,
                           timeout=10)
            raise AssertionError("a bad topic name must be refused")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
            print(f"bad input: {e.code().name}: {e.details()}")
        transaction(broker)
    print("python example: ok")


if __name__ == "__main__":
    main()
