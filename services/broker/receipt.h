// Receipts: the opaque handle a consumer gets with each delivery and passes back to Commit.
//
// A receipt names one delivery (group, topic, queue, offset, lease token) and carries an
// HMAC-SHA256 tag (truncated to 128 bits) under a key stored in the broker's database, so every
// broker process accepts every other's receipts and a tampered or made-up receipt is rejected
// instead of settling some other message. Text form: unpadded base64url.
#pragma once

#include <absl/status/statusor.h>

#include <string>

#include "broker/delivery_ref.h"

namespace ferry::broker {

class ReceiptCodec {
 public:
  // `key`: the secret (at least 16 bytes), from broker_meta.receipt_hmac_key.
  explicit ReceiptCodec(std::string key);

  std::string Encode(const DeliveryRef& ref) const;

  // INVALID_ARGUMENT when `receipt` is not well-formed or its tag does not match.
  absl::StatusOr<DeliveryRef> Decode(const std::string& receipt) const;

 private:
  std::string Tag(const std::string& body) const;
  std::string key_;
};

}  // namespace ferry::broker
