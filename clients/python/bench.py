"""Publish and subscribe rates of the Python client (scripts/client-test.sh python --bench).

    FERRY_BROKER=127.0.0.1:7420 /usr/bin/python3 bench.py [MESSAGES] [PAYLOAD_BYTES]
"""
import sys
import threading
import time
import uuid

import ferry


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    client = ferry.Client()
    topic = "bench.py." + uuid.uuid4().hex[:8]
    client.admin.create_topic(topic, queues=4)
    payload = b"x" * size
    start = time.monotonic()
    with client.publisher() as pub:
        futures = [pub.publish(topic, payload, key=f"k{i % 64}") for i in range(n)]
    for f in futures:
        f.result()
    publish = time.monotonic() - start

    done = threading.Event()
    count = 0
    lock = threading.Lock()

    def handler(m):
        nonlocal count
        with lock:
            count += 1
            if count == n:
                done.set()

    start = time.monotonic()
    sub = client.subscribe(topic, "bench", handler, max_wait=0.2)
    done.wait()
    while sub.stats.acked < n:
        time.sleep(0.01)
    subscribe = time.monotonic() - start
    sub.stop()
    print(f"python: publish {n} x {size} B: {n / publish:,.0f} msg/s; "
          f"subscribe (ack each): {n / subscribe:,.0f} msg/s")


if __name__ == "__main__":
    main()
