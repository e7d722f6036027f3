"""Ferry's Python client: publisher, subscriber, transactions, outbox/inbox and admin.

    import ferry
    client = ferry.Client()                      # FERRY_BROKER, FERRY_TOKEN, FERRY_TLS_* ...
    with client.publisher() as pub:
        pub.publish("orders", b"hello", key="order-1").result()
    sub = client.subscribe("orders", "billing", lambda m: print(m.payload))
"""
from ferry.client import Client
from ferry.errors import DeadLetter, FerryError, Retry, is_retryable
from ferry.outbox import enqueue, process_once
from ferry.publisher import PublishResult, Publisher
from ferry.subscriber import Message, Stats, Subscription
from ferry.transactions import COMMIT, ROLLBACK, UNKNOWN, Checker, Transaction

__all__ = [
    "Client", "FerryError", "Retry", "DeadLetter", "is_retryable", "Publisher", "PublishResult",
    "Subscription", "Message", "Stats", "Transaction", "Checker", "COMMIT", "ROLLBACK", "UNKNOWN",
    "enqueue", "process_once",
]
__version__ = "0.1.0"
