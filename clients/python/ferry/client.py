"""The connection to a broker: channel, credentials, deadlines, and the calls every part uses."""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional, Sequence

import grpc

from ferry.errors import FerryError, from_rpc_error
from ferry._backoff import Backoff
from ferry.v1 import admin_pb2_grpc, broker_pb2_grpc

# Produce refuses more than 16 MiB of payloads per call and the transport more than 17 MiB;
# a Consume answer can be as large. The channel allows a little more so that the broker's
# precise RESOURCE_EXHAUSTED reaches the caller instead of a transport error.
MAX_MESSAGE_BYTES = 64 << 20


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


class Client:
    """One gRPC channel to a broker (thread-safe; share it).

    Every argument left out is read from the environment, as ferryctl does: FERRY_BROKER
    (default 127.0.0.1:7420), FERRY_TOKEN, FERRY_TLS_CA, FERRY_TLS_CLIENT_CERT,
    FERRY_TLS_CLIENT_KEY, FERRY_TLS_SERVER_NAME. TLS is used when a CA or client certificate is
    given. `timeout` is the deadline of each call in seconds (long polls add their wait).
    """

    def __init__(self, address: Optional[str] = None, *, token: Optional[str] = None,
                 tls_ca: Optional[str] = None, tls_client_cert: Optional[str] = None,
                 tls_client_key: Optional[str] = None, tls_server_name: Optional[str] = None,
                 timeout: float = 30.0, keepalive: float = 30.0,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        env = os.environ.get
        self.address = address or env("FERRY_BROKER") or "127.0.0.1:7420"
        token = token if token is not None else env("FERRY_TOKEN", "")
        tls_ca = tls_ca or env("FERRY_TLS_CA")
        tls_client_cert = tls_client_cert or env("FERRY_TLS_CLIENT_CERT")
        tls_client_key = tls_client_key or env("FERRY_TLS_CLIENT_KEY")
        tls_server_name = tls_server_name or env("FERRY_TLS_SERVER_NAME")
        self.timeout = timeout
        self.metadata: Sequence[tuple] = (("authorization", "Bearer " + token),) if token else ()
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", 10000),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.max_pings_without_data", 0),
            # A restarted broker is found again within ~2 s, not after gRPC's 120 s backoff cap.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if tls_ca or tls_client_cert:
            if bool(tls_client_cert) != bool(tls_client_key):
                raise ValueError("a TLS client certificate needs its key (and the key its certificate)")
            creds = grpc.ssl_channel_credentials(root_certificates=_read(tls_ca),
                                                 private_key=_read(tls_client_key),
                                                 certificate_chain=_read(tls_client_cert))
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(self.address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(self.address, options=options)
        self.broker = broker_pb2_grpc.BrokerStub(self.channel)
        self.admin_stub = admin_pb2_grpc.AdminStub(self.channel)
        self._admin = None

    # -- calls -------------------------------------------------------------------------------
    def call(self, method: Callable, request: Any, timeout: Optional[float] = None) -> Any:
        """One call with this client's deadline and token; raises FerryError. While the broker
        cannot be reached the call waits for it (wait_for_ready) until its deadline."""
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self.metadata,
                          wait_for_ready=True)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def call_with_retry(self, method: Callable, request: Any, *, retry_for: float = 60.0,
                        timeout: Optional[float] = None) -> Any:
        """call(), retried on retryable errors with backoff for up to `retry_for` seconds.
        Only for calls that are safe to repeat (idempotent, or with dedup ids)."""
        deadline = time.monotonic() + retry_for
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                return self.call(method, request, timeout)
            except FerryError as e:
                wait = backoff.next()
                if not e.retryable or time.monotonic() + wait > deadline:
                    raise
                time.sleep(wait)

    # -- the parts ---------------------------------------------------------------------------
    def publisher(self, **settings: Any) -> "Publisher":
        """A batching Publisher (see ferry.Publisher for the settings)."""
        from ferry.publisher import Publisher
        return Publisher(self, **settings)

    def subscribe(self, topic: str, group: str, handler: Callable, **settings: Any) -> "Subscription":
        """Starts a Subscription: `handler(message)` runs on worker threads (ferry.Subscription)."""
        from ferry.subscriber import Subscription
        return Subscription(self, topic, group, handler, **settings)

    def begin_transaction(self, producer_group: str, *, check_ref: str = "",
                          timeout: Optional[float] = None) -> "Transaction":
        """Begins a broker transaction (ferry.Transaction); use it as a context manager."""
        from ferry.transactions import Transaction
        return Transaction.begin(self, producer_group, check_ref=check_ref, timeout=timeout)

    def on_check(self, producer_groups: Sequence[str] | str, handler: Callable,
                 checker_id: Optional[str] = None) -> "Checker":
        """Answers back-checks of these producer groups with `handler(check)` (ferry.Checker)."""
        from ferry.transactions import Checker
        return Checker(self, producer_groups, handler, checker_id=checker_id)

    @property
    def admin(self) -> "Admin":
        if self._admin is None:
            from ferry.admin import Admin
            self._admin = Admin(self)
        return self._admin

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
