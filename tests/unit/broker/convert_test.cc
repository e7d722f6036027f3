// The store's results as the wire reports them, pinned: each SettleStatus has one CommitStatus.
#include "broker/convert.h"

#include <catch2/catch.hpp>

using namespace ferry;
using namespace ferry::broker;

TEST_CASE("every settle result maps to its commit status with a message for the failures",
          "[unit][convert]") {
  const std::vector<std::pair<SettleStatus, v1::CommitStatus>> table = {
      {SettleStatus::kCommitted, v1::COMMITTED},
      {SettleStatus::kRetryScheduled, v1::RETRY_SCHEDULED},
      {SettleStatus::kDeadLettered, v1::DEAD_LETTERED},
      {SettleStatus::kExtended, v1::LEASE_EXTENDED},
      {SettleStatus::kAttached, v1::TRANSACTION_PENDING},
      {SettleStatus::kAlreadyCommitted, v1::ALREADY_COMMITTED},
      {SettleStatus::kStale, v1::STALE_RECEIPT},
      {SettleStatus::kWrongGroup, v1::INVALID_RECEIPT},
      {SettleStatus::kTopicGone, v1::TOPIC_NOT_FOUND},
  };
  for (const auto& [status, wire] : table) {
    v1::CommitResult out;
    ToProto(SettleResult{status, 1234, ""}, &out);
    CHECK(out.status() == wire);
    if (wire == v1::RETRY_SCHEDULED) CHECK(out.retry_at().seconds() == 1);
    if (wire == v1::STALE_RECEIPT || wire == v1::INVALID_RECEIPT || wire == v1::TOPIC_NOT_FOUND) {
      CHECK_FALSE(out.detail().empty());
    }
  }
  v1::CommitResult out;
  ToProto(SettleResult{SettleStatus::kStale, 0, "a detail of the store"}, &out);
  CHECK(out.detail() == "a detail of the store");
}

TEST_CASE("decisions: only COMMIT commits - anything unknown is UNKNOWN", "[unit][convert]") {
  CHECK(FromProto(v1::TRANSACTION_COMMIT) == TxnDecision::kCommit);
  CHECK(FromProto(v1::TRANSACTION_ROLLBACK) == TxnDecision::kRollback);
  CHECK(FromProto(v1::TRANSACTION_UNKNOWN) == TxnDecision::kUnknown);
  CHECK(FromProto(static_cast<v1::TransactionDecision>(77)) == TxnDecision::kUnknown);
  CHECK(FromProto(v1::COMMIT_OUTCOME_UNSPECIFIED) == Outcome::kAck);
  CHECK(FromProto(v1::DEAD_LETTER) == Outcome::kDeadLetter);
  CHECK_FALSE(FromProto(v1::TRANSACTION_STATE_UNSPECIFIED).has_value());
  CHECK(*FromProto(v1::TXN_CHECK_EXHAUSTED) == TxnState::kCheckExhausted);
}

TEST_CASE("headers round-trip through their stored JSON - a topic config gets its defaults",
          "[unit][convert]") {
  v1::ProducedMessage m;
  (*m.mutable_headers())["type"] = "created";
  (*m.mutable_headers())["quote"] = "a \"b\"";
  m.set_delay_ms(500);
  NewMessage n = FromProto(m, 1000);
  CHECK(n.deliver_at_ms == 1500);
  CHECK_FALSE(n.key.has_value());
  v1::ProducedMessage back;
  ToProto(n, &back);
  CHECK(back.headers().at("quote") == "a \"b\"");
  CHECK(back.headers().size() == 2);

  v1::TopicConfig c;
  c.set_name("t");
  TopicInfo t = FromProto(c);
  CHECK(t.queue_count == kDefaultQueues);
  CHECK(t.retention_ms == static_cast<int64_t>(kDefaultRetentionMs));
  CHECK(t.dedup_window_ms == static_cast<int64_t>(kDefaultDedupWindowMs));
}
