// /metrics after a known workload: the counts a dashboard would show match what was done.
#include <catch2/catch.hpp>

#include "broker/server.h"
#include "support/broker_fixture.h"
#include "support/scrape.h"

using ferry::test::BrokerFixture;

using ferry::test::Sample;
using ferry::test::Scrape;

TEST_CASE(
    "metrics count produced - delivered and committed messages and show lag from the database",
    "[integration][metrics]") {
  BrokerFixture f([](ferry::broker::BrokerOptions& o) { o.metrics_listen = "127.0.0.1:0"; });
  REQUIRE(f.server->metrics_port() > 0);
  f.CreateTopic("metered", 1);
  f.Produce("metered", {"a", "b", "c", "d", "e"});
  auto got = f.Consume("g", "metered", 3);
  REQUIRE(got.messages_size() == 3);
  CHECK(f.Settle("g", got.messages(0).receipt(), ferry::v1::ACK).status() == ferry::v1::COMMITTED);
  CHECK(f.Settle("g", got.messages(1).receipt(), ferry::v1::ACK).status() == ferry::v1::COMMITTED);

  const std::string text = Scrape(f.server->metrics_port());
  CHECK(Sample(text, "ferry_produced_messages_total{topic=\"metered\"}") == 5);
  CHECK(Sample(text, "ferry_delivered_messages_total{topic=\"metered\",group=\"g\"}") == 3);
  CHECK(Sample(text, "ferry_commit_results_total{group=\"g\",result=\"COMMITTED\"}") == 2);
  CHECK(Sample(text, "ferry_rpc_requests_total{method=\"Produce\",code=\"OK\"}") == 1);
  CHECK(Sample(text, "ferry_rpc_duration_seconds_count{method=\"Commit\"}") == 2);
  // From the database at scrape time.
  CHECK(Sample(text, "ferry_queue_end_offset{topic=\"metered\",queue=\"0\"}") == 5);
  CHECK(Sample(text, "ferry_consumer_lag_messages{group=\"g\",topic=\"metered\"}") == 3);
  CHECK(Sample(text, "ferry_consumer_inflight_messages{group=\"g\",topic=\"metered\"}") == 1);
  CHECK(Sample(text, "ferry_dead_letters{group=\"g\"}") == 0);
  CHECK(Sample(text, "ferry_half_messages{state=\"PREPARED\"}") == 0);
  CHECK(Sample(text, "ferry_metrics_collector_errors_total") == 0);
  CHECK(Sample(text, "ferry_db_pool_max_connections{pool=\"ferry-broker\"}") == 4);
  CHECK(Sample(text, "ferry_db_pool_connections{pool=\"ferry-broker\",state=\"open\"}") >= 1);
  CHECK(Sample(text, "ferry_db_pool_acquires_total{pool=\"ferry-broker\",result=\"ok\"}") >= 7);
  CHECK(Sample(text, "ferry_database_up") == 1);
  CHECK(text.find("ferry_build_info{program=\"ferry-broker\",version=\"") != std::string::npos);
  // Series exist before their first event (0, not absent): rates and alerts see them.
  CHECK(Sample(text, "ferry_rpc_requests_total{method=\"PeekMessages\",code=\"OK\"}") == 0);
  CHECK(Sample(text, "ferry_rpc_duration_seconds_count{method=\"RotateToken\"}") == 0);
  CHECK(Sample(text, "ferry_txn_check_answers_total{decision=\"TRANSACTION_UNKNOWN\"}") == 0);

  // The database gone: the counters are still served, the failed collection is counted.
  f.Exec("ALTER TABLE group_queues RENAME TO group_queues_away");
  const std::string degraded = Scrape(f.server->metrics_port());
  CHECK(Sample(degraded, "ferry_produced_messages_total{topic=\"metered\"}") == 5);
  CHECK(Sample(degraded, "ferry_consumer_lag_messages{group=\"g\",topic=\"metered\"}") == -1);
  CHECK(Sample(degraded, "ferry_metrics_collector_errors_total") == 1);
  f.Exec("ALTER TABLE group_queues_away RENAME TO group_queues");
}
