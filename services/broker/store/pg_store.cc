#include "broker/store/pg_store.h"

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <map>
#include <random>
#include <tuple>
#include <unordered_map>

namespace ferry::broker {
namespace {

// ---- statements (the only SQL of the broker) ------------------------------------------------

constexpr pg::Statement kSelectTopic{
    "broker_select_topic",
    "SELECT topic_id, name, queue_count, retention_ms, dedup_window_ms,"
    " (extract(epoch FROM created_at) * 1000)::bigint FROM topics WHERE name = $1"};

constexpr pg::Statement kInsertTopic{
    "broker_insert_topic",
    "INSERT INTO topics (name, queue_count, retention_ms, dedup_window_ms)"
    " VALUES ($1, $2, $3, $4)"
    " RETURNING topic_id, (extract(epoch FROM created_at) * 1000)::bigint"};

constexpr pg::Statement kInsertQueues{
    "broker_insert_queues",
    "INSERT INTO queues (topic_id, queue_id) SELECT $1, generate_series(0, $2 - 1)"};

constexpr pg::Statement kListTopics{
    "broker_list_topics",
    "SELECT topic_id, name, queue_count, retention_ms, dedup_window_ms,"
    " (extract(epoch FROM created_at) * 1000)::bigint FROM topics ORDER BY name"};

constexpr pg::Statement kDescribeQueues{
    "broker_describe_queues",
    "SELECT q.queue_id, COALESCE((SELECT min(m.msg_offset) FROM messages m"
    "   WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id), q.next_offset),"
    " q.next_offset FROM queues q WHERE q.topic_id = $1 ORDER BY q.queue_id"};

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

constexpr pg::Statement kSelectDedup{
    "broker_select_dedup",
    "SELECT dedup_id, queue_id, msg_offset FROM dedup"
    " WHERE topic_id = $1 AND dedup_id = ANY($2::text[]) AND expires_at > now()"};

constexpr pg::Statement kLockQueues{
    "broker_lock_queues",
    "SELECT queue_id, next_offset FROM queues WHERE topic_id = $1 AND queue_id = ANY($2::int[])"
    " ORDER BY queue_id FOR UPDATE"};

constexpr pg::Statement kAdvanceQueues{
    "broker_advance_queues",
    "UPDATE queues SET next_offset = c.next FROM unnest($2::int[], $3::bigint[]) AS c(q, next)"
    " WHERE topic_id = $1 AND queue_id = c.q"};

constexpr pg::Statement kInsertMessages{
    "broker_insert_messages",
    "INSERT INTO messages (topic_id, queue_id, msg_offset, key, payload, headers, dedup_id)"
    " SELECT $1, q, o, k, p, h, d FROM unnest($2::int[], $3::bigint[], $4::text[], $5::bytea[],"
    " $6::jsonb[], $7::text[]) AS m(q, o, k, p, h, d)"};

constexpr pg::Statement kUpsertDedup{
    "broker_upsert_dedup",
    "INSERT INTO dedup (topic_id, dedup_id, queue_id, msg_offset, expires_at)"
    " SELECT $1, d, q, o, now() + $5 * interval '1 millisecond'"
    " FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(d, q, o)"
    " ON CONFLICT (topic_id, dedup_id) DO UPDATE SET queue_id = EXCLUDED.queue_id,"
    " msg_offset = EXCLUDED.msg_offset, expires_at = EXCLUDED.expires_at"};

constexpr pg::Statement kNotifyMessages{
    "broker_notify_messages", "SELECT pg_notify('ferry_messages', $1::text)"};

constexpr pg::Statement kSelectGroup{
    "broker_select_group", "SELECT group_id FROM consumer_groups WHERE name = $1"};

constexpr pg::Statement kInsertGroup{
    "broker_insert_group",
    "INSERT INTO consumer_groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"};

constexpr pg::Statement kInsertGroupQueues{
    "broker_insert_group_queues",
    "INSERT INTO group_queues (group_id, topic_id, queue_id, delivered_offset)"
    " SELECT $1, q.topic_id, q.queue_id, s.start FROM queues q CROSS JOIN LATERAL"
    " (SELECT CASE WHEN $3 THEN q.next_offset ELSE COALESCE((SELECT min(m.msg_offset)"
    "   FROM messages m WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id),"
    "   q.next_offset) END AS start) s"
    " WHERE q.topic_id = $2 ON CONFLICT DO NOTHING"};

constexpr pg::Statement kSelectExpiredLeases{
    "broker_select_expired_leases",
    "SELECT queue_id, msg_offset FROM group_leases"
    " WHERE group_id = $1 AND topic_id = $2 AND deadline <= now()"
    " ORDER BY deadline LIMIT $3 FOR UPDATE SKIP LOCKED"};

constexpr pg::Statement kSelectMessagesAt{
    "broker_select_messages_at",
    "SELECT m.queue_id, m.msg_offset, m.key, m.payload, m.headers::text,"
    " (extract(epoch FROM m.produced_at) * 1000000)::bigint"
    " FROM unnest($2::int[], $3::bigint[]) AS r(q, o)"
    " JOIN messages m ON m.topic_id = $1 AND m.queue_id = r.q AND m.msg_offset = r.o"};

constexpr pg::Statement kRenewLeases{
    "broker_renew_leases",
    "UPDATE group_leases l SET attempt = l.attempt + 1,"
    " lease_token = nextval('lease_token_seq'),"
    " deadline = now() + $5 * interval '1 millisecond', last_delivered_at = now()"
    " FROM unnest($3::int[], $4::bigint[]) AS r(q, o)"
    " WHERE l.group_id = $1 AND l.topic_id = $2 AND l.queue_id = r.q AND l.msg_offset = r.o"
    " RETURNING l.queue_id, l.msg_offset, l.attempt, l.lease_token"};

constexpr pg::Statement kSelectReadableQueues{
    "broker_select_readable_queues",
    "SELECT gq.queue_id, gq.delivered_offset, q.next_offset FROM group_queues gq"
    " JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " WHERE gq.group_id = $1 AND gq.topic_id = $2 AND gq.delivered_offset < q.next_offset"
    " ORDER BY gq.queue_id FOR UPDATE OF gq SKIP LOCKED"};

constexpr pg::Statement kSelectMessageRanges{
    "broker_select_message_ranges",
    "SELECT m.queue_id, m.msg_offset, m.key, m.payload, m.headers::text,"
    " (extract(epoch FROM m.produced_at) * 1000000)::bigint"
    " FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS r(q, first, stop)"
    " JOIN messages m ON m.topic_id = $1 AND m.queue_id = r.q"
    "  AND m.msg_offset >= r.first AND m.msg_offset < r.stop"
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

constexpr pg::Statement kSelectGroupQueuesAt{
    "broker_select_group_queues_at",
    "SELECT gq.topic_id, gq.queue_id FROM group_queues gq"
    " JOIN unnest($2::bigint[], $3::int[]) AS r(t, q) ON gq.topic_id = r.t AND gq.queue_id = r.q"
    " WHERE gq.group_id = $1"};

constexpr pg::Statement kDeleteLeases{
    "broker_delete_leases",
    "DELETE FROM group_leases l USING unnest($2::bigint[], $3::int[], $4::bigint[], $5::bigint[])"
    " AS r(t, q, o, k) WHERE l.group_id = $1 AND l.topic_id = r.t AND l.queue_id = r.q"
    " AND l.msg_offset = r.o AND l.lease_token = r.k"
    " RETURNING l.topic_id, l.queue_id, l.msg_offset"};

constexpr pg::Statement kSelectLeasesAt{
    "broker_select_leases_at",
    "SELECT l.topic_id, l.queue_id, l.msg_offset FROM group_leases l"
    " JOIN unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o)"
    " ON l.topic_id = r.t AND l.queue_id = r.q AND l.msg_offset = r.o WHERE l.group_id = $1"};

constexpr pg::Statement kGroupLag{
    "broker_group_lag",
    "SELECT topic, queue_id, end_offset, committed_offset, delivered_offset, in_flight,"
    " COALESCE((extract(epoch FROM oldest_unacked_age) * 1000)::bigint, 0)"
    " FROM group_lag WHERE group_name = $1 AND ($2 = '' OR topic = $2)"
    " ORDER BY topic, queue_id"};

constexpr pg::Statement kReceiptKey{
    "broker_select_receipt_key", "SELECT value FROM broker_meta WHERE key = 'receipt_hmac_key'"};

constexpr pg::Statement kDeleteExpiredDedup{
    "broker_delete_expired_dedup",
    "DELETE FROM dedup WHERE ctid = ANY(ARRAY(SELECT ctid FROM dedup WHERE expires_at <= now()"
    " LIMIT $1))"};

// ---- array literals for unnest() -----------------------------------------------------------

void AppendQuoted(std::string& out, const std::string& s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

std::string TextArray(const std::vector<std::optional<std::string>>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    if (values[i].has_value()) {
      AppendQuoted(out, *values[i]);
    } else {
      out += "NULL";
    }
  }
  out.push_back('}');
  return out;
}

std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendQuoted(out, values[i]);
  }
  out.push_back('}');
  return out;
}

// bytea elements in hex form: "\\x0a1b..." (the backslash escaped for the array syntax).
std::string ByteaArray(const std::vector<const std::string*>& values) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t size = 2;
  for (const std::string* v : values) size += v->size() * 2 + 6;
  std::string out;
  out.reserve(size);
  out.push_back('{');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += "\"\\\\x";
    for (unsigned char c : *values[i]) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

template <typename T>
std::string IntArray(const std::vector<T>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(values[i]);
  }
  out.push_back('}');
  return out;
}

