// Gauges read from the database at scrape time: what is stored, not what this process saw.
#include <pqxx/pqxx>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"

namespace ferry::broker {
namespace {

// Committed offset as everywhere else: the lowest leased offset, else delivered_offset, and
// never below the queue's low watermark (retention).
constexpr pg::Statement kGroupGauges{
    "broker_metric_group_gauges",
    "SELECT g.name, t.name,"
    " sum(e.end_offset - greatest(COALESCE(l.first, e.delivered), q.first_offset)),"
    " COALESCE(sum(l.in_flight), 0), COALESCE(sum(l.retrying), 0),"
    " COALESCE(extract(epoch FROM now() - min(l.oldest)), 0)"
    " FROM group_queues gq JOIN consumer_groups g USING (group_id) JOIN topics t USING (topic_id)"
    " JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " CROSS JOIN LATERAL (SELECT " FERRY_QUEUE_END("q") " AS end_offset, " FERRY_GROUP_DELIVERED(
        "gq") " AS delivered) e"
    " LEFT JOIN LATERAL (SELECT min(msg_offset) AS first,"
    "  count(*) FILTER (WHERE state IN ('delivered', 'in_txn')) AS in_flight,"
    "  count(*) FILTER (WHERE state IN ('retrying', 'redriven')) AS retrying,"
    "  min(first_delivered_at) AS oldest FROM group_in_flight l WHERE l.group_id = gq.group_id"
    "  AND l.topic_id = gq.topic_id AND l.queue_id = gq.queue_id) l ON true"
    " GROUP BY g.name, t.name ORDER BY 1, 2"};

constexpr pg::Statement kQueueEnds{
    "broker_metric_queue_ends",
    "SELECT t.name, q.queue_id, " FERRY_QUEUE_END("q") " FROM queues q JOIN topics t USING (topic_id)"
    " ORDER BY 1, 2"};

constexpr pg::Statement kDeadLetterCounts{
    "broker_metric_dead_letters",
    "SELECT g.name, count(d.*) FROM consumer_groups g LEFT JOIN dead_letters d USING (group_id)"
    " GROUP BY 1 ORDER BY 1"};

constexpr pg::Statement kDelayedCounts{
    "broker_metric_delayed",
    "SELECT t.name, count(d.*) FROM topics t LEFT JOIN delayed_messages d USING (topic_id)"
    " GROUP BY 1 ORDER BY 1"};

constexpr pg::Statement kTxnCounts{
    "broker_metric_transactions",
    "SELECT s.state, (SELECT count(*) FROM transactions t WHERE t.state = s.state),"
    " (SELECT count(*) FROM half_messages h JOIN transactions t USING (txn_id)"
    "  WHERE t.state = s.state)"
    " FROM unnest(ARRAY['PREPARED', 'CHECK_EXHAUSTED', 'COMMITTED', 'ROLLED_BACK']) AS s(state)"};

}  // namespace

namespace store_internal {

std::vector<pg::Statement> MetricsStatements() {
  return {kGroupGauges, kQueueEnds, kDeadLetterCounts, kDelayedCounts, kTxnCounts};
}

}  // namespace store_internal

absl::StatusOr<std::vector<metrics::GaugeFamily>> PgStore::MetricGauges() {
  std::vector<metrics::GaugeFamily> out;
  absl::Status status = pg::WithConnection(pool_, "metrics", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    metrics::GaugeFamily ends{"ferry_queue_end_offset",
                              "next offset to be written per queue (messages ever stored)",
                              {"topic", "queue"},
                              {}};
    for (const auto& r : tx.exec_prepared(kQueueEnds.name)) {
      ends.samples.push_back({{r[0].as<std::string>(), r[1].as<std::string>()}, r[2].as<double>()});
    }
    metrics::GaugeFamily lag{"ferry_consumer_lag_messages",
                             "stored messages the group has not committed",
                             {"group", "topic"},
                             {}};
    metrics::GaugeFamily in_flight{"ferry_consumer_inflight_messages",
                                   "delivered and not yet settled (leased)",
                                   {"group", "topic"},
                                   {}};
    metrics::GaugeFamily retrying{"ferry_consumer_retrying_messages",
                                  "waiting for a scheduled redelivery",
                                  {"group", "topic"},
                                  {}};
    metrics::GaugeFamily age{"ferry_consumer_oldest_unacked_age_seconds",
                             "since the first delivery of the oldest unsettled message",
                             {"group", "topic"},
                             {}};
    for (const auto& r : tx.exec_prepared(kGroupGauges.name)) {
      const metrics::Labels l{r[0].as<std::string>(), r[1].as<std::string>()};
      lag.samples.push_back({l, r[2].as<double>()});
      in_flight.samples.push_back({l, r[3].as<double>()});
      retrying.samples.push_back({l, r[4].as<double>()});
      age.samples.push_back({l, r[5].as<double>()});
    }
    metrics::GaugeFamily dead{"ferry_dead_letters", "dead letters kept per group", {"group"}, {}};
    for (const auto& r : tx.exec_prepared(kDeadLetterCounts.name)) {
      dead.samples.push_back({{r[0].as<std::string>()}, r[1].as<double>()});
    }
    metrics::GaugeFamily delayed{
        "ferry_delayed_messages", "messages waiting for their delivery time", {"topic"}, {}};
    for (const auto& r : tx.exec_prepared(kDelayedCounts.name)) {
      delayed.samples.push_back({{r[0].as<std::string>()}, r[1].as<double>()});
    }
    metrics::GaugeFamily half{"ferry_half_messages",
                              "messages of transactions not yet visible, by transaction state",
                              {"state"},
                              {}};
    metrics::GaugeFamily txns{"ferry_transactions", "transactions by state", {"state"}, {}};
    for (const auto& r : tx.exec_prepared(kTxnCounts.name)) {
      txns.samples.push_back({{r[0].as<std::string>()}, r[1].as<double>()});
      half.samples.push_back({{r[0].as<std::string>()}, r[2].as<double>()});
    }
    out = {std::move(ends),     std::move(lag),  std::move(in_flight),
           std::move(retrying), std::move(age),  std::move(dead),
           std::move(delayed),  std::move(half), std::move(txns)};
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace ferry::broker
