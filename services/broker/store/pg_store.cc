#include "broker/store/pg_store.h"

#include "broker/store/pg_store_internal.h"
#include "common/log.h"
#include "common/pg/arrays.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <unordered_map>

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals
using pg::ByteaArray;
using pg::IntArray;
using pg::TextArray;

namespace {

// ---- statements (the only SQL of the broker) ------------------------------------------------




constexpr pg::Statement kInsertTopic{
    "broker_insert_topic",
    "INSERT INTO topics (name, queue_count, retention_ms, dedup_window_ms, ordered)"
    " VALUES ($1, $2, $3, $4, $5)"
    " RETURNING topic_id, (extract(epoch FROM created_at) * 1000)::bigint"};

constexpr pg::Statement kInsertQueues{
    "broker_insert_queues",
    "INSERT INTO queues (topic_id, queue_id) SELECT $1, generate_series(0, $2 - 1)"};

constexpr pg::Statement kListTopics{
    "broker_list_topics", "SELECT " FERRY_TOPIC_COLUMNS " FROM topics ORDER BY name"};

constexpr pg::Statement kDescribeQueues{
    "broker_describe_queues",
    "SELECT q.queue_id, COALESCE((SELECT min(m.msg_offset) FROM messages m"
    "   WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id), q.next_offset),"
    " q.next_offset FROM queues q WHERE q.topic_id = $1 ORDER BY q.queue_id"};

constexpr pg::Statement kCountDelayed{
    "broker_count_delayed", "SELECT count(*) FROM delayed_messages WHERE topic_id = $1"};

constexpr pg::Statement kDeleteTopic{
    "broker_delete_topic", "DELETE FROM topics WHERE name = $1 RETURNING topic_id"};

constexpr pg::Statement kDeleteTopicMessages{
    "broker_delete_topic_messages", "DELETE FROM messages WHERE topic_id = $1"};

// Serializes producers of the same dedup ids (in hash order, so two calls never wait on each
// other in a cycle) until commit; then the SELECT below sees every committed claim.
constexpr pg::Statement kLockDedupIds{
    "broker_lock_dedup_ids",
    "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT"
    " hashtextextended($1::text || '/' || d, 0) AS h FROM unnest($2::text[]) AS d ORDER BY h) s"};

// One primary-key probe per id (LATERAL + LIMIT, not flattened by the planner). As
// `dedup_id = ANY($2)`, the generic plan walked the expires_at index over the whole window
// once the table had grown from empty without fresh statistics: 136 ms per relay batch.
constexpr pg::Statement kSelectDedup{
    "broker_select_dedup",
    "SELECT d.dedup_id, d.queue_id, d.msg_offset, d.delayed_id FROM unnest($2::text[]) AS r(id)"
    " CROSS JOIN LATERAL (SELECT * FROM dedup WHERE topic_id = $1 AND dedup_id = r.id"
    "  AND expires_at > now() LIMIT 1) d"};

constexpr pg::Statement kLockQueues{
    "broker_lock_queues",
    "SELECT queue_id, next_offset, segment, ferry_current_segment() FROM queues"
    " WHERE topic_id = $1 AND queue_id = ANY($2::int[]) ORDER BY queue_id FOR UPDATE"};

constexpr pg::Statement kAdvanceQueues{
    "broker_advance_queues",
    "UPDATE queues SET next_offset = c.next, segment = $4"
    " FROM unnest($2::int[], $3::bigint[]) AS c(q, next) WHERE topic_id = $1 AND queue_id = c.q"};

// The first write of a queue into a segment records where the segment starts for it.
constexpr pg::Statement kInsertQueueSegments{
    "broker_insert_queue_segments",
    "INSERT INTO queue_segments (topic_id, queue_id, segment, first_offset)"
    " SELECT $1, q, $2, o FROM unnest($3::int[], $4::bigint[]) AS x(q, o) ON CONFLICT DO NOTHING"};

constexpr pg::Statement kInsertMessages{
    "broker_insert_messages",
    "INSERT INTO messages (topic_id, queue_id, msg_offset, segment, key, payload, headers,"
    " dedup_id)"
    " SELECT $1, q, o, $8, k, p, h, d FROM unnest($2::int[], $3::bigint[], $4::text[],"
    " $5::bytea[], $6::jsonb[], $7::text[]) AS m(q, o, k, p, h, d)"};

constexpr pg::Statement kEnsureSegments{
    "broker_ensure_segments", "SELECT ferry_ensure_segments($1)"};

constexpr pg::Statement kUpsertDedup{
    "broker_upsert_dedup",
    "INSERT INTO dedup (topic_id, dedup_id, queue_id, msg_offset, delayed_id, expires_at)"
    " SELECT $1, d, q, o, dl, now() + $6 * interval '1 millisecond'"
    " FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS x(d, q, o, dl)"
    " ON CONFLICT (topic_id, dedup_id) DO UPDATE SET queue_id = EXCLUDED.queue_id,"
    " msg_offset = EXCLUDED.msg_offset, delayed_id = EXCLUDED.delayed_id,"
    " expires_at = EXCLUDED.expires_at"};


constexpr pg::Statement kNextDelayedIds{
    "broker_next_delayed_ids",
    "SELECT nextval(pg_get_serial_sequence('delayed_messages', 'delayed_id'))"
    " FROM generate_series(1, $1)"};

constexpr pg::Statement kInsertDelayed{
    "broker_insert_delayed",
    "INSERT INTO delayed_messages (delayed_id, topic_id, key, payload, headers, dedup_id,"
    " deliver_at) OVERRIDING SYSTEM VALUE"
    " SELECT i, $1, k, p, h, d, to_timestamp(at / 1000.0) FROM unnest($2::bigint[], $3::text[],"
    " $4::bytea[], $5::jsonb[], $6::text[], $7::bigint[]) AS m(i, k, p, h, d, at)"};

constexpr pg::Statement kTakeDueDelayed{
    "broker_take_due_delayed",
    "DELETE FROM delayed_messages WHERE delayed_id IN (SELECT delayed_id FROM delayed_messages"
    " WHERE deliver_at <= now() ORDER BY deliver_at, delayed_id LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " RETURNING delayed_id, topic_id, key, payload, headers::text, dedup_id,"
    " (extract(epoch FROM deliver_at) * 1000)::bigint"};

constexpr pg::Statement kPlaceDelayedDedup{
    "broker_place_delayed_dedup",
    "UPDATE dedup SET queue_id = x.q, msg_offset = x.o, delayed_id = NULL"
    " FROM unnest($2::bigint[], $3::int[], $4::bigint[]) AS x(dl, q, o)"
    " WHERE dedup.topic_id = $1 AND dedup.delayed_id = x.dl"};

constexpr pg::Statement kCancelDelayed{
    "broker_cancel_delayed",
    "WITH gone AS (DELETE FROM delayed_messages WHERE topic_id = $1 AND delayed_id = $2"
    " RETURNING topic_id, delayed_id)"
    " DELETE FROM dedup USING gone WHERE dedup.topic_id = gone.topic_id"
    " AND dedup.delayed_id = gone.delayed_id RETURNING 1"};

constexpr pg::Statement kCancelDelayedCheck{
    "broker_cancel_delayed_check",
    "SELECT 1 FROM delayed_messages WHERE topic_id = $1 AND delayed_id = $2"};



constexpr pg::Statement kInsertGroup{
    "broker_insert_group",
    "INSERT INTO consumer_groups (name, start_latest) VALUES ($1, $2)"
    " ON CONFLICT (name) DO NOTHING RETURNING group_id"};

// Empty text parameters keep the current value.
constexpr pg::Statement kUpdateGroup{
    "broker_update_group",
    "UPDATE consumer_groups SET"
    " max_delivery_attempts = COALESCE(NULLIF($2, '')::int, max_delivery_attempts),"
    " backoff_ms = COALESCE(NULLIF($3, '')::bigint[], backoff_ms),"
    " backoff_min_ms = COALESCE(NULLIF($4, '')::bigint, backoff_min_ms),"
    " backoff_max_ms = COALESCE(NULLIF($5, '')::bigint, backoff_max_ms),"
    " ordered = COALESCE(NULLIF($6, '')::boolean, ordered),"
    " start_latest = COALESCE(NULLIF($7, '')::boolean, start_latest)"
    " WHERE name = $1 RETURNING " FERRY_GROUP_COLUMNS};

constexpr pg::Statement kGroupTopics{
    "broker_group_topics",
    "SELECT DISTINCT t.name FROM group_queues gq JOIN topics t USING (topic_id)"
    " WHERE gq.group_id = $1 ORDER BY t.name"};

constexpr pg::Statement kInsertGroupQueues{
    "broker_insert_group_queues",
    "INSERT INTO group_queues (group_id, topic_id, queue_id, delivered_offset)"
    " SELECT $1, q.topic_id, q.queue_id, s.start FROM queues q CROSS JOIN LATERAL"
    " (SELECT CASE WHEN $3 THEN q.next_offset ELSE COALESCE((SELECT min(m.msg_offset)"
    "   FROM messages m WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id),"
    "   q.next_offset) END AS start) s"
    " WHERE q.topic_id = $2 ON CONFLICT DO NOTHING"};

constexpr pg::Statement kSelectDueLeases{
    "broker_select_due_leases",
    "SELECT queue_id, msg_offset, attempt, state FROM group_leases"
    " WHERE group_id = $1 AND topic_id = $2 AND deadline <= now() AND deadline < 'infinity'"
    " ORDER BY deadline LIMIT $3 FOR UPDATE SKIP LOCKED"};

// Reads are shaped so that the only possible plan is one index range scan per queue (LATERAL
// + ORDER BY offset + LIMIT): with prepared statements PostgreSQL settles on a generic plan, and
// a plain join let it pick a sequential scan of whole partitions once other topics filled them
// (W5: consume 14x slower with 5M messages stored elsewhere). The segment bound per queue prunes
// partitions before the queue's current read position at run time.
#define FERRY_MESSAGE_COLUMNS \
  "m.queue_id, m.msg_offset, m.key, m.payload, m.headers::text," \
  " (extract(epoch FROM m.produced_at) * 1000000)::bigint"
#define FERRY_SEGMENT_FLOOR(queue, offset)                                                   \
  " AND m.segment >= COALESCE((SELECT max(s.segment) FROM queue_segments s"                 \
  " WHERE s.topic_id = $1 AND s.queue_id = " queue " AND s.first_offset <= " offset "), 0)"

constexpr pg::Statement kSelectMessagesAt{
    "broker_select_messages_at",
    "SELECT " FERRY_MESSAGE_COLUMNS
    " FROM unnest($2::int[], $3::bigint[]) AS r(q, o) CROSS JOIN LATERAL"
    " (SELECT * FROM messages m WHERE m.topic_id = $1 AND m.queue_id = r.q AND m.msg_offset = r.o"
    FERRY_SEGMENT_FLOOR("r.q", "r.o") " LIMIT 1) m"};

constexpr pg::Statement kRenewLeases{
    "broker_renew_leases",
    "UPDATE group_leases l SET attempt = l.attempt + 1, state = 'delivered',"
    " lease_token = nextval('lease_token_seq'),"
    " deadline = now() + $5 * interval '1 millisecond', last_delivered_at = now()"
    " FROM unnest($3::int[], $4::bigint[]) AS r(q, o)"
    " WHERE l.group_id = $1 AND l.topic_id = $2 AND l.queue_id = r.q AND l.msg_offset = r.o"
    " RETURNING l.queue_id, l.msg_offset, l.attempt, l.lease_token"};

// Locks up to $5 readable queues nobody else is reading, in queue order rotated to start at $3
// (each consumer starts somewhere else), skipping the queues in $4 (already held). Only the
// rows returned are locked (LockRows sits under the Limit), so concurrent consumers of a group
// spread over the queues instead of one of them holding every queue for one batch.
constexpr pg::Statement kSelectReadableQueues{
    "broker_select_readable_queues",
    "SELECT gq.queue_id, greatest(gq.delivered_offset, q.first_offset), q.next_offset"
    " FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " WHERE gq.group_id = $1 AND gq.topic_id = $2 AND gq.queue_id <> ALL($4::int[])"
    " AND greatest(gq.delivered_offset, q.first_offset) < q.next_offset"
    " ORDER BY gq.queue_id < $3, gq.queue_id LIMIT $5 FOR UPDATE OF gq SKIP LOCKED"};

// Ordered mode, step 1: lock every queue of the group nobody else is reading right now.
constexpr pg::Statement kLockOrderedQueues{
    "broker_lock_ordered_queues",
    "SELECT gq.queue_id, greatest(gq.delivered_offset, q.first_offset), q.next_offset"
    " FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " WHERE gq.group_id = $1 AND gq.topic_id = $2"
    " ORDER BY gq.queue_id FOR UPDATE OF gq SKIP LOCKED"};

// Step 2, a separate statement on purpose: its snapshot is taken after the locks above, so it
// sees every lease committed by whoever held those queues before. (In one statement, the
// row lock would re-read group_queues but the lease counts would come from the older
// snapshot, and two consumers could hold one queue.) A queue with a lease whose deadline is
// ahead is held: by a consumer, or waiting for a retry.
constexpr pg::Statement kCountQueueLeases{
    "broker_count_queue_leases",
    "SELECT queue_id, count(*), count(*) FILTER (WHERE deadline > now()) FROM group_leases"
    " WHERE group_id = $1 AND topic_id = $2 AND queue_id = ANY($3::int[]) GROUP BY queue_id"};

constexpr pg::Statement kSelectQueueLeases{
    "broker_select_queue_leases",
    "SELECT queue_id, msg_offset, attempt, state FROM group_leases"
    " WHERE group_id = $1 AND topic_id = $2 AND queue_id = ANY($3::int[])"
    " ORDER BY queue_id, msg_offset FOR UPDATE"};

constexpr pg::Statement kSelectMessageRanges{
    "broker_select_message_ranges",
    "SELECT " FERRY_MESSAGE_COLUMNS
    " FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS r(q, first, stop) CROSS JOIN LATERAL"
    " (SELECT * FROM messages m WHERE m.topic_id = $1 AND m.queue_id = r.q"
    "  AND m.msg_offset >= r.first AND m.msg_offset < r.stop"
    FERRY_SEGMENT_FLOOR("r.q", "r.first")
    "  ORDER BY m.msg_offset LIMIT r.stop - r.first) m"
    " ORDER BY m.queue_id, m.msg_offset"};

constexpr pg::Statement kAdvanceDelivered{
    "broker_advance_delivered",
    "UPDATE group_queues SET delivered_offset = r.d FROM unnest($3::int[], $4::bigint[]) AS r(q, d)"
    " WHERE group_id = $1 AND topic_id = $2 AND queue_id = r.q"};

constexpr pg::Statement kInsertLeases{
    "broker_insert_leases",
    "INSERT INTO group_leases (group_id, topic_id, queue_id, msg_offset, attempt, lease_token,"
    " deadline, first_delivered_at, last_delivered_at)"
    " SELECT $1, $2, q, o, 1, nextval('lease_token_seq'),"
    " now() + $5 * interval '1 millisecond', now(), now()"
    " FROM unnest($3::int[], $4::bigint[]) AS r(q, o)"
    " RETURNING queue_id, msg_offset, lease_token"};

// The leases named by receipts (token included), locked for settling.

constexpr pg::Statement kDeleteLeases{
    "broker_delete_leases",
    "DELETE FROM group_leases l USING unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o)"
    " WHERE l.group_id = $1 AND l.topic_id = r.t AND l.queue_id = r.q AND l.msg_offset = r.o"};

// ACKs whose receipt is current (same lease token), in one statement; returns what it settled.
// Shaped like the message reads: one primary-key probe per receipt (LATERAL), then a delete
// by row address. Joined directly, the generic plan hashed every lease of the group against
// the receipts (young table, stale statistics, and the index full of dead entries from the
// lease churn): 5 ms per 100 ACKs. A lease renewed meanwhile by another consumer has a new
// row version, so its old address no longer matches and it is not deleted. (The LIMIT keeps
// the planner from flattening the LATERAL subquery back into that join.)
constexpr pg::Statement kAckLeases{
    "broker_ack_leases",
    "DELETE FROM group_leases l WHERE l.ctid = ANY(ARRAY("
    " SELECT x.ctid FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::bigint[])"
    " AS r(t, q, o, k) CROSS JOIN LATERAL (SELECT g.ctid FROM group_leases g"
    "  WHERE g.group_id = $1 AND g.topic_id = r.t AND g.queue_id = r.q AND g.msg_offset = r.o"
    "  AND g.lease_token = r.k LIMIT 1) x))"
    " RETURNING l.topic_id, l.queue_id, l.msg_offset"};

constexpr pg::Statement kScheduleRetries{
    "broker_schedule_retries",
    "UPDATE group_leases l SET state = 'retrying', deadline = now() + r.d * interval '1 ms'"
    " FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::bigint[]) AS r(t, q, o, d)"
    " WHERE l.group_id = $1 AND l.topic_id = r.t AND l.queue_id = r.q AND l.msg_offset = r.o"
    " RETURNING (extract(epoch FROM l.deadline) * 1000)::bigint"};

// Ordered mode, after a RETRY at (queue, offset): later messages of that queue that are leased
// but unsettled go back to the queue (delivered again after the retried one, in order).
constexpr pg::Statement kReleaseLaterLeases{
    "broker_release_later_leases",
    "WITH released AS (DELETE FROM group_leases l USING unnest($2::bigint[], $3::int[],"
    " $4::bigint[]) AS r(t, q, o) WHERE l.group_id = $1 AND l.topic_id = r.t"
    " AND l.queue_id = r.q AND l.msg_offset > r.o AND l.state = 'delivered'"
    " RETURNING l.topic_id, l.queue_id, l.msg_offset)"
    " UPDATE group_queues gq SET delivered_offset = least(gq.delivered_offset, x.first)"
    " FROM (SELECT topic_id, queue_id, min(msg_offset) AS first FROM released"
    "  GROUP BY topic_id, queue_id) x"
    " WHERE gq.group_id = $1 AND gq.topic_id = x.topic_id AND gq.queue_id = x.queue_id"};

constexpr pg::Statement kExtendLeases{
    "broker_extend_leases",
    "UPDATE group_leases l SET deadline = now() + $5 * interval '1 millisecond'"
    " FROM unnest($2::bigint[], $3::int[], $4::bigint[], $6::bigint[]) AS r(t, q, o, k)"
    " WHERE l.group_id = $1 AND l.topic_id = r.t AND l.queue_id = r.q AND l.msg_offset = r.o"
    " AND l.lease_token = r.k AND l.state = 'delivered'"
    " RETURNING l.topic_id, l.queue_id, l.msg_offset"};

constexpr pg::Statement kSelectGroupQueuesAt{
    "broker_select_group_queues_at",
    "SELECT gq.topic_id, gq.queue_id FROM group_queues gq"
    " JOIN unnest($2::bigint[], $3::int[]) AS r(t, q) ON gq.topic_id = r.t AND gq.queue_id = r.q"
    " WHERE gq.group_id = $1"};

// Moves leases to the group's dead letters with a copy of the message (LEFT JOIN: a message
// that retention already removed still leaves a record, without payload).
constexpr pg::Statement kDeadLetterLeases{
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

constexpr pg::Statement kGroupLag{
    "broker_group_lag",
    "SELECT topic, queue_id, end_offset, committed_offset, delivered_offset, in_flight,"
    " retrying, dead_letters, COALESCE((extract(epoch FROM oldest_unacked_age) * 1000)::bigint, 0)"
    " FROM group_lag WHERE group_name = $1 AND ($2 = '' OR topic = $2)"
    " ORDER BY topic, queue_id"};

constexpr pg::Statement kGroupDelayed{
    "broker_group_delayed",
    "SELECT t.name, count(d.*) FROM topics t JOIN delayed_messages d USING (topic_id)"
    " WHERE t.topic_id IN (SELECT topic_id FROM group_queues WHERE group_id = $1)"
    " AND ($2 = '' OR t.name = $2) GROUP BY t.name ORDER BY t.name"};

constexpr pg::Statement kLockGroupPositions{
    "broker_lock_group_positions",
    "SELECT gq.queue_id, gq.delivered_offset, q.next_offset,"
    " COALESCE((SELECT min(m.msg_offset) FROM messages m WHERE m.topic_id = gq.topic_id"
    "   AND m.queue_id = gq.queue_id), q.next_offset)"
    " FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " WHERE gq.group_id = $1 AND gq.topic_id = $2 ORDER BY gq.queue_id FOR UPDATE OF gq"};

constexpr pg::Statement kFirstOffsetAt{
    "broker_first_offset_at",
    "SELECT q.queue_id, COALESCE((SELECT min(m.msg_offset) FROM messages m"
    "   WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id"
    "   AND m.produced_at >= to_timestamp($2 / 1000.0)), q.next_offset)"
    " FROM queues q WHERE q.topic_id = $1 ORDER BY q.queue_id"};

constexpr pg::Statement kReleaseGroupLeases{
    "broker_release_group_leases",
    "DELETE FROM group_leases WHERE group_id = $1 AND topic_id = $2"};

constexpr pg::Statement kListDeadLetters{
    "broker_list_dead_letters",
    "SELECT dead_letter_id, topic, queue_id, msg_offset, key, payload, headers::text, attempts,"
    " reason, COALESCE((extract(epoch FROM produced_at) * 1000)::bigint, 0),"
    " (extract(epoch FROM first_delivered_at) * 1000)::bigint,"
    " (extract(epoch FROM last_delivered_at) * 1000)::bigint,"
    " (extract(epoch FROM dead_at) * 1000)::bigint"
    " FROM dead_letters WHERE group_id = $1 AND ($2 = '' OR topic = $2)"
    " AND dead_letter_id > $3 ORDER BY dead_letter_id LIMIT $4"};

constexpr pg::Statement kTakeDeadLetters{
    "broker_take_dead_letters",
    "SELECT d.dead_letter_id, d.topic_id, d.queue_id, d.msg_offset, d.key, d.payload,"
    " d.headers::text, (t.topic_id IS NOT NULL), (m.msg_offset IS NOT NULL),"
    " (gq.group_id IS NOT NULL), (l.group_id IS NOT NULL)"
    " FROM dead_letters d"
    " LEFT JOIN topics t ON t.topic_id = d.topic_id"
    " LEFT JOIN messages m ON m.topic_id = d.topic_id AND m.queue_id = d.queue_id"
    "  AND m.msg_offset = d.msg_offset"
    " LEFT JOIN group_queues gq ON gq.group_id = d.group_id AND gq.topic_id = d.topic_id"
    "  AND gq.queue_id = d.queue_id"
    " LEFT JOIN group_leases l ON l.group_id = d.group_id AND l.topic_id = d.topic_id"
    "  AND l.queue_id = d.queue_id AND l.msg_offset = d.msg_offset"
    " WHERE d.group_id = $1 AND ($2 OR d.dead_letter_id = ANY($3::bigint[]))"
    " ORDER BY d.dead_letter_id FOR UPDATE OF d"};

constexpr pg::Statement kRedriveLeases{
    "broker_redrive_leases",
    "INSERT INTO group_leases (group_id, topic_id, queue_id, msg_offset, attempt, lease_token,"
    " deadline, first_delivered_at, last_delivered_at, state)"
    " SELECT $1, t, q, o, 0, nextval('lease_token_seq'), now(), now(), now(), 'redriven'"
    " FROM unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o)"};

constexpr pg::Statement kDeleteDeadLetters{
    "broker_delete_dead_letters",
    "DELETE FROM dead_letters WHERE group_id = $1 AND ($2 OR dead_letter_id = ANY($3::bigint[]))"};

constexpr pg::Statement kNotifyTopics{
    "broker_notify_topics",
    "SELECT pg_notify('ferry_messages', t::text) FROM unnest($1::bigint[]) AS t"};

// Retention works per queue, from the front: messages are appended in (nearly) time order, so
// the expired ones are a prefix of offsets; removing a range by primary key touches nothing else.
constexpr pg::Statement kRetentionQueues{
    "broker_retention_queues",
    "SELECT q.topic_id, q.queue_id, m.first, q.next_offset, t.retention_ms"
    " FROM queues q JOIN topics t USING (topic_id) CROSS JOIN LATERAL"
    " (SELECT min(msg_offset) AS first FROM messages WHERE topic_id = q.topic_id"
    "  AND queue_id = q.queue_id) m"
    " WHERE m.first IS NOT NULL AND EXISTS (SELECT 1 FROM messages x WHERE x.topic_id = q.topic_id"
    "  AND x.queue_id = q.queue_id AND x.msg_offset = m.first"
    "  AND x.produced_at < now() - t.retention_ms * interval '1 millisecond')"};

// Deletes the expired prefix of one queue within [first, first + batch): up to the first
// message that is still young. Leases and retries of what was removed end with it.
constexpr pg::Statement kExpireQueuePrefix{
    "broker_expire_queue_prefix",
    "WITH cut AS (SELECT COALESCE((SELECT m.msg_offset FROM messages m WHERE m.topic_id = $1"
    "  AND m.queue_id = $2 AND m.msg_offset >= $3 AND m.msg_offset < $3 + $5"
    "  AND m.produced_at >= now() - $4 * interval '1 millisecond' ORDER BY m.msg_offset LIMIT 1),"
    "  least($3 + $5, $6)) AS upto),"
    " gone AS (DELETE FROM messages m USING cut WHERE m.topic_id = $1 AND m.queue_id = $2"
    "  AND m.msg_offset >= $3 AND m.msg_offset < cut.upto RETURNING 1),"
    " released AS (DELETE FROM group_leases l USING cut WHERE l.topic_id = $1 AND l.queue_id = $2"
    "  AND l.msg_offset < cut.upto RETURNING 1),"
    " mark AS (UPDATE queues q SET first_offset = greatest(q.first_offset, cut.upto) FROM cut"
    "  WHERE q.topic_id = $1 AND q.queue_id = $2 RETURNING 1)"
    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM released),"
    " (SELECT count(*) FROM mark)"};

// Segments (partitions) that exist, the current one, and the segment length.
constexpr pg::Statement kListSegments{
    "broker_list_segments",
    "SELECT substring(c.relname FROM 11)::int, ferry_current_segment(),"
    " (SELECT value FROM broker_settings WHERE key = 'segment_seconds'),"
    " (extract(epoch FROM now()) * 1000)::bigint"
    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'messages'::regclass AND c.relname ~ '^messages_s[0-9]+$'"
    " ORDER BY 1"};

// -1: no topic wrote into the segment.
constexpr pg::Statement kSegmentRetention{
    "broker_segment_retention",
    "SELECT COALESCE(max(t.retention_ms), -1) FROM queue_segments qs JOIN topics t"
    " USING (topic_id) WHERE qs.segment = $1"};

// Before a segment is dropped: forget it, move each affected queue's low watermark to where
// its remaining messages start, and end the deliveries of what goes with it.
constexpr pg::Statement kRetireSegment{
    "broker_retire_segment",
    "WITH gone AS (DELETE FROM queue_segments WHERE segment = $1 RETURNING topic_id, queue_id),"
    " marked AS (UPDATE queues q SET first_offset = greatest(q.first_offset, COALESCE("
    "   (SELECT min(s.first_offset) FROM queue_segments s WHERE s.topic_id = q.topic_id"
    "    AND s.queue_id = q.queue_id AND s.segment <> $1), q.next_offset))"
    "  FROM (SELECT DISTINCT topic_id, queue_id FROM gone) g"
    "  WHERE q.topic_id = g.topic_id AND q.queue_id = g.queue_id"
    "  RETURNING q.topic_id, q.queue_id, q.first_offset)"
    " DELETE FROM group_leases l USING marked m WHERE l.topic_id = m.topic_id"
    " AND l.queue_id = m.queue_id AND l.msg_offset < m.first_offset"};

constexpr pg::Statement kReceiptKey{
    "broker_select_receipt_key", "SELECT value FROM broker_meta WHERE key = 'receipt_hmac_key'"};

constexpr pg::Statement kDeleteExpiredDedup{
    "broker_delete_expired_dedup",
    "DELETE FROM dedup WHERE ctid = ANY(ARRAY(SELECT ctid FROM dedup WHERE expires_at <= now()"
    " LIMIT $1))"};



LeasedMessage MessageFromRow(const pqxx::row& row) {
  LeasedMessage m;
  m.queue = row[0].as<uint32_t>();
  m.offset = row[1].as<int64_t>();
  if (!row[2].is_null()) m.key = row[2].as<std::string>();
  m.payload = pqxx::binarystring(row[3]).str();
  m.headers_json = row[4].as<std::string>();
  m.produced_at_us = row[5].as<int64_t>();
  return m;
}



std::string OptText(const std::optional<bool>& v) { return v ? (*v ? "true" : "false") : ""; }
template <typename T>
std::string OptText(const std::optional<T>& v) {
  return v ? std::to_string(*v) : "";
}


using QueueOffset = std::pair<uint32_t, int64_t>;
using Position = std::tuple<int64_t, uint32_t, int64_t>;  // topic, queue, offset

// Appends messages to queues of `topic` inside `tx`: locks the queues (in queue order), assigns
// dense offsets, inserts, notifies waiting consumers at commit. No dedup here.
std::vector<Appended> AppendRows(pqxx::work& tx, const TopicInfo& topic,
                                 const std::vector<const NewMessage*>& messages,
                                 const QueueChooser& choose_queue, bool* topic_gone) {
  std::vector<Appended> out(messages.size());
  std::map<uint32_t, std::vector<size_t>> by_queue;
  for (size_t i = 0; i < messages.size(); ++i) {
    by_queue[choose_queue(*messages[i], topic.queue_count)].push_back(i);
  }
  if (by_queue.empty()) return out;
  std::vector<uint32_t> queue_ids;
  for (const auto& [q, idx] : by_queue) queue_ids.push_back(q);
  pqxx::result locked = tx.exec_prepared(kLockQueues.name, topic.topic_id, IntArray(queue_ids));
  if (locked.size() != queue_ids.size()) {  // deleted meanwhile
    *topic_gone = true;
    return out;
  }
  std::vector<int64_t> next_offsets;
  std::vector<uint32_t> new_segment_queues;
  std::vector<int64_t> new_segment_firsts;
  int32_t segment = 0;
  for (const auto& row : locked) {
    const uint32_t q = row[0].as<uint32_t>();
    int64_t next = row[1].as<int64_t>();
    segment = row[3].as<int32_t>();  // the same for every row: now() is the transaction's
    if (row[2].as<int32_t>() != segment) {
      new_segment_queues.push_back(q);
      new_segment_firsts.push_back(next);
    }
    for (size_t i : by_queue[q]) out[i] = Appended{q, next++, false, false, 0};
    next_offsets.push_back(next);
  }
  tx.exec_prepared(kAdvanceQueues.name, topic.topic_id, IntArray(queue_ids),
                   IntArray(next_offsets), segment);
  if (!new_segment_queues.empty()) {
    // A queue's first write into this segment: make sure its partition exists (normally
    // created ahead by maintenance; then this is a catalog lookup and nothing more).
    tx.exec_prepared(kEnsureSegments.name, 0);
    tx.exec_prepared(kInsertQueueSegments.name, topic.topic_id, segment,
                     IntArray(new_segment_queues), IntArray(new_segment_firsts));
  }
  std::vector<int64_t> qs, offsets;
  std::vector<std::optional<std::string>> keys, headers, dedups;
  std::vector<const std::string*> payloads;
  for (size_t i = 0; i < messages.size(); ++i) {
    const NewMessage& m = *messages[i];
    qs.push_back(out[i].queue);
    offsets.push_back(out[i].offset);
    keys.push_back(m.key);
    payloads.push_back(&m.payload);
    headers.push_back(m.headers_json);
    dedups.push_back(m.dedup_id.empty() ? std::nullopt : std::optional<std::string>(m.dedup_id));
  }
  tx.exec_prepared(kInsertMessages.name, topic.topic_id, IntArray(qs), IntArray(offsets),
                   TextArray(keys), ByteaArray(payloads), TextArray(headers), TextArray(dedups),
                   segment);
  *topic_gone = false;
  return out;
}

// Consume-side helpers: each runs inside the Lease transaction.
struct Budget {
  uint32_t max_messages;
  uint64_t max_bytes;
  size_t taken = 0;
  uint64_t bytes = 0;
  bool Fits(const LeasedMessage& m) const {
    return taken < max_messages &&
           (taken == 0 || max_bytes == 0 || bytes + m.payload.size() <= max_bytes);
  }
  void Take(const LeasedMessage& m) {
    ++taken;
    bytes += m.payload.size();
  }
  uint32_t Left() const { return taken >= max_messages ? 0 : max_messages - taken; }
};

struct DueLease {
  uint32_t queue;
  int64_t offset;
  int32_t attempt;
  std::string state;
};

std::string ExpiredReason(uint32_t max_attempts) {
  return absl::StrCat("max delivery attempts (", max_attempts,
                      ") reached: lease expired without commit");
}

// Delivers `due` leases again (in the given order): those whose last allowed attempt expired go
// to dead letters; the rest get attempt + 1, a new token and a new deadline.
void Redeliver(pqxx::work& tx, const GroupPolicy& group, int64_t topic_id,
               const std::vector<DueLease>& due, uint32_t visibility_ms, Budget& budget,
               LeaseBatch& batch) {
  std::vector<int64_t> dead_t, dead_o;
  std::vector<uint32_t> dead_q;
  std::vector<std::string> dead_why;
  std::vector<uint32_t> qs;
  std::vector<int64_t> os;
  for (const DueLease& d : due) {
    if (d.state == "delivered" && d.attempt >= static_cast<int32_t>(group.max_delivery_attempts)) {
      dead_t.push_back(topic_id);
      dead_q.push_back(d.queue);
      dead_o.push_back(d.offset);
      dead_why.push_back(ExpiredReason(group.max_delivery_attempts));
    } else {
      qs.push_back(d.queue);
      os.push_back(d.offset);
    }
  }
  if (!dead_t.empty()) {
    tx.exec_prepared(kDeadLetterLeases.name, group.group_id, IntArray(dead_t), IntArray(dead_q),
                     IntArray(dead_o), TextArray(dead_why));
  }
  if (qs.empty()) return;
  std::map<QueueOffset, LeasedMessage> found;
  for (const auto& row :
       tx.exec_prepared(kSelectMessagesAt.name, topic_id, IntArray(qs), IntArray(os))) {
    LeasedMessage m = MessageFromRow(row);
    found.emplace(QueueOffset{m.queue, m.offset}, std::move(m));
  }
  std::vector<uint32_t> renew_q;
  std::vector<int64_t> renew_o;
  std::vector<LeasedMessage> kept;
  for (size_t i = 0; i < qs.size(); ++i) {
    auto it = found.find(QueueOffset{qs[i], os[i]});
    if (it == found.end()) continue;  // removed by retention; see the retention sweep
    if (!budget.Fits(it->second)) break;
    budget.Take(it->second);
    renew_q.push_back(qs[i]);
    renew_o.push_back(os[i]);
    kept.push_back(std::move(it->second));
  }
  if (renew_q.empty()) return;
  std::map<QueueOffset, std::pair<int32_t, int64_t>> renewed;
  for (const auto& row :
       tx.exec_prepared(kRenewLeases.name, group.group_id, topic_id, IntArray(renew_q),
                        IntArray(renew_o), visibility_ms)) {
    renewed[QueueOffset{row[0].as<uint32_t>(), row[1].as<int64_t>()}] = {row[2].as<int32_t>(),
                                                                        row[3].as<int64_t>()};
  }
  for (LeasedMessage& m : kept) {
    auto r = renewed.find(QueueOffset{m.queue, m.offset});
    if (r == renewed.end()) continue;
    m.attempt = r->second.first;
    m.lease_token = r->second.second;
    batch.messages.push_back(std::move(m));
  }
}

struct Readable {
  uint32_t queue;
  int64_t from;  // delivered_offset
  int64_t end;   // next_offset
  int64_t take = 0;
};

// Delivers messages never delivered to the group from `readable` queues (whose group_queues
// rows this transaction holds), shared round robin from a random first queue.
void DeliverNew(pqxx::work& tx, int64_t group_id, int64_t topic_id,
                std::vector<Readable> readable, uint32_t visibility_ms, Budget& budget,
                LeaseBatch& batch) {
  if (readable.empty() || budget.Left() == 0) return;
  thread_local std::mt19937 rng{std::random_device{}()};
  const size_t start = rng() % readable.size();
  uint32_t left = budget.Left();
  for (bool progress = true; left > 0 && progress;) {
    progress = false;
    for (size_t k = 0; k < readable.size() && left > 0; ++k) {
      Readable& r = readable[(start + k) % readable.size()];
      if (r.from + r.take < r.end) {
        ++r.take;
        --left;
        progress = true;
      }
    }
  }
  std::vector<uint32_t> rq;
  std::vector<int64_t> rfirst, rstop;
  std::map<uint32_t, int64_t> delivered;  // queue -> new delivered_offset (-1: unchanged)
  for (const Readable& r : readable) {
    if (r.take == 0) continue;
    rq.push_back(r.queue);
    rfirst.push_back(r.from);
    rstop.push_back(r.from + r.take);
    delivered[r.queue] = r.from + r.take;
  }
  if (rq.empty()) return;
  std::vector<LeasedMessage> fresh;
  bool cut = false;
  for (const auto& row : tx.exec_prepared(kSelectMessageRanges.name, topic_id, IntArray(rq),
                                          IntArray(rfirst), IntArray(rstop))) {
    LeasedMessage m = MessageFromRow(row);
    if (cut || !budget.Fits(m)) {
      // Over the byte budget: this queue resumes here next time; later queues keep their
      // position (rows come in queue order).
      if (!cut) delivered[m.queue] = m.offset;
      for (auto& [q, d] : delivered) {
        if (q > m.queue) d = -1;
      }
      cut = true;
      continue;
    }
    budget.Take(m);
    fresh.push_back(std::move(m));
  }
  std::vector<uint32_t> dq;
  std::vector<int64_t> dd;
  for (const auto& [q, d] : delivered) {
    if (d < 0) continue;
    dq.push_back(q);
    dd.push_back(d);
  }
  if (!dq.empty()) {
    tx.exec_prepared(kAdvanceDelivered.name, group_id, topic_id, IntArray(dq), IntArray(dd));
  }
  if (fresh.empty()) return;
  std::vector<uint32_t> lq;
  std::vector<int64_t> lo;
  for (const auto& m : fresh) {
    lq.push_back(m.queue);
    lo.push_back(m.offset);
  }
  std::map<QueueOffset, int64_t> tokens;
  for (const auto& row : tx.exec_prepared(kInsertLeases.name, group_id, topic_id, IntArray(lq),
                                          IntArray(lo), visibility_ms)) {
    tokens[QueueOffset{row[0].as<uint32_t>(), row[1].as<int64_t>()}] = row[2].as<int64_t>();
  }
  for (LeasedMessage& m : fresh) {
    m.attempt = 1;
    m.lease_token = tokens.at(QueueOffset{m.queue, m.offset});
    batch.messages.push_back(std::move(m));
  }
}

}  // namespace

namespace store_internal {

void NotifyCommitted(pqxx::connection& c, const std::vector<int64_t>& topic_ids) {
  if (topic_ids.empty()) return;
  try {
    pqxx::nontransaction n(c);
    n.exec_prepared(kNotifyTopics.name, IntArray(topic_ids));
  } catch (const std::exception&) {
    // The messages are committed; waiting consumers find them at their next poll.
  }
}

TopicInfo TopicFromRow(const pqxx::row& row) {
  TopicInfo t;
  t.topic_id = row[0].as<int64_t>();
  t.name = row[1].as<std::string>();
  t.queue_count = row[2].as<uint32_t>();
  t.retention_ms = row[3].as<int64_t>();
  t.dedup_window_ms = row[4].as<int64_t>();
  t.created_at_ms = row[5].as<int64_t>();
  t.ordered = row[6].as<bool>();
  return t;
}

GroupPolicy GroupFromRow(const pqxx::row& row) {
  GroupPolicy g;
  g.group_id = row[0].as<int64_t>();
  g.name = row[1].as<std::string>();
  g.max_delivery_attempts = row[2].as<uint32_t>();
  for (absl::string_view part : absl::StrSplit(row[3].as<std::string>(), ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (absl::SimpleAtoi(part, &v)) g.backoff_ms.push_back(v);
  }
  g.backoff_min_ms = row[4].as<int64_t>();
  g.backoff_max_ms = row[5].as<int64_t>();
  g.ordered = row[6].as<bool>();
  g.start_latest = row[7].as<bool>();
  g.created_at_ms = row[8].as<int64_t>();
  return g;
}

absl::Status TopicNotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("topic \"", name,
                                          "\" does not exist; create it with "
                                          "`ferryctl topic create ",
                                          name, "`"));
}

absl::Status GroupNotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("group \"", name, "\" does not exist"));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

