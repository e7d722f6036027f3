// PgStore, produce: appends with dense offsets, dedup, delayed messages.
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

// Producers of one queue take turns (in queue order, so two calls never wait on each other in a
// cycle) until commit: offsets are dense and commit in order, so a reader never sees offset
// k+1 committed while k is not. An advisory lock, not a row lock on `queues`: nothing is
// written for it, so a held snapshot has no row versions to keep (issue 15, W6).
// Also returns the lowest segment the queues entered (read before the locks; a queue's segment
// only grows), the partition bound for kQueueEnds.
constexpr pg::Statement kLockQueues{
    "broker_lock_queues",
    "SELECT count(pg_advisory_xact_lock($1::int, q)), COALESCE((SELECT min(segment) FROM queues"
    " WHERE topic_id = $1 AND queue_id = ANY($2::int[])), 0)"
    " FROM (SELECT DISTINCT unnest($2::int[]) AS q ORDER BY 1) s"};

// After the locks (a statement of its own, so its snapshot sees the previous holder's commit):
// each queue's end. FOR KEY SHARE keeps the topic from being deleted under the produce
// without writing a row version.
constexpr pg::Statement kQueueEnds{
    "broker_queue_ends",
    "SELECT q.queue_id, " FERRY_QUEUE_END_FROM("q", "$3::int") ", q.segment,"
    " ferry_current_segment()"
    " FROM queues q WHERE q.topic_id = $1 AND q.queue_id = ANY($2::int[]) ORDER BY q.queue_id"
    " FOR KEY SHARE"};

// A queue's first write into a newer segment: the segment and the end so far (a floor for
// ferry_queue_end, which reads only the segments from this one on).
constexpr pg::Statement kEnterSegment{
    "broker_enter_segment",
    "UPDATE queues SET next_offset = greatest(next_offset, c.next), segment = $4"
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

constexpr pg::Statement kUpsertDedup{
    "broker_upsert_dedup",
    "INSERT INTO dedup (topic_id, dedup_id, queue_id, msg_offset, delayed_id, expires_at)"
    " SELECT $1, d, q, o, dl, now() + $6 * interval '1 millisecond'"
    " FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS x(d, q, o, dl)"
    " ON CONFLICT (topic_id, dedup_id) DO UPDATE SET queue_id = EXCLUDED.queue_id,"
    " msg_offset = EXCLUDED.msg_offset, delayed_id = EXCLUDED.delayed_id,"
    " expires_at = EXCLUDED.expires_at"};

// Produce of messages due now in one statement, outside a transaction block
// (migrations/broker/0008_append_function.sql).
constexpr pg::Statement kAppendOneStatement{
    "broker_append_one_statement",
    "SELECT r_queue, r_offset, r_delayed, r_duplicate FROM ferry_append($1, $2, $3::int[],"
    " $4::text[], $5::bytea[], $6::jsonb[], $7::text[])"};

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

}  // namespace

