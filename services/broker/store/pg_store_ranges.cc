// PgStore, range leases (migrations/broker/0006_delivery_ranges.sql): one row per delivered
// batch and queue. An ACK settles an offset in its range; anything else first takes the
// message out of its range into a group_leases row (same token, attempt, deadline), after
// which the per-message code handles it as before.
#include <absl/strings/numbers.h>
#include <absl/strings/str_split.h>

#include <map>
#include <set>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals

namespace {

// The range of the group holding each (topic, queue, offset), locked: the last range starting
// at or before the offset (one primary-key probe each), if the offset is below its end; and
// whether it is the group's newest range on the queue (one more probe: as NOT EXISTS it was
// planned as an anti-join over every range of the group, 7 ms a Commit under a held snapshot).
constexpr pg::Statement kSelectRangesAt{
    "broker_select_ranges_at",
    "SELECT x.topic_id, x.queue_id, x.first_offset,"
    " CASE WHEN x.deadline < 'infinity' THEN x.end_offset ELSE x.first_offset END,"
    " x.lease_token, array_to_string(x.settled, ','), (SELECT n.first_offset FROM group_ranges n"
    "  WHERE n.group_id = $1 AND n.topic_id = x.topic_id AND n.queue_id = x.queue_id"
    "  AND n.first_offset > x.first_offset ORDER BY n.first_offset LIMIT 1) IS NULL"
    " FROM unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o) CROSS JOIN LATERAL"
    " (SELECT * FROM group_ranges g WHERE g.group_id = $1 AND g.topic_id = r.t"
    "  AND g.queue_id = r.q AND g.first_offset <= r.o ORDER BY g.first_offset DESC LIMIT 1"
    "  FOR UPDATE) x WHERE r.o < x.end_offset"};

constexpr pg::Statement kSettleInRange{
    "broker_settle_in_range",
    "UPDATE group_ranges SET settled = settled || $5::bigint[] WHERE group_id = $1"
    " AND topic_id = $2 AND queue_id = $3 AND first_offset = $4"};

constexpr pg::Statement kSettleNewestRange{
    "broker_settle_newest_range",
    "UPDATE group_ranges SET settled = '{}', deadline = 'infinity'"
    " WHERE group_id = $1 AND topic_id = $2 AND queue_id = $3 AND first_offset = $4"};

constexpr pg::Statement kDeleteRanges{
    "broker_delete_ranges",
    "DELETE FROM group_ranges WHERE ctid = ANY(ARRAY(SELECT x.ctid FROM unnest($2::bigint[],"
    " $3::int[], $4::bigint[]) AS r(t, q, f) CROSS JOIN LATERAL (SELECT g.ctid FROM group_ranges g"
    "  WHERE g.group_id = $1 AND g.topic_id = r.t AND g.queue_id = r.q AND g.first_offset = r.f"
    "  LIMIT 1) x))"};

// Per-message lease rows for offsets of ranges, with the range's token, attempt 1, deadline.
constexpr pg::Statement kTakeOutOfRanges{
    "broker_take_out_of_ranges",
    "INSERT INTO group_leases (group_id, topic_id, queue_id, msg_offset, attempt, lease_token,"
    " deadline, first_delivered_at, last_delivered_at)"
    " SELECT $1, g.topic_id, g.queue_id, r.o, 1, g.lease_token, g.deadline, g.delivered_at,"
    " g.delivered_at FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::bigint[])"
    " AS r(t, q, f, o) CROSS JOIN LATERAL (SELECT * FROM group_ranges g WHERE g.group_id = $1"
    "  AND g.topic_id = r.t AND g.queue_id = r.q AND g.first_offset = r.f LIMIT 1) g"};

// Ranges whose deadline passed (or, with $4, every range of the group on the topic) become
// per-message leases of their unsettled offsets, due as the range was.
#define FERRY_DISSOLVE_RANGES(where, lock)                                                        \
  "WITH gone AS (DELETE FROM group_ranges g WHERE g.ctid = ANY(ARRAY(SELECT ctid FROM"            \
  " group_ranges WHERE group_id = $1 AND topic_id = $2" where " ORDER BY deadline LIMIT $3 " lock \
  ")) RETURNING g.*),"                                                                            \
  " fold AS (UPDATE group_queues gq SET delivered_offset = greatest(gq.delivered_offset, x.e)"    \
  "  FROM (SELECT group_id, topic_id, queue_id, max(end_offset) AS e FROM gone"                   \
  "  GROUP BY 1, 2, 3) x WHERE gq.group_id = x.group_id AND gq.topic_id = x.topic_id"             \
  "  AND gq.queue_id = x.queue_id)"                                                               \
  " INSERT INTO group_leases (group_id, topic_id, queue_id, msg_offset, attempt, lease_token,"    \
  " deadline, first_delivered_at, last_delivered_at)"                                             \
  " SELECT gone.group_id, gone.topic_id, gone.queue_id, o.o, 1, gone.lease_token,"                \
  " gone.deadline, gone.delivered_at, gone.delivered_at FROM gone CROSS JOIN LATERAL"             \
  " generate_series(gone.first_offset, gone.end_offset - 1) AS o(o)"                              \
  " WHERE gone.deadline < 'infinity' AND o.o <> ALL(gone.settled)"

constexpr pg::Statement kDissolveDueRanges{
    "broker_dissolve_due_ranges",
    FERRY_DISSOLVE_RANGES(" AND deadline <= now()", "FOR UPDATE SKIP LOCKED")};

constexpr pg::Statement kDissolveAllRanges{"broker_dissolve_all_ranges",
                                           FERRY_DISSOLVE_RANGES("", "FOR UPDATE")};

constexpr pg::Statement kInsertRanges{
    "broker_insert_ranges",
    "INSERT INTO group_ranges (group_id, topic_id, queue_id, first_offset, end_offset,"
    " lease_token, deadline, delivered_at, settled)"
    " SELECT $1, $2, q, f, e, nextval('lease_token_seq'), now() + $6 * interval '1 millisecond',"
    " now(), string_to_array(s, ',')::bigint[]"
    " FROM unnest($3::int[], $4::bigint[], $5::bigint[], $7::text[]) AS r(q, f, e, s)"
    " RETURNING queue_id, lease_token"};

// Offsets the group holds unsettled in a range (whatever the token): a receipt for one of them
// that did not match is stale.
constexpr pg::Statement kSelectRangeMembersAt{
    "broker_select_range_members_at",
    "SELECT r.t, r.q, r.o FROM unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o)"
    " CROSS JOIN LATERAL (SELECT g.end_offset, g.settled, g.deadline FROM group_ranges g"
    "  WHERE g.group_id = $1 AND g.topic_id = r.t AND g.queue_id = r.q AND g.first_offset <= r.o"
    "  ORDER BY g.first_offset DESC LIMIT 1) x WHERE r.o < x.end_offset AND r.o <> ALL(x.settled)"
    " AND x.deadline < 'infinity'"};

}  // namespace

