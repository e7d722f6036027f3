// Every limit a request is checked against, in one place. The proto comments (proto/ferry/v1),
// the README's "Limits" table and validation.cc's messages say the same; tests/unit/broker/
// validation_test.cc pins each boundary. Change a limit here and in those two texts together.
#pragma once

#include <cstdint>

namespace ferry::broker {

// The limits a broker may be started with (Limits{} is the default; --max-message-bytes sets
// max_message_bytes).
struct Limits {
  uint32_t max_messages_per_produce = 1000;
  uint64_t max_produce_bytes = 16u << 20;  // payloads + keys + dedup ids + headers of one call
  uint64_t max_message_bytes = 4u << 20;   // one payload
  uint32_t max_key_bytes = 1024;
  uint32_t max_dedup_id_bytes = 256;
  uint32_t max_headers = 64;
  uint32_t max_header_bytes = 16u << 10;  // one header, name + value
  uint32_t max_consume_messages = 1000;
  uint32_t max_wait_ms = 30000;
  uint32_t min_visibility_ms = 1000;
  uint32_t max_visibility_ms = 12u * 3600 * 1000;  // 12 h
  uint32_t max_commit_entries = 1000;
  uint32_t max_queues = 256;
};

// A request larger than this on the wire is refused by the transport (RESOURCE_EXHAUSTED)
// before it is parsed: max_produce_bytes of content and room for the protobuf framing of 1000
// messages with 64 headers each. (gRPC 1.51's HTTP/2 transport still receives the message
// before it checks the size: 8 concurrent 60 MiB requests peak at ~290 MiB RSS.)
inline constexpr int kMaxRequestBytes = (16 << 20) + (1 << 20);  // 17 MiB
// Replies: a Consume reply carries up to 32 MiB of payloads, plus at least one message.
inline constexpr int kMaxReplyBytes = 64 << 20;

inline constexpr uint32_t kDefaultVisibilityMs = 30000;  // Consume with 0
inline constexpr uint32_t kDefaultQueues = 4;            // CreateTopic with 0
inline constexpr uint64_t kDefaultRetentionMs = 7ull * 24 * 3600 * 1000;
inline constexpr uint64_t kDefaultDedupWindowMs = 24ull * 3600 * 1000;
inline constexpr uint64_t kMaxDurationMs = 10ull * 365 * 24 * 3600 * 1000;  // ten years
// A redelivery delay: Commit RETRY's retry_delay_ms, each backoff step, backoff_min/max_ms.
inline constexpr uint64_t kMaxRetryDelayMs = 12ull * 3600 * 1000;  // 12 h
// When back-checks of a transaction start (timeout_ms), like --txn-check-after-ms.
inline constexpr uint64_t kMaxTxnTimeoutMs = 24ull * 3600 * 1000;  // 24 h
inline constexpr uint64_t kMaxTimestampMs = 253402300799999;       // 9999-12-31T23:59:59.999Z
inline constexpr uint32_t kMaxDeliveryAttempts = 1000;
inline constexpr int kMaxBackoffSteps = 64;
inline constexpr int kMaxReasonBytes = 4096;  // a DEAD_LETTER or Resolve reason
inline constexpr int kMaxCheckRefBytes = 1024;
inline constexpr int kMaxGrantsPerCall = 100;

}  // namespace ferry::broker
