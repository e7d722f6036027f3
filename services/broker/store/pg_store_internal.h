// Internal to the broker store (pg_store*.cc): statements and helpers shared by its files.
#pragma once

#include <absl/status/statusor.h>
#include <pqxx/pqxx>

#include "broker/store/pg_store.h"
#include "common/pg/pool.h"

namespace ferry::broker::store_internal {

#define FERRY_TOPIC_COLUMNS                                                   \
  "topic_id, name, queue_count, retention_ms, dedup_window_ms,"               \
  " (extract(epoch FROM created_at) * 1000)::bigint, ordered"

#define FERRY_GROUP_COLUMNS                                                             \
  "group_id, name, max_delivery_attempts, array_to_string(backoff_ms, ','),"          \
  " backoff_min_ms, backoff_max_ms, ordered, start_latest,"                            \
  " (extract(epoch FROM created_at) * 1000)::bigint"

inline constexpr pg::Statement kSelectTopic{
    "broker_select_topic", "SELECT " FERRY_TOPIC_COLUMNS " FROM topics WHERE name = $1"};

inline constexpr pg::Statement kSelectTopicById{
    "broker_select_topic_by_id", "SELECT " FERRY_TOPIC_COLUMNS " FROM topics WHERE topic_id = $1"};

inline constexpr pg::Statement kSelectGroup{
    "broker_select_group", "SELECT " FERRY_GROUP_COLUMNS " FROM consumer_groups WHERE name = $1"};

inline constexpr pg::Statement kSelectLeasesAt{
    "broker_select_leases_at",
    "SELECT l.topic_id, l.queue_id, l.msg_offset, l.lease_token, l.attempt, l.state"
    " FROM group_leases l JOIN unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o)"
    " ON l.topic_id = r.t AND l.queue_id = r.q AND l.msg_offset = r.o WHERE l.group_id = $1"
    " FOR UPDATE OF l"};

// Wakes long polls on every broker for messages appended to these topics. Sent after the
// commit, in a transaction of its own: PostgreSQL commits notifying transactions one at a
// time (a lock held through the WAL flush), so a NOTIFY inside the producing transaction
// would serialize every producer's commit. Never throws (the long-poll fallback covers a
// lost notification, and the caller must not retry what already committed).
void NotifyCommitted(pqxx::connection& c, const std::vector<int64_t>& topic_ids);

TopicInfo TopicFromRow(const pqxx::row& row);
GroupPolicy GroupFromRow(const pqxx::row& row);
int64_t NowMs();
absl::Status TopicNotFound(const std::string& name);
absl::Status GroupNotFound(const std::string& name);

// Stores `messages` in `topic` inside `tx`: dedup (within the call and against the window),
// delayed ones into delayed_messages, the rest appended to queues. One result per message.
// NOT_FOUND if the topic was deleted meanwhile.
absl::StatusOr<std::vector<Appended>> AppendToTopic(pqxx::work& tx, const TopicInfo& topic,
                                                    const std::vector<NewMessage>& messages,
                                                    const QueueChooser& choose_queue,
                                                    int64_t now_ms);

// Receipts issued to `group_id`, as columns for unnest(); results of the others are set to
// kWrongGroup in `out` (sized like `refs`).
struct RefColumns {
  std::vector<size_t> index;  // into refs
  std::vector<int64_t> topics, offsets, tokens;
  std::vector<uint32_t> queues;
};
RefColumns ColumnsForGroup(const std::vector<DeliveryRef>& refs, int64_t group_id,
                           std::vector<SettleResult>& out);

// Statements of the transaction part of the store (pg_store_txn.cc).
std::vector<pg::Statement> TxnStatements();

}  // namespace ferry::broker::store_internal
