"""Admin: thin helpers over the Admin service; `stub` is the generated stub for anything else
(call it through client.call(admin.stub.Method, request) to get the token and deadline)."""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence

import grpc

from ferry.errors import FerryError
from ferry.v1 import admin_pb2, broker_pb2

_DECISIONS = {"commit": broker_pb2.TRANSACTION_COMMIT, "rollback": broker_pb2.TRANSACTION_ROLLBACK}


class Admin:
    def __init__(self, client):
        self._client = client
        self.stub = client.admin_stub

    def _call(self, name: str, request):
        return self._client.call(getattr(self.stub, name), request)

    # topics
    def create_topic(self, name: str, *, queues: int = 0, retention_ms: int = 0,
                     dedup_window_ms: int = 0, ordered: bool = False,
                     exist_ok: bool = False) -> admin_pb2.TopicConfig:
        """Creates a topic (0 = the broker's defaults); exist_ok: an existing one is fine."""
        config = admin_pb2.TopicConfig(name=name, queues=queues, retention_ms=retention_ms,
                                       dedup_window_ms=dedup_window_ms, ordered=ordered)
        try:
            return self._call("CreateTopic", admin_pb2.CreateTopicRequest(topic=config)).topic
        except FerryError as e:
            if exist_ok and e.code == grpc.StatusCode.ALREADY_EXISTS:
                return self._call("DescribeTopic", admin_pb2.DescribeTopicRequest(name=name)).topic
            raise

    def list_topics(self) -> List[admin_pb2.TopicConfig]:
        return list(self._call("ListTopics", admin_pb2.ListTopicsRequest()).topics)

    def delete_topic(self, name: str) -> None:
        self._call("DeleteTopic", admin_pb2.DeleteTopicRequest(name=name))

    # groups
    def create_group(self, name: str, *, topics: Sequence[str] = (), max_delivery_attempts: int = 0,
                     backoff_ms: Sequence[int] = (), ordered: bool = False,
                     start_position: str = "earliest") -> admin_pb2.GroupConfig:
        config = admin_pb2.GroupConfig(
            name=name, max_delivery_attempts=max_delivery_attempts, backoff_ms=list(backoff_ms),
            ordered=ordered,
            start_position={"earliest": broker_pb2.START_POSITION_EARLIEST,
                            "latest": broker_pb2.START_POSITION_LATEST}[start_position])
        return self._call("CreateGroup",
                          admin_pb2.CreateGroupRequest(group=config, topics=list(topics))).group

    def lag(self, group: str, topic: str = "") -> admin_pb2.GetGroupLagResponse:
        """Per queue: end, committed and delivered offsets, in flight, retrying, dead letters."""
        return self._call("GetGroupLag", admin_pb2.GetGroupLagRequest(group=group, topic=topic))

    def total_lag(self, group: str, topic: str = "") -> int:
        return sum(q.lag for q in self.lag(group, topic).queues)

    # dead letters
    def dead_letters(self, group: str, topic: str = "") -> Iterator[admin_pb2.DeadLetter]:
        """Every dead letter of the group (oldest first), page by page."""
        token = ""
        while True:
            page = self._call("ListDeadLetters", admin_pb2.ListDeadLettersRequest(
                group=group, topic=topic, page_size=1000, page_token=token))
            yield from page.dead_letters
            token = page.next_page_token
            if not token:
                return

    def redrive_dead_letters(self, group: str, ids: Sequence[int] = (), *, all: bool = False,
                             to_topic: str = "") -> admin_pb2.RedriveDeadLettersResponse:
        return self._call("RedriveDeadLetters", admin_pb2.RedriveDeadLettersRequest(
            group=group, ids=list(ids), all=all, to_topic=to_topic))

    # transactions
    def transactions(self, *, state: Optional[int] = None, producer_group: str = "",
                     limit: int = 100) -> List[admin_pb2.TransactionInfo]:
        request = admin_pb2.ListTransactionsRequest(producer_group=producer_group, limit=limit)
        if state is not None:
            request.state = state
        return list(self._call("ListTransactions", request).transactions)

    def resolve_transaction(self, transaction_id: str, decision: str, reason: str) -> int:
        """decision "commit" or "rollback"; `reason` is kept in the audit trail."""
        return self._call("ResolveTransaction", admin_pb2.ResolveTransactionRequest(
            transaction_id=transaction_id, decision=_DECISIONS[decision], reason=reason)).state
