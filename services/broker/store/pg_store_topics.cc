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

}  // namespace

namespace store_internal {

std::vector<pg::Statement> TopicsStatements() {
  return {kInsertTopic,  kInsertQueues, kListTopics,         kDescribeQueues,
          kCountDelayed, kDeleteTopic,  kDeleteTopicMessages};
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

}  // namespace ferry::broker
