#include "broker/validation.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

namespace ferry::broker {
namespace {

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// A [from, to) range of unix milliseconds, each 0 (unbounded) or up to year 9999.
absl::Status ValidateTimeRange(const char* from_field, uint64_t from, const char* to_field,
                               uint64_t to) {
  for (const auto& [field, value] : {std::pair{from_field, from}, std::pair{to_field, to}}) {
    if (value > kMaxTimestampMs) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " is ", value, "; at most ", kMaxTimestampMs, " (year 9999)"));
    }
  }
  if (to != 0 && to <= from) {
    return absl::InvalidArgumentError(
        absl::StrCat(to_field, " (", to, ") must be after ", from_field, " (", from, ")"));
  }
  return absl::OkStatus();
}

// PostgreSQL text cannot hold NUL; protobuf already guarantees UTF-8 for string fields.
absl::Status NoNul(const std::string& field, const std::string& value) {
  if (value.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must not contain NUL characters"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateName(const std::string& field, const std::string& value) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (value.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " characters long; at most 128 are allowed"));
  }
  for (char c : value) {
    if (!NameChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", value, "\" may only contain letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePrincipalName(const std::string& field, const std::string& value) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (value.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " characters long; at most 128 are allowed"));
  }
  for (char c : value) {
    if (!NameChar(c) && c != '@') {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", value, "\" may only contain letters, digits, '.', '_', '-' and '@'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAccessGrant(const std::string& field, const v1::AccessGrant& g) {
  const std::string& p = g.permission();
  if (p != "produce" && p != "consume" && p != "admin") {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".permission \"", p, "\" must be produce, consume or admin"));
  }
  const std::string& t = g.resource_type();
  if (t == "cluster") {
    if (!g.resource_name().empty() && g.resource_name() != "*") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".resource_name must be empty or \"*\" for the cluster"));
    }
    return absl::OkStatus();
  }
  if (t != "topic" && t != "group") {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".resource_type \"", t, "\" must be topic, group or cluster"));
  }
  if (g.resource_name() == "*") return absl::OkStatus();
  return ValidateName(field + ".resource_name", g.resource_name());
}