TopicInfo TopicFromRow(const pqxx::row& row) {
  TopicInfo t;
  t.topic_id = row[0].as<int64_t>();
  t.name = row[1].as<std::string>();
  t.queue_count = row[2].as<uint32_t>();
  t.retention_ms = row[3].as<int64_t>();
  t.dedup_window_ms = row[4].as<int64_t>();
  t.created_at_ms = row[5].as<int64_t>();
  return t;
}

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

absl::Status TopicNotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("topic \"", name,
                                          "\" does not exist; create it with "
                                          "`ferryctl topic create ",
                                          name, "`"));
}

using QueueOffset = std::pair<uint32_t, int64_t>;

}  // namespace

std::vector<pg::Statement> PgStore::Statements() {
  return {kSelectTopic,         kInsertTopic,          kInsertQueues,       kListTopics,
          kDescribeQueues,      kDeleteTopic,          kDeleteTopicMessages, kLockDedupIds,
          kSelectDedup,         kLockQueues,           kAdvanceQueues,      kInsertMessages,
          kUpsertDedup,         kNotifyMessages,       kSelectGroup,        kInsertGroup,
          kInsertGroupQueues,   kSelectExpiredLeases,  kSelectMessagesAt,   kRenewLeases,
          kSelectReadableQueues, kSelectMessageRanges, kAdvanceDelivered,   kInsertLeases,
          kSelectGroupQueuesAt, kDeleteLeases,         kSelectLeasesAt,
          kGroupLag,            kReceiptKey,           kDeleteExpiredDedup};
}

