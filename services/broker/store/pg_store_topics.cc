// PgStore, topics: create, list, describe, delete.
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

constexpr pg::Statement kInsertTopic{
    "broker_insert_topic",
    "INSERT INTO topics (name, queue_count, retention_ms, dedup_window_ms, ordered)"
    " VALUES ($1, $2, $3, $4, $5)"
    " RETURNING topic_id, (extract(epoch FROM created_at) * 1000)::bigint"};

constexpr pg::Statement kInsertQueues{
    "broker_insert_queues",
    "INSERT INTO queues (topic_id, queue_id) SELECT $1, generate_series(0, $2 - 1)"};

constexpr pg::Statement kListTopics{"broker_list_topics",
                                    "SELECT " FERRY_TOPIC_COLUMNS " FROM topics ORDER BY name"};

constexpr pg::Statement kDescribeQueues{
    "broker_describe_queues",
    "SELECT q.queue_id, COALESCE((SELECT min(m.msg_offset) FROM messages m"
    "   WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id), e.end_offset), e.end_offset"
    " FROM queues q CROSS JOIN LATERAL (SELECT " FERRY_QUEUE_END("q") " AS end_offset) e"
    " WHERE q.topic_id = $1 ORDER BY q.queue_id"};

constexpr pg::Statement kCountDelayed{"broker_count_delayed",
                                      "SELECT count(*) FROM delayed_messages WHERE topic_id = $1"};

constexpr pg::Statement kDeleteTopic{"broker_delete_topic",
                                     "DELETE FROM topics WHERE name = $1 RETURNING topic_id"};

constexpr pg::Statement kDeleteTopicMessages{"broker_delete_topic_messages",
                                             "DELETE FROM messages WHERE topic_id = $1"};

// NULL keeps the value.
constexpr pg::Statement kUpdateTopic{
    "broker_update_topic",
    "UPDATE topics SET retention_ms = COALESCE($2, retention_ms),"
    " dedup_window_ms = COALESCE($3, dedup_window_ms) WHERE name = $1"
    " RETURNING " FERRY_TOPIC_COLUMNS};

// A queue's oldest stored offset and end (PeekMessages' bounds and paging).
constexpr pg::Statement kQueueBounds{
    "broker_queue_bounds",
    "SELECT COALESCE((SELECT min(m.msg_offset) FROM messages m"
    "   WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id), e.end_offset), e.end_offset"
    " FROM queues q CROSS JOIN LATERAL (SELECT " FERRY_QUEUE_END("q") " AS end_offset) e"
    " WHERE q.topic_id = $1 AND q.queue_id = $2"};

#define FERRY_STORED_COLUMNS FERRY_MESSAGE_COLUMNS ", COALESCE(m.dedup_id, '')"

constexpr pg::Statement kPeekMessages{
    "broker_peek_messages",
    "SELECT " FERRY_STORED_COLUMNS
    " FROM messages m"
    " WHERE m.topic_id = $1 AND m.queue_id = $2 AND m.msg_offset >= $3" FERRY_SEGMENT_FLOOR(
        "$2", "$3") " ORDER BY m.msg_offset LIMIT $4"};

// The same with filters, over the offsets [$3, $5) (offsets are dense: that range is what a
// filtered page reads at most).
constexpr pg::Statement kPeekFiltered{
    "broker_peek_filtered",
    "SELECT " FERRY_STORED_COLUMNS
    " FROM messages m"
    " WHERE m.topic_id = $1 AND m.queue_id = $2 AND m.msg_offset >= $3 AND m.msg_offset < $5"
    " AND ($6::text IS NULL OR m.key = $6) AND ($7::text IS NULL OR m.dedup_id = $7)"
    " AND ($8::bigint = 0 OR m.produced_at >= to_timestamp($8 / 1000.0))"
    " AND ($9::bigint = 0 OR m.produced_at < to_timestamp($9 / 1000.0))" FERRY_SEGMENT_FLOOR(
        "$2", "$3") " ORDER BY m.msg_offset LIMIT $4"};

constexpr pg::Statement kGetMessage{
    "broker_get_message",
    "SELECT " FERRY_STORED_COLUMNS
    " FROM messages m"
    " WHERE m.topic_id = $1 AND m.queue_id = $2 AND m.msg_offset = $3" FERRY_SEGMENT_FLOOR("$2",
                                                                                           "$3")};

constexpr pg::Statement kMessageStatus{
    "broker_message_status",
    "SELECT group_name, state, COALESCE(attempt, 0),"
    " COALESCE((extract(epoch FROM deadline) * 1000)::bigint, 0), COALESCE(dead_letter_reason, ''),"
    " COALESCE(dead_letter_id, 0)"
    " FROM message_status WHERE topic_id = $1 AND queue_id = $2 AND msg_offset = $3"
    " ORDER BY group_name"};

