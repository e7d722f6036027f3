// Internal to the broker store (pg_store*.cc): statements and helpers shared by its files.
#pragma once

#include <absl/status/statusor.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include "broker/store/pg_store.h"
#include "common/pg/arrays.h"
#include "common/pg/pool.h"

namespace ferry::broker::store_internal {

// The array parameters every part of the store binds (common/pg/arrays.h).
using pg::ByteaArray;
using pg::IntArray;
using pg::TextArray;

#define FERRY_TOPIC_COLUMNS                                     \
  "topic_id, name, queue_count, retention_ms, dedup_window_ms," \
  " (extract(epoch FROM created_at) * 1000)::bigint, ordered"

#define FERRY_GROUP_COLUMNS                                                  \
  "group_id, name, max_delivery_attempts, array_to_string(backoff_ms, ',')," \
  " backoff_min_ms, backoff_max_ms, ordered, start_latest,"                  \
  " (extract(epoch FROM created_at) * 1000)::bigint"

inline constexpr pg::Statement kSelectTopic{
    "broker_select_topic", "SELECT " FERRY_TOPIC_COLUMNS " FROM topics WHERE name = $1"};

inline constexpr pg::Statement kSelectTopicById{
    "broker_select_topic_by_id", "SELECT " FERRY_TOPIC_COLUMNS " FROM topics WHERE topic_id = $1"};

inline constexpr pg::Statement kSelectGroup{
    "broker_select_group", "SELECT " FERRY_GROUP_COLUMNS " FROM consumer_groups WHERE name = $1"};

// The group's leases at these positions, whatever their token, locked for settling.
inline constexpr pg::Statement kSelectLeasesAt{
    "broker_select_leases_at",
    "SELECT l.topic_id, l.queue_id, l.msg_offset, l.lease_token, l.attempt, l.state"
    " FROM group_leases l JOIN unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o)"
    " ON l.topic_id = r.t AND l.queue_id = r.q AND l.msg_offset = r.o WHERE l.group_id = $1"
    " FOR UPDATE OF l"};

#define FERRY_MESSAGE_COLUMNS                                    \
  "m.queue_id, m.msg_offset, m.key, m.payload, m.headers::text," \
  " (extract(epoch FROM m.produced_at) * 1000000)::bigint"
// The segment holding `offset` of a queue (or an earlier one; 0 if none is recorded), from
// queue_segments: the lower partition bound of a read from that offset.
#define FERRY_SEGMENT_HOLDING(topic, queue, offset)                                 \
  "COALESCE((SELECT max(s.segment) FROM queue_segments s WHERE s.topic_id = " topic \
  " AND s.queue_id = " queue " AND s.first_offset <= " offset "), 0)"
// The same as a condition on messages `m` (topic $1), for a read's LATERAL subquery.
#define FERRY_SEGMENT_FLOOR(queue, offset) \
  " AND m.segment >= " FERRY_SEGMENT_HOLDING("$1", queue, offset)

// A queue's end (the offset its next message gets) and a group's delivered position on a queue,
// derived from append-only rows (migrations/broker/0007_no_hot_rows.sql; the same as
// ferry_queue_end() and ferry_group_delivered(), inline for the hot statements): `q` is a
// queues row, `gq` a group_queues row.
#define FERRY_QUEUE_END_WHERE(q, extra)                                                    \
  "greatest(" q                                                                            \
  ".next_offset, COALESCE((SELECT m.msg_offset + 1 FROM messages m"                        \
  " WHERE m.topic_id = " q ".topic_id AND m.queue_id = " q ".queue_id AND m.segment >= " q \
  ".segment" extra " ORDER BY m.msg_offset DESC LIMIT 1), 0))"
#define FERRY_QUEUE_END(q) FERRY_QUEUE_END_WHERE(q, "")
// The same, told a segment (a statement parameter) below which none of the queues looks. The
// bound from `q.segment` alone prunes partitions only as each row is read, after every
// partition of messages has been opened and set up for the statement; a parameter prunes them
// before (a topic with a week of hourly segments has 170: W2 ran at a fifth of its speed).
#define FERRY_QUEUE_END_FROM(q, lo) FERRY_QUEUE_END_WHERE(q, " AND m.segment >= " lo)
#define FERRY_GROUP_DELIVERED(gq)                                                             \
  "greatest(" gq                                                                              \
  ".delivered_offset, COALESCE((SELECT r.end_offset FROM group_ranges r"                      \
  " WHERE r.group_id = " gq ".group_id AND r.topic_id = " gq ".topic_id AND r.queue_id = " gq \
  ".queue_id ORDER BY r.first_offset DESC LIMIT 1), 0))"

inline constexpr pg::Statement kEnsureSegments{"broker_ensure_segments",
                                               "SELECT ferry_ensure_segments($1)"};

inline constexpr pg::Statement kInsertGroup{
    "broker_insert_group",
    "INSERT INTO consumer_groups (name, start_latest) VALUES ($1, $2)"
    " ON CONFLICT (name) DO NOTHING RETURNING group_id"};

inline constexpr pg::Statement kInsertGroupQueues{
    "broker_insert_group_queues",
    "INSERT INTO group_queues (group_id, topic_id, queue_id, delivered_offset)"
    " SELECT $1, q.topic_id, q.queue_id, s.start FROM queues q CROSS JOIN LATERAL"
    " (SELECT CASE WHEN $3 THEN ferry_queue_end(q.topic_id, q.queue_id)"
    "   ELSE COALESCE((SELECT min(m.msg_offset) FROM messages m WHERE m.topic_id = q.topic_id"
    "   AND m.queue_id = q.queue_id), ferry_queue_end(q.topic_id, q.queue_id)) END AS start) s"
    " WHERE q.topic_id = $2 ON CONFLICT DO NOTHING"};

inline constexpr pg::Statement kAdvanceDelivered{
    "broker_advance_delivered",
    "UPDATE group_queues SET delivered_offset = r.d FROM unnest($3::int[], $4::bigint[]) AS r(q, d)"
    " WHERE group_id = $1 AND topic_id = $2 AND queue_id = r.q"};

using QueueOffset = std::pair<uint32_t, int64_t>;
using Position = std::tuple<int64_t, uint32_t, int64_t>;  // topic, queue, offset

// Notifier: wakes long polls on every broker for messages appended to topics, after the
// commit (Add is called once the transaction committed), in a transaction of its own: PostgreSQL
// commits notifying transactions one at a time (a lock held through the WAL flush), so a NOTIFY
// inside the producing transaction would serialize every producer's commit. Never throws (the
// long-poll fallback covers a lost notification, and the caller must not retry what already
// committed). The payload is "topic_id" (wake every waiter of the topic) or "topic_id:count" (count
// new messages: wake as many waiters as that takes; see LongPoller::Notify).
//
// Sent by one thread of the store on a connection of its own, not on the caller's:
// the caller answers (and a produce lane takes its next batch) without waiting for it, and
// notifications for the same topics that pile up while one is sent go out as one statement.
class Notifier {
 public:
  explicit Notifier(pg::ConnectionPool& pool);
  ~Notifier();  // sends what is pending, then stops
  // `counts` (optional) gives the new messages per topic; none: wake every waiter.
  void Add(const std::vector<int64_t>& topic_ids, const std::vector<int64_t>& counts = {});