absl::StatusOr<TopicInfo> PgStore::CreateTopic(TopicInfo topic) {
  absl::Status status = pg::WithConnection(pool_, "create topic", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result r;
    try {
      r = tx.exec_prepared(kInsertTopic.name, topic.name, topic.queue_count, topic.retention_ms,
                           topic.dedup_window_ms);
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

absl::StatusOr<std::pair<TopicInfo, std::vector<QueueState>>> PgStore::DescribeTopic(
    const std::string& name) {
  std::pair<TopicInfo, std::vector<QueueState>> out;
  absl::Status status = pg::WithConnection(pool_, "describe topic", [&](pqxx::connection& c) {
    out.second.clear();
    pqxx::read_transaction tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, name);
    if (t.empty()) return TopicNotFound(name);
    out.first = TopicFromRow(t[0]);
    for (const auto& row : tx.exec_prepared(kDescribeQueues.name, out.first.topic_id)) {
      out.second.push_back(QueueState{row[0].as<uint32_t>(), row[1].as<int64_t>(),
                                      row[2].as<int64_t>()});
    }
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

absl::StatusOr<std::vector<Appended>> PgStore::Append(const std::string& topic,
                                                      const std::vector<NewMessage>& messages,
                                                      const QueueChooser& choose_queue) {
  std::vector<Appended> out;
  absl::Status status = pg::WithConnection(pool_, "produce", [&](pqxx::connection& c) {
    out.assign(messages.size(), Appended{});
    pqxx::work tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    const TopicInfo info = TopicFromRow(t[0]);

    // 1. Dedup: the first message with a dedup_id in this call owns it; later ones in the call,
    //    and every one already stored within the window, are duplicates.
    std::vector<bool> store(messages.size(), true);
    std::unordered_map<std::string, size_t> owner;  // dedup_id -> index of first message
    std::vector<std::string> dedup_ids;
    for (size_t i = 0; i < messages.size(); ++i) {
      const std::string& d = messages[i].dedup_id;
      if (d.empty()) continue;
      if (owner.emplace(d, i).second) dedup_ids.push_back(d);
    }
    std::unordered_map<std::string, QueueOffset> stored_before;
    if (!dedup_ids.empty()) {
      const std::string ids = TextArray(dedup_ids);
      tx.exec_prepared(kLockDedupIds.name, info.topic_id, ids);
      for (const auto& row : tx.exec_prepared(kSelectDedup.name, info.topic_id, ids)) {
        stored_before.emplace(row[0].as<std::string>(),
                              QueueOffset{row[1].as<uint32_t>(), row[2].as<int64_t>()});
      }
    }
    for (size_t i = 0; i < messages.size(); ++i) {
      const std::string& d = messages[i].dedup_id;
      if (d.empty()) continue;
      if (stored_before.count(d) != 0 || owner[d] != i) store[i] = false;
    }

    // 2. Offsets: lock the queues (in queue order), assign dense offsets, advance next_offset.
    std::map<uint32_t, std::vector<size_t>> by_queue;
    for (size_t i = 0; i < messages.size(); ++i) {
      if (!store[i]) continue;
      const uint32_t q = choose_queue(messages[i], info.queue_count);
      by_queue[q].push_back(i);
    }
    if (!by_queue.empty()) {
      std::vector<uint32_t> queue_ids;
      for (const auto& [q, idx] : by_queue) queue_ids.push_back(q);
      pqxx::result locked = tx.exec_prepared(kLockQueues.name, info.topic_id, IntArray(queue_ids));
      if (locked.size() != queue_ids.size()) return TopicNotFound(topic);  // deleted meanwhile
      std::vector<int64_t> next_offsets;
      for (const auto& row : locked) {
        const uint32_t q = row[0].as<uint32_t>();
        int64_t next = row[1].as<int64_t>();
        for (size_t i : by_queue[q]) out[i] = Appended{q, next++, false};
        next_offsets.push_back(next);
      }
      tx.exec_prepared(kAdvanceQueues.name, info.topic_id, IntArray(queue_ids),
                       IntArray(next_offsets));

      std::vector<int64_t> qs, offsets;
      std::vector<std::optional<std::string>> keys, headers, dedups;
      std::vector<const std::string*> payloads;
      std::vector<std::string> new_dedup_ids;
      std::vector<int64_t> dedup_queues, dedup_offsets;
      for (size_t i = 0; i < messages.size(); ++i) {
        if (!store[i]) continue;
        const NewMessage& m = messages[i];
        qs.push_back(out[i].queue);
        offsets.push_back(out[i].offset);
        keys.push_back(m.key);
        payloads.push_back(&m.payload);
        headers.push_back(m.headers_json);
        dedups.push_back(m.dedup_id.empty() ? std::nullopt : std::optional<std::string>(m.dedup_id));
        if (!m.dedup_id.empty()) {
          new_dedup_ids.push_back(m.dedup_id);
          dedup_queues.push_back(out[i].queue);
          dedup_offsets.push_back(out[i].offset);
        }
      }
      tx.exec_prepared(kInsertMessages.name, info.topic_id, IntArray(qs), IntArray(offsets),
                       TextArray(keys), ByteaArray(payloads), TextArray(headers),
                       TextArray(dedups));
      if (!new_dedup_ids.empty()) {
        tx.exec_prepared(kUpsertDedup.name, info.topic_id, TextArray(new_dedup_ids),
                         IntArray(dedup_queues), IntArray(dedup_offsets), info.dedup_window_ms);
      }
      tx.exec_prepared(kNotifyMessages.name, info.topic_id);
    }

    // 3. Duplicates get the original position.
    for (size_t i = 0; i < messages.size(); ++i) {
      if (store[i]) continue;
      const std::string& d = messages[i].dedup_id;
      auto before = stored_before.find(d);
      if (before != stored_before.end()) {
        out[i] = Appended{before->second.first, before->second.second, true};
      } else {
        out[i] = out[owner[d]];
        out[i].duplicate = true;
      }
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

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
      tx.exec_prepared(kInsertGroup.name, req.group);  // waits for a concurrent creator
      g = tx.exec_prepared(kSelectGroup.name, req.group);
      if (g.empty()) return absl::AbortedError("consume: the group was being created; retry");
    }
    batch.group_id = g[0][0].as<int64_t>();
    const auto position = std::make_pair(batch.group_id, batch.topic_id);
    bool known;
    {
      std::lock_guard<std::mutex> lock(known_mu_);
      known = known_positions_.count(position) != 0;
    }
    if (!known) {
      tx.exec_prepared(kInsertGroupQueues.name, batch.group_id, batch.topic_id, req.start_latest);
    }

    // Byte budget: a batch stops before the message that would pass max_bytes, but always
    // holds at least one message.
    uint64_t bytes = 0;
    size_t taken = 0;
    auto fits = [&](const LeasedMessage& m) {
      return taken == 0 || req.max_bytes == 0 || bytes + m.payload.size() <= req.max_bytes;
    };

    // 1. Messages whose lease expired: delivered again with attempt + 1.
    pqxx::result expired =
        tx.exec_prepared(kSelectExpiredLeases.name, batch.group_id, batch.topic_id,
                         req.max_messages);
    if (!expired.empty()) {
      std::vector<uint32_t> qs;
      std::vector<int64_t> os;
      for (const auto& row : expired) {
        qs.push_back(row[0].as<uint32_t>());
        os.push_back(row[1].as<int64_t>());
      }
      std::map<QueueOffset, LeasedMessage> found;
      for (const auto& row : tx.exec_prepared(kSelectMessagesAt.name, batch.topic_id,
                                              IntArray(qs), IntArray(os))) {
        LeasedMessage m = MessageFromRow(row);
        found.emplace(QueueOffset{m.queue, m.offset}, std::move(m));
      }
      std::vector<uint32_t> renew_q;
      std::vector<int64_t> renew_o;
      std::vector<LeasedMessage> kept;
      for (size_t i = 0; i < qs.size(); ++i) {
        auto it = found.find(QueueOffset{qs[i], os[i]});
        if (it == found.end()) continue;  // removed by retention; settled by a later change
        if (!fits(it->second)) break;
        bytes += it->second.payload.size();
        ++taken;
        renew_q.push_back(qs[i]);
        renew_o.push_back(os[i]);
        kept.push_back(std::move(it->second));
      }
      if (!renew_q.empty()) {
        std::map<QueueOffset, std::pair<int32_t, int64_t>> renewed;
        for (const auto& row :
             tx.exec_prepared(kRenewLeases.name, batch.group_id, batch.topic_id,
                              IntArray(renew_q), IntArray(renew_o), req.visibility_ms)) {
          renewed[QueueOffset{row[0].as<uint32_t>(), row[1].as<int64_t>()}] = {
              row[2].as<int32_t>(), row[3].as<int64_t>()};
        }
        for (LeasedMessage& m : kept) {
          auto r = renewed.find(QueueOffset{m.queue, m.offset});
          if (r == renewed.end()) continue;
          m.attempt = r->second.first;
          m.lease_token = r->second.second;
          batch.messages.push_back(std::move(m));
        }
      }
    }

    // 2. Messages never delivered to the group, from the queues no other consumer is reading
    //    right now, shared fairly between them.
    const uint32_t want = req.max_messages > taken
                              ? req.max_messages - static_cast<uint32_t>(taken)
                              : 0;
    const bool budget_left = taken == 0 || req.max_bytes == 0 || bytes < req.max_bytes;
    if (want > 0 && budget_left) {
      struct Readable {
        uint32_t queue;
        int64_t from;
        int64_t end;
        int64_t take = 0;
      };
      std::vector<Readable> readable;
      for (const auto& row :
           tx.exec_prepared(kSelectReadableQueues.name, batch.group_id, batch.topic_id)) {
        readable.push_back(
            Readable{row[0].as<uint32_t>(), row[1].as<int64_t>(), row[2].as<int64_t>()});
      }
      // Round robin one message at a time from a random first queue: fair, bounded by `want`.
      if (!readable.empty()) {
        thread_local std::mt19937 rng{std::random_device{}()};
        const size_t start = rng() % readable.size();
        uint32_t left = want;
        bool progress = true;
        while (left > 0 && progress) {
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
        for (const Readable& r : readable) {
          if (r.take == 0) continue;
          rq.push_back(r.queue);
          rfirst.push_back(r.from);
          rstop.push_back(r.from + r.take);
        }
        std::map<uint32_t, int64_t> delivered;  // queue -> new delivered_offset
        for (size_t i = 0; i < rq.size(); ++i) delivered[rq[i]] = rstop[i];
        std::vector<LeasedMessage> fresh;
        bool cut = false;
        if (!rq.empty()) {
          for (const auto& row : tx.exec_prepared(kSelectMessageRanges.name, batch.topic_id,
                                                  IntArray(rq), IntArray(rfirst),
                                                  IntArray(rstop))) {
            LeasedMessage m = MessageFromRow(row);
            if (cut || !fits(m)) {
              // Over the byte budget: this queue resumes here next time; later queues keep
              // their old position (their rows come after, in queue order).
              if (!cut) delivered[m.queue] = m.offset;
              for (auto& [q, d] : delivered) {
                if (q > m.queue) d = -1;
              }
              cut = true;
              continue;
            }
            bytes += m.payload.size();
            ++taken;
            fresh.push_back(std::move(m));
          }
        }
        std::vector<uint32_t> dq;
        std::vector<int64_t> dd;
        for (const auto& [q, d] : delivered) {
          if (d < 0) continue;
          dq.push_back(q);
          dd.push_back(d);
        }
        if (!dq.empty()) {
          tx.exec_prepared(kAdvanceDelivered.name, batch.group_id, batch.topic_id, IntArray(dq),
                           IntArray(dd));
        }
        if (!fresh.empty()) {
          std::vector<uint32_t> lq;
          std::vector<int64_t> lo;
          for (const auto& m : fresh) {
            lq.push_back(m.queue);
            lo.push_back(m.offset);
          }
          std::map<QueueOffset, int64_t> tokens;
          for (const auto& row : tx.exec_prepared(kInsertLeases.name, batch.group_id,
                                                  batch.topic_id, IntArray(lq), IntArray(lo),
                                                  req.visibility_ms)) {
            tokens[QueueOffset{row[0].as<uint32_t>(), row[1].as<int64_t>()}] =
                row[2].as<int64_t>();
          }
          for (LeasedMessage& m : fresh) {
            m.attempt = 1;
            m.lease_token = tokens.at(QueueOffset{m.queue, m.offset});
            batch.messages.push_back(std::move(m));
          }
        }
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

absl::StatusOr<std::vector<AckStatus>> PgStore::Ack(const std::string& group,
                                                    const std::vector<DeliveryRef>& targets) {
  std::vector<AckStatus> out;
  absl::Status status = pg::WithConnection(pool_, "commit", [&](pqxx::connection& c) {
    out.assign(targets.size(), AckStatus::kTopicGone);
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return absl::OkStatus();  // every target: kTopicGone (group gone)
    const int64_t group_id = g[0][0].as<int64_t>();

    std::vector<size_t> mine;
    for (size_t i = 0; i < targets.size(); ++i) {
      if (targets[i].group_id != group_id) {
        out[i] = AckStatus::kWrongGroup;
      } else {
        mine.push_back(i);
      }
    }
    if (mine.empty()) return absl::OkStatus();

    // Settling is deleting the lease whose token matches the receipt: one statement, no lock
    // on the group's queue rows (the committed offset is derived from what is still leased).
    std::vector<int64_t> dt, doff, dk;
    std::vector<uint32_t> dq;
    for (size_t i : mine) {
      dt.push_back(targets[i].topic_id);
      dq.push_back(targets[i].queue);
      doff.push_back(targets[i].offset);
      dk.push_back(targets[i].lease_token);
    }
    using Key = std::tuple<int64_t, uint32_t, int64_t>;
    std::set<Key> deleted, leased;
    std::set<std::pair<int64_t, uint32_t>> positions;
    for (const auto& row : tx.exec_prepared(kDeleteLeases.name, group_id, IntArray(dt),
                                            IntArray(dq), IntArray(doff), IntArray(dk))) {
      deleted.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
    }
    if (deleted.size() < mine.size()) {
      // Explain the rest: leased under another token (stale), or settled, or gone.
      for (const auto& row : tx.exec_prepared(kSelectLeasesAt.name, group_id, IntArray(dt),
                                              IntArray(dq), IntArray(doff))) {
        leased.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
      }
      for (const auto& row : tx.exec_prepared(kSelectGroupQueuesAt.name, group_id, IntArray(dt),
                                              IntArray(dq))) {
        positions.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>());
      }
    }
    std::set<Key> settled_here;
    for (size_t i : mine) {
      const DeliveryRef& a = targets[i];
      const Key key{a.topic_id, a.queue, a.offset};
      if (deleted.count(key) != 0 && settled_here.insert(key).second) {
        out[i] = AckStatus::kCommitted;
      } else if (leased.count(key) != 0) {
        out[i] = AckStatus::kStale;
      } else if (deleted.count(key) != 0 || positions.count({a.topic_id, a.queue}) != 0) {
        out[i] = AckStatus::kAlreadyCommitted;
      } else {
        out[i] = AckStatus::kTopicGone;
      }
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<QueueLag>> PgStore::GroupLag(const std::string& group,
                                                        const std::string& topic) {
  std::vector<QueueLag> out;
  absl::Status status = pg::WithConnection(pool_, "group lag", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) {
      return absl::NotFoundError(absl::StrCat("group \"", group, "\" does not exist"));
    }
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
      l.oldest_unacked_age_ms = row[6].as<int64_t>();
      out.push_back(std::move(l));
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

}  // namespace ferry::broker
