"""Ferry's errors: every failed call raises FerryError with the gRPC code and the broker's message.

Handlers of a Subscriber raise Retry or DeadLetter to choose what happens to a message; any
other exception is a RETRY on the group's backoff schedule, with the exception as the reason.
"""
from __future__ import annotations

from typing import Optional

import grpc


class FerryError(Exception):
    """A call that failed: `code` is the grpc.StatusCode, `message` the broker's sentence."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return is_retryable(self.code, self.message)


# Size limits are RESOURCE_EXHAUSTED too, and retrying them cannot help.
_SIZE_LIMIT_WORDS = ("are allowed", "larger than", "at most")


def is_retryable(code: grpc.StatusCode, message: str = "") -> bool:
    """UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, and RESOURCE_EXHAUSTED when the broker is busy."""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.ABORTED):
        return True
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return not any(w in message for w in _SIZE_LIMIT_WORDS)
    return False


def from_rpc_error(e: grpc.RpcError) -> FerryError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    return FerryError(code or grpc.StatusCode.UNKNOWN, details or "")


class Retry(Exception):
    """Raise in a handler: deliver the message again after `delay` seconds (None: the group's
    backoff schedule). `reason` is kept if this was the last allowed attempt."""

    def __init__(self, reason: str = "", delay: Optional[float] = None):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class DeadLetter(Exception):
    """Raise in a handler: move the message to the group's dead letters now, with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
