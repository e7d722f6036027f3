#include "broker/receipt.h"

#include <absl/strings/escaping.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace ferry::broker {
namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kBodySize = 1 + 8 + 8 + 4 + 8 + 8;  // version + fields
constexpr size_t kTagSize = 16;

void PutU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetU64(const std::string& in, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}
uint32_t GetU32(const std::string& in, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}

}  // namespace

ReceiptCodec::ReceiptCodec(std::string key) : key_(std::move(key)) {}

std::string ReceiptCodec::Tag(const std::string& body) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &mac_len);
  return std::string(reinterpret_cast<const char*>(mac), kTagSize);
}

std::string ReceiptCodec::Encode(const DeliveryRef& f) const {
  std::string body;
  body.reserve(kBodySize + kTagSize);
  body.push_back(static_cast<char>(kVersion));
  PutU64(body, static_cast<uint64_t>(f.group_id));
  PutU64(body, static_cast<uint64_t>(f.topic_id));
  PutU32(body, f.queue);
  PutU64(body, static_cast<uint64_t>(f.offset));
  PutU64(body, static_cast<uint64_t>(f.lease_token));
  body += Tag(body);
  return absl::WebSafeBase64Escape(body);
}

absl::StatusOr<DeliveryRef> ReceiptCodec::Decode(const std::string& receipt) const {
  std::string raw;
  if (receipt.size() > 128 || !absl::WebSafeBase64Unescape(receipt, &raw) ||
      raw.size() != kBodySize + kTagSize || static_cast<uint8_t>(raw[0]) != kVersion) {
    return absl::InvalidArgumentError("receipt is not a Ferry receipt (malformed)");
  }
  const std::string body = raw.substr(0, kBodySize);
  const std::string tag = Tag(body);
  if (CRYPTO_memcmp(tag.data(), raw.data() + kBodySize, kTagSize) != 0) {
    return absl::InvalidArgumentError("receipt signature does not match (tampered or foreign)");
  }
  DeliveryRef f;
  f.group_id = static_cast<int64_t>(GetU64(raw, 1));
  f.topic_id = static_cast<int64_t>(GetU64(raw, 9));
  f.queue = GetU32(raw, 17);
  f.offset = static_cast<int64_t>(GetU64(raw, 21));
  f.lease_token = static_cast<int64_t>(GetU64(raw, 29));
  return f;
}

}  // namespace ferry::broker
