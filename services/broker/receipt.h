// Receipts: the opaque handle a consumer gets with each delivery and passes back to Commit.
//
// A receipt names one delivery (group, topic, queue, offset, lease token) and carries an
// HMAC-SHA256 tag (truncated to 128 bits) under a key stored in the broker's database, so every
// broker process accepts every other's receipts and a tampered or made-up receipt is rejected
// instead of settling some other message. Text form: unpadded base64url.
#pragma once

#include <absl/status/statusor.h>

#include <memory>
#include <string>

#include "broker/delivery_ref.h"

typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace ferry::broker {

class ReceiptCodec {
 public:
  // `key`: the secret (at least 16 bytes), from broker_meta.receipt_hmac_key.
  explicit ReceiptCodec(std::string key);
  ~ReceiptCodec();
  ReceiptCodec(const ReceiptCodec&) = delete;
  ReceiptCodec& operator=(const ReceiptCodec&) = delete;
  ReceiptCodec(ReceiptCodec&& other) noexcept : keyed_(other.keyed_) { other.keyed_ = nullptr; }
  ReceiptCodec& operator=(ReceiptCodec&&) = delete;

  std::string Encode(const DeliveryRef& ref) const;

  // INVALID_ARGUMENT when `receipt` is not well-formed or its tag does not match.
  absl::StatusOr<DeliveryRef> Decode(const std::string& receipt) const;

 private:
  std::string Tag(const std::string& body) const;
  // Keyed once; each tag works on a copy (the one-shot HMAC() looked the digest up and
  // re-derived the key pads on every call: 9% of the broker's CPU when consuming).
  EVP_MAC_CTX* keyed_ = nullptr;
};

}  // namespace ferry::broker
