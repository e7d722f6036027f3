// PgStore, the console's reports: brokers' heartbeats, stats samples (lag and rates over time)
// and the cluster's status.
#include <pqxx/pqxx>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals

namespace {

#define FERRY_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

constexpr pg::Statement kHeartbeat{
    "broker_heartbeat",
    "INSERT INTO brokers (broker_id, version, listen, started_at)"
    " VALUES ($1, $2, $3, to_timestamp($4 / 1000.0))"
    " ON CONFLICT (broker_id) DO UPDATE SET version = EXCLUDED.version,"
    " listen = EXCLUDED.listen, started_at = EXCLUDED.started_at, seen_at = now()"};

constexpr pg::Statement kRecordStats{"broker_record_stats", "SELECT ferry_record_stats($1, $2)"};

constexpr pg::Statement kListBrokers{
    "broker_list_brokers",
    "SELECT broker_id, version, listen, " FERRY_MS("started_at") ", " FERRY_MS(
        "seen_at") ", seen_at > now() - interval '30 seconds'"
                   " FROM brokers ORDER BY broker_id"};

constexpr pg::Statement kListCheckers{
    "broker_list_checkers",
    "SELECT producer_group, broker_id, checkers, " FERRY_MS("seen_at")
    " FROM txn_checkers WHERE seen_at > now() - interval '30 seconds' AND checkers > 0"
    " ORDER BY producer_group, broker_id"};

constexpr pg::Statement kDatabaseStatus{
    "broker_database_status",
    "SELECT current_setting('server_version'), pg_database_size(current_database()),"
    " (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),"
    " current_setting('max_connections')::int, pg_is_in_recovery(),"
    " COALESCE((SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i"
    "  WHERE i.inhparent = 'messages'::regclass), 0), " FERRY_MS("now()")};

// Evenly thinned to at most $5 points per topic, always keeping each topic's newest.
constexpr pg::Statement kHistory{
    "broker_history",
    "WITH r AS (SELECT s.*, row_number() OVER w AS rn, count(*) OVER (PARTITION BY topic) AS n"
    "  FROM stats_samples s WHERE group_name = $1 AND ($2 = '' OR topic = $2)"
    "  AND sampled_at >= to_timestamp($3 / 1000.0) AND sampled_at < to_timestamp($4 / 1000.0)"
    "  WINDOW w AS (PARTITION BY topic ORDER BY sampled_at))"
    " SELECT " FERRY_MS("sampled_at") ", topic, end_offset, position, backlog, unsettled,"
    " in_flight, retrying, dead_letters, oldest_unacked_ms, delayed FROM r"
    " WHERE n <= $5 OR rn = n OR (n - rn) % ceil(n::numeric / $5)::bigint = 0"
    " ORDER BY topic, sampled_at"};

constexpr pg::Statement kGroupExists{"broker_group_exists",
                                     "SELECT 1 FROM consumer_groups WHERE name = $1"};
constexpr pg::Statement kTopicExists{"broker_topic_exists", "SELECT 1 FROM topics WHERE name = $1"};

}  // namespace

namespace store_internal {

std::vector<pg::Statement> ConsoleStatements() {
  return {kHeartbeat,      kRecordStats, kListBrokers, kListCheckers,
          kDatabaseStatus, kHistory,     kGroupExists, kTopicExists};
}

}  // namespace store_internal

absl::Status PgStore::Heartbeat(const BrokerInstanceRow& self) {
  return pg::WithConnection(pool_, "heartbeat", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec_prepared(kHeartbeat.name, self.broker_id, self.version, self.listen,
                     self.started_at_ms);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> PgStore::RecordStats(int64_t interval_ms, int64_t keep_ms) {
  int64_t written = 0;
  absl::Status status = pg::WithConnection(pool_, "record stats", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    written = tx.exec_prepared1(kRecordStats.name, interval_ms, keep_ms)[0].as<int64_t>();
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return written;
}

absl::StatusOr<ClusterStatusRow> PgStore::ClusterStatus() {
  ClusterStatusRow out;
  absl::Status status = pg::WithConnection(pool_, "cluster status", [&](pqxx::connection& c) {
    out = ClusterStatusRow{};
    pqxx::read_transaction tx(c);
    for (const auto& r : tx.exec_prepared(kListBrokers.name)) {
      out.brokers.push_back(BrokerInstanceRow{r[0].as<std::string>(), r[1].as<std::string>(),
                                              r[2].as<std::string>(), r[3].as<int64_t>(),
                                              r[4].as<int64_t>(), r[5].as<bool>()});
    }
    for (const auto& r : tx.exec_prepared(kListCheckers.name)) {
      out.checkers.push_back(CheckerRow{r[0].as<std::string>(), r[1].as<std::string>(),
                                        r[2].as<int32_t>(), r[3].as<int64_t>()});
    }
    const pqxx::row d = tx.exec_prepared1(kDatabaseStatus.name);
    out.server_version = d[0].as<std::string>();
    out.size_bytes = d[1].as<int64_t>();
    out.connections = d[2].as<int32_t>();
    out.max_connections = d[3].as<int32_t>();
    out.in_recovery = d[4].as<bool>();
    out.messages_bytes = d[5].as<int64_t>();
    out.now_ms = d[6].as<int64_t>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<HistorySample>> PgStore::History(const std::string& group,
                                                            const std::string& topic,
                                                            int64_t since_ms, int64_t until_ms,
                                                            int64_t max_points) {
  std::vector<HistorySample> out;
  absl::Status status = pg::WithConnection(pool_, "history", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    for (const auto& r :
         tx.exec_prepared(kHistory.name, group, topic, since_ms, until_ms, max_points)) {
      out.push_back(HistorySample{r[0].as<int64_t>(), r[1].as<std::string>(), r[2].as<int64_t>(),
                                  r[3].as<int64_t>(), r[4].as<int64_t>(), r[5].as<int64_t>(),
                                  r[6].as<int64_t>(), r[7].as<int64_t>(), r[8].as<int64_t>(),
                                  r[9].as<int64_t>(), r[10].as<int64_t>()});
    }
    if (out.empty()) {  // no samples yet, or no such group or topic?
      if (!group.empty() && tx.exec_prepared(kGroupExists.name, group).empty()) {
        return GroupNotFound(group);
      }
      if (!topic.empty() && tx.exec_prepared(kTopicExists.name, topic).empty()) {
        return TopicNotFound(topic);
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace ferry::broker