RefColumns ColumnsForGroup(const std::vector<DeliveryRef>& refs, int64_t group_id,
                           std::vector<SettleResult>& out) {
  RefColumns c;
  for (size_t i = 0; i < refs.size(); ++i) {
    if (refs[i].group_id != group_id) {
      out[i].status = SettleStatus::kWrongGroup;
      continue;
    }
    c.index.push_back(i);
    c.topics.push_back(refs[i].topic_id);
    c.queues.push_back(refs[i].queue);
    c.offsets.push_back(refs[i].offset);
    c.tokens.push_back(refs[i].lease_token);
  }
  return c;
}

}  // namespace store_internal

int64_t RetryDelayMs(const GroupPolicy& policy, bool ordered, int32_t attempt) {
  if (ordered) return kOrderedRetryMs;
  const int32_t n = std::max(attempt, 1);
  if (policy.backoff_min_ms > 0) {
    const int64_t cap = policy.backoff_max_ms > 0 ? policy.backoff_max_ms : policy.backoff_min_ms;
    int64_t d = policy.backoff_min_ms;
    for (int32_t i = 1; i < n && d < cap; ++i) d *= 2;
    return std::min(d, cap);
  }
  if (policy.backoff_ms.empty()) return 10000;
  return policy.backoff_ms[std::min<size_t>(static_cast<size_t>(n - 1), policy.backoff_ms.size() - 1)];
}

