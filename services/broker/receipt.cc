#include "broker/receipt.h"

#include <absl/strings/escaping.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <stdexcept>

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

ReceiptCodec::ReceiptCodec(std::string key) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  keyed_ = mac != nullptr ? EVP_MAC_CTX_new(mac) : nullptr;
  EVP_MAC_free(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (keyed_ == nullptr || EVP_MAC_init(keyed_, reinterpret_cast<const unsigned char*>(key.data()),
                                        key.size(), params) != 1) {
    EVP_MAC_CTX_free(keyed_);
    throw std::runtime_error("receipts: OpenSSL HMAC-SHA256 is not available");
  }
  OPENSSL_cleanse(key.data(), key.size());
}

ReceiptCodec::~ReceiptCodec() { EVP_MAC_CTX_free(keyed_); }

std::string ReceiptCodec::Tag(const std::string& body) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t mac_len = 0;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(keyed_);
  const bool ok =
      ctx != nullptr &&
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(body.data()), body.size()) == 1 &&
      EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) == 1 && mac_len >= kTagSize;
  EVP_MAC_CTX_free(ctx);
  if (!ok) throw std::runtime_error("receipts: HMAC computation failed");
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
      raw.size() != kBodySize + kTagSize || static_cast<uint8_t>(raw[0]) != kVersion ||
      // One spelling per receipt: base64 leaves unused low bits in the last character, and
      // the decoder ignores them, so without this check several strings would be "the same"
      // receipt (found by fuzz/fuzz_receipt.cc).
      absl::WebSafeBase64Escape(raw) != receipt) {
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
