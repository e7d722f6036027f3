// The outbox end to end: application transactions -> ferry_outbox -> two ferry-relay
// processes -> ferry-broker -> a consumer with an inbox, while relays (and the broker, once)
// are killed with SIGKILL.
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "client/client.h"
#include "client/outbox.h"
#include "relay/relay.h"
#include "support/broker_process.h"
#include "support/test_db.h"

using namespace ferry;
using test::BrokerProcess;
using test::RelayProcess;
using test::TempDatabase;
using Clock = std::chrono::steady_clock;

TEST_CASE(
    "outbox under load with kill -9 of relays and the broker: every committed row "
    "processed exactly once - rolled back never - per-key order with 2 relays",
    "[e2e][relay]") {
  TempDatabase broker_db;
  TempDatabase app(/*broker_schema=*/false);
  REQUIRE(relay::MigrateOutbox(app.conninfo()).ok());
  BrokerProcess broker(broker_db.conninfo(), test::FreePort(), "/tmp/ferry-e2e-relay-broker.log");
  {
    Client admin(broker.address());
    v1::TopicConfig t;
    t.set_name("orders");
    t.set_queues(4);
    t.set_ordered(true);
    REQUIRE(admin.CreateTopic(t).ok());
  }
  const std::vector<std::string> relay_args = {
      "--database-url",       app.conninfo(), "--broker",         broker.address(),
      "--poll-interval-ms",   "200",          "--lease-ms",       "2000",
      "--publish-timeout-ms", "1000",         "--backoff-min-ms", "50",
      "--backoff-max-ms",     "500",          "--max-attempts",   "1000"};
  std::vector<std::unique_ptr<RelayProcess>> relays;
  for (int i = 0; i < 2; ++i) {
    auto args = relay_args;
    args.push_back("--relay-id");
    args.push_back("relay-" + std::to_string(i));
    relays.push_back(
        std::make_unique<RelayProcess>(args, "/tmp/ferry-e2e-relay-" + std::to_string(i) + ".log"));
  }

  // Writers: transactions of 5 rows over 10 keys; every 10th rolls back. Per key, the payload
  // carries a counter in commit order (one writer thread: its commit order is its own order).
  constexpr int kTxns = 300, kKeys = 10;
  std::atomic<bool> writing{true};
  std::atomic<size_t> expected{SIZE_MAX};  // committed rows, known when the writer is done
  std::map<std::string, int> next_of_key;
  std::set<std::string> committed_payloads;
  std::thread writer([&] {
    pqxx::connection c(app.conninfo());
    for (int t = 0; t < kTxns; ++t) {
      pqxx::work tx(c);
      const bool rollback = t % 10 == 9;
      std::vector<std::string> payloads;
      for (int j = 0; j < 5; ++j) {
        const std::string key = "k" + std::to_string((t + j) % kKeys);
        const int n = rollback ? -1 : next_of_key[key]++;
        const std::string payload =
            rollback ? "rolled-back-" + std::to_string(t) : key + ":" + std::to_string(n);
        tx.exec_params("INSERT INTO ferry_outbox (topic, key, payload) VALUES ('orders', $1, $2)",
                       key, payload);
        payloads.push_back(payload);
      }
      if (rollback) {
        tx.abort();
      } else {
        tx.commit();
        committed_payloads.insert(payloads.begin(), payloads.end());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    expected = committed_payloads.size();
    writing = false;
  });

  // Chaos: SIGKILL a relay every ~0.3-0.8 s and restart it; the broker once.
  std::thread chaos([&] {
    std::mt19937 rng(7);
    bool broker_killed = false;
    while (writing.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 500));
      auto& victim = relays[rng() % relays.size()];
      victim->Kill();
      victim->Start();
      if (!broker_killed) {
        broker.Kill();
        std::this_thread::sleep_for(std::chrono::seconds(3));  // down for several seconds
        broker.Start();
        broker_killed = true;
      }
    }
  });

  // Consumer: an ordered group, processing through the inbox in the application database. A
  // short lease: an ACK lost while the broker is down holds its queue only briefly.
  std::vector<std::string> processed_payloads;  // in processing order
  std::atomic<size_t> processed_count{0};
  int deliveries = 0, duplicates = 0;
  std::thread consumer([&] {
    pqxx::connection db(app.conninfo());
    const auto give_up = Clock::now() + std::chrono::seconds(150);
    while (Clock::now() < give_up && processed_count.load() < expected.load()) {
      Client c(broker.address());
      v1::ConsumeRequest req;
      req.set_group("cart");
      req.set_topic("orders");
      req.set_max_messages(100);
      req.set_max_wait_ms(500);
      req.set_visibility_timeout_ms(3000);
      auto got = c.Consume(req);
      if (!got.ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      std::vector<std::string> receipts;
      for (const auto& m : got->messages()) {
        ++deliveries;
        pqxx::work tx(db);
        const bool ran =
            ProcessOnce(tx, "cart", m.headers().at("ferry-outbox-id"),
                        [&](pqxx::work&) { processed_payloads.push_back(m.payload()); });
        tx.commit();
        if (ran) {
          ++processed_count;
        } else {
          ++duplicates;
        }
        receipts.push_back(m.receipt());
      }
      if (!receipts.empty()) (void)c.Ack("cart", receipts);
    }
  });
  writer.join();
  chaos.join();
  // Everything committed must leave the outbox.
  {
    pqxx::connection c(app.conninfo());
    const auto give_up = Clock::now() + std::chrono::seconds(60);
    for (;;) {
      pqxx::read_transaction tx(c);
      const int open =
          tx.exec("SELECT count(*) FROM ferry_outbox WHERE status <> 'sent'")[0][0].as<int>();
      if (open == 0 || Clock::now() > give_up) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  consumer.join();

  pqxx::connection c(app.conninfo());
  pqxx::read_transaction tx(c);
  CHECK(tx.exec("SELECT count(*) FROM ferry_outbox WHERE status = 'failed'")[0][0].as<int>() == 0);
  CHECK(tx.exec("SELECT count(*) FROM ferry_outbox WHERE status = 'sent'")[0][0].as<size_t>() ==
        committed_payloads.size());
  CHECK(tx.exec("SELECT count(*) FROM ferry_inbox")[0][0].as<size_t>() ==
        committed_payloads.size());                // each committed row processed exactly once
  std::map<std::string, std::vector<int>> by_key;  // key -> counters, in processing order
  int phantoms = 0;
  for (const auto& p : processed_payloads) {
    const auto colon = p.find(':');
    if (committed_payloads.count(p) == 0 || colon == std::string::npos) {
      ++phantoms;  // rolled back, or never written
      continue;
    }
    by_key[p.substr(0, colon)].push_back(std::stoi(p.substr(colon + 1)));
  }
  CHECK(phantoms == 0);
  CHECK(processed_payloads.size() == committed_payloads.size());
  int out_of_order = 0;
  for (const auto& [key, counters] : by_key) {
    for (size_t i = 0; i < counters.size(); ++i) out_of_order += counters[i] != static_cast<int>(i);
  }
  CHECK(out_of_order == 0);
  WARN("deliveries " << deliveries << ", duplicates skipped by the inbox " << duplicates);
}
