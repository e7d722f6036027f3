// Receipts are the one piece of broker state a client hands back: they must never decode to
// something the broker did not issue. Properties, for any input:
//  - Decode never crashes, and what it accepts re-encodes to the very same string (one encoding
//    per delivery: no second spelling of a receipt can slip past the HMAC);
//  - a receipt encoded from fuzzed fields decodes to those fields, and changing any one byte of
//    it makes Decode refuse it.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "broker/receipt.h"

using ferry::broker::DeliveryRef;
using ferry::broker::ReceiptCodec;

namespace {

const ReceiptCodec& Codec() {
  static const ReceiptCodec codec(std::string("fuzzing-key-0123456789abcdef"));
  return codec;
}

template <typename T>
T Take(const uint8_t*& data, size_t& size) {
  T v{};
  const size_t n = size < sizeof(T) ? size : sizeof(T);
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  auto decoded = Codec().Decode(input);
  if (decoded.ok() && Codec().Encode(*decoded) != input) std::abort();

  DeliveryRef ref;
  ref.group_id = Take<int64_t>(data, size);
  ref.topic_id = Take<int64_t>(data, size);
  ref.queue = Take<uint32_t>(data, size);
  ref.offset = Take<int64_t>(data, size);
  ref.lease_token = Take<int64_t>(data, size);
  const std::string receipt = Codec().Encode(ref);
  auto back = Codec().Decode(receipt);
  if (!back.ok() || !(*back == ref)) std::abort();
  if (!receipt.empty()) {
    std::string tampered = receipt;
    const size_t at = size > 0 ? data[0] % tampered.size() : 0;
    tampered[at] = static_cast<char>(tampered[at] ^ (size > 1 ? (data[1] | 1) : 1));
    if (Codec().Decode(tampered).ok()) std::abort();
  }
  return 0;
}