std::vector<pg::Statement> PgStore::Statements() {
  return {kSelectTopic,          kSelectTopicById,     kInsertTopic,         kInsertQueues,
          kListTopics,           kDescribeQueues,      kCountDelayed,        kDeleteTopic,
          kDeleteTopicMessages,  kLockDedupIds,        kSelectDedup,         kLockQueues,
          kAdvanceQueues,        kInsertMessages,      kUpsertDedup,
          kNextDelayedIds,       kInsertDelayed,       kTakeDueDelayed,      kPlaceDelayedDedup,
          kCancelDelayed,        kCancelDelayedCheck,  kSelectGroup,         kInsertGroup,
          kUpdateGroup,          kGroupTopics,         kInsertGroupQueues,   kSelectDueLeases,
          kSelectMessagesAt,     kRenewLeases,         kSelectReadableQueues, kLockOrderedQueues,   kCountQueueLeases,
          kSelectQueueLeases,    kSelectMessageRanges, kAdvanceDelivered,    kInsertLeases,
          kSelectLeasesAt,       kDeleteLeases,        kAckLeases,        kScheduleRetries,     kReleaseLaterLeases,
          kExtendLeases,         kSelectGroupQueuesAt, kDeadLetterLeases,    kGroupLag,
          kGroupDelayed,         kLockGroupPositions,  kFirstOffsetAt,       kReleaseGroupLeases,
          kListDeadLetters,      kTakeDeadLetters,     kRedriveLeases,       kDeleteDeadLetters,
          kNotifyTopics,         kRetentionQueues,     kExpireQueuePrefix,   kReceiptKey,
          kDeleteExpiredDedup,   kInsertQueueSegments, kEnsureSegments,      kListSegments,
          kSegmentRetention,     kRetireSegment};
}

