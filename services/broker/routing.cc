#include "broker/routing.h"

#include <zlib.h>

#include <memory>

namespace ferry::broker {

uint32_t QueueForKey(std::string_view key, uint32_t queue_count) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(key.data()), static_cast<uInt>(key.size()));
  return static_cast<uint32_t>(crc % queue_count);
}

QueueChooser RouteByKey() {
  auto spreader = std::make_shared<KeylessSpreader>();
  return [spreader](const NewMessage& m, uint32_t queue_count) {
    return m.key ? QueueForKey(*m.key, queue_count) : spreader->Next(queue_count);
  };
}

}  // namespace ferry::broker
