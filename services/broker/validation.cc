#include "broker/validation.h"

#include <absl/strings/str_cat.h>

namespace ferry::broker {
namespace {

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
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

absl::Status ValidateProduce(const v1::ProduceRequest& req, const Limits& limits) {
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  const int n = req.messages_size();
  if (n == 0) return absl::InvalidArgumentError("messages: at least one message is required");
  if (static_cast<uint32_t>(n) > limits.max_messages_per_produce) {
    return absl::InvalidArgumentError(absl::StrCat("messages: ", n, " messages in one call; at most ",
                                                   limits.max_messages_per_produce, " are allowed"));
  }
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) {
    const v1::ProducedMessage& m = req.messages(i);
    const std::string at = absl::StrCat("messages[", i, "]");
    if (m.payload().size() > limits.max_message_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(at, ".payload is ", m.payload().size(), " bytes; at most ",
                       limits.max_message_bytes, " are allowed"));
    }
    if (m.key().size() > limits.max_key_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".key is ", m.key().size(),
                                                     " bytes; at most ", limits.max_key_bytes,
                                                     " are allowed"));
    }
    if (auto s = NoNul(at + ".key", m.key()); !s.ok()) return s;
    if (m.dedup_id().size() > limits.max_dedup_id_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".dedup_id is ", m.dedup_id().size(),
                                                     " bytes; at most ",
                                                     limits.max_dedup_id_bytes, " are allowed"));
    }
    if (auto s = NoNul(at + ".dedup_id", m.dedup_id()); !s.ok()) return s;
    if (static_cast<uint32_t>(m.headers_size()) > limits.max_headers) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".headers: ", m.headers_size(),
                                                     " headers; at most ", limits.max_headers,
                                                     " are allowed"));
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

absl::Status ValidateConsume(const v1::ConsumeRequest& req, const Limits& limits) {
  if (auto s = ValidateName("group", req.group()); !s.ok()) return s;
  if (auto s = ValidateName("topic", req.topic()); !s.ok()) return s;
  if (req.max_messages() > limits.max_consume_messages) {
    return absl::InvalidArgumentError(absl::StrCat("max_messages is ", req.max_messages(),
                                                   "; allowed 1 to ", limits.max_consume_messages));
  }
  if (req.max_wait_ms() > limits.max_wait_ms) {
    return absl::InvalidArgumentError(absl::StrCat("max_wait_ms is ", req.max_wait_ms(),
                                                   "; allowed 0 to ", limits.max_wait_ms));
  }
  if (req.visibility_timeout_ms() != 0 &&
      (req.visibility_timeout_ms() < limits.min_visibility_ms ||
       req.visibility_timeout_ms() > limits.max_visibility_ms)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "visibility_timeout_ms is ", req.visibility_timeout_ms(), "; allowed ",
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
    if (e.reason().size() > 4096) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].reason is longer than 4096 bytes"));
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

}  // namespace ferry::broker
