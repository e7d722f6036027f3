// PgStore, settlements: Commit (ACK, RETRY, DEAD_LETTER) and ExtendLease, receipt by receipt
// (receipts classified with pg_store.cc's ReceiptsOfGroup / ClassifyUnapplied).
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <algorithm>
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

}  // namespace

namespace store_internal {

std::vector<pg::Statement> SettleStatements() {
  return {kDeleteLeases, kAckLeases, kScheduleRetries, kReleaseLaterLeases, kExtendLeases};
}

}  // namespace store_internal

absl::StatusOr<std::vector<SettleResult>> PgStore::Settle(
    const std::string& group_name, const std::vector<Settlement>& settlements) {
  std::vector<SettleResult> out;
  absl::Status status = pg::WithConnection(pool_, "commit", [&](pqxx::connection& c) {
    out.assign(settlements.size(), SettleResult{});
    pqxx::work tx(c);
    std::vector<DeliveryRef> refs;
    refs.reserve(settlements.size());
    for (const Settlement& st : settlements) refs.push_back(st.ref);
    auto of_group = ReceiptsOfGroup(tx, group_name, refs, out);
    if (!of_group) return absl::OkStatus();
    const GroupPolicy& group = of_group->first;
    std::vector<size_t> mine = of_group->second.index;
    if (mine.empty()) return absl::OkStatus();

    // Range leases first: an ACK of a range's message settles it in the range; any other
    // outcome takes the message out into a lease row, handled below with the rest. A second
    // entry for a message settled by an earlier one of this call is already committed.
    {
      RangeHits hits = RangeMembers(tx, group.group_id, refs, mine);
      std::map<RangeKey, std::set<int64_t>> acks, taken;
      std::set<Position> acked_here, taken_here;
      std::vector<size_t> rest;
      for (size_t i : mine) {
        const DeliveryRef& ref = settlements[i].ref;
        const Position pos{ref.topic_id, ref.queue, ref.offset};
        auto member = hits.member.find(i);
        if (acked_here.count(pos) != 0) {
          out[i].status = SettleStatus::kAlreadyCommitted;
        } else if (member == hits.member.end() || taken_here.count(pos) != 0) {
          rest.push_back(i);
        } else if (settlements[i].outcome == Outcome::kAck) {
          acks[member->second].insert(ref.offset);
          acked_here.insert(pos);
          out[i].status = SettleStatus::kCommitted;
        } else {
          taken[member->second].insert(ref.offset);
          taken_here.insert(pos);
          rest.push_back(i);
        }
      }
      SettleInRanges(tx, group.group_id, hits, acks, /*take_out=*/false);
      SettleInRanges(tx, group.group_id, hits, taken, /*take_out=*/true);
      mine.swap(rest);
    }
    if (mine.empty()) {
      tx.commit();
      return absl::OkStatus();
    }

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
    for (const auto& row : tx.exec_prepared(kSelectLeasesAt.name, group.group_id, IntArray(lt),
                                            IntArray(lq), IntArray(lo))) {
      leases[Position{row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>()}] =
          Current{row[3].as<int64_t>(), row[4].as<int32_t>(), row[5].as<std::string>()};
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
    std::set<Position> claimed;     // settled by an earlier entry of this call
    std::vector<size_t> unapplied;  // not leased to the group
    for (size_t i : mine) {
      const Settlement& st = settlements[i];
      const Position pos{st.ref.topic_id, st.ref.queue, st.ref.offset};
      auto lease = leases.find(pos);
      if (claimed.count(pos) != 0) {  // settled by an earlier entry of this call
        out[i].status = SettleStatus::kAlreadyCommitted;
        continue;
      }
      if (lease == leases.end()) {
        unapplied.push_back(i);
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
                                            ") reached: last outcome RETRY",
                                            st.reason.empty() ? "" : ": ", st.reason));
            out[i].status = SettleStatus::kDeadLettered;
            out[i].detail = dead_why.back();
          } else {
            retry_t.push_back(st.ref.topic_id);
            retry_q.push_back(st.ref.queue);
            retry_o.push_back(st.ref.offset);
            retry_d.push_back(
                st.retry_delay_ms >= 0
                    ? st.retry_delay_ms
                    : RetryDelayMs(group, is_ordered(st.ref.topic_id), lease->second.attempt));
            retry_idx.push_back(i);
            out[i].status = SettleStatus::kRetryScheduled;
          }
          break;
        case Outcome::kDeadLetter:
          dead_t.push_back(st.ref.topic_id);
          dead_q.push_back(st.ref.queue);
          dead_o.push_back(st.ref.offset);
          dead_why.push_back(
              absl::StrCat("rejected: ", st.reason.empty() ? "(no reason given)" : st.reason));
          out[i].status = SettleStatus::kDeadLettered;
          break;
      }
    }
    ClassifyUnapplied(tx, group.group_id, refs, unapplied, out);
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
    auto group = ReceiptsOfGroup(tx, group_name, refs, out);
    if (!group || group->second.index.empty()) return absl::OkStatus();
    const int64_t group_id = group->first.group_id;
    TakeOutOfRanges(tx, group_id, refs, group->second.index);  // extended one by one
    const auto& [mine, t, o, k, q] = group->second;
    std::set<Position> extended;
    for (const auto& row : tx.exec_prepared(kExtendLeases.name, group_id, IntArray(t), IntArray(q),
                                            IntArray(o), visibility_ms, IntArray(k))) {
      extended.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
    }
    std::vector<size_t> unapplied;
    for (size_t i : mine) {
      if (extended.count(Position{refs[i].topic_id, refs[i].queue, refs[i].offset}) != 0) {
        out[i].status = SettleStatus::kExtended;
      } else {
        unapplied.push_back(i);
      }
    }
    ClassifyUnapplied(tx, group_id, refs, unapplied, out);
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace ferry::broker
