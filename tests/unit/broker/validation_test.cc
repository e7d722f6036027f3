#include "broker/validation.h"

#include <catch2/catch.hpp>

using namespace ferry::broker;
namespace v1 = ferry::v1;

namespace {
std::string Message(const absl::Status& s) { return std::string(s.message()); }

v1::ProduceRequest OneMessage(const std::string& topic = "orders") {
  v1::ProduceRequest req;
  req.set_topic(topic);
  req.add_messages()->set_payload("hello");
  return req;
}
}  // namespace

TEST_CASE("names are [A-Za-z0-9._-]{1 128}", "[unit][validation]") {
  CHECK(ValidateName("topic", "orders.v1_EU-2").ok());
  CHECK(ValidateName("topic", std::string(128, 'a')).ok());
  for (const std::string& bad :
       std::vector<std::string>{"", "with space", "slash/no", "ümlaut", std::string(129, 'a')}) {
    absl::Status s = ValidateName("topic", bad);
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK(Message(s).rfind("topic", 0) == 0);  // names the field
  }
}

TEST_CASE("produce limits", "[unit][validation]") {
  Limits limits;
  CHECK(ValidateProduce(OneMessage(), limits).ok());

  v1::ProduceRequest empty;
  empty.set_topic("orders");
  CHECK(ValidateProduce(empty, limits).code() == absl::StatusCode::kInvalidArgument);

  v1::ProduceRequest many;
  many.set_topic("orders");
  for (int i = 0; i < 1001; ++i) many.add_messages()->set_payload("x");
  absl::Status s = ValidateProduce(many, limits);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Message(s).find("1000") != std::string::npos);

  limits.max_message_bytes = 10;
  auto big = OneMessage();
  big.mutable_messages(0)->set_payload(std::string(11, 'x'));
  s = ValidateProduce(big, limits);
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Message(s).rfind("messages[0].payload", 0) == 0);

  Limits total;
  total.max_produce_bytes = 100;
  v1::ProduceRequest heavy;
  heavy.set_topic("orders");
  for (int i = 0; i < 11; ++i) heavy.add_messages()->set_payload(std::string(10, 'x'));
  CHECK(ValidateProduce(heavy, total).code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("produce rejects fields PostgreSQL could not store", "[unit][validation]") {
  Limits limits;
  auto nul_key = OneMessage();
  nul_key.mutable_messages(0)->set_key(std::string("a\0b", 3));
  CHECK(Message(ValidateProduce(nul_key, limits)).rfind("messages[0].key", 0) == 0);

  auto empty_header = OneMessage();
  (*empty_header.mutable_messages(0)->mutable_headers())[""] = "v";
  CHECK(ValidateProduce(empty_header, limits).code() == absl::StatusCode::kInvalidArgument);

  auto long_dedup = OneMessage();
  long_dedup.mutable_messages(0)->set_dedup_id(std::string(257, 'd'));
  CHECK(Message(ValidateProduce(long_dedup, limits)).rfind("messages[0].dedup_id", 0) == 0);

  auto bad_topic = OneMessage("bad topic");
  CHECK(Message(ValidateProduce(bad_topic, limits)).rfind("topic", 0) == 0);
}

TEST_CASE("consume limits", "[unit][validation]") {
  Limits limits;
  v1::ConsumeRequest req;
  req.set_group("g");
  req.set_topic("t");
  CHECK(ValidateConsume(req, limits).ok());  // zeros mean defaults

  auto bad = req;
  bad.set_max_messages(1001);
  CHECK(Message(ValidateConsume(bad, limits)).rfind("max_messages", 0) == 0);
  bad = req;
  bad.set_max_wait_ms(30001);
  CHECK(Message(ValidateConsume(bad, limits)).rfind("max_wait_ms", 0) == 0);
  bad = req;
  bad.set_visibility_timeout_ms(999);
  CHECK(Message(ValidateConsume(bad, limits)).rfind("visibility_timeout_ms", 0) == 0);
  bad = req;
  bad.set_visibility_timeout_ms(12u * 3600 * 1000 + 1);
  CHECK(ValidateConsume(bad, limits).code() == absl::StatusCode::kInvalidArgument);
  bad = req;
  bad.set_group("");
  CHECK(Message(ValidateConsume(bad, limits)).rfind("group", 0) == 0);
}

TEST_CASE("commit limits", "[unit][validation]") {
  Limits limits;
  v1::CommitRequest req;
  req.set_group("g");
  CHECK(Message(ValidateCommit(req, limits)).rfind("entries", 0) == 0);
  req.add_entries()->set_receipt("r");
  CHECK(ValidateCommit(req, limits).ok());
  req.add_entries();
  CHECK(Message(ValidateCommit(req, limits)).rfind("entries[1].receipt", 0) == 0);
  req.mutable_entries(1)->set_receipt("r2");
  req.mutable_entries(1)->set_outcome(static_cast<v1::CommitOutcome>(99));
  CHECK(Message(ValidateCommit(req, limits)).rfind("entries[1].outcome", 0) == 0);
}

TEST_CASE("topic config limits", "[unit][validation]") {
  Limits limits;
  v1::TopicConfig t;
  t.set_name("orders");
  CHECK(ValidateTopicConfig(t, limits).ok());
  t.set_queues(257);
  CHECK(Message(ValidateTopicConfig(t, limits)).rfind("topic.queues", 0) == 0);
  t.set_queues(256);
  CHECK(ValidateTopicConfig(t, limits).ok());
  t.set_retention_ms(kMaxDurationMs + 1);
  CHECK(Message(ValidateTopicConfig(t, limits)).rfind("topic.retention_ms", 0) == 0);
}

// Issue 14: each limit as limits.h, the proto comments and the README say, at its boundary.
TEST_CASE("the limits of issue 14 at their boundaries", "[unit][validation]") {
  Limits limits;
  v1::CommitRequest commit;
  commit.set_group("g");
  auto* e = commit.add_entries();
  e->set_receipt("r");
  e->set_outcome(v1::RETRY);
  e->set_retry_delay_ms(43200000);  // 12 h
  CHECK(ValidateCommit(commit, limits).ok());
  e->set_retry_delay_ms(43200001);
  CHECK(Message(ValidateCommit(commit, limits)) ==
        "entries[0].retry_delay_ms is 43200001; at most 43200000 (12 h)");

  v1::ExtendLeaseRequest ext;
  ext.set_group("g");
  ext.add_receipts("r");
  for (uint32_t ms : {0u, 999u, 43200001u}) {
    ext.set_visibility_timeout_ms(ms);
    CHECK(Message(ValidateExtendLease(ext, limits)).rfind("visibility_timeout_ms is", 0) == 0);
  }
  for (uint32_t ms : {1000u, 43200000u}) {
    ext.set_visibility_timeout_ms(ms);
    CHECK(ValidateExtendLease(ext, limits).ok());
  }

  CHECK(ValidateBeginTransaction("", "g", "", 86400000).ok());  // 24 h
  CHECK(Message(ValidateBeginTransaction("", "g", "", 86400001)) ==
        "timeout_ms is 86400001; at most 86400000 (24 h)");
  CHECK(Message(ValidateBeginTransaction("", "g", std::string(1025, 'r'), 0)) ==
        "check_ref is longer than 1024 bytes");

  v1::CreateGroupRequest group;
  group.mutable_group()->set_name("g");
  group.mutable_group()->add_backoff_ms(43200000);
  CHECK(ValidateCreateGroup(group).ok());
  group.mutable_group()->add_backoff_ms(43200001);
  CHECK(Message(ValidateCreateGroup(group)).find("43200000 (12 h)") != std::string::npos);

  v1::CreatePrincipalRequest p;
  p.set_name("p");
  for (int i = 0; i < 100; ++i) {
    auto* g = p.add_grants();
    g->set_permission("produce");
    g->set_resource_type("topic");
    g->set_resource_name("t");
  }
  CHECK(ValidateCreatePrincipal(p).ok());
  *p.add_grants() = p.grants(0);
  CHECK(Message(ValidateCreatePrincipal(p)) == "grants: 101 in one call; at most 100");
  CHECK(kMaxRequestBytes == 17 * 1024 * 1024);
}
