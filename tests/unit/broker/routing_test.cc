#include "broker/routing.h"

#include <catch2/catch.hpp>
#include <set>

using ferry::broker::KeylessSpreader;
using ferry::broker::QueueForKey;

TEST_CASE("a key's queue is zlib crc32 mod queue count - the same in every language",
          "[unit][routing]") {
  // Expected values from Python: zlib.crc32(b"order-42") == 1475806942.
  CHECK(QueueForKey("order-42", 4) == 1475806942u % 4);
  CHECK(QueueForKey("order-42", 16) == 14);
  CHECK(QueueForKey("user-1", 4) == 0);
  CHECK(QueueForKey("user-1", 16) == 4);
  CHECK(QueueForKey("anything", 1) == 0);
}

TEST_CASE("the same key always maps to the same queue", "[unit][routing]") {
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "key-" + std::to_string(i);
    REQUIRE(QueueForKey(key, 8) == QueueForKey(key, 8));
    REQUIRE(QueueForKey(key, 8) < 8);
  }
}

TEST_CASE("keys spread over all queues", "[unit][routing]") {
  std::set<uint32_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(QueueForKey("k" + std::to_string(i), 8));
  CHECK(seen.size() == 8);
}

TEST_CASE("messages without a key go round robin over the queues", "[unit][routing]") {
  KeylessSpreader spreader;
  std::vector<uint32_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(spreader.Next(3));
  CHECK(got == std::vector<uint32_t>{0, 1, 2, 0, 1, 2});
}