absl::Status ValidateProduce(const v1::ProduceRequest& req, const Limits& limits) {
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  if (!req.transaction_id().empty() && req.has_transactional()) {
    return absl::InvalidArgumentError("set transaction_id or transactional, not both");
  }
  if (!req.transaction_id().empty()) {
    if (auto s = ValidateTransactionId("transaction_id", req.transaction_id()); !s.ok()) return s;
  }
  if (req.has_transactional()) {
    const auto& t = req.transactional();
    if (auto s = ValidateBeginTransaction("transactional.", t.producer_group(), t.check_ref(),
                                          t.timeout_ms());
        !s.ok()) {
      return s;
    }
  }
  const int n = req.messages_size();
  if (n == 0) return absl::InvalidArgumentError("messages: at least one message is required");
  if (static_cast<uint32_t>(n) > limits.max_messages_per_produce) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages: ", n, " messages in one call; at most ",
                     limits.max_messages_per_produce, " are allowed"));
  }
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) {
    const v1::ProducedMessage& m = req.messages(i);
    const std::string at = absl::StrCat("messages[", i, "]");
    if (m.payload().size() > limits.max_message_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(at, ".payload is ", m.payload().size(),
                                                       " bytes; at most ", limits.max_message_bytes,
                                                       " are allowed"));
    }
    if (m.key().size() > limits.max_key_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".key is ", m.key().size(),
                                                     " bytes; at most ", limits.max_key_bytes,
                                                     " are allowed"));
    }
    if (auto s = NoNul(at + ".key", m.key()); !s.ok()) return s;
    if (m.dedup_id().size() > limits.max_dedup_id_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".dedup_id is ", m.dedup_id().size(),
                                                     " bytes; at most ", limits.max_dedup_id_bytes,
                                                     " are allowed"));
    }
    if (auto s = NoNul(at + ".dedup_id", m.dedup_id()); !s.ok()) return s;
    if (static_cast<uint32_t>(m.headers_size()) > limits.max_headers) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".headers: ", m.headers_size(),
                                                     " headers; at most ", limits.max_headers,
                                                     " are allowed"));
    }
    if (m.has_deliver_at() && m.delay_ms() > 0) {
      return absl::InvalidArgumentError(absl::StrCat(at, ": set deliver_at or delay_ms, not both"));
    }
    if (m.delay_ms() > kMaxDurationMs) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".delay_ms is longer than ten years"));
    }
    if (m.has_deliver_at() &&
        (m.deliver_at().seconds() < 0 || m.deliver_at().seconds() > 253402300799 ||
         m.deliver_at().nanos() < 0 || m.deliver_at().nanos() > 999999999)) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".deliver_at is not a valid time (1970 to 9999)"));
    }
    uint64_t bytes = m.payload().size() + m.key().size() + m.dedup_id().size();
    for (const auto& [name, value] : m.headers()) {
      if (name.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(at, ".headers: a header name is empty"));
      }
      if (name.size() + value.size() > limits.max_header_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(at, ".headers[\"", name.substr(0, 64),
                                                       "\"] is larger than ",
                                                       limits.max_header_bytes, " bytes"));
      }
      if (auto s = NoNul(absl::StrCat(at, ".headers[\"", name.substr(0, 64), "\"]"), name + value);
          !s.ok()) {
        return s;
      }
      bytes += name.size() + value.size();
    }
    total += bytes;
  }
  if (total > limits.max_produce_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("messages: ", total,
                                                     " bytes in one call; at most ",
                                                     limits.max_produce_bytes, " are allowed"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTransactionId(const std::string& field, const std::string& id) {
  // A UUID as the broker hands it out: 8-4-4-4-12 hex digits.
  bool ok = id.size() == 36;
  for (size_t i = 0; ok && i < id.size(); ++i) {
    const char c = id[i];
    ok = (i == 8 || i == 13 || i == 18 || i == 23)
             ? c == '-'
             : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", id.substr(0, 64), "\" is not a transaction id (a UUID)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBeginTransaction(const std::string& field_prefix, const std::string& group,
                                      const std::string& check_ref, uint64_t timeout_ms) {
  if (auto s = ValidateName(field_prefix + "producer_group", group); !s.ok()) return s;
  if (check_ref.size() > kMaxCheckRefBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field_prefix, "check_ref is longer than ", kMaxCheckRefBytes, " bytes"));
  }
  if (auto s = NoNul(field_prefix + "check_ref", check_ref); !s.ok()) return s;
  if (timeout_ms > kMaxTxnTimeoutMs) {
    return absl::InvalidArgumentError(absl::StrCat(field_prefix, "timeout_ms is ", timeout_ms,
                                                   "; at most ", kMaxTxnTimeoutMs, " (24 h)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateEndTransaction(const v1::EndTransactionRequest& req) {
  if (auto s = ValidateTransactionId("transaction_id", req.transaction_id()); !s.ok()) return s;
  if (req.decision() != v1::TRANSACTION_COMMIT && req.decision() != v1::TRANSACTION_ROLLBACK) {
    return absl::InvalidArgumentError(
        "decision must be TRANSACTION_COMMIT or TRANSACTION_ROLLBACK");
  }
  return absl::OkStatus();
}

absl::Status ValidateCheckSubscribe(const v1::CheckSubscribe& sub) {
  if (sub.producer_groups_size() == 0 || sub.producer_groups_size() > 100) {
    return absl::InvalidArgumentError("subscribe.producer_groups: give 1 to 100 groups");
  }
  for (int i = 0; i < sub.producer_groups_size(); ++i) {
    if (auto s = ValidateName(absl::StrCat("subscribe.producer_groups[", i, "]"),
                              sub.producer_groups(i));
        !s.ok()) {
      return s;
    }
  }
  if (sub.checker_id().size() > 256) {
    return absl::InvalidArgumentError("subscribe.checker_id is longer than 256 bytes");
  }
  return NoNul("subscribe.checker_id", sub.checker_id());
}

absl::Status ValidateListTransactions(const v1::ListTransactionsRequest& req) {
  if (!v1::TransactionState_IsValid(req.state())) {
    return absl::InvalidArgumentError("state is not a known TransactionState");
  }
  if (!req.producer_group().empty()) {
    if (auto s = ValidateName("producer_group", req.producer_group()); !s.ok()) return s;
  }
  if (req.limit() > 1000) return absl::InvalidArgumentError("limit: at most 1000 (0 means 100)");
  return absl::OkStatus();
}

absl::Status ValidateResolveTransaction(const v1::ResolveTransactionRequest& req) {
  if (auto s = ValidateTransactionId("transaction_id", req.transaction_id()); !s.ok()) return s;
  if (req.decision() != v1::TRANSACTION_COMMIT && req.decision() != v1::TRANSACTION_ROLLBACK) {
    return absl::InvalidArgumentError(
        "decision must be TRANSACTION_COMMIT or TRANSACTION_ROLLBACK");
  }
  if (req.reason().empty()) {
    return absl::InvalidArgumentError("reason is required: it is kept in the audit trail");
  }
  if (req.reason().size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason is longer than ", kMaxReasonBytes, " bytes"));
  }
  return NoNul("reason", req.reason());
}

absl::Status ValidateConsume(const v1::ConsumeRequest& req, const Limits& limits) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  if (req.max_messages() > limits.max_consume_messages) {
    return absl::InvalidArgumentError(absl::StrCat("max_messages is ", req.max_messages(),
                                                   "; allowed 1 to ", limits.max_consume_messages));
  }
  if (req.max_wait_ms() > limits.max_wait_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_wait_ms is ", req.max_wait_ms(), "; allowed 0 to ", limits.max_wait_ms));
  }
  if (req.visibility_timeout_ms() != 0 &&
      (req.visibility_timeout_ms() < limits.min_visibility_ms ||
       req.visibility_timeout_ms() > limits.max_visibility_ms)) {
    return absl::InvalidArgumentError(
        absl::StrCat("visibility_timeout_ms is ", req.visibility_timeout_ms(), "; allowed ",
                     limits.min_visibility_ms, " to ", limits.max_visibility_ms, " (0 means ",
                     kDefaultVisibilityMs, ")"));
  }
  if (!v1::StartPosition_IsValid(req.start_position())) {
    return absl::InvalidArgumentError(
        absl::StrCat("start_position ", req.start_position(), " is not a known StartPosition"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCommit(const v1::CommitRequest& req, const Limits& limits) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  if (!req.transaction_id().empty()) {
    if (auto s = ValidateTransactionId("transaction_id", req.transaction_id()); !s.ok()) return s;
    for (int i = 0; i < req.entries_size(); ++i) {
      const auto o = req.entries(i).outcome();
      if (o != v1::ACK && o != v1::COMMIT_OUTCOME_UNSPECIFIED) {
        return absl::InvalidArgumentError(
            absl::StrCat("entries[", i, "].outcome: only ACK can be attached to a transaction"));
      }
    }
  }
  if (req.entries_size() == 0) {
    return absl::InvalidArgumentError("entries: at least one receipt is required");
  }
  if (static_cast<uint32_t>(req.entries_size()) > limits.max_commit_entries) {
    return absl::InvalidArgumentError(absl::StrCat("entries: ", req.entries_size(),
                                                   " in one call; at most ",
                                                   limits.max_commit_entries, " are allowed"));
  }
  for (int i = 0; i < req.entries_size(); ++i) {
    const auto& e = req.entries(i);
    if (e.receipt().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].receipt is required"));
    }
    if (!v1::CommitOutcome_IsValid(e.outcome())) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].outcome ", e.outcome(), " is not a known CommitOutcome"));
    }
    if (e.reason().size() > kMaxReasonBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].reason is longer than ", kMaxReasonBytes, " bytes"));
    }
    if (auto s = NoNul(absl::StrCat("entries[", i, "].reason"), e.reason()); !s.ok()) return s;
    if (e.retry_delay_ms() > kMaxRetryDelayMs) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].retry_delay_ms is ",
                                                     e.retry_delay_ms(), "; at most ",
                                                     kMaxRetryDelayMs, " (12 h)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTopicConfig(const v1::TopicConfig& topic, const Limits& limits) {
  if (auto s = ValidateName("topic.name", topic.name()); !s.ok()) return s;
  if (topic.queues() > limits.max_queues) {
    return absl::InvalidArgumentError(absl::StrCat("topic.queues is ", topic.queues(),
                                                   "; allowed 1 to ", limits.max_queues,
                                                   " (0 means ", kDefaultQueues, ")"));
  }
  if (topic.retention_ms() > kMaxDurationMs) {
    return absl::InvalidArgumentError("topic.retention_ms is longer than ten years");
  }
  if (topic.dedup_window_ms() > kMaxDurationMs) {
    return absl::InvalidArgumentError("topic.dedup_window_ms is longer than ten years");
  }
  return absl::OkStatus();
}

absl::Status ValidateUpdateTopic(const v1::UpdateTopicRequest& req) {
  if (auto s = ValidateName("name", req.name()); !s.ok()) return s;
  if (!req.has_retention_ms() && !req.has_dedup_window_ms()) {
    return absl::InvalidArgumentError("nothing to change: set retention_ms or dedup_window_ms");
  }
  if (req.has_retention_ms() && (req.retention_ms() < 1 || req.retention_ms() > kMaxDurationMs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retention_ms is ", req.retention_ms(), "; allowed 1 to ", kMaxDurationMs, " (ten years)"));
  }
  if (req.has_dedup_window_ms() &&
      (req.dedup_window_ms() < 1 || req.dedup_window_ms() > kMaxDurationMs)) {
    return absl::InvalidArgumentError(absl::StrCat("dedup_window_ms is ", req.dedup_window_ms(),
                                                   "; allowed 1 to ", kMaxDurationMs,
                                                   " (ten years)"));
  }
  return absl::OkStatus();
}

namespace {

absl::Status ValidateOffset(const std::string& field, uint64_t offset) {
  if (offset > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", offset, "; offsets are at most ", INT64_MAX));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePeekMessages(const v1::PeekMessagesRequest& req) {
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  if (auto s = ValidateOffset("from_offset", req.from_offset()); !s.ok()) return s;
  if (req.max_messages() > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_messages is ", req.max_messages(), "; allowed 1 to 1000 (0 means 100)"));
  }
  const Limits limits;  // a filter longer than any stored key or dedup id matches nothing
  if (req.has_key()) {
    if (req.key().size() > limits.max_key_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("key is ", req.key().size(), " bytes; at most ", limits.max_key_bytes));
    }
    if (auto s = NoNul("key", req.key()); !s.ok()) return s;
  }
  if (req.has_dedup_id()) {
    if (req.dedup_id().size() > limits.max_dedup_id_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dedup_id is ", req.dedup_id().size(), " bytes; at most ", limits.max_dedup_id_bytes));
    }
    if (auto s = NoNul("dedup_id", req.dedup_id()); !s.ok()) return s;
  }
  return ValidateTimeRange("produced_after_unix_ms", req.produced_after_unix_ms(),
                           "produced_before_unix_ms", req.produced_before_unix_ms());
}

absl::Status ValidateRearmTransactionChecks(const v1::RearmTransactionChecksRequest& req) {
  if (auto s = ValidateTransactionId("transaction_id", req.transaction_id()); !s.ok()) return s;
  if (req.reason().size() > static_cast<size_t>(kMaxReasonBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason is ", req.reason().size(), " bytes; at most ", kMaxReasonBytes));
  }
  return NoNul("reason", req.reason());
}

absl::Status ValidateGetHistory(const v1::GetHistoryRequest& req) {
  if (req.group().empty() && req.topic().empty()) {
    return absl::InvalidArgumentError("name a group, a topic, or both");
  }
  if (!req.group().empty()) {
    if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  }
  if (!req.topic().empty()) {
    if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  }
  if (auto s = ValidateTimeRange("since_unix_ms", req.since_unix_ms(), "until_unix_ms",
                                 req.until_unix_ms());
      !s.ok()) {
    return s;
  }
  if (req.max_points() > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_points is ", req.max_points(), "; at most 10000 (0 means 1440)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateGetMessage(const v1::GetMessageRequest& req) {
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  return ValidateOffset("offset", req.offset());
}

namespace {

absl::Status ValidateBackoff(const google::protobuf::RepeatedField<uint64_t>& list, uint64_t min_ms,
                             uint64_t max_ms) {
  if (list.size() > kMaxBackoffSteps) {
    return absl::InvalidArgumentError(
        absl::StrCat("backoff_ms has ", list.size(), " steps; at most ", kMaxBackoffSteps));
  }
  for (int i = 0; i < list.size(); ++i) {
    if (list.Get(i) < 1 || list.Get(i) > kMaxRetryDelayMs) {
      return absl::InvalidArgumentError(absl::StrCat(
          "backoff_ms[", i, "] is ", list.Get(i), "; allowed 1 to ", kMaxRetryDelayMs, " (12 h)"));
    }
  }
  if (min_ms > kMaxRetryDelayMs || max_ms > kMaxRetryDelayMs) {
    return absl::InvalidArgumentError(absl::StrCat("backoff_min_ms and backoff_max_ms are at most ",
                                                   kMaxRetryDelayMs, " (12 h)"));
  }
  if (max_ms > 0 && min_ms > max_ms) {
    return absl::InvalidArgumentError("backoff_min_ms is larger than backoff_max_ms");
  }
  return absl::OkStatus();
}

absl::Status ValidateAttempts(uint32_t attempts) {
  if (attempts > kMaxDeliveryAttempts) {
    return absl::InvalidArgumentError(absl::StrCat("max_delivery_attempts is ", attempts,
                                                   "; allowed 1 to ", kMaxDeliveryAttempts,
                                                   " (0 means 16)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateIdsOrAll(int ids, bool all) {
  if (ids == 0 && !all) return absl::InvalidArgumentError("ids: name dead letters, or set all");
  if (ids > 0 && all) return absl::InvalidArgumentError("ids: set ids or all, not both");
  if (ids > 1000) return absl::InvalidArgumentError("ids: at most 1000 per call");
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateExtendLease(const v1::ExtendLeaseRequest& req, const Limits& limits) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  if (req.receipts_size() == 0) {
    return absl::InvalidArgumentError("receipts: at least one receipt is required");
  }
  if (static_cast<uint32_t>(req.receipts_size()) > limits.max_commit_entries) {
    return absl::InvalidArgumentError(
        absl::StrCat("receipts: at most ", limits.max_commit_entries, " per call"));
  }
  // The new lease length from now: required (there is no default to extend by).
  if (req.visibility_timeout_ms() < limits.min_visibility_ms ||
      req.visibility_timeout_ms() > limits.max_visibility_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("visibility_timeout_ms is ", req.visibility_timeout_ms(), "; allowed ",
                     limits.min_visibility_ms, " to ", limits.max_visibility_ms,
                     " (the new lease length from now)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCreateGroup(const v1::CreateGroupRequest& req) {
  const v1::GroupConfig& g = req.group();
  if (auto s = ValidateName("group.name", g.name()); !s.ok()) return s;
  if (auto s = ValidateAttempts(g.max_delivery_attempts()); !s.ok()) return s;
  if (auto s = ValidateBackoff(g.backoff_ms(), g.backoff_min_ms(), g.backoff_max_ms()); !s.ok()) {
    return s;
  }
  if (!v1::StartPosition_IsValid(g.start_position())) {
    return absl::InvalidArgumentError("group.start_position is not a known StartPosition");
  }
  for (int i = 0; i < req.topics_size(); ++i) {
    if (auto s = ValidateName(absl::StrCat("topics[", i, "]"), req.topics(i)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateUpdateGroup(const v1::UpdateGroupRequest& req) {
  if (auto s = ValidateName("name", req.name()); !s.ok()) return s;
  if (req.has_max_delivery_attempts()) {
    if (req.max_delivery_attempts() == 0) {
      return absl::InvalidArgumentError("max_delivery_attempts must be at least 1");
    }
    if (auto s = ValidateAttempts(req.max_delivery_attempts()); !s.ok()) return s;
  }
  if (req.set_backoff() && req.backoff_ms_size() == 0) {
    return absl::InvalidArgumentError("backoff_ms: give at least one step with set_backoff");
  }
  if (!req.set_backoff() && req.backoff_ms_size() > 0) {
    return absl::InvalidArgumentError("backoff_ms is given but set_backoff is false");
  }
  if (auto s = ValidateBackoff(req.backoff_ms(), req.backoff_min_ms(), req.backoff_max_ms());
      !s.ok()) {
    return s;
  }
  if (req.has_start_position() && !v1::StartPosition_IsValid(req.start_position())) {
    return absl::InvalidArgumentError("start_position is not a known StartPosition");
  }
  return absl::OkStatus();
}

absl::Status ValidateResetGroup(const v1::ResetGroupRequest& req, const Limits& limits) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  switch (req.to_case()) {
    case v1::ResetGroupRequest::kPosition:
      if (!v1::StartPosition_IsValid(req.position())) {
        return absl::InvalidArgumentError("position is not a known StartPosition");
      }
      break;
    case v1::ResetGroupRequest::kTimestampMs:
      break;
    case v1::ResetGroupRequest::kOffsets:
      if (req.offsets().offsets_size() == 0) {
        return absl::InvalidArgumentError("offsets: give at least one queue and offset");
      }
      for (const auto& o : req.offsets().offsets()) {
        if (o.queue() >= limits.max_queues) {
          return absl::InvalidArgumentError(
              absl::StrCat("offsets: queue ", o.queue(), " is out of range"));
        }
        if (o.offset() > static_cast<uint64_t>(INT64_MAX)) {
          return absl::InvalidArgumentError("offsets: offset is out of range");
        }
      }
      break;
    case v1::ResetGroupRequest::TO_NOT_SET:
      return absl::InvalidArgumentError(
          "to: set position (EARLIEST or LATEST), timestamp_ms or offsets");
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParsePageToken(const std::string& token) {
  if (token.empty()) return 0;
  int64_t id = 0;
  if (!absl::SimpleAtoi(token, &id) || id < 0) {
    return absl::InvalidArgumentError("page_token is not one this broker returned");
  }
  return id;
}

absl::Status ValidateListDeadLetters(const v1::ListDeadLettersRequest& req) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  if (!req.topic().empty()) {
    if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  }
  if (req.page_size() > 1000) {
    return absl::InvalidArgumentError("page_size: at most 1000 (0 means 100)");
  }
  return ParsePageToken(req.page_token()).status();
}

absl::Status ValidateRedrive(const v1::RedriveDeadLettersRequest& req) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  if (auto s = ValidateIdsOrAll(req.ids_size(), req.all()); !s.ok()) return s;
  if (!req.to_topic().empty()) return ValidateName("to_topic", req.to_topic());
  return absl::OkStatus();
}

absl::Status ValidatePurge(const v1::PurgeDeadLettersRequest& req) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  return ValidateIdsOrAll(req.ids_size(), req.all());
}

absl::Status ValidateCancelDelayed(const v1::CancelDelayedRequest& req) {
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  if (req.delayed_id() == 0 || req.delayed_id() > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError("delayed_id is required (from the Produce result)");
  }
  return absl::OkStatus();
}

absl::Status ValidateCreatePrincipal(const v1::CreatePrincipalRequest& req) {
  if (auto s = ValidatePrincipalName("name", req.name()); !s.ok()) return s;
  if (req.grants_size() > kMaxGrantsPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat("grants: ", req.grants_size(), " in one call; at most ", kMaxGrantsPerCall));
  }
  for (int i = 0; i < req.grants_size(); ++i) {
    if (auto s = ValidateAccessGrant(absl::StrCat("grants[", i, "]"), req.grants(i)); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateGrantChange(const std::string& principal, const v1::AccessGrant& grant) {
  if (auto s = ValidatePrincipalName("principal", principal); !s.ok()) return s;
  return ValidateAccessGrant("grant", grant);
}

}  // namespace ferry::broker