std::vector<pg::Statement> PgStore::AllStatements() {
  std::vector<pg::Statement> all = Statements();
  for (const pg::Statement& st : TxnStatements()) all.push_back(st);
  return all;
}

// ---- topics -------------------------------------------------------------------------------

absl::StatusOr<TopicInfo> PgStore::CreateTopic(TopicInfo topic) {
  absl::Status status = pg::WithConnection(pool_, "create topic", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result r;
    try {
      r = tx.exec_prepared(kInsertTopic.name, topic.name, topic.queue_count, topic.retention_ms,
                           topic.dedup_window_ms, topic.ordered);
    } catch (const pqxx::unique_violation&) {
      return absl::AlreadyExistsError(absl::StrCat("topic \"", topic.name, "\" already exists"));
    }
    topic.topic_id = r[0][0].as<int64_t>();
    topic.created_at_ms = r[0][1].as<int64_t>();
    tx.exec_prepared(kInsertQueues.name, topic.topic_id, topic.queue_count);
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return topic;
}

absl::StatusOr<std::vector<TopicInfo>> PgStore::ListTopics() {
  std::vector<TopicInfo> topics;
  absl::Status status = pg::WithConnection(pool_, "list topics", [&](pqxx::connection& c) {
    topics.clear();
    pqxx::read_transaction tx(c);
    for (const auto& row : tx.exec_prepared(kListTopics.name)) topics.push_back(TopicFromRow(row));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return topics;
}

absl::StatusOr<TopicDescription> PgStore::DescribeTopic(const std::string& name) {
  TopicDescription out;
  absl::Status status = pg::WithConnection(pool_, "describe topic", [&](pqxx::connection& c) {
    out = TopicDescription{};
    pqxx::read_transaction tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, name);
    if (t.empty()) return TopicNotFound(name);
    out.topic = TopicFromRow(t[0]);
    for (const auto& row : tx.exec_prepared(kDescribeQueues.name, out.topic.topic_id)) {
      out.queues.push_back(
          QueueState{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int64_t>()});
    }
    out.delayed_messages =
        tx.exec_prepared(kCountDelayed.name, out.topic.topic_id)[0][0].as<int64_t>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::Status PgStore::DeleteTopic(const std::string& name) {
  return pg::WithConnection(pool_, "delete topic", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    // Deleting the topic row first waits for producers holding its queue rows, so the
    // message delete below (a new snapshot) also removes what they committed meanwhile.
    pqxx::result r = tx.exec_prepared(kDeleteTopic.name, name);
    if (r.empty()) return TopicNotFound(name);
    tx.exec_prepared(kDeleteTopicMessages.name, r[0][0].as<int64_t>());
    tx.commit();
    return absl::OkStatus();
  });
}

// ---- produce and delayed messages ----------------------------------------------------------

namespace store_internal {

absl::StatusOr<std::vector<Appended>> AppendToTopic(pqxx::work& tx, const TopicInfo& info,
                                                    const std::vector<NewMessage>& messages,
                                                    const QueueChooser& choose_queue,
                                                    int64_t now_ms) {
  std::vector<Appended> out(messages.size());

  // 1. Dedup: the first message with a dedup_id in this call owns it; later ones in the call,
  //    and every one already stored (or waiting delayed) within the window, are duplicates.
  std::vector<bool> store(messages.size(), true);
  std::unordered_map<std::string, size_t> owner;  // dedup_id -> index of first message
  std::vector<std::string> dedup_ids;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& d = messages[i].dedup_id;
    if (d.empty()) continue;
    if (owner.emplace(d, i).second) dedup_ids.push_back(d);
  }
  std::unordered_map<std::string, Appended> stored_before;
  if (!dedup_ids.empty()) {
    const std::string ids = TextArray(dedup_ids);
    tx.exec_prepared(kLockDedupIds.name, info.topic_id, ids);
    for (const auto& row : tx.exec_prepared(kSelectDedup.name, info.topic_id, ids)) {
      Appended a;
      a.duplicate = true;
      if (!row[3].is_null()) {
        a.delayed = true;
        a.delayed_id = row[3].as<int64_t>();
      } else {
        a.queue = row[1].as<uint32_t>();
        a.offset = row[2].as<int64_t>();
      }
      stored_before.emplace(row[0].as<std::string>(), a);
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& d = messages[i].dedup_id;
    if (!d.empty() && (stored_before.count(d) != 0 || owner[d] != i)) store[i] = false;
  }

  // 2. Due now: into the queues. Later: into delayed_messages.
  std::vector<size_t> now_idx, later_idx;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!store[i]) continue;
    (messages[i].deliver_at_ms > now_ms ? later_idx : now_idx).push_back(i);
  }
  if (!now_idx.empty()) {
    std::vector<const NewMessage*> rows;
    for (size_t i : now_idx) rows.push_back(&messages[i]);
    bool gone = false;
    std::vector<Appended> appended = AppendRows(tx, info, rows, choose_queue, &gone);
    if (gone) return TopicNotFound(info.name);
    for (size_t k = 0; k < now_idx.size(); ++k) out[now_idx[k]] = appended[k];
  }
  if (!later_idx.empty()) {
    std::vector<int64_t> ids;
    for (const auto& row : tx.exec_prepared(kNextDelayedIds.name, later_idx.size())) {
      ids.push_back(row[0].as<int64_t>());
    }
    std::vector<std::optional<std::string>> keys, headers, dedups;
    std::vector<const std::string*> payloads;
    std::vector<int64_t> at;
    for (size_t k = 0; k < later_idx.size(); ++k) {
      const NewMessage& m = messages[later_idx[k]];
      keys.push_back(m.key);
      payloads.push_back(&m.payload);
      headers.push_back(m.headers_json);
      dedups.push_back(m.dedup_id.empty() ? std::nullopt
                                          : std::optional<std::string>(m.dedup_id));
      at.push_back(m.deliver_at_ms);
      out[later_idx[k]] = Appended{0, 0, false, true, ids[k]};
    }
    tx.exec_prepared(kInsertDelayed.name, info.topic_id, IntArray(ids), TextArray(keys),
                     ByteaArray(payloads), TextArray(headers), TextArray(dedups), IntArray(at));
  }

  // 3. Record the new dedup claims (a delayed one points at its delayed_id until moved).
  std::vector<std::string> claim_ids;
  std::vector<std::optional<int64_t>> claim_q, claim_o, claim_delayed;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!store[i] || messages[i].dedup_id.empty()) continue;
    claim_ids.push_back(messages[i].dedup_id);
    if (out[i].delayed) {
      claim_q.push_back(std::nullopt);
      claim_o.push_back(std::nullopt);
      claim_delayed.push_back(out[i].delayed_id);
    } else {
      claim_q.push_back(out[i].queue);
      claim_o.push_back(out[i].offset);
      claim_delayed.push_back(std::nullopt);
    }
  }
  if (!claim_ids.empty()) {
    tx.exec_prepared(kUpsertDedup.name, info.topic_id, TextArray(claim_ids), IntArray(claim_q),
                     IntArray(claim_o), IntArray(claim_delayed), info.dedup_window_ms);
  }

  // 4. Duplicates get the original position.
  for (size_t i = 0; i < messages.size(); ++i) {
    if (store[i]) continue;
    const std::string& d = messages[i].dedup_id;
    auto before = stored_before.find(d);
    out[i] = before != stored_before.end() ? before->second : out[owner[d]];
    out[i].duplicate = true;
  }
  return out;
}

}  // namespace store_internal

