// Which queue a produced message goes to.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "broker/model.h"

namespace ferry::broker {

// The queue of a keyed message: crc32(key) mod queue_count, with crc32 as zlib computes it
// (the IEEE polynomial; Python: zlib.crc32(key.encode()) % queue_count). Stable across
// processes, versions and languages: changing it would break per-key order. queue_count > 0.
uint32_t QueueForKey(std::string_view key, uint32_t queue_count);

// Spreads messages without a key over the queues, round robin per process. Thread-safe.
class KeylessSpreader {
 public:
  uint32_t Next(uint32_t queue_count) {
    return static_cast<uint32_t>(counter_.fetch_add(1, std::memory_order_relaxed) % queue_count);
  }

 private:
  std::atomic<uint64_t> counter_{0};
};

// The broker's routing, as the store applies it to every message it appends: QueueForKey for
// a keyed message, a KeylessSpreader (owned by the chooser) for the others. Thread-safe.
QueueChooser RouteByKey();

}  // namespace ferry::broker