StoredMessageRow StoredFromRow(const pqxx::row& row) {
  LeasedMessage l = MessageFromRow(row);  // FERRY_MESSAGE_COLUMNS, then the dedup id
  return StoredMessageRow{l.queue,
                          l.offset,
                          std::move(l.key),
                          std::move(l.payload),
                          std::move(l.headers_json),
                          l.produced_at_us / 1000,
                          row[6].as<std::string>()};
}

absl::Status NoQueue(const TopicInfo& t, uint32_t queue) {
  return absl::InvalidArgumentError(absl::StrCat("topic \"", t.name, "\" has ", t.queue_count,
                                                 " queues (0 to ", t.queue_count - 1,
                                                 "); there is no queue ", queue));
}

}  // namespace

namespace store_internal {

std::vector<pg::Statement> TopicsStatements() {
  return {kInsertTopic, kInsertQueues,        kListTopics,  kDescribeQueues, kCountDelayed,
          kDeleteTopic, kDeleteTopicMessages, kUpdateTopic, kQueueBounds,    kPeekMessages,
          kGetMessage,  kMessageStatus,       kPeekFiltered};
}

}  // namespace store_internal

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

absl::StatusOr<TopicInfo> PgStore::UpdateTopic(const std::string& name,
                                               std::optional<int64_t> retention_ms,
                                               std::optional<int64_t> dedup_window_ms) {
  TopicInfo out;
  absl::Status status = pg::WithConnection(pool_, "update topic", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result r = tx.exec_prepared(kUpdateTopic.name, name, retention_ms, dedup_window_ms);
    if (r.empty()) return TopicNotFound(name);
    out = TopicFromRow(r[0]);
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<PeekResult> PgStore::PeekMessages(const std::string& topic, uint32_t queue,
                                                 int64_t from, int64_t max,
                                                 const PeekFilter& filter) {
  PeekResult out;
  absl::Status status = pg::WithConnection(pool_, "peek messages", [&](pqxx::connection& c) {
    out = PeekResult{};
    pqxx::read_transaction tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    const TopicInfo info = TopicFromRow(t[0]);
    if (filter.queue_from_key && filter.key) {
      NewMessage routed;
      routed.key = filter.key;
      queue = choose_queue_(routed, info.queue_count);
    }
    if (queue >= info.queue_count) return NoQueue(info, queue);
    out.queue_count = info.queue_count;
    out.queue = queue;
    pqxx::result b = tx.exec_prepared(kQueueBounds.name, info.topic_id, queue);
    if (b.empty()) return TopicNotFound(topic);
    out.first_offset = b[0][0].as<int64_t>();
    out.end_offset = b[0][1].as<int64_t>();
    const int64_t start = std::max(from, out.first_offset);
    out.next_offset = std::min(start, out.end_offset);
    if (!filter.any()) {
      for (const auto& row :
           tx.exec_prepared(kPeekMessages.name, info.topic_id, queue, start, max)) {
        out.messages.push_back(StoredFromRow(row));
        out.next_offset = out.messages.back().offset + 1;
      }
      return absl::OkStatus();
    }
    const int64_t scan_end = std::min(out.end_offset, start + kPeekScanLimit);
    for (const auto& row : tx.exec_prepared(kPeekFiltered.name, info.topic_id, queue, start, max,
                                            scan_end, filter.key, filter.dedup_id,
                                            filter.produced_after_ms, filter.produced_before_ms)) {
      out.messages.push_back(StoredFromRow(row));
    }
    // Fewer matches than asked: everything up to scan_end was read.
    out.next_offset = static_cast<int64_t>(out.messages.size()) < max
                          ? std::max(scan_end, out.next_offset)
                          : out.messages.back().offset + 1;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<MessageWhereabouts> PgStore::GetMessage(const std::string& topic, uint32_t queue,
                                                       int64_t offset) {
  MessageWhereabouts out;
  absl::Status status = pg::WithConnection(pool_, "get message", [&](pqxx::connection& c) {
    out = MessageWhereabouts{};
    pqxx::read_transaction tx(c);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    const TopicInfo info = TopicFromRow(t[0]);
    if (queue >= info.queue_count) return NoQueue(info, queue);
    pqxx::result m = tx.exec_prepared(kGetMessage.name, info.topic_id, queue, offset);
    if (m.empty()) {
      return absl::NotFoundError(absl::StrCat("no message at offset ", offset, " of queue ", queue,
                                              " of topic \"", topic,
                                              "\" (not produced yet, or removed by retention)"));
    }
    out.message = StoredFromRow(m[0]);
    for (const auto& row : tx.exec_prepared(kMessageStatus.name, info.topic_id, queue, offset)) {
      MessageGroupStateRow g;
      g.group = row[0].as<std::string>();
      g.state = row[1].as<std::string>();
      g.attempt = row[2].as<int32_t>();
      g.deadline_ms = row[3].as<int64_t>();
      g.dead_letter_reason = row[4].as<std::string>();
      g.dead_letter_id = row[5].as<int64_t>();
      out.groups.push_back(std::move(g));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace ferry::broker