absl::StatusOr<std::vector<Appended>> PgStore::Append(const std::string& topic,
                                                      const std::vector<NewMessage>& messages,
                                                      const QueueChooser& choose_queue) {
  std::vector<Appended> out;
  const int64_t now_ms = NowMs();
  absl::Status status = pg::WithConnection(pool_, "produce", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    const TopicInfo info = TopicFromRow(t[0]);
    auto appended = AppendToTopic(tx, info, messages, choose_queue, now_ms);
    if (!appended.ok()) return appended.status();
    out = *std::move(appended);
    tx.commit();
    NotifyCommitted(c, {info.topic_id});
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<int64_t> PgStore::MoveDueDelayed(int64_t limit, const QueueChooser& choose_queue) {
  int64_t moved = 0;
  absl::Status status = pg::WithConnection(pool_, "move delayed", [&](pqxx::connection& c) {
    moved = 0;
    pqxx::work tx(c);
    struct Due {
      int64_t id;
      int64_t at_ms;
      NewMessage message;
    };
    std::map<int64_t, std::vector<Due>> by_topic;
    std::vector<int64_t> appended_to;
    for (const auto& row : tx.exec_prepared(kTakeDueDelayed.name, limit)) {
      Due d;
      d.id = row[0].as<int64_t>();
      if (!row[2].is_null()) d.message.key = row[2].as<std::string>();
      d.message.payload = pqxx::binarystring(row[3]).str();
      d.message.headers_json = row[4].as<std::string>();
      if (!row[5].is_null()) d.message.dedup_id = row[5].as<std::string>();
      d.at_ms = row[6].as<int64_t>();
      by_topic[row[1].as<int64_t>()].push_back(std::move(d));
    }
    for (auto& [topic_id, due] : by_topic) {
      std::sort(due.begin(), due.end(), [](const Due& a, const Due& b) {
        return std::tie(a.at_ms, a.id) < std::tie(b.at_ms, b.id);
      });
      pqxx::result t = tx.exec_prepared(kSelectTopicById.name, topic_id);
      if (t.empty()) continue;  // topic deleted: its delayed rows went with it
      const TopicInfo info = TopicFromRow(t[0]);
      std::vector<const NewMessage*> rows;
      for (const Due& d : due) rows.push_back(&d.message);
      bool gone = false;
      std::vector<Appended> placed = AppendRows(tx, info, rows, choose_queue, &gone);
      if (gone) return absl::AbortedError("move delayed: topic deleted meanwhile; retry");
      appended_to.push_back(topic_id);
      std::vector<int64_t> ids, offsets;
      std::vector<uint32_t> queues;
      for (size_t k = 0; k < due.size(); ++k) {
        if (due[k].message.dedup_id.empty()) continue;
        ids.push_back(due[k].id);
        queues.push_back(placed[k].queue);
        offsets.push_back(placed[k].offset);
      }
      if (!ids.empty()) {
        tx.exec_prepared(kPlaceDelayedDedup.name, topic_id, IntArray(ids), IntArray(queues),
                         IntArray(offsets));
      }
      moved += static_cast<int64_t>(due.size());
      const int64_t now_ms = NowMs();
      for (const Due& d : due) {
        ferry::log::Get("broker.delayed")
            ->debug("event=moved topic_id={} delayed_id={} due_ms={} late_ms={}", topic_id, d.id,
                    d.at_ms, now_ms - d.at_ms);
      }
    }
    tx.commit();
    NotifyCommitted(c, appended_to);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return moved;
}

absl::Status PgStore::CancelDelayed(const std::string& topic, int64_t delayed_id) {
  return pg::WithConnection(pool_, "cancel delayed", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    const int64_t topic_id = t[0][0].as<int64_t>();
    if (tx.exec_prepared(kCancelDelayedCheck.name, topic_id, delayed_id).empty()) {
      return absl::NotFoundError(absl::StrCat("no delayed message ", delayed_id, " in topic \"",
                                              topic, "\" (unknown, or already delivered)"));
    }
    tx.exec_prepared(kCancelDelayed.name, topic_id, delayed_id);
    tx.commit();
    return absl::OkStatus();
  });
}

// ---- consume ----------------------------------------------------------------------------

absl::StatusOr<LeaseBatch> PgStore::Lease(const LeaseRequest& req) {
  LeaseBatch batch;
  absl::Status status = pg::WithConnection(pool_, "consume", [&](pqxx::connection& c) {
    batch = LeaseBatch{};
    pqxx::work tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, req.topic);
    if (t.empty()) return TopicNotFound(req.topic);
    const TopicInfo info = TopicFromRow(t[0]);
    batch.topic_id = info.topic_id;

    pqxx::result g = tx.exec_prepared(kSelectGroup.name, req.group);
    if (g.empty()) {
      tx.exec_prepared(kInsertGroup.name, req.group, req.start_latest);  // waits for a racer
      g = tx.exec_prepared(kSelectGroup.name, req.group);
      if (g.empty()) return absl::AbortedError("consume: the group was being created; retry");
    }
    const GroupPolicy group = GroupFromRow(g[0]);
    batch.group_id = group.group_id;
    const auto position = std::make_pair(batch.group_id, batch.topic_id);
    bool known;
    {
      std::lock_guard<std::mutex> lock(known_mu_);
      known = known_positions_.count(position) != 0;
    }
    if (!known) {
      tx.exec_prepared(kInsertGroupQueues.name, batch.group_id, batch.topic_id,
                       group.start_latest);
    }

    Budget budget{req.max_messages, req.max_bytes};
    if (group.ordered || info.ordered) {
      // One consumer per queue: take queues nobody holds; a queue with unsettled leases (all
      // due) is delivered from them, in offset order, before anything new.
      std::vector<uint32_t> due_queues;
      std::vector<Readable> fresh;
      std::vector<Readable> locked;
      for (const auto& row :
           tx.exec_prepared(kLockOrderedQueues.name, batch.group_id, batch.topic_id)) {
        locked.push_back(
            Readable{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int64_t>()});
      }
      std::map<uint32_t, std::pair<int64_t, int64_t>> counts;  // queue -> (leases, held)
      if (!locked.empty()) {
        std::vector<uint32_t> ids;
        for (const Readable& r : locked) ids.push_back(r.queue);
        for (const auto& row : tx.exec_prepared(kCountQueueLeases.name, batch.group_id,
                                                batch.topic_id, IntArray(ids))) {
          counts[row[0].as<uint32_t>()] = {row[1].as<int64_t>(), row[2].as<int64_t>()};
        }
      }
      for (const Readable& r : locked) {
        const auto [leases, held] = counts[r.queue];
        if (held > 0) continue;
        if (leases > 0) {
          due_queues.push_back(r.queue);
        } else if (r.from < r.end) {
          fresh.push_back(r);
        }
      }
      if (!due_queues.empty()) {
        std::vector<DueLease> due;
        for (const auto& row : tx.exec_prepared(kSelectQueueLeases.name, batch.group_id,
                                                batch.topic_id, IntArray(due_queues))) {
          due.push_back(DueLease{row[0].as<uint32_t>(), row[1].as<int64_t>(),
                                 row[2].as<int32_t>(), row[3].as<std::string>()});
        }
        Redeliver(tx, group, batch.topic_id, due, req.visibility_ms, budget, batch);
      }
      DeliverNew(tx, batch.group_id, batch.topic_id, std::move(fresh), req.visibility_ms, budget,
                 batch);
    } else {
      std::vector<DueLease> due;
      for (const auto& row : tx.exec_prepared(kSelectDueLeases.name, batch.group_id,
                                              batch.topic_id, req.max_messages)) {
        due.push_back(DueLease{row[0].as<uint32_t>(), row[1].as<int64_t>(),
                               row[2].as<int32_t>(), row[3].as<std::string>()});
      }
      Redeliver(tx, group, batch.topic_id, due, req.visibility_ms, budget, batch);
      if (budget.Left() > 0) {
        // One queue first (from a random start); more only if its backlog does not fill
        // the batch. Large backlogs: one queue per consumer, consumers in parallel.
        thread_local std::mt19937 rng{std::random_device{}()};
        const uint32_t start = info.queue_count > 0 ? rng() % info.queue_count : 0;
        std::vector<Readable> readable;
        std::vector<uint32_t> held;
        int64_t backlog = 0;
        for (int round = 0; round < 2 && backlog < budget.Left(); ++round) {
          const int64_t limit = round == 0 ? 1 : info.queue_count;
          for (const auto& row : tx.exec_prepared(kSelectReadableQueues.name, batch.group_id,
                                                  batch.topic_id, start, IntArray(held), limit)) {
            readable.push_back(
                Readable{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int64_t>()});
            held.push_back(readable.back().queue);
            backlog += readable.back().end - readable.back().from;
          }
          if (readable.empty()) break;  // nothing readable (or all held by others)
        }
        DeliverNew(tx, batch.group_id, batch.topic_id, std::move(readable), req.visibility_ms,
                   budget, batch);
      }
    }
    tx.commit();
    if (!known) {
      std::lock_guard<std::mutex> lock(known_mu_);
      known_positions_.insert(position);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return batch;
}

// ---- settle -----------------------------------------------------------------------------

absl::StatusOr<std::vector<SettleResult>> PgStore::Settle(
    const std::string& group_name, const std::vector<Settlement>& settlements) {
  std::vector<SettleResult> out;
  absl::Status status = pg::WithConnection(pool_, "commit", [&](pqxx::connection& c) {
    out.assign(settlements.size(), SettleResult{});
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group_name);
    if (g.empty()) {
      // No such group. A receipt of a group that still exists was issued to that other group
      // (INVALID_RECEIPT, found by the bad-input suite: it said TOPIC_NOT_FOUND); the others
      // belong to a group that was deleted: kTopicGone.
      std::vector<int64_t> ids;
      for (const auto& st : settlements) ids.push_back(st.ref.group_id);
      std::set<int64_t> existing;
      for (const auto& row : tx.exec_params(
               "SELECT group_id FROM consumer_groups WHERE group_id = ANY($1::bigint[])",
               pg::IntArray(ids))) {
        existing.insert(row[0].as<int64_t>());
      }
      for (size_t i = 0; i < settlements.size(); ++i) {
        if (existing.count(settlements[i].ref.group_id)) out[i].status = SettleStatus::kWrongGroup;
      }
      return absl::OkStatus();
    }
    const GroupPolicy group = GroupFromRow(g[0]);

    std::vector<size_t> mine;
    for (size_t i = 0; i < settlements.size(); ++i) {
      if (settlements[i].ref.group_id != group.group_id) {
        out[i].status = SettleStatus::kWrongGroup;
      } else {
        mine.push_back(i);
      }
    }
    if (mine.empty()) return absl::OkStatus();

    // The common case first: ACKs of current deliveries, deleted in one statement. Whatever
    // it did not match (stale or settled receipts, RETRY, DEAD_LETTER) is classified below.
    {
      std::vector<int64_t> at, ao, ak;
      std::vector<uint32_t> aq;
      for (size_t i : mine) {
        if (settlements[i].outcome != Outcome::kAck) continue;
        at.push_back(settlements[i].ref.topic_id);
        aq.push_back(settlements[i].ref.queue);
        ao.push_back(settlements[i].ref.offset);
        ak.push_back(settlements[i].ref.lease_token);
      }
      std::set<Position> acked;
      if (!at.empty()) {
        for (const auto& row : tx.exec_prepared(kAckLeases.name, group.group_id, IntArray(at),
                                                IntArray(aq), IntArray(ao), IntArray(ak))) {
          acked.insert(Position{row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>()});
        }
      }
      std::vector<size_t> rest;
      for (size_t i : mine) {
        const DeliveryRef& ref = settlements[i].ref;
        if (settlements[i].outcome == Outcome::kAck &&
            acked.erase(Position{ref.topic_id, ref.queue, ref.offset}) != 0) {
          out[i].status = SettleStatus::kCommitted;
        } else {
          rest.push_back(i);
        }
      }
      mine.swap(rest);
    }
    if (mine.empty()) {
      tx.commit();
      return absl::OkStatus();
    }

    // Lock the named leases and see which receipts are current (same token).
    std::vector<int64_t> lt, lo;
    std::vector<uint32_t> lq;
    for (size_t i : mine) {
      lt.push_back(settlements[i].ref.topic_id);
      lq.push_back(settlements[i].ref.queue);
      lo.push_back(settlements[i].ref.offset);
    }
    struct Current {
      int64_t token;
      int32_t attempt;
      std::string state;
    };
    std::map<Position, Current> leases;
    for (const auto& row :
         tx.exec_prepared(kSelectLeasesAt.name, group.group_id, IntArray(lt), IntArray(lq),
                          IntArray(lo))) {
      leases[Position{row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>()}] =
          Current{row[3].as<int64_t>(), row[4].as<int32_t>(), row[5].as<std::string>()};
    }
    std::set<std::pair<int64_t, uint32_t>> positions;
    if (leases.size() < mine.size()) {
      for (const auto& row : tx.exec_prepared(kSelectGroupQueuesAt.name, group.group_id,
                                              IntArray(lt), IntArray(lq))) {
        positions.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>());
      }
    }
    std::map<int64_t, bool> ordered_topic;  // topic_id -> ordered
    auto is_ordered = [&](int64_t topic_id) {
      if (group.ordered) return true;
      auto it = ordered_topic.find(topic_id);
      if (it == ordered_topic.end()) {
        pqxx::result t = tx.exec_prepared(kSelectTopicById.name, topic_id);
        it = ordered_topic.emplace(topic_id, !t.empty() && TopicFromRow(t[0]).ordered).first;
      }
      return it->second;
    };

    std::vector<int64_t> ack_t, ack_o, retry_t, retry_o, retry_d, dead_t, dead_o;
    std::vector<uint32_t> ack_q, retry_q, dead_q;
    std::vector<std::string> dead_why;
    std::vector<size_t> retry_idx;
    std::set<Position> claimed;  // settled by an earlier entry of this call
    for (size_t i : mine) {
      const Settlement& st = settlements[i];
      const Position pos{st.ref.topic_id, st.ref.queue, st.ref.offset};
      auto lease = leases.find(pos);
      if (lease == leases.end() || claimed.count(pos) != 0) {
        out[i].status = positions.count({st.ref.topic_id, st.ref.queue}) != 0 ||
                                claimed.count(pos) != 0
                            ? SettleStatus::kAlreadyCommitted
                            : SettleStatus::kTopicGone;
        continue;
      }
      if (lease->second.token != st.ref.lease_token) {
        out[i].status = SettleStatus::kStale;
        continue;
      }
      if (st.outcome != Outcome::kAck && lease->second.state != "delivered") {
        out[i].status = SettleStatus::kAlreadyCommitted;
        out[i].detail = "a retry of this delivery is already scheduled";
        continue;
      }
      claimed.insert(pos);
      switch (st.outcome) {
        case Outcome::kAck:
          ack_t.push_back(st.ref.topic_id);
          ack_q.push_back(st.ref.queue);
          ack_o.push_back(st.ref.offset);
          out[i].status = SettleStatus::kCommitted;
          break;
        case Outcome::kRetry:
          if (lease->second.attempt >= static_cast<int32_t>(group.max_delivery_attempts)) {
            dead_t.push_back(st.ref.topic_id);
            dead_q.push_back(st.ref.queue);
            dead_o.push_back(st.ref.offset);
            dead_why.push_back(absl::StrCat("max delivery attempts (", group.max_delivery_attempts,
                                            ") reached: last outcome RETRY"));
            out[i].status = SettleStatus::kDeadLettered;
            out[i].detail = dead_why.back();
          } else {
            retry_t.push_back(st.ref.topic_id);
            retry_q.push_back(st.ref.queue);
            retry_o.push_back(st.ref.offset);
            retry_d.push_back(st.retry_delay_ms > 0
                                  ? st.retry_delay_ms
                                  : RetryDelayMs(group, is_ordered(st.ref.topic_id),
                                                 lease->second.attempt));
            retry_idx.push_back(i);
            out[i].status = SettleStatus::kRetryScheduled;
          }
          break;
        case Outcome::kDeadLetter:
          dead_t.push_back(st.ref.topic_id);
          dead_q.push_back(st.ref.queue);
          dead_o.push_back(st.ref.offset);
          dead_why.push_back(absl::StrCat("rejected: ", st.reason.empty() ? "(no reason given)"
                                                                          : st.reason));
          out[i].status = SettleStatus::kDeadLettered;
          break;
      }
    }
    if (!ack_t.empty()) {
      tx.exec_prepared(kDeleteLeases.name, group.group_id, IntArray(ack_t), IntArray(ack_q),
                       IntArray(ack_o));
    }
    if (!dead_t.empty()) {
      tx.exec_prepared(kDeadLetterLeases.name, group.group_id, IntArray(dead_t), IntArray(dead_q),
                       IntArray(dead_o), TextArray(dead_why));
    }
    if (!retry_t.empty()) {
      pqxx::result r = tx.exec_prepared(kScheduleRetries.name, group.group_id, IntArray(retry_t),
                                        IntArray(retry_q), IntArray(retry_o), IntArray(retry_d));
      const int64_t now_ms = NowMs();
      for (size_t k = 0; k < retry_idx.size(); ++k) {
        out[retry_idx[k]].retry_at_ms = now_ms + retry_d[k];
      }
      // Ordered: what was delivered after a retried message waits for it, in order.
      std::vector<int64_t> ot, oo;
      std::vector<uint32_t> oq;
      for (size_t k = 0; k < retry_t.size(); ++k) {
        if (!is_ordered(retry_t[k])) continue;
        ot.push_back(retry_t[k]);
        oq.push_back(retry_q[k]);
        oo.push_back(retry_o[k]);
      }
      if (!ot.empty()) {
        tx.exec_prepared(kReleaseLaterLeases.name, group.group_id, IntArray(ot), IntArray(oq),
                         IntArray(oo));
      }
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<SettleResult>> PgStore::ExtendLeases(
    const std::string& group_name, const std::vector<DeliveryRef>& refs, uint32_t visibility_ms) {
  std::vector<SettleResult> out;
  absl::Status status = pg::WithConnection(pool_, "extend lease", [&](pqxx::connection& c) {
    out.assign(refs.size(), SettleResult{});
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group_name);
    if (g.empty()) return absl::OkStatus();
    const int64_t group_id = g[0][0].as<int64_t>();
    const RefColumns cols = ColumnsForGroup(refs, group_id, out);
    const auto& [mine, t, o, k, q] = cols;
    if (mine.empty()) return absl::OkStatus();
    std::set<Position> extended, leased;
    std::set<std::pair<int64_t, uint32_t>> positions;
    for (const auto& row : tx.exec_prepared(kExtendLeases.name, group_id, IntArray(t), IntArray(q),
                                            IntArray(o), visibility_ms, IntArray(k))) {
      extended.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
    }
    if (extended.size() < mine.size()) {
      for (const auto& row : tx.exec_prepared(kSelectLeasesAt.name, group_id, IntArray(t),
                                              IntArray(q), IntArray(o))) {
        leased.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
      }
      for (const auto& row :
           tx.exec_prepared(kSelectGroupQueuesAt.name, group_id, IntArray(t), IntArray(q))) {
        positions.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>());
      }
    }
    for (size_t i : mine) {
      const Position pos{refs[i].topic_id, refs[i].queue, refs[i].offset};
      if (extended.count(pos) != 0) {
        out[i].status = SettleStatus::kExtended;
      } else if (leased.count(pos) != 0) {
        out[i].status = SettleStatus::kStale;  // another delivery, or waiting for a retry
      } else if (positions.count({refs[i].topic_id, refs[i].queue}) != 0) {
        out[i].status = SettleStatus::kAlreadyCommitted;
      } else {
        out[i].status = SettleStatus::kTopicGone;
      }
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

// ---- groups -----------------------------------------------------------------------------

namespace {

pqxx::result ApplyGroupUpdate(pqxx::work& tx, const std::string& name, const GroupUpdate& u) {
  return tx.exec_prepared(kUpdateGroup.name, name, OptText(u.max_delivery_attempts),
                          u.backoff_ms ? IntArray(*u.backoff_ms) : std::string(),
                          OptText(u.backoff_min_ms), OptText(u.backoff_max_ms),
                          OptText(u.ordered), OptText(u.start_latest));
}

}  // namespace

absl::StatusOr<GroupPolicy> PgStore::CreateGroup(const std::string& name, const GroupUpdate& policy,
                                                 const std::vector<std::string>& topics) {
  GroupPolicy out;
  absl::Status status = pg::WithConnection(pool_, "create group", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_prepared(kInsertGroup.name, name, policy.start_latest.value_or(false)).empty()) {
      return absl::AlreadyExistsError(absl::StrCat("group \"", name, "\" already exists"));
    }
    pqxx::result g = ApplyGroupUpdate(tx, name, policy);
    out = GroupFromRow(g[0]);
    for (const std::string& topic : topics) {
      pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
      if (t.empty()) return TopicNotFound(topic);
      tx.exec_prepared(kInsertGroupQueues.name, out.group_id, t[0][0].as<int64_t>(),
                       out.start_latest);
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<GroupPolicy> PgStore::UpdateGroup(const std::string& name,
                                                 const GroupUpdate& update) {
  GroupPolicy out;
  absl::Status status = pg::WithConnection(pool_, "update group", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result g = ApplyGroupUpdate(tx, name, update);
    if (g.empty()) return GroupNotFound(name);
    out = GroupFromRow(g[0]);
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::pair<GroupPolicy, std::vector<std::string>>> PgStore::DescribeGroup(
    const std::string& name) {
  std::pair<GroupPolicy, std::vector<std::string>> out;
  absl::Status status = pg::WithConnection(pool_, "describe group", [&](pqxx::connection& c) {
    out.second.clear();
    pqxx::read_transaction tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, name);
    if (g.empty()) return GroupNotFound(name);
    out.first = GroupFromRow(g[0]);
    for (const auto& row : tx.exec_prepared(kGroupTopics.name, out.first.group_id)) {
      out.second.push_back(row[0].as<std::string>());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<std::pair<uint32_t, int64_t>>> PgStore::ResetGroup(
    const std::string& group_name, const std::string& topic, const ResetTarget& target) {
  std::vector<std::pair<uint32_t, int64_t>> out;
  absl::Status status = pg::WithConnection(pool_, "reset group", [&](pqxx::connection& c) {
    out.clear();
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group_name);
    if (g.empty()) return GroupNotFound(group_name);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    const GroupPolicy group = GroupFromRow(g[0]);
    const TopicInfo info = TopicFromRow(t[0]);
    tx.exec_prepared(kInsertGroupQueues.name, group.group_id, info.topic_id, group.start_latest);
    struct Pos {
      int64_t delivered, end, first;
    };
    std::map<uint32_t, Pos> queues;  // waits for consumers reading these queues right now
    for (const auto& row :
         tx.exec_prepared(kLockGroupPositions.name, group.group_id, info.topic_id)) {
      queues[row[0].as<uint32_t>()] =
          Pos{row[1].as<int64_t>(), row[2].as<int64_t>(), row[3].as<int64_t>()};
    }
    std::map<uint32_t, int64_t> to;
    switch (target.kind) {
      case ResetTarget::Kind::kEarliest:
        for (const auto& [q, p] : queues) to[q] = p.first;
        break;
      case ResetTarget::Kind::kLatest:
        for (const auto& [q, p] : queues) to[q] = p.end;
        break;
      case ResetTarget::Kind::kTimestamp:
        for (const auto& row :
             tx.exec_prepared(kFirstOffsetAt.name, info.topic_id, target.timestamp_ms)) {
          to[row[0].as<uint32_t>()] = row[1].as<int64_t>();
        }
        break;
      case ResetTarget::Kind::kOffsets:
        for (const auto& [q, p] : queues) to[q] = p.delivered;
        for (const auto& [q, offset] : target.offsets) {
          auto it = queues.find(q);
          if (it == queues.end()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "offsets: topic \"", topic, "\" has no queue ", q, " (it has ", queues.size(),
                ")"));
          }
          to[q] = std::clamp(offset, it->second.first, it->second.end);
        }
        break;
    }
    // Everything leased or waiting for a retry is released: delivered again if still ahead of
    // the new position, otherwise skipped like the rest of what lies behind it.
    tx.exec_prepared(kReleaseGroupLeases.name, group.group_id, info.topic_id);
    std::vector<uint32_t> qs;
    std::vector<int64_t> ds;
    for (const auto& [q, d] : to) {
      qs.push_back(q);
      ds.push_back(d);
      out.emplace_back(q, d);
    }
    tx.exec_prepared(kAdvanceDelivered.name, group.group_id, info.topic_id, IntArray(qs),
                     IntArray(ds));
    tx.commit();
    NotifyCommitted(c, {info.topic_id});
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

// ---- dead letters -------------------------------------------------------------------------

absl::StatusOr<std::vector<DeadLetterRow>> PgStore::ListDeadLetters(const std::string& group,
                                                                    const std::string& topic,
                                                                    int64_t after_id,
                                                                    int64_t limit) {
  std::vector<DeadLetterRow> out;
  absl::Status status = pg::WithConnection(pool_, "list dead letters", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    for (const auto& row : tx.exec_prepared(kListDeadLetters.name, g[0][0].as<int64_t>(), topic,
                                            after_id, limit)) {
      DeadLetterRow d;
      d.id = row[0].as<int64_t>();
      d.topic = row[1].as<std::string>();
      d.queue = row[2].as<uint32_t>();
      d.offset = row[3].as<int64_t>();
      if (!row[4].is_null()) d.key = row[4].as<std::string>();
      if (!row[5].is_null()) d.payload = pqxx::binarystring(row[5]).str();
      d.headers_json = row[6].as<std::string>();
      d.attempts = row[7].as<int32_t>();
      d.reason = row[8].as<std::string>();
      d.produced_at_ms = row[9].as<int64_t>();
      d.first_delivered_at_ms = row[10].as<int64_t>();
      d.last_delivered_at_ms = row[11].as<int64_t>();
      d.dead_at_ms = row[12].as<int64_t>();
      out.push_back(std::move(d));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<RedriveReport> PgStore::RedriveDeadLetters(const std::string& group,
                                                          const std::vector<int64_t>& ids,
                                                          bool all, const std::string& to_topic,
                                                          const QueueChooser& choose_queue) {
  RedriveReport report;
  absl::Status status = pg::WithConnection(pool_, "redrive", [&](pqxx::connection& c) {
    report = RedriveReport{};
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    const int64_t group_id = g[0][0].as<int64_t>();
    std::optional<TopicInfo> target;
    if (!to_topic.empty()) {
      pqxx::result t = tx.exec_prepared(kSelectTopic.name, to_topic);
      if (t.empty()) return TopicNotFound(to_topic);
      target = TopicFromRow(t[0]);
    }
    std::vector<int64_t> done, lt, lo;
    std::vector<uint32_t> lq;
    std::vector<NewMessage> produce;
    std::set<int64_t> seen, notify;
    for (const auto& row : tx.exec_prepared(kTakeDeadLetters.name, group_id, all, IntArray(ids))) {
      const int64_t id = row[0].as<int64_t>();
      seen.insert(id);
      const bool payload_kept = !row[5].is_null();
      if (target) {
        if (!payload_kept) {
          report.failures.emplace_back(id, "the message was removed by retention before it died");
          continue;
        }
        NewMessage m;
        if (!row[4].is_null()) m.key = row[4].as<std::string>();
        m.payload = pqxx::binarystring(row[5]).str();
        m.headers_json = row[6].as<std::string>();
        produce.push_back(std::move(m));
        done.push_back(id);
        continue;
      }
      const bool topic_exists = row[7].as<bool>(), stored = row[8].as<bool>(),
                 position = row[9].as<bool>(), leased = row[10].as<bool>();
      if (!topic_exists || !position) {
        report.failures.emplace_back(id, "its topic was deleted; use --to-topic");
      } else if (!stored) {
        report.failures.emplace_back(id, "retention removed the message; use --to-topic");
      } else if (leased) {
        report.failures.emplace_back(id, "the message is being delivered to the group already");
      } else {
        lt.push_back(row[1].as<int64_t>());
        lq.push_back(row[2].as<uint32_t>());
        lo.push_back(row[3].as<int64_t>());
        notify.insert(lt.back());
        done.push_back(id);
      }
    }
    for (int64_t id : ids) {
      if (!all && seen.count(id) == 0) {
        report.failures.emplace_back(id, "no such dead letter in this group");
      }
    }
    if (!lt.empty()) {
      tx.exec_prepared(kRedriveLeases.name, group_id, IntArray(lt), IntArray(lq), IntArray(lo));
    }
    if (!produce.empty()) {
      std::vector<const NewMessage*> rows;
      for (const NewMessage& m : produce) rows.push_back(&m);
      bool gone = false;
      AppendRows(tx, *target, rows, choose_queue, &gone);
      if (gone) return TopicNotFound(to_topic);
      notify.insert(target->topic_id);
    }
    if (!done.empty()) {
      tx.exec_prepared(kDeleteDeadLetters.name, group_id, false, IntArray(done));
    }
    report.redriven = static_cast<int64_t>(done.size());
    tx.commit();
    NotifyCommitted(c, std::vector<int64_t>(notify.begin(), notify.end()));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return report;
}

absl::StatusOr<int64_t> PgStore::PurgeDeadLetters(const std::string& group,
                                                  const std::vector<int64_t>& ids, bool all) {
  int64_t purged = 0;
  absl::Status status = pg::WithConnection(pool_, "purge dead letters", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    purged = tx.exec_prepared(kDeleteDeadLetters.name, g[0][0].as<int64_t>(), all, IntArray(ids))
                 .affected_rows();
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return purged;
}

// ---- inspection and upkeep ------------------------------------------------------------

absl::StatusOr<GroupLagReport> PgStore::GroupLag(const std::string& group,
                                                 const std::string& topic) {
  GroupLagReport out;
  absl::Status status = pg::WithConnection(pool_, "group lag", [&](pqxx::connection& c) {
    out = GroupLagReport{};
    pqxx::read_transaction tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    if (!topic.empty() && tx.exec_prepared(kSelectTopic.name, topic).empty()) {
      return TopicNotFound(topic);
    }
    for (const auto& row : tx.exec_prepared(kGroupLag.name, group, topic)) {
      QueueLag l;
      l.topic = row[0].as<std::string>();
      l.queue = row[1].as<uint32_t>();
      l.end_offset = row[2].as<int64_t>();
      l.committed_offset = row[3].as<int64_t>();
      l.delivered_offset = row[4].as<int64_t>();
      l.in_flight = row[5].as<int64_t>();
      l.retrying = row[6].as<int64_t>();
      l.dead_letters = row[7].as<int64_t>();
      l.oldest_unacked_age_ms = row[8].as<int64_t>();
      out.queues.push_back(std::move(l));
    }
    for (const auto& row : tx.exec_prepared(kGroupDelayed.name, g[0][0].as<int64_t>(), topic)) {
      out.delayed.emplace_back(row[0].as<std::string>(), row[1].as<int64_t>());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::string> PgStore::ReceiptKey() {
  std::string key;
  absl::Status status = pg::WithConnection(pool_, "read receipt key", [&](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    pqxx::result r = tx.exec_prepared(kReceiptKey.name);
    if (r.empty()) return absl::FailedPreconditionError("broker_meta has no receipt_hmac_key");
    key = pqxx::binarystring(r[0][0]).str();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return key;
}

absl::StatusOr<int64_t> PgStore::DeleteExpiredDedup(int64_t limit) {
  int64_t deleted = 0;
  absl::Status status = pg::WithConnection(pool_, "expire dedup", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    deleted = tx.exec_prepared(kDeleteExpiredDedup.name, limit).affected_rows();
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return deleted;
}

absl::Status PgStore::EnsureSegments(int ahead) {
  return pg::WithConnection(pool_, "create segments", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec_prepared(kEnsureSegments.name, ahead);
    tx.commit();
    return absl::OkStatus();
  });
}

namespace {

// One broker at a time drops segments (session advisory lock on the connection it runs on).
constexpr long long kRetentionLockKey = 0x6665727279 + 1;

// Drops every segment whose messages are all past their topics' retention. Runs DDL outside
// any transaction (DETACH PARTITION CONCURRENTLY does not block producers or consumers).
int64_t DropExpiredSegments(pqxx::connection& c) {
  int64_t dropped = 0;
  {
    pqxx::nontransaction nt(c);
    if (!nt.exec("SELECT pg_try_advisory_lock(" + std::to_string(kRetentionLockKey) + ")")[0][0]
             .as<bool>()) {
      return 0;  // another broker is at it
    }
  }
  struct Unlock {
    pqxx::connection& c;
    ~Unlock() {
      try {
        pqxx::nontransaction nt(c);
        nt.exec("SELECT pg_advisory_unlock(" + std::to_string(kRetentionLockKey) + ")");
      } catch (...) {
        // The lock goes with the session if the connection broke.
      }
    }
  } unlock{c};
  std::vector<int32_t> segments;
  int32_t current = 0;
  int64_t segment_ms = 0, now_ms = 0;
  {
    pqxx::read_transaction tx(c);
    for (const auto& row : tx.exec_prepared(kListSegments.name)) {
      segments.push_back(row[0].as<int32_t>());
      current = row[1].as<int32_t>();
      segment_ms = row[2].as<int64_t>() * 1000;
      now_ms = row[3].as<int64_t>();
    }
  }
  for (int32_t s : segments) {
    if (s >= current) break;
    {
      pqxx::work tx(c);
      const int64_t retention = tx.exec_prepared(kSegmentRetention.name, s)[0][0].as<int64_t>();
      const int64_t end_ms = (static_cast<int64_t>(s) + 1) * segment_ms;
      if (end_ms + std::max<int64_t>(retention, 0) > now_ms) continue;  // still needed
      tx.exec_prepared(kRetireSegment.name, s);
      tx.commit();
    }
    // One statement per nontransaction: libpqxx allows one open transaction per connection.
    const std::string partition = c.quote_name("messages_s" + std::to_string(s));
    auto run = [&c](const std::string& sql) {
      pqxx::nontransaction nt(c);
      nt.exec(sql);
    };
    try {
      run("ALTER TABLE messages DETACH PARTITION " + partition + " CONCURRENTLY");
    } catch (const pqxx::sql_error&) {
      run("ALTER TABLE messages DETACH PARTITION " + partition + " FINALIZE");  // was pending
    }
    run("DROP TABLE IF EXISTS " + partition);
    ++dropped;
  }
  return dropped;
}

}  // namespace

absl::StatusOr<RetentionReport> PgStore::ApplyRetention(int64_t batch) {
  RetentionReport report;
  absl::Status status = pg::WithConnection(pool_, "retention", [&](pqxx::connection& c) {
    report = RetentionReport{};
    {
      pqxx::work tx(c);
      tx.exec_prepared(kEnsureSegments.name, 2);
      tx.commit();
    }
    // 1. Whole segments past retention: dropped, no row by row work, no dead tuples.
    report.segments = DropExpiredSegments(c);

    // 2. Topics with a shorter retention than others in the same segment: their expired prefix
    //    is deleted by offset range (index range, one short transaction per queue).
    struct Expiring {
      int64_t topic_id;
      uint32_t queue;
      int64_t first, end, retention_ms;
    };
    std::vector<Expiring> queues;
    {
      pqxx::read_transaction tx(c);
      for (const auto& row : tx.exec_prepared(kRetentionQueues.name)) {
        queues.push_back(Expiring{row[0].as<int64_t>(), row[1].as<uint32_t>(),
                                  row[2].as<int64_t>(), row[3].as<int64_t>(),
                                  row[4].as<int64_t>()});
      }
    }
    for (const Expiring& q : queues) {
      pqxx::work tx(c);
      pqxx::result r = tx.exec_prepared(kExpireQueuePrefix.name, q.topic_id, q.queue, q.first,
                                        q.retention_ms, batch, q.end);
      report.messages += r[0][0].as<int64_t>();
      report.leases += r[0][1].as<int64_t>();
      tx.commit();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return report;
}

}  // namespace ferry::broker
