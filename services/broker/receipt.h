// Receipts: the opaque handle a consumer gets with each delivery and passes back to Commit.
//
// A receipt names one delivery (group, topic, queue, offset, lease token) and carries an
// HMAC-SHA256 tag (truncated to 128 bits) under a key stored in the broker's database, so every
// broker process accepts every other's receipts and a tampered or made-up receipt is rejected
// instead of settling some other message. Text form: unpadded base64url.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <string>

namespace ferry::broker {

struct ReceiptFields {
  int64_t group_id = 0;
  int64_t topic_id = 0;
  uint32_t queue_id = 0;
  int64_t offset = 0;
  int64_t lease_token = 0;

  bool operator==(const ReceiptFields& o) const {
    return group_id == o.group_id && topic_id == o.topic_id && queue_id == o.queue_id &&
           offset == o.offset && lease_token == o.lease_token;
  }
};

class ReceiptCodec {
 public:
  // `key`: the secret (at least 16 bytes), from broker_meta.receipt_hmac_key.
  explicit ReceiptCodec(std::string key);

  std::string Encode(const ReceiptFields& fields) const;

  // INVALID_ARGUMENT when `receipt` is not well-formed or its tag does not match.
  absl::StatusOr<ReceiptFields> Decode(const std::string& receipt) const;

 private:
  std::string Tag(const std::string& body) const;
  std::string key_;
};

}  // namespace ferry::broker
