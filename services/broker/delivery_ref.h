// DeliveryRef: names one delivery of one message to one group. A receipt carries it (signed);
// Commit settles by it. lease_token changes with every delivery, so a reference to an earlier
// delivery of the same message is recognisably stale.
#pragma once

#include <cstdint>

namespace ferry::broker {

struct DeliveryRef {
  int64_t group_id = 0;
  int64_t topic_id = 0;
  uint32_t queue = 0;
  int64_t offset = 0;
  int64_t lease_token = 0;

  bool operator==(const DeliveryRef& o) const {
    return group_id == o.group_id && topic_id == o.topic_id && queue == o.queue &&
           offset == o.offset && lease_token == o.lease_token;
  }
};

}  // namespace ferry::broker