namespace store_internal {

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
  const std::string queue_array = IntArray(queue_ids);
  const int32_t lowest_segment =
      tx.exec_prepared(kLockQueues.name, topic.topic_id, queue_array)[0][1].as<int32_t>();
  pqxx::result ends =
      tx.exec_prepared(kQueueEnds.name, topic.topic_id, queue_array, lowest_segment);
  if (ends.size() != queue_ids.size()) {  // deleted meanwhile
    *topic_gone = true;
    return out;
  }
  // One segment for the whole insert: now's, or a later one a queue already entered (a
  // transaction that started before a segment boundary must not write behind it).
  int32_t segment = 0;
  for (const auto& row : ends) segment = std::max(segment, row[3].as<int32_t>());
  for (const auto& row : ends) segment = std::max(segment, row[2].as<int32_t>());
  std::vector<uint32_t> new_segment_queues;
  std::vector<int64_t> new_segment_firsts;
  for (const auto& row : ends) {
    const uint32_t q = row[0].as<uint32_t>();
    int64_t next = row[1].as<int64_t>();
    if (row[2].as<int32_t>() != segment) {
      new_segment_queues.push_back(q);
      new_segment_firsts.push_back(next);
    }
    for (size_t i : by_queue[q]) out[i] = Appended{q, next++, false, false, 0};
  }
  if (!new_segment_queues.empty()) {
    // A queue's first write into this segment: make sure its partition exists (normally
    // created ahead by maintenance; then this is a catalog lookup and nothing more).
    tx.exec_prepared(kEnsureSegments.name, 0);
    tx.exec_prepared(kEnterSegment.name, topic.topic_id, IntArray(new_segment_queues),
                     IntArray(new_segment_firsts), segment);
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

std::vector<pg::Statement> ProduceStatements() {
  return {kAppendOneStatement, kLockDedupIds,   kSelectDedup,         kLockQueues,
          kQueueEnds,          kEnterSegment,   kInsertQueueSegments, kInsertMessages,
          kUpsertDedup,        kNextDelayedIds, kInsertDelayed,       kTakeDueDelayed,
          kPlaceDelayedDedup,  kCancelDelayed,  kCancelDelayedCheck};
}

}  // namespace store_internal

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
      dedups.push_back(m.dedup_id.empty() ? std::nullopt : std::optional<std::string>(m.dedup_id));
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

std::optional<std::vector<Appended>> PgStore::AppendOneStatement(
    pqxx::connection& c, const ProduceTopic& topic, const std::vector<NewMessage>& messages) {
  std::vector<int64_t> qs;
  std::vector<std::optional<std::string>> keys, headers, dedups;
  std::vector<const std::string*> payloads;
  bool any_dedup = false;
  for (const NewMessage& m : messages) {
    qs.push_back(choose_queue_(m, topic.queue_count));
    keys.push_back(m.key);
    payloads.push_back(&m.payload);
    headers.push_back(m.headers_json);
    dedups.push_back(m.dedup_id.empty() ? std::nullopt : std::optional<std::string>(m.dedup_id));
    any_dedup = any_dedup || !m.dedup_id.empty();
  }
  pqxx::result r;
  {
    pqxx::nontransaction tx(c);
    // Closed before anything was sent (libpq saw the server go): nothing ran, so the pool may
    // run the produce again on another connection.
    if (!c.is_open()) throw pqxx::broken_connection("connection closed before the produce");
    try {
      r = tx.exec_prepared(
          kAppendOneStatement.name, topic.topic_id, topic.queue_count, IntArray(qs),
          TextArray(keys), ByteaArray(payloads), TextArray(headers),
          any_dedup ? std::optional<std::string>(TextArray(dedups)) : std::nullopt);
    } catch (const pqxx::broken_connection& e) {
      // The statement commits as it ends: whether it did before the connection went is unknown,
      // so it is not run again (the pool drops connections the server closed before handing them
      // out: this is a failure during the call).
      throw pqxx::in_doubt_error(e.what());
    }
  }
  if (r.size() != messages.size()) return std::nullopt;  // the topic is gone or not as cached
  std::vector<Appended> out(messages.size());
  int64_t stored = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const auto& row = r[i];
    Appended& a = out[i];
    a.duplicate = row[3].as<bool>();
    if (!row[2].is_null()) {
      a.delayed = true;
      a.delayed_id = row[2].as<int64_t>();
    } else {
      a.queue = row[0].as<uint32_t>();
      a.offset = row[1].as<int64_t>();
    }
    stored += !a.duplicate;
  }
  if (stored > 0) notifier_->Add({topic.topic_id}, {stored});
  return out;
}

absl::StatusOr<std::vector<Appended>> PgStore::Append(const std::string& topic,
                                                      const std::vector<NewMessage>& messages) {
  std::vector<Appended> out;
  const int64_t now_ms = NowMs();
  // Messages due now, to a topic this process has produced to: one statement.
  const bool due_now = std::all_of(messages.begin(), messages.end(),
                                   [&](const NewMessage& m) { return m.deliver_at_ms <= now_ms; });
  std::optional<ProduceTopic> known;
  if (due_now && !messages.empty()) {
    std::lock_guard<std::mutex> lock(produce_topics_mu_);
    auto it = produce_topics_.find(topic);
    if (it != produce_topics_.end()) known = it->second;
  }
  if (known) {
    std::optional<std::vector<Appended>> done;
    absl::Status status = pg::WithConnection(pool_, "produce", [&](pqxx::connection& c) {
      done = AppendOneStatement(c, *known, messages);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    if (done) return *std::move(done);
    std::lock_guard<std::mutex> lock(produce_topics_mu_);
    produce_topics_.erase(topic);  // deleted, or deleted and created again: look it up
  }
  TopicInfo info;
  absl::Status status = pg::WithConnection(pool_, "produce", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    info = TopicFromRow(t[0]);
    auto appended = AppendToTopic(tx, info, messages, choose_queue_, now_ms);
    if (!appended.ok()) return appended.status();
    out = *std::move(appended);
    tx.commit();
    int64_t stored = 0;
    for (const Appended& a : out) stored += !a.duplicate && !a.delayed;
    if (stored > 0) notifier_->Add({info.topic_id}, {stored});
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  std::lock_guard<std::mutex> lock(produce_topics_mu_);
  if (produce_topics_.size() >= kProduceTopicsKept) produce_topics_.clear();
  produce_topics_[topic] = ProduceTopic{info.topic_id, info.queue_count};
  return out;
}

absl::StatusOr<int64_t> PgStore::MoveDueDelayed(int64_t limit) {
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
      std::vector<Appended> placed = AppendRows(tx, info, rows, choose_queue_, &gone);
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
    notifier_->Add(appended_to);
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

}  // namespace ferry::broker
