#!/usr/bin/python3
"""Ferry from Python with the client library (clients/python): publish, subscribe, a bad
request, and a transaction decided by a back-check.

    FERRY_BROKER=127.0.0.1:7420 ./run.sh        # FERRY_TOKEN too if the broker runs --auth

Each step prints one line; any failure raises and the script exits non-zero.
"""
import threading
import time
import uuid

import ferry

TOPIC = "example.python." + uuid.uuid4().hex[:8]
ORDERS = TOPIC + ".orders"  # the transaction's topic
PRODUCER_GROUP = "python-shop-" + uuid.uuid4().hex[:8]


def collect(client, topic, group, want, timeout=20.0):
    """Subscribes until `want` messages arrived (or `timeout`); returns their payloads."""
    got, lock = [], threading.Lock()

    def handler(m):
        with lock:
            got.append(m.payload.decode())

    with client.subscribe(topic, group, handler, max_wait=0.5):
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            time.sleep(0.05)
    return got


def main():
    client = ferry.Client()  # FERRY_BROKER, FERRY_TOKEN, FERRY_TLS_* from the environment
    client.admin.create_topic(TOPIC, queues=2)
    client.admin.create_topic(ORDERS, queues=1)
    print(f"topic {TOPIC} ready")

    with client.publisher() as pub:  # batches; retries with dedup ids
        results = [pub.publish(TOPIC, f"event {i}", key="order-42", dedup_id=f"order-42-{i}")
                   for i in range(3)]
        where = [f.result() for f in results]
        again = pub.publish(TOPIC, "event 0", key="order-42", dedup_id="order-42-0").result()
    print(f"published 3 messages on queue {where[0].queue}: offsets {[w.offset for w in where]}")
    assert again.duplicate and again.offset == where[0].offset
    print("re-sent message 0 with its dedup id: duplicate=True, not stored again")

    got = collect(client, TOPIC, "python-readers", 3)
    assert sorted(got) == ["event 0", "event 1", "event 2"], got
    print(f"received and ACKed: {sorted(got)}")

    try:  # errors carry the gRPC code and the broker's message
        client.admin.create_topic("bad topic!")
        raise AssertionError("a bad topic name must be refused")
    except ferry.FerryError as e:
        assert e.code.name == "INVALID_ARGUMENT", e
        print(f"bad input: {e}")

    # A transaction: the half message stays invisible; the producer "crashes" after its local
    # commit; the broker's back-check asks the checker, which finds the order committed.
    committed_orders = set()
    with client.on_check(PRODUCER_GROUP, lambda c: True if c.check_ref in committed_orders else None):
        txn = client.begin_transaction(PRODUCER_GROUP, check_ref="order-77")
        txn.publish(ORDERS, "order 77 paid", key="order-77")
        print(f"transaction {txn.id}: half message stored, invisible")
        committed_orders.add("order-77")  # the local commit; no txn.commit(): "crashed"
        got = collect(client, ORDERS, "python-readers", 1)
        assert got == ["order 77 paid"], got
        print("back-check answered COMMIT: the message was delivered")

    try:  # an exception inside the block rolls back
        with client.begin_transaction(PRODUCER_GROUP) as txn:
            txn.publish(ORDERS, "never")
            raise RuntimeError("payment declined")
    except RuntimeError:
        pass
    assert collect(client, ORDERS, "python-readers", 1, timeout=2.0) == []
    print("rolled back transaction: nothing delivered")
    client.close()
    print("python example: ok")


if __name__ == "__main__":
    main()
