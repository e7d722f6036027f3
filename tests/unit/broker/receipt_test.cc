#include "broker/receipt.h"

#include <catch2/catch.hpp>

using ferry::broker::DeliveryRef;
using ferry::broker::ReceiptCodec;

namespace {
const DeliveryRef kFields{42, 7, 3, 123456789012345, -99};
}

TEST_CASE("a receipt decodes to the fields it was made from", "[unit][receipt]") {
  ReceiptCodec codec(std::string(32, 'k'));
  const std::string r = codec.Encode(kFields);
  auto decoded = codec.Decode(r);
  REQUIRE(decoded.ok());
  CHECK(*decoded == kFields);
  // Text-safe: base64url without padding.
  CHECK(r.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
        std::string::npos);
}

TEST_CASE("a tampered receipt is rejected", "[unit][receipt]") {
  ReceiptCodec codec(std::string(32, 'k'));
  const std::string r = codec.Encode(kFields);
  // Change each character in turn, to every other base64url character: every change must be
  // refused. (Regression: the last character's unused low bits were ignored, so "...X" and
  // "...W" were both accepted as the same receipt; found by fuzz_receipt.)
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int accepted = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    for (char c : alphabet) {
      if (c == r[i]) continue;
      std::string t = r;
      t[i] = c;
      auto decoded = codec.Decode(t);
      if (decoded.ok())
        ++accepted;
      else
        CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
    }
  }
  CHECK(accepted == 0);
}

TEST_CASE("a receipt from another broker database is rejected", "[unit][receipt]") {
  ReceiptCodec mine(std::string(32, 'k'));
  ReceiptCodec theirs(std::string(32, 'x'));
  auto decoded = mine.Decode(theirs.Encode(kFields));
  REQUIRE_FALSE(decoded.ok());
  CHECK(std::string(decoded.status().message()).find("signature") != std::string::npos);
}

TEST_CASE("garbage is not a receipt", "[unit][receipt]") {
  ReceiptCodec codec(std::string(32, 'k'));
  for (const std::string& bad :
       std::vector<std::string>{"", "x", "not base64 !!", std::string(200, 'A'), "AQ"}) {
    auto decoded = codec.Decode(bad);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
  }
}
