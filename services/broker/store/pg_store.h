// PgStore: the broker's only SQL. Every method is one PostgreSQL transaction on a pooled
// connection, returns a status instead of throwing, and is safe to call from many threads.
//
// Offsets: a producing transaction locks the rows of the queues it appends to (in queue order)
// from taking offsets until commit, so appends to one queue commit in offset order and offsets
// are dense. Readers only read below queues.next_offset, which commits with the messages.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "broker/delivery_ref.h"
#include "common/pg/pool.h"

namespace ferry::broker {

struct TopicInfo {
  int64_t topic_id = 0;
  std::string name;
  uint32_t queue_count = 0;
  int64_t retention_ms = 0;
  int64_t dedup_window_ms = 0;
  int64_t created_at_ms = 0;
};

struct QueueState {
  uint32_t queue_id = 0;
  int64_t first_offset = 0;  // oldest stored; == end_offset when the queue is empty
  int64_t end_offset = 0;    // the offset the next message gets
};

struct NewMessage {
  std::optional<std::string> key;
  std::string payload;
  std::string headers_json;  // a JSON object of string values
  std::string dedup_id;      // empty: none
};

struct Appended {
  uint32_t queue = 0;
  int64_t offset = 0;
  bool duplicate = false;
};

// Chooses the queue of messages[index] given the topic's queue count.
using QueueChooser = std::function<uint32_t(const NewMessage&, uint32_t queue_count)>;

struct LeaseRequest {
  std::string group;
  std::string topic;
  uint32_t max_messages = 1;
  uint32_t visibility_ms = 30000;
  bool start_latest = false;  // where the group starts if it has never read this topic
  uint64_t max_bytes = 0;     // stop adding messages past this many payload bytes (>= 1 kept)
};

struct LeasedMessage {
  uint32_t queue = 0;
  int64_t offset = 0;
  std::optional<std::string> key;
  std::string payload;
  std::string headers_json;
  int64_t produced_at_us = 0;
  int32_t attempt = 0;
  int64_t lease_token = 0;
};

struct LeaseBatch {
  int64_t group_id = 0;
  int64_t topic_id = 0;
  std::vector<LeasedMessage> messages;  // redeliveries first, then by queue and offset
};

enum class AckStatus {
  kCommitted,         // settled by this call
  kAlreadyCommitted,  // settled before
  kStale,             // delivered again since this receipt was issued
  kWrongGroup,        // the receipt was issued to another group
  kTopicGone,         // its topic (or the group) no longer exists
};

struct QueueLag {
  std::string topic;
  uint32_t queue = 0;
  int64_t end_offset = 0;
  int64_t committed_offset = 0;
  int64_t delivered_offset = 0;
  int64_t in_flight = 0;
  int64_t oldest_unacked_age_ms = 0;
};

class PgStore {
 public:
  explicit PgStore(pg::ConnectionPool& pool) : pool_(pool) {}

  // The prepared statements this store uses; give them to the pool's constructor.
  static std::vector<pg::Statement> Statements();

  // ALREADY_EXISTS if a topic has that name. Fills created_at_ms and topic_id.
  absl::StatusOr<TopicInfo> CreateTopic(TopicInfo topic);
  absl::StatusOr<std::vector<TopicInfo>> ListTopics();
  // NOT_FOUND with the name.
  absl::StatusOr<std::pair<TopicInfo, std::vector<QueueState>>> DescribeTopic(
      const std::string& name);
  // Removes the topic, its messages, dedup entries and every group's progress on it. NOT_FOUND.
  absl::Status DeleteTopic(const std::string& name);

  // Stores `messages` in `topic` in one transaction, skipping those whose dedup_id is stored
  // within the dedup window (or repeats an earlier one of this call): those get the original
  // position with duplicate = true. Returns one entry per message, in order, after commit.
  // NOT_FOUND if the topic does not exist.
  absl::StatusOr<std::vector<Appended>> Append(const std::string& topic,
                                               const std::vector<NewMessage>& messages,
                                               const QueueChooser& choose_queue);

  // Leases up to max_messages to the group: first messages whose lease expired (attempt + 1),
  // then messages never delivered to it. Creates the group and its position on first use.
  // An empty batch means nothing is available now. NOT_FOUND if the topic does not exist.
  absl::StatusOr<LeaseBatch> Lease(const LeaseRequest& request);

  // Settles the targets for `group`; one status per target, in order.
  absl::StatusOr<std::vector<AckStatus>> Ack(const std::string& group,
                                             const std::vector<DeliveryRef>& targets);

  // Per queue progress of `group` on every topic it reads (or only `topic` if not empty).
  // NOT_FOUND if the group (or the topic) does not exist.
  absl::StatusOr<std::vector<QueueLag>> GroupLag(const std::string& group,
                                                 const std::string& topic);

  // The receipt signing key shared by every broker on this database.
  absl::StatusOr<std::string> ReceiptKey();

  // Deletes up to `limit` dedup entries whose window has passed. Returns how many.
  absl::StatusOr<int64_t> DeleteExpiredDedup(int64_t limit);

 private:
  pg::ConnectionPool& pool_;
  // (group_id, topic_id) pairs whose group_queues rows exist: skips the insert on later calls.
  std::mutex known_mu_;
  std::set<std::pair<int64_t, int64_t>> known_positions_;
};

}  // namespace ferry::broker
