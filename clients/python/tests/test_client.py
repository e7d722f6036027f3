"""The Python client against a real broker and PostgreSQL (scripts/client-test.sh python)."""
import collections
import logging
import os
import subprocess
import threading
import time
import unittest
import uuid

import grpc
import psycopg

import ferry

logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
CTL = os.environ["FERRY_TEST_BROKER_CTL"]
DB = os.environ["FERRY_TEST_DATABASE_URL"]


def unique(prefix):
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def drain(client, topic, group, expect, timeout=60.0):
    """Reads `topic` with a fresh group until `expect` messages arrived; [(queue, offset, key,
    payload)] sorted by queue and offset."""
    got = []
    lock = threading.Lock()

    def handler(m):
        with lock:
            got.append((m.queue, m.offset, m.key, m.payload.decode()))

    with client.subscribe(topic, group, handler, max_wait=0.5):
        wait_for(lambda: len(got) >= expect, timeout, f"{expect} messages in {topic}")
        time.sleep(0.5)  # anything beyond `expect` would be a duplicate: let it arrive
    return sorted(got)


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = ferry.Client()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def topic(self, queues=4, **kw):
        name = unique("py")
        self.client.admin.create_topic(name, queues=queues, **kw)
        return name

    def test_publish_10000_batched_across_a_broker_kill(self):
        topic = self.topic()
        keys = [f"k{i}" for i in range(50)]
        with self.client.publisher(retry_for=120) as pub:
            futures = [pub.publish(topic, str(i), key=keys[i % 50]) for i in range(5000)]
            wait_for(lambda: sum(f.done() for f in futures) >= 2500, 60, "half the first 5000")
            subprocess.run([CTL, "kill"], check=True)
            futures += [pub.publish(topic, str(i), key=keys[i % 50]) for i in range(5000, 10000)]
            time.sleep(1.0)
            subprocess.run([CTL, "start"], check=True)
            results = [f.result(timeout=120) for f in futures]
        self.assertEqual(len({(r.queue, r.offset) for r in results}), 10000)
        self.assertFalse(any(r.duplicate for r in results), "a retry finding its own attempt")
        stored = drain(self.client, topic, unique("g"), 10000)
        payloads = collections.Counter(p for _, _, _, p in stored)
        self.assertEqual(len(stored), 10000, "every acknowledged message stored exactly once")
        self.assertEqual(set(payloads), {str(i) for i in range(10000)})
        by_key = collections.defaultdict(list)
        for _, _, key, payload in stored:  # queue order
            by_key[key].append(int(payload))
        for key, seq in by_key.items():
            self.assertEqual(seq, sorted(seq), f"order of key {key} kept across the retries")

    def test_a_failed_key_is_paused_until_resumed(self):
        topic = self.topic(queues=1)
        with self.client.publisher() as pub:
            self.assertEqual(pub.publish(topic, "1", key="k").result(timeout=30).offset, 0)
            with self.assertRaises(ferry.FerryError) as e:  # too large: fails, pauses "k"
                pub.publish(topic, b"x" * (5 << 20), key="k").result(timeout=30)
            self.assertEqual(e.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
            with self.assertRaises(ferry.FerryError) as e:
                pub.publish(topic, "3", key="k").result(timeout=30)
            self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("resume_publish", e.exception.message)
            self.assertEqual(pub.publish(topic, "other", key="j").result(timeout=30).offset, 1)
            pub.resume_publish(topic, "k")
            self.assertEqual(pub.publish(topic, "4", key="k").result(timeout=30).offset, 2)

    def test_handler_longer_than_the_lease_is_not_redelivered(self):
        topic = self.topic(queues=1)
        with self.client.publisher() as pub:
            for i in range(3):
                pub.publish(topic, f"slow {i}")
        seen = []
        lock = threading.Lock()

        def handler(m):
            with lock:
                seen.append((m.payload, m.delivery_attempt))
            time.sleep(4.0)  # four leases of one second

        sub = self.client.subscribe(topic, unique("g"), handler, lease=1.0, concurrency=3)
        wait_for(lambda: sub.stats.acked == 3, 30, "3 acks")
        time.sleep(2.0)  # a lapsed lease would redeliver within this
        sub.stop()
        self.assertEqual(sorted(seen), [(f"slow {i}".encode(), 1) for i in range(3)])
        self.assertGreater(sub.stats.lease_extensions, 0)
        self.assertEqual(sub.stats.stale_receipts, 0)

    def test_flow_control_holds_the_outstanding_limit(self):
        topic = self.topic()
        with self.client.publisher() as pub:
            for i in range(200):
                pub.publish(topic, str(i))
        running = 0
        most = 0
        done = []
        lock = threading.Lock()

        def handler(m):
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1
                done.append(m.payload)

        sub = self.client.subscribe(topic, unique("g"), handler, max_outstanding_messages=10,
                                    concurrency=50)
        wait_for(lambda: sub.stats.acked == 200, 60, "200 acks")
        sub.stop()
        self.assertEqual(len(done), 200)
        self.assertLessEqual(sub.stats.max_outstanding_seen, 10)
        self.assertLessEqual(most, 10)
        self.assertGreaterEqual(most, 2, "the handlers ran concurrently")

    def test_failing_handler_messages_reach_the_dead_letters_with_the_reason(self):
        topic = self.topic(queues=1)
        group = unique("g")
        self.client.admin.create_group(group, topics=[topic], max_delivery_attempts=2,
                                       backoff_ms=[100])
        with self.client.publisher() as pub:
            for p in ("ok", "bad", "reject"):
                pub.publish(topic, p)

        def handler(m):
            if m.payload == b"bad":
                raise ValueError("cannot parse order 7")
            if m.payload == b"reject":
                raise ferry.DeadLetter("schema v0 is not supported")

        with self.client.subscribe(topic, group, handler) as sub:
            wait_for(lambda: sub.stats.dead_lettered == 2, 30, "2 dead letters")
        dead = {d.payload: d for d in self.client.admin.dead_letters(group)}
        self.assertEqual(set(dead), {b"bad", b"reject"})
        self.assertEqual(dead[b"bad"].reason, "max delivery attempts (2) reached: last outcome "
                                              "RETRY: ValueError: cannot parse order 7")
        self.assertEqual(dead[b"bad"].attempts, 2)
        self.assertEqual(dead[b"reject"].reason, "rejected: schema v0 is not supported")
        self.assertEqual(sub.stats.acked, 1)
        self.assertEqual(sub.stats.handler_errors, 2)

    def test_checker_reconnects_after_a_broker_restart_and_decides(self):
        topic = self.topic(queues=1)
        producer_group = unique("shop")
        decided = []
        checker = self.client.on_check(producer_group,
                                       lambda c: decided.append(c.check_ref) or c.check_ref == "paid")
        try:
            self.assertTrue(checker.connected.wait(10))
            subprocess.run([CTL, "kill"], check=True)
            subprocess.run([CTL, "start"], check=True)
            wait_for(lambda: checker.connects >= 2 and checker.connected.is_set(), 30,
                     "the checker to reconnect")
            # The producer "crashes" after its local commit: no EndTransaction.
            paid = self.client.begin_transaction(producer_group, check_ref="paid")
            paid.publish(topic, "order paid")
            unpaid = self.client.begin_transaction(producer_group, check_ref="unpaid")
            unpaid.publish(topic, "order unpaid")
            wait_for(lambda: {"paid", "unpaid"} <= set(decided), 30, "both back-checks")
        finally:
            checker.stop()
        self.assertEqual([p for _, _, _, p in drain(self.client, topic, unique("g"), 1)],
                         ["order paid"])

    def test_transaction_context_commits_or_rolls_back(self):
        topic = self.topic(queues=1)
        with self.client.begin_transaction(unique("shop")) as txn:
            txn.publish(topic, "kept")
        with self.assertRaises(RuntimeError):
            with self.client.begin_transaction(unique("shop")) as txn:
                txn.publish(topic, "dropped")
                raise RuntimeError("the local transaction failed")
        self.assertEqual(txn.state, ferry.v1.broker_pb2.TXN_ROLLED_BACK)
        self.assertEqual([p for _, _, _, p in drain(self.client, topic, unique("g"), 1)], ["kept"])

    def test_ordered_group_handles_a_queue_in_order_across_a_retry(self):
        topic = self.topic(queues=1)
        group = unique("g")
        self.client.admin.create_group(group, topics=[topic], ordered=True)
        with self.client.publisher() as pub:
            for i in range(20):
                pub.publish(topic, str(i), key="one-key")
        done, attempts = [], collections.Counter()
        lock = threading.Lock()

        def handler(m):
            n = int(m.payload)
            with lock:
                attempts[n] += 1
                if n == 5 and attempts[n] == 1:
                    raise ferry.Retry("not yet", delay=0.2)
                done.append(n)

        with self.client.subscribe(topic, group, handler, concurrency=8) as sub:
            wait_for(lambda: len(done) >= 20, 30, "20 messages in order")
        self.assertEqual(done, list(range(20)), "one queue, in order, 5 retried in place")
        self.assertEqual(attempts[5], 2)
        self.assertGreater(sub.stats.released, 0, "the rest of 5's batch was released")

    def test_outbox_and_inbox_across_a_rollback(self):
        topic = self.topic(queues=1)
        group = unique("cart")
        with psycopg.connect(DB) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS py_cart (order_id text PRIMARY KEY)")
            conn.commit()
            with conn.transaction():
                ferry.enqueue(conn, topic, "order-1", b"order-1")
            try:
                with conn.transaction():
                    ferry.enqueue(conn, topic, "order-2", b"order-2")
                    raise RuntimeError("the order failed")
            except RuntimeError:
                pass
            with conn.transaction():
                ferry.enqueue(conn, topic, "order-3", b"order-3")

        received = []
        ran = []
        lock = threading.Lock()

        def handler(m):
            with psycopg.connect(DB) as c:
                with c.transaction():
                    first = ferry.process_once(c, group, m, lambda c: c.execute(
                        "INSERT INTO py_cart VALUES (%s)", (m.payload.decode(),)))
                    again = ferry.process_once(c, group, m, lambda c: None)
            with lock:
                received.append(m.payload)
                ran.append((first, again))

        with self.client.subscribe(topic, group, handler):
            wait_for(lambda: len(received) >= 2, 30, "the two committed orders")
            time.sleep(1.0)
        self.assertEqual(sorted(received), [b"order-1", b"order-3"])
        self.assertEqual(ran, [(True, False), (True, False)])
        with psycopg.connect(DB) as conn:
            rows = conn.execute("SELECT count(*) FROM ferry_inbox WHERE consumer_group = %s",
                                (group,)).fetchone()
            self.assertEqual(rows[0], 2)

    def test_errors_carry_the_code_and_the_brokers_message(self):
        with self.client.publisher() as pub:
            future = pub.publish("py.no-such-topic", "x")
            with self.assertRaises(ferry.FerryError) as e:
                future.result(timeout=30)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("py.no-such-topic", e.exception.message)
        topic = self.topic(queues=1)
        started = time.monotonic()
        with self.client.publisher() as pub:  # a size limit is not retried: it fails at once
            with self.assertRaises(ferry.FerryError) as e:
                pub.publish(topic, b"x" * (5 << 20)).result(timeout=30)
            self.assertEqual(pub.publish(topic, b"fine").result(timeout=30).offset, 0)
        self.assertEqual(e.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("are allowed", e.exception.message)
        self.assertLess(time.monotonic() - started, 30)


class SecureTest(unittest.TestCase):
    """A broker with --auth and mutual TLS, reached with the token and certificates."""

    def test_token_and_mutual_tls(self):
        env = os.environ
        secure = dict(tls_ca=env["FERRY_TEST_TLS_CA"], tls_client_cert=env["FERRY_TEST_TLS_CLIENT_CERT"],
                      tls_client_key=env["FERRY_TEST_TLS_CLIENT_KEY"])
        address = env["FERRY_TEST_SECURE_BROKER"]
        with ferry.Client(address, token=env["FERRY_TEST_SECURE_TOKEN"], **secure) as client:
            topic = unique("py.secure")
            client.admin.create_topic(topic, queues=1)
            with client.publisher() as pub:
                pub.publish(topic, b"over TLS").result(timeout=30)
            self.assertEqual([p for _, _, _, p in drain(client, topic, unique("g"), 1)], ["over TLS"])
        with ferry.Client(address, token="ferry_wrong", **secure) as client:
            with self.assertRaises(ferry.FerryError) as e:
                client.admin.list_topics()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        with ferry.Client(address, token="", tls_ca=env["FERRY_TEST_TLS_CA"]) as client:
            with self.assertRaises(ferry.FerryError) as e:  # no client certificate
                client.call(client.admin_stub.ListTopics, ferry.v1.admin_pb2.ListTopicsRequest(),
                            timeout=5)
            self.assertIn(e.exception.code, (grpc.StatusCode.UNAVAILABLE,
                                             grpc.StatusCode.DEADLINE_EXCEEDED))


if __name__ == "__main__":
    unittest.main()
