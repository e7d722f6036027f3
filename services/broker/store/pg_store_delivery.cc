// PgStore, delivery: leases for Consume (due redeliveries first, then new messages; ordered
// groups one queue at a time). Settling them is pg_store_settle.cc.
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <unordered_map>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"
#include "common/log.h"
#include "common/pg/arrays.h"

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals

namespace {

// A Consume's first statement: the topic, the group (NULLs when it does not exist yet) and the
// lowest segment of the topic's queues (the partition bound of their ends; see
// FERRY_QUEUE_END_FROM).
// Leases commit flushed like everything else: an unflushed lease lost in a failover to a
// synchronous standby made its message come back as attempt 1 again (the chaos failover
// scenario caught it), so attempts would be undercounted; W2 did not measurably gain from it.
constexpr pg::Statement kLeaseStart{
    "broker_lease_start",
    "SELECT t.topic_id, t.name, t.queue_count,"
    " t.retention_ms, t.dedup_window_ms, (extract(epoch FROM t.created_at) * 1000)::bigint,"
    " t.ordered, g.group_id, g.name, g.max_delivery_attempts,"
    " array_to_string(g.backoff_ms, ','), g.backoff_min_ms, g.backoff_max_ms, g.ordered,"
    " g.start_latest, (extract(epoch FROM g.created_at) * 1000)::bigint,"
    " COALESCE((SELECT min(q.segment) FROM queues q WHERE q.topic_id = t.topic_id), 0)"
    " FROM topics t LEFT JOIN consumer_groups g ON g.name = $2 WHERE t.name = $1"};

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

constexpr pg::Statement kSelectMessagesAt{
    "broker_select_messages_at",
    "SELECT " FERRY_MESSAGE_COLUMNS
    " FROM unnest($2::int[], $3::bigint[]) AS r(q, o) CROSS JOIN LATERAL"
    " (SELECT * FROM messages m WHERE m.topic_id = $1 AND m.queue_id = r.q AND m.msg_offset = "
    "r.o AND m.segment >= $4::int" FERRY_SEGMENT_FLOOR("r.q", "r.o") " LIMIT 1) m"};

// The lowest segment holding one of these offsets: kSelectMessagesAt's partition bound (a
// parameter, so that partitions below it are never opened; see FERRY_QUEUE_END_FROM).
constexpr pg::Statement kLowestSegmentAt{
    "broker_lowest_segment_at",
    "SELECT COALESCE(min(" FERRY_SEGMENT_HOLDING("$1", "r.q", "r.o") "), 0)"
    " FROM unnest($2::int[], $3::bigint[]) AS r(q, o)"};

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
// spread over the queues instead of one of them holding every queue for one batch. The lock
// writes no row version (nothing on group_queues is updated per batch: issue 15, W6); the
// positions are read after it, by kQueuePositions.
// $4: the lowest segment of the topic's queues (kLeaseStart), the partition bound for the ends.
#define FERRY_READABLE_QUEUES(extra, limit, lock)                                           \
  "SELECT gq.queue_id FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id"       \
  " AND q.queue_id = gq.queue_id WHERE gq.group_id = $1 AND gq.topic_id = $2" extra         \
  " AND greatest(" FERRY_GROUP_DELIVERED("gq") ", q.first_offset) < " FERRY_QUEUE_END_FROM( \
      "q", "$4::int") " ORDER BY gq.queue_id < $3, gq.queue_id LIMIT " limit                \
                      " FOR UPDATE OF gq" lock

constexpr pg::Statement kSelectReadableQueues{
    "broker_select_readable_queues",
    FERRY_READABLE_QUEUES(" AND gq.queue_id <> ALL($5::int[])", "$6", " SKIP LOCKED")};

// When every readable queue is held by another consumer of the group: wait for one of them
// (rotated like above) instead of coming back empty. The holder's transaction is short (a read
// and one range row); kQueuePositions then says whether anything is left.
constexpr pg::Statement kWaitReadableQueue{"broker_wait_readable_queue",
                                           FERRY_READABLE_QUEUES("", "1", "")};

// Where the group is on queues it holds, read after taking them (a statement of its own, so
// its snapshot sees what the previous holder committed): the next offset to deliver, the
// queue's end, and the group's newest range on the queue if every message of it is settled
// (it goes when a newer one is recorded).
constexpr pg::Statement kQueuePositions{
    "broker_queue_positions",
    "SELECT gq.queue_id, p.at, " FERRY_QUEUE_END_FROM("q", "$4::int") ","
    " CASE WHEN r.deadline = 'infinity' THEN r.first_offset END, " FERRY_SEGMENT_HOLDING("$2", "gq.queue_id", "p.at")
    " FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " LEFT JOIN LATERAL (SELECT r.end_offset, r.first_offset, r.deadline FROM group_ranges r"
    "  WHERE r.group_id = gq.group_id AND r.topic_id = gq.topic_id AND r.queue_id = gq.queue_id"
    "  ORDER BY r.first_offset DESC LIMIT 1) r ON true"
    " CROSS JOIN LATERAL (SELECT greatest(gq.delivered_offset, COALESCE(r.end_offset, 0),"
    "  q.first_offset) AS at) p"
    " WHERE gq.group_id = $1 AND gq.topic_id = $2 AND gq.queue_id = ANY($3::int[])"
    " ORDER BY gq.queue_id"};

// Ordered mode, step 1: lock every queue of the group nobody else is reading right now.
constexpr pg::Statement kLockOrderedQueues{
    "broker_lock_ordered_queues",
    "SELECT gq.queue_id, p.at, " FERRY_QUEUE_END_FROM("q", "$3::int") ", " FERRY_SEGMENT_HOLDING("$2", "gq.queue_id", "p.at")
    " FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " CROSS JOIN LATERAL (SELECT greatest(gq.delivered_offset, q.first_offset) AS at) p"
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
    "  AND m.msg_offset >= r.first AND m.msg_offset < r.stop AND m.segment >= $5::int"
    FERRY_SEGMENT_FLOOR("r.q", "r.first")
    "  ORDER BY m.msg_offset LIMIT r.stop - r.first) m"
    " ORDER BY m.queue_id, m.msg_offset"};

constexpr pg::Statement kInsertLeases{
    "broker_insert_leases",
    "INSERT INTO group_leases (group_id, topic_id, queue_id, msg_offset, attempt, lease_token,"
    " deadline, first_delivered_at, last_delivered_at)"
    " SELECT $1, $2, q, o, 1, nextval('lease_token_seq'),"
    " now() + $5 * interval '1 millisecond', now(), now()"
    " FROM unnest($3::int[], $4::bigint[]) AS r(q, o)"
    " RETURNING queue_id, msg_offset, lease_token"};

}  // namespace

namespace store_internal {

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

}  // namespace store_internal

namespace {

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
  const std::string q_array = IntArray(qs), o_array = IntArray(os);
  const int32_t lowest_segment =
      tx.exec_prepared(kLowestSegmentAt.name, topic_id, q_array, o_array)[0][0].as<int32_t>();
  for (const auto& row :
       tx.exec_prepared(kSelectMessagesAt.name, topic_id, q_array, o_array, lowest_segment)) {
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
  for (const auto& row : tx.exec_prepared(kRenewLeases.name, group.group_id, topic_id,
                                          IntArray(renew_q), IntArray(renew_o), visibility_ms)) {
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
  int64_t from;  // the group's delivered position
  int64_t end;   // the queue's end
  int64_t take = 0;
  int64_t settled_range = -1;  // first offset of the group's newest range if all settled
  int32_t segment = 0;         // the segment holding `from` (or an earlier one)
};

// Delivers messages never delivered to the group from `readable` queues (whose group_queues
// rows this transaction holds), shared round robin from a random first queue.
void DeliverNew(pqxx::work& tx, int64_t group_id, int64_t topic_id, std::vector<Readable> readable,
                uint32_t visibility_ms, bool as_ranges, Budget& budget, LeaseBatch& batch) {
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
  int32_t lowest_segment = std::numeric_limits<int32_t>::max();
  std::map<uint32_t, int64_t> delivered;  // queue -> new delivered_offset (-1: unchanged)
  for (const Readable& r : readable) {
    if (r.take == 0) continue;
    rq.push_back(r.queue);
    rfirst.push_back(r.from);
    rstop.push_back(r.from + r.take);
    lowest_segment = std::min(lowest_segment, r.segment);
    delivered[r.queue] = r.from + r.take;
  }
  if (rq.empty()) return;
  std::vector<LeasedMessage> fresh;
  bool cut = false;
  for (const auto& row : tx.exec_prepared(kSelectMessageRanges.name, topic_id, IntArray(rq),
                                          IntArray(rfirst), IntArray(rstop), lowest_segment)) {
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
  if (!dq.empty() && !as_ranges) {  // with ranges, the newest range says it
    tx.exec_prepared(kAdvanceDelivered.name, group_id, topic_id, IntArray(dq), IntArray(dd));
  }
  if (fresh.empty()) return;
  if (as_ranges) {
    // One range per queue: [first delivered, last delivered + 1); offsets in between that were
    // not read (removed by retention meanwhile) are settled from the start.
    std::vector<NewRange> ranges;
    for (const auto& m : fresh) {
      if (ranges.empty() || ranges.back().queue != m.queue) {
        ranges.push_back(NewRange{m.queue, m.offset, m.offset, {}});
      }
      NewRange& r = ranges.back();
      for (int64_t h = r.end; h < m.offset; ++h) r.holes.push_back(h);
      r.end = m.offset + 1;
    }
    const std::map<uint32_t, int64_t> tokens =
        InsertRanges(tx, group_id, topic_id, ranges, visibility_ms);
    // The settled range that marked the position before goes now that a newer one does.
    std::vector<RangeKey> superseded;
    for (const NewRange& r : ranges) {
      for (const Readable& q : readable) {
        if (q.queue == r.queue && q.settled_range >= 0) {
          superseded.emplace_back(topic_id, q.queue, q.settled_range);
        }
      }
    }
    DeleteRanges(tx, group_id, superseded);
    for (LeasedMessage& m : fresh) {
      m.attempt = 1;
      m.lease_token = tokens.at(m.queue);
      batch.messages.push_back(std::move(m));
    }
    return;
  }
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

std::vector<pg::Statement> DeliveryStatements() {
  return {kLeaseStart,        kSelectDueLeases,      kSelectMessagesAt,  kLowestSegmentAt,
          kRenewLeases,       kSelectReadableQueues, kLockOrderedQueues, kCountQueueLeases,
          kSelectQueueLeases, kSelectMessageRanges,  kInsertLeases,      kWaitReadableQueue,
          kQueuePositions};
}

}  // namespace store_internal

void PgStore::LeaseInTx(pqxx::work& tx, const LeaseRequest& req, const TopicInfo& info,
                        const GroupPolicy& group, int32_t lowest_segment, LeaseBatch& batch) {
  batch.group_id = group.group_id;
  batch.topic_id = info.topic_id;
  const auto position = std::make_pair(batch.group_id, batch.topic_id);
  Budget budget{req.max_messages, req.max_bytes};
  if (group.ordered || info.ordered) {
    // One consumer per queue: take queues nobody holds; a queue with unsettled leases (all
    // due) is delivered from them, in offset order, before anything new.
    std::vector<uint32_t> due_queues;
    std::vector<Readable> fresh;
    std::vector<Readable> locked;
    // Ranges (left from before the group or topic became ordered) become leases, so the
    // counts below see every message in flight.
    DissolveRanges(tx, batch.group_id, batch.topic_id, /*due_only=*/false, 1 << 20);
    for (const auto& row : tx.exec_prepared(kLockOrderedQueues.name, batch.group_id, batch.topic_id,
                                            lowest_segment)) {
      Readable r{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int64_t>()};
      r.segment = row[3].as<int32_t>();
      locked.push_back(r);
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
        due.push_back(DueLease{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int32_t>(),
                               row[3].as<std::string>()});
      }
      Redeliver(tx, group, batch.topic_id, due, req.visibility_ms, budget, batch);
    }
    DeliverNew(tx, batch.group_id, batch.topic_id, std::move(fresh), req.visibility_ms,
               /*as_ranges=*/false, budget, batch);
  } else {
    // Ranges past their deadline: their unsettled messages become due leases, redelivered
    // below like any other.
    bool look = false;
    {
      const auto now = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> lock(due_mu_);
      auto& last = due_checked_[position];
      if (now - last >= std::chrono::milliseconds(kDueRangeCheckMs)) {
        last = now;
        look = true;
      }
    }
    if (look) {
      DissolveRanges(tx, batch.group_id, batch.topic_id, /*due_only=*/true, req.max_messages);
    }
    std::vector<DueLease> due;
    for (const auto& row : tx.exec_prepared(kSelectDueLeases.name, batch.group_id, batch.topic_id,
                                            req.max_messages)) {
      due.push_back(DueLease{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int32_t>(),
                             row[3].as<std::string>()});
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
      auto take_positions = [&](const pqxx::result& locked) {
        std::vector<uint32_t> ids;
        for (const auto& row : locked) ids.push_back(row[0].as<uint32_t>());
        held.insert(held.end(), ids.begin(), ids.end());
        if (ids.empty()) return;
        for (const auto& row : tx.exec_prepared(kQueuePositions.name, batch.group_id,
                                                batch.topic_id, IntArray(ids), lowest_segment)) {
          Readable r{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int64_t>()};
          if (!row[3].is_null()) r.settled_range = row[3].as<int64_t>();
          r.segment = row[4].as<int32_t>();
          if (r.from >= r.end) continue;  // drained by the consumer that held it before
          backlog += r.end - r.from;
          readable.push_back(r);
        }
      };
      for (int round = 0; round < 2 && backlog < budget.Left(); ++round) {
        const int64_t limit = round == 0 ? 1 : info.queue_count;
        const size_t before = held.size();
        take_positions(tx.exec_prepared(kSelectReadableQueues.name, batch.group_id, batch.topic_id,
                                        start, lowest_segment, IntArray(held), limit));
        if (held.size() == before) break;  // nothing readable (or all held by others)
      }
      if (readable.empty() && budget.taken == 0) {
        // Every queue with a backlog is being read by another consumer of the group: wait
        // for one rather than answer empty (more consumers than queues add throughput).
        take_positions(tx.exec_prepared(kWaitReadableQueue.name, batch.group_id, batch.topic_id,
                                        start, lowest_segment));
      }
      DeliverNew(tx, batch.group_id, batch.topic_id, std::move(readable), req.visibility_ms,
                 /*as_ranges=*/true, budget, batch);
    }
  }
}

absl::StatusOr<LeaseBatch> PgStore::Lease(const LeaseRequest& req) {
  auto batches = LeaseMany({req});
  if (!batches.ok()) return batches.status();
  return std::move(batches->front());
}

absl::StatusOr<std::vector<LeaseBatch>> PgStore::LeaseMany(
    const std::vector<LeaseRequest>& requests) {
  std::vector<LeaseBatch> out;
  if (requests.empty()) return out;
  const LeaseRequest& first = requests.front();
  absl::Status status = pg::WithConnection(pool_, "consume", [&](pqxx::connection& c) {
    out.assign(requests.size(), LeaseBatch{});
    pqxx::work tx(c);
    // One round trip for the topic and the group (a Consume is about eight).
    pqxx::result start = tx.exec_prepared(kLeaseStart.name, first.topic, first.group);
    if (start.empty()) return TopicNotFound(first.topic);
    const TopicInfo info = TopicFromRow(start[0].slice(0, 7));
    std::optional<GroupPolicy> found;
    if (!start[0][7].is_null()) found = GroupFromRow(start[0].slice(7, 16));
    const int32_t lowest_segment = start[0][16].as<int32_t>();
    if (!found) {
      tx.exec_prepared(kInsertGroup.name, first.group, first.start_latest);  // waits for a racer
      pqxx::result g = tx.exec_prepared(kSelectGroup.name, first.group);
      if (g.empty()) return absl::AbortedError("consume: the group was being created; retry");
      found = GroupFromRow(g[0]);
    }
    const GroupPolicy group = *found;
    const auto position = std::make_pair(group.group_id, info.topic_id);
    bool known;
    {
      std::lock_guard<std::mutex> lock(known_mu_);
      known = known_positions_.count(position) != 0;
    }
    if (!known) {
      tx.exec_prepared(kInsertGroupQueues.name, group.group_id, info.topic_id, first.start_latest);
    }
    // One request after the other, in this transaction: each sees what those before it leased
    // (their ranges and leases), so they share the queues as separate Consume calls would.
    for (size_t i = 0; i < requests.size(); ++i) {
      LeaseInTx(tx, requests[i], info, group, lowest_segment, out[i]);
    }
    tx.commit();
    if (!known) {
      std::lock_guard<std::mutex> lock(known_mu_);
      known_positions_.insert(position);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

// ---- settle -----------------------------------------------------------------------------

}  // namespace ferry::broker