 private:
  void Run();
  pg::ConnectionPool& pool_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, std::optional<int64_t>> pending_;  // topic -> new messages (none: all)
  bool stopping_ = false;
  std::thread thread_;
};

TopicInfo TopicFromRow(const pqxx::row& row);
GroupPolicy GroupFromRow(const pqxx::row& row);
// The FERRY_MESSAGE_COLUMNS of a row (no attempt or lease yet).
LeasedMessage MessageFromRow(const pqxx::row& row);
int64_t NowMs();
absl::Status TopicNotFound(const std::string& name);
absl::Status GroupNotFound(const std::string& name);

// Appends messages to queues of `topic` inside `tx`: locks the queues (in queue order), assigns
// dense offsets, inserts. No dedup here. *topic_gone: the topic was deleted meanwhile.
std::vector<Appended> AppendRows(pqxx::work& tx, const TopicInfo& topic,
                                 const std::vector<const NewMessage*>& messages,
                                 const QueueChooser& choose_queue, bool* topic_gone);

// Stores `messages` in `topic` inside `tx`: dedup (within the call and against the window),
// delayed ones into delayed_messages, the rest appended to queues. One result per message.
// NOT_FOUND if the topic was deleted meanwhile.
absl::StatusOr<std::vector<Appended>> AppendToTopic(pqxx::work& tx, const TopicInfo& topic,
                                                    const std::vector<NewMessage>& messages,
                                                    const QueueChooser& choose_queue,
                                                    int64_t now_ms);

// Moves leases to the group's dead letters with a copy of the message (LEFT JOIN: a message
// that retention already removed still leaves a record, without payload).
inline constexpr pg::Statement kDeadLetterLeases{
    "broker_dead_letter_leases",
    "WITH moved AS (DELETE FROM group_leases l USING unnest($2::bigint[], $3::int[],"
    " $4::bigint[], $5::text[]) AS r(t, q, o, why) WHERE l.group_id = $1 AND l.topic_id = r.t"
    " AND l.queue_id = r.q AND l.msg_offset = r.o"
    " RETURNING l.topic_id, l.queue_id, l.msg_offset, l.attempt, l.first_delivered_at,"
    " l.last_delivered_at, r.why)"
    " INSERT INTO dead_letters (group_id, topic_id, topic, queue_id, msg_offset, key, payload,"
    " headers, produced_at, attempts, reason, first_delivered_at, last_delivered_at)"
    " SELECT $1, mv.topic_id, t.name, mv.queue_id, mv.msg_offset, m.key, m.payload,"
    " COALESCE(m.headers, '{}'), m.produced_at, mv.attempt, mv.why, mv.first_delivered_at,"
    " mv.last_delivered_at FROM moved mv JOIN topics t ON t.topic_id = mv.topic_id"
    " LEFT JOIN messages m ON m.topic_id = mv.topic_id AND m.queue_id = mv.queue_id"
    " AND m.msg_offset = mv.msg_offset RETURNING topic_id, queue_id, msg_offset"};

// ---- receipts: Settle, ExtendLeases and AttachAcks classify them alike ----

// Receipts of the call's group, as columns for unnest().
struct RefColumns {
  std::vector<size_t> index;  // into refs
  std::vector<int64_t> topics, offsets, tokens;
  std::vector<uint32_t> queues;
};
// The group a call names and its receipts among `refs`. A receipt issued to another group is
// kWrongGroup in `out` (sized like refs) when that group exists, kTopicGone when it was deleted;
// when the named group does not exist that is every receipt, and the result is nullopt.
std::optional<std::pair<GroupPolicy, RefColumns>> ReceiptsOfGroup(
    pqxx::work& tx, const std::string& group, const std::vector<DeliveryRef>& refs,
    std::vector<SettleResult>& out);
// Receipts of the group (`which`: indexes into refs) that the operation could not apply:
// kStale when the group holds the message under another delivery (redelivered, retrying, in a
// transaction), kAlreadyCommitted when the queue position still exists (settled before),
// kTopicGone when the topic was deleted.
void ClassifyUnapplied(pqxx::work& tx, int64_t group_id, const std::vector<DeliveryRef>& refs,
                       const std::vector<size_t>& which, std::vector<SettleResult>& out);

// ---- range leases (pg_store_ranges.cc) ----

using RangeKey = std::tuple<int64_t, uint32_t, int64_t>;  // topic, queue, first offset
inline constexpr int64_t kDueRangeCheckMs = 250;          // see PgStore::due_checked_
struct RangeInfo {
  int64_t end;  // exclusive
  int64_t token;
  std::set<int64_t> settled;  // ACKed, or taken out into group_leases
  bool newest;                // the group's newest range on the queue: its end is the position
};
struct RangeHits {
  std::map<size_t, RangeKey> member;  // receipt index -> its range
  std::map<RangeKey, RangeInfo> ranges;
};
// The receipts (`which`: indexes into refs) that name an unsettled message of one of the
// group's ranges under that range's token, with those ranges (locked until commit).
RangeHits RangeMembers(pqxx::work& tx, int64_t group_id, const std::vector<DeliveryRef>& refs,
                       const std::vector<size_t>& which);
// Settles `offsets` in their ranges (found by RangeMembers); a range left with nothing
// unsettled is deleted, or, when it is the newest on its queue, kept with an infinite deadline
// (it marks the group's position until the next Consume of the queue records a newer one).
// take_out: each offset first becomes a group_leases row (same token, attempt 1, the range's
// deadline), for the per-message code to handle.
void SettleInRanges(pqxx::work& tx, int64_t group_id, RangeHits& hits,
                    const std::map<RangeKey, std::set<int64_t>>& offsets, bool take_out);
// Turns the group's ranges on a topic whose deadline passed (due_only) or all of them into
// per-message leases of their unsettled offsets, at most `limit` ranges.
void DissolveRanges(pqxx::work& tx, int64_t group_id, int64_t topic_id, bool due_only,
                    int64_t limit);
struct NewRange {
  uint32_t queue;
  int64_t first, end;          // [first, end)
  std::vector<int64_t> holes;  // offsets in between not delivered (removed by retention)
};
void DeleteRanges(pqxx::work& tx, int64_t group_id, const std::vector<RangeKey>& keys);
// Records new deliveries as ranges; returns the lease token of each queue's range.
std::map<uint32_t, int64_t> InsertRanges(pqxx::work& tx, int64_t group_id, int64_t topic_id,
                                         const std::vector<NewRange>& ranges,
                                         uint32_t visibility_ms);
// Of these positions, those the group holds unsettled in a range (whatever the token).
std::set<Position> RangeMembersAt(pqxx::work& tx, int64_t group_id, const std::vector<int64_t>& t,
                                  const std::vector<uint32_t>& q, const std::vector<int64_t>& o);
// Takes the receipts among `which` that name a range's message out into group_leases rows, so
// that per-message code (RETRY, extensions, transactions) finds them there.
void TakeOutOfRanges(pqxx::work& tx, int64_t group_id, const std::vector<DeliveryRef>& refs,
                     const std::vector<size_t>& which);

// The statements of each part of the store, defined in its file.
std::vector<pg::Statement> TopicsStatements();
std::vector<pg::Statement> ProduceStatements();
std::vector<pg::Statement> DeliveryStatements();
std::vector<pg::Statement> SettleStatements();
std::vector<pg::Statement> GroupsStatements();
std::vector<pg::Statement> DeadLettersStatements();
std::vector<pg::Statement> TxnStatements();
std::vector<pg::Statement> AuthStatements();
std::vector<pg::Statement> RetentionStatements();
std::vector<pg::Statement> MetricsStatements();
std::vector<pg::Statement> RangeStatements();
std::vector<pg::Statement> ConsoleStatements();

}  // namespace ferry::broker::store_internal