namespace store_internal {

std::vector<pg::Statement> RangeStatements() {
  return {kSelectRangesAt,  kSettleInRange,        kDeleteRanges,
          kTakeOutOfRanges, kDissolveDueRanges,    kDissolveAllRanges,
          kInsertRanges,    kSelectRangeMembersAt, kSettleNewestRange};
}

RangeHits RangeMembers(pqxx::work& tx, int64_t group_id, const std::vector<DeliveryRef>& refs,
                       const std::vector<size_t>& which) {
  RangeHits out;
  if (which.empty()) return out;
  // One probe per distinct (topic, queue, token): the receipts of one range share its token.
  std::map<std::tuple<int64_t, uint32_t, int64_t>, int64_t> lowest;
  for (size_t i : which) {
    auto [it, fresh] = lowest.emplace(
        std::make_tuple(refs[i].topic_id, refs[i].queue, refs[i].lease_token), refs[i].offset);
    if (!fresh) it->second = std::min(it->second, refs[i].offset);
  }
  std::vector<int64_t> t, o;
  std::vector<uint32_t> q;
  for (const auto& [k, off] : lowest) {
    t.push_back(std::get<0>(k));
    q.push_back(std::get<1>(k));
    o.push_back(off);
  }
  for (const auto& row :
       tx.exec_prepared(kSelectRangesAt.name, group_id, IntArray(t), IntArray(q), IntArray(o))) {
    RangeInfo r{row[3].as<int64_t>(), row[4].as<int64_t>(), {}, row[6].as<bool>()};
    for (absl::string_view s : absl::StrSplit(row[5].as<std::string>(), ',', absl::SkipEmpty())) {
      int64_t v = 0;
      if (absl::SimpleAtoi(s, &v)) r.settled.insert(v);
    }
    out.ranges.emplace(RangeKey{row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>()},
                       std::move(r));
  }
  for (size_t i : which) {
    const DeliveryRef& ref = refs[i];
    // The range holding the offset: the last one of (topic, queue) starting at or before it.
    auto it = out.ranges.upper_bound(RangeKey{ref.topic_id, ref.queue, ref.offset});
    if (it == out.ranges.begin()) continue;
    --it;
    const auto& [key, range] = *it;
    if (std::get<0>(key) != ref.topic_id || std::get<1>(key) != ref.queue ||
        ref.offset >= range.end || range.token != ref.lease_token ||
        range.settled.count(ref.offset) != 0) {
      continue;
    }
    out.member.emplace(i, key);
  }
  return out;
}

void SettleInRanges(pqxx::work& tx, int64_t group_id, RangeHits& hits,
                    const std::map<RangeKey, std::set<int64_t>>& offsets, bool take_out) {
  if (offsets.empty()) return;
  if (take_out) {
    std::vector<int64_t> t, f, o;
    std::vector<uint32_t> q;
    for (const auto& [key, offs] : offsets) {
      for (int64_t off : offs) {
        t.push_back(std::get<0>(key));
        q.push_back(std::get<1>(key));
        f.push_back(std::get<2>(key));
        o.push_back(off);
      }
    }
    tx.exec_prepared(kTakeOutOfRanges.name, group_id, IntArray(t), IntArray(q), IntArray(f),
                     IntArray(o));
  }
  // A range whose every offset is now settled goes; the others remember what was settled.
  std::vector<int64_t> dt, df;
  std::vector<uint32_t> dq;
  for (const auto& [key, offs] : offsets) {
    RangeInfo& range = hits.ranges.at(key);
    range.settled.insert(offs.begin(), offs.end());
    const bool complete =
        static_cast<int64_t>(range.settled.size()) >= range.end - std::get<2>(key);
    if (complete && range.newest) {
      tx.exec_prepared(kSettleNewestRange.name, group_id, std::get<0>(key), std::get<1>(key),
                       std::get<2>(key));
    } else if (complete) {
      dt.push_back(std::get<0>(key));
      dq.push_back(std::get<1>(key));
      df.push_back(std::get<2>(key));
    } else {
      tx.exec_prepared(kSettleInRange.name, group_id, std::get<0>(key), std::get<1>(key),
                       std::get<2>(key), IntArray(std::vector<int64_t>(offs.begin(), offs.end())));
    }
  }
  if (!dt.empty()) {
    tx.exec_prepared(kDeleteRanges.name, group_id, IntArray(dt), IntArray(dq), IntArray(df));
  }
}

void TakeOutOfRanges(pqxx::work& tx, int64_t group_id, const std::vector<DeliveryRef>& refs,
                     const std::vector<size_t>& which) {
  RangeHits hits = RangeMembers(tx, group_id, refs, which);
  std::map<RangeKey, std::set<int64_t>> offsets;
  for (const auto& [i, key] : hits.member) offsets[key].insert(refs[i].offset);
  SettleInRanges(tx, group_id, hits, offsets, /*take_out=*/true);
}

void DeleteRanges(pqxx::work& tx, int64_t group_id, const std::vector<RangeKey>& keys) {
  if (keys.empty()) return;
  std::vector<int64_t> t, f;
  std::vector<uint32_t> q;
  for (const auto& [topic, queue, first] : keys) {
    t.push_back(topic);
    q.push_back(queue);
    f.push_back(first);
  }
  tx.exec_prepared(kDeleteRanges.name, group_id, IntArray(t), IntArray(q), IntArray(f));
}

void DissolveRanges(pqxx::work& tx, int64_t group_id, int64_t topic_id, bool due_only,
                    int64_t limit) {
  tx.exec_prepared(due_only ? kDissolveDueRanges.name : kDissolveAllRanges.name, group_id, topic_id,
                   limit);
}

std::map<uint32_t, int64_t> InsertRanges(pqxx::work& tx, int64_t group_id, int64_t topic_id,
                                         const std::vector<NewRange>& ranges,
                                         uint32_t visibility_ms) {
  std::map<uint32_t, int64_t> tokens;
  if (ranges.empty()) return tokens;
  std::vector<uint32_t> q;
  std::vector<int64_t> f, e;
  std::vector<std::string> s;
  for (const NewRange& r : ranges) {
    q.push_back(r.queue);
    f.push_back(r.first);
    e.push_back(r.end);
    std::string holes;
    for (int64_t h : r.holes) holes += (holes.empty() ? "" : ",") + std::to_string(h);
    s.push_back(std::move(holes));
  }
  for (const auto& row : tx.exec_prepared(kInsertRanges.name, group_id, topic_id, IntArray(q),
                                          IntArray(f), IntArray(e), visibility_ms, TextArray(s))) {
    tokens[row[0].as<uint32_t>()] = row[1].as<int64_t>();
  }
  return tokens;
}

std::set<Position> RangeMembersAt(pqxx::work& tx, int64_t group_id, const std::vector<int64_t>& t,
                                  const std::vector<uint32_t>& q, const std::vector<int64_t>& o) {
  std::set<Position> out;
  for (const auto& row : tx.exec_prepared(kSelectRangeMembersAt.name, group_id, IntArray(t),
                                          IntArray(q), IntArray(o))) {
    out.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
  }
  return out;
}

}  // namespace store_internal
}  // namespace ferry::broker
