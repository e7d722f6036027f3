// ferry-relay (in process) between a real application database and a real broker.
#include "relay/relay.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "broker/server.h"
#include "client/outbox.h"
#include "common/metrics.h"
#include "relay/store/pg_outbox_store.h"
#include "support/broker_fixture.h"
#include "support/scrape.h"

using namespace ferry;
using test::BrokerFixture;
using test::TempDatabase;
using Clock = std::chrono::steady_clock;

namespace {

// Runs `sql` in its own committed transaction; returns the first value ("" for none or NULL).
std::string RunSql(const std::string& conninfo, const std::string& sql) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  auto r = tx.exec(sql);
  tx.commit();
  return r.empty() || r[0][0].is_null() ? "" : r[0][0].c_str();
}

struct RelayFixture {
  explicit RelayFixture(const std::function<void(relay::RelayOptions&)>& tune = nullptr,
                        const std::function<void(broker::BrokerOptions&)>& tune_broker = nullptr)
      : broker(tune_broker), app(/*broker_schema=*/false) {
    absl::Status s = relay::MigrateOutbox(app.conninfo());
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
    relay::RelayOptions o;
    o.database_url = app.conninfo();
    o.broker = broker.address();
    o.poll_interval_ms = 200;
    o.backoff_min_ms = 50;
    o.backoff_max_ms = 200;
    if (tune) tune(o);
    options = o;
  }
  void StartRelay() {
    relay_ = std::make_unique<relay::Relay>(options);
    absl::Status s = relay_->Start();
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  }
  void Sql(const std::string& sql) { RunSql(app.conninfo(), sql); }
  std::string One(const std::string& sql) { return RunSql(app.conninfo(), sql); }

  BrokerFixture broker;
  TempDatabase app;
  relay::RelayOptions options;
  std::unique_ptr<relay::Relay> relay_;
};

std::vector<std::string> Payloads(BrokerFixture& f, const std::string& group,
                                  const std::string& topic, size_t want) {
  std::vector<std::string> out;
  const auto give_up = Clock::now() + std::chrono::seconds(15);
  while (out.size() < want && Clock::now() < give_up) {
    auto got = f.Consume(group, topic, 100, 500);
    for (const auto& m : got.messages()) {
      out.push_back(m.payload());
      f.Settle(group, m.receipt(), v1::ACK);
    }
  }
  return out;
}

}  // namespace

TEST_CASE(
    "committed rows are published in commit order per key - rolled back ones never - a "
    "failing row fails alone",
    "[integration][relay]") {
  RelayFixture f;
  f.broker.CreateTopic("orders", 4, 0, /*ordered=*/true);
  f.StartRelay();
  for (int i = 0; i < 30; ++i) {
    pqxx::connection c(f.app.conninfo());
    pqxx::work tx(c);
    tx.exec_params("INSERT INTO ferry_outbox (topic, key, payload) VALUES ('orders', $1, $2)",
                   "customer-" + std::to_string(i % 3), std::to_string(i));
    if (i % 5 == 4) {
      tx.exec_params("INSERT INTO ferry_outbox (topic, key, payload) VALUES ('orders', $1, $2)",
                     "customer-" + std::to_string(i % 3), "rolled-back-" + std::to_string(i));
      tx.abort();
      continue;
    }
    tx.commit();
  }
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('no.such.topic', 'x')");
  const size_t committed = 30 - 6;
  auto got = Payloads(f.broker, "shipping", "orders", committed);
  REQUIRE(got.size() == committed);
  std::map<int, int> last_of_key;  // per key: payloads increase
  int out_of_order = 0;
  for (const auto& p : got) {
    REQUIRE(p.rfind("rolled-back", 0) != 0);
    const int v = std::stoi(p);
    auto it = last_of_key.find(v % 3);
    if (it != last_of_key.end() && it->second > v) ++out_of_order;
    last_of_key[v % 3] = v;
  }
  CHECK(out_of_order == 0);
  // A row is marked sent after the broker acknowledged it, in the relay's next statement: a
  // consumer can see the message first.
  for (int i = 0; i < 100 && f.One("SELECT count(*) FROM ferry_outbox WHERE status = 'sent'") !=
                                 std::to_string(committed);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(f.One("SELECT count(*) FROM ferry_outbox WHERE status = 'sent'") ==
        std::to_string(committed));
  // The bad row was committed last: the relay may still be narrowing its batch down.
  for (int i = 0; i < 100 && f.One("SELECT status FROM ferry_outbox WHERE topic = "
                                   "'no.such.topic'") != "failed";
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(f.One("SELECT status FROM ferry_outbox WHERE topic = 'no.such.topic'") == "failed");
  CHECK(f.One("SELECT last_error FROM ferry_outbox WHERE topic = 'no.such.topic'")
            .find("NOT_FOUND") != std::string::npos);
  // A person requeues it once the topic exists: then it flows.
  f.broker.CreateTopic("no.such.topic", 1);
  f.Sql("SELECT ferry_outbox_requeue(id) FROM ferry_outbox WHERE topic = 'no.such.topic'");
  CHECK(Payloads(f.broker, "g", "no.such.topic", 1) == std::vector<std::string>{"x"});
}

TEST_CASE("a claim left by a crashed relay is taken over when its lease ends",
          "[integration][relay]") {
  RelayFixture f;
  f.broker.CreateTopic("t", 1);
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('t', 'orphan')");
  // Another relay claimed it and died (its lease still runs for a second).
  f.Sql(
      "UPDATE ferry_outbox SET attempts = 1, claimed_by = 'dead-relay',"
      " claimed_until = now() + interval '1 second'");
  f.StartRelay();
  auto got = f.broker.Consume("g", "t", 1, 5000);
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == "orphan");
  // The relay marks the row after the broker acknowledged it: the consumer can be faster.
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  std::string row;
  while ((row = f.One("SELECT status || ' ' || attempts FROM ferry_outbox")) != "sent 2" &&
         Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(row == "sent 2");
}

TEST_CASE(
    "retry rules: backoff keeps a row pending - an outage refunds the attempt - past max "
    "attempts it fails with its error",
    "[integration][relay]") {
  TempDatabase app(false);
  REQUIRE(relay::MigrateOutbox(app.conninfo()).ok());
  pg::ConnectionPool pool(app.conninfo(), 2, "test", relay::PgOutboxStore::Statements());
  relay::PgOutboxStore store(pool, "me", /*max_attempts=*/2);
  auto one = [&](const std::string& sql) { return RunSql(app.conninfo(), sql); };
  one("INSERT INTO ferry_outbox (topic, payload) VALUES ('t', 'x')");

  auto claim = [&] {
    auto rows = store.Claim(10, 30000);
    REQUIRE(rows.ok());
    return *rows;
  };
  auto rows = claim();
  REQUIRE(rows.size() == 1);
  CHECK(claim().empty());  // claimed: invisible to other relays
  REQUIRE(store.Retry({{rows[0].id, rows[0].attempts, 0}}, /*refund=*/true, "UNAVAILABLE").ok());
  CHECK(one("SELECT status || ' ' || attempts FROM ferry_outbox") == "pending 0");

  rows = claim();
  REQUIRE(rows.size() == 1);
  REQUIRE(store.Retry({{rows[0].id, rows[0].attempts, 60000}}, false, "INTERNAL: boom").ok());
  CHECK(one("SELECT status || ' ' || attempts FROM ferry_outbox") == "pending 1");
  CHECK(claim().empty());  // backing off for a minute
  one("UPDATE ferry_outbox SET next_attempt_at = now()");

  rows = claim();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].attempts == 2);
  REQUIRE(store.Retry({{rows[0].id, rows[0].attempts, 0}}, false, "INTERNAL: boom again").ok());
  CHECK(one("SELECT status || ' ' || attempts || ' ' || last_error FROM ferry_outbox") ==
        "failed 2 INTERNAL: boom again");
  CHECK(claim().empty());
  // Fencing: a stale holder (wrong attempt) cannot mark a row.
  one("SELECT ferry_outbox_requeue(id) FROM ferry_outbox");
  rows = claim();
  auto marked = store.MarkSent({{rows[0].id, rows[0].attempts + 5, 0, 0}});
  REQUIRE(marked.ok());
  CHECK(marked->empty());
  CHECK(one("SELECT status FROM ferry_outbox") == "pending");
}

TEST_CASE(
    "claims take a key's backlog in runs of its first rows in commit order - one relay "
    "per key at a time - a failed row or another topic ends the run",
    "[integration][relay]") {
  TempDatabase app(false);
  REQUIRE(relay::MigrateOutbox(app.conninfo()).ok());
  pg::ConnectionPool pool(app.conninfo(), 2, "test", relay::PgOutboxStore::Statements());
  relay::PgOutboxStore a(pool, "a", 16), b(pool, "b", 16);
  auto sql = [&](const std::string& q) { return RunSql(app.conninfo(), q); };
  // 250 rows of key k, then 5 of key j and 3 without a key, each its own transaction.
  for (int i = 1; i <= 250; ++i) {
    sql("INSERT INTO ferry_outbox (topic, key, payload) VALUES ('t', 'k', 'k" + std::to_string(i) +
        "')");
  }
  for (int i = 1; i <= 5; ++i) {
    sql("INSERT INTO ferry_outbox (topic, key, payload) VALUES ('t', 'j', 'j" + std::to_string(i) +
        "')");
  }
  for (int i = 1; i <= 3; ++i) {
    sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('t', 'n" + std::to_string(i) + "')");
  }
  auto claim = [](relay::PgOutboxStore& s, int limit) {
    auto rows = s.Claim(limit, 30000);
    REQUIRE(rows.ok());
    return *rows;
  };
  // The payloads of one key, in the order the claim returned them.
  auto of_key = [](const std::vector<relay::OutboxRow>& rows, const std::string& key) {
    std::vector<std::string> out;
    for (const auto& r : rows) {
      if (r.key == key) out.push_back(r.payload);
    }
    return out;
  };
  auto expect = [](const std::string& key, int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i <= to; ++i) out.push_back(key + std::to_string(i));
    return out;
  };
  auto sent = [](const std::vector<relay::OutboxRow>& rows) {
    std::vector<relay::SentRow> out;
    for (const auto& r : rows) out.push_back({r.id, r.attempts, 0, 0});
    return out;
  };

  auto first = claim(a, 100);
  CHECK(first.size() == 100);
  CHECK(of_key(first, "k") == expect("k", 1, 100));  // the oldest key's run, in order
  auto second = claim(b, 100);  // k is held by a: b takes the other key and the unkeyed rows
  CHECK(of_key(second, "k").empty());
  CHECK(of_key(second, "j") == expect("j", 1, 5));
  CHECK(second.size() == 8);
  CHECK(claim(b, 100).empty());
  REQUIRE(a.MarkSent(sent(first)).ok());
  auto third = claim(b, 100);  // after the run is sent, the next rows of k, by any relay
  CHECK(of_key(third, "k") == expect("k", 101, 200));

  // A failed row ends the run: rows after it wait until a person requeues or skips it.
  REQUIRE(b.MarkSent(sent(third)).ok());
  const std::string k210 = sql("SELECT id FROM ferry_outbox WHERE payload = 'k210'");
  sql("UPDATE ferry_outbox SET status = 'failed', last_error = 'test' WHERE id = '" + k210 + "'");
  // ... and so does a row of another topic (a key's run is one Produce call).
  sql("UPDATE ferry_outbox SET topic = 'u' WHERE payload = 'k205'");
  // The rows behind it say why they wait (a plain 'pending' with 0 attempts looked stuck).
  CHECK(sql("SELECT count(*) FROM ferry_outbox_status WHERE held_back_by = '" + k210 + "'") ==
        "40");  // k211 .. k250
  CHECK(sql("SELECT s.explanation FROM ferry_outbox_status s JOIN ferry_outbox o USING (id)"
            " WHERE o.payload = 'k211'")
            .rfind("held back: row " + k210, 0) == 0);
  CHECK(sql("SELECT explanation FROM ferry_outbox_status WHERE id = '" + k210 + "'") ==
        "failed: test; ferry_outbox_requeue(id) or ferry_outbox_skip(id, reason)");
  auto fourth = claim(a, 100);
  CHECK(of_key(fourth, "k") == expect("k", 201, 204));
  REQUIRE(a.MarkSent(sent(fourth)).ok());
  auto fifth = claim(a, 100);
  CHECK(of_key(fifth, "k") == std::vector<std::string>{"k205"});
  CHECK(fifth[0].topic == "u");
  REQUIRE(a.MarkSent(sent(fifth)).ok());
  CHECK(of_key(claim(a, 100), "k") == expect("k", 206, 209));  // then the failed 210
  CHECK(claim(a, 100).empty());
  sql("SELECT ferry_outbox_skip('" + k210 + "', 'test')");
  CHECK(claim(b, 100).empty());  // 206-209 are a's until their claim ends ...
  sql("UPDATE ferry_outbox SET claimed_until = now() - interval '1 second' WHERE claimed_by = 'a'");
  auto rest = expect("k", 206, 209);  // ... then b takes over, in order, without the skipped 210
  for (const auto& p : expect("k", 211, 250)) rest.push_back(p);
  CHECK(of_key(claim(b, 100), "k") == rest);
}

TEST_CASE(
    "a claim whose run changes under it (a row failed by another transaction while the "
    "claim waits for it) claims nothing - the next claim stops before that row",
    "[integration][relay]") {
  TempDatabase app(false);
  REQUIRE(relay::MigrateOutbox(app.conninfo()).ok());
  pg::ConnectionPool pool(app.conninfo(), 2, "test", relay::PgOutboxStore::Statements());
  relay::PgOutboxStore store(pool, "a", 16);
  for (int i = 1; i <= 5; ++i) {
    RunSql(app.conninfo(), "INSERT INTO ferry_outbox (topic, key, payload) VALUES ('t', 'k', 'k" +
                               std::to_string(i) + "')");
  }
  // Another transaction (a relay whose claim on k3 had expired, say) fails k3 and has not
  // committed yet: the claim reads k1-k5 as one run and waits for k3's row lock.
  pqxx::connection other(app.conninfo());
  pqxx::work failing(other);
  failing.exec("UPDATE ferry_outbox SET status = 'failed', last_error = 'x' WHERE payload = 'k3'");
  auto claim = std::async(std::launch::async, [&] { return store.Claim(100, 30000); });
  REQUIRE(claim.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout);
  failing.commit();
  auto rows = claim.get();
  REQUIRE(rows.ok());
  CHECK(rows->empty());  // k4 and k5 would have passed the failed k3
  CHECK(RunSql(app.conninfo(), "SELECT count(*) FROM ferry_outbox WHERE claimed_by IS NOT NULL") ==
        "0");
  rows = store.Claim(100, 30000);
  REQUIRE(rows.ok());
  std::vector<std::string> got;
  for (const auto& r : *rows) got.push_back(r.payload);
  CHECK(got == std::vector<std::string>{"k1", "k2"});
}

// The outbox trigger must not NOTIFY: PostgreSQL serializes the commits of notifying
// transactions (one lock per database, held through the WAL flush), which would make every
// application transaction that writes to the outbox wait for every other one.
TEST_CASE("outbox inserts send no NOTIFY and an idle relay publishes at its next poll",
          "[integration][relay]") {
  RelayFixture f([](relay::RelayOptions& o) { o.poll_interval_ms = 200; });
  f.broker.CreateTopic("fast", 1);
  pqxx::connection listener(f.app.conninfo());
  {
    pqxx::nontransaction tx(listener);
    tx.exec("LISTEN ferry_outbox");
  }
  f.StartRelay();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the relay is idle, polling
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('fast', 'now')");
  auto got = f.broker.Consume("g", "fast", 1, 8000);
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == "now");
  CHECK(listener.get_notifs() == 0);
}

TEST_CASE(
    "back-checks answered from the application database: committed locally - rolled back "
    "locally - still in progress",
    "[integration][relay]") {
  RelayFixture f(
      [](relay::RelayOptions& o) {
        o.producer_groups = {"shop"};
        o.check_query =
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM app_orders WHERE ref = $1) THEN 'COMMIT'"
            " ELSE 'UNKNOWN' END";
      },
      [](broker::BrokerOptions& o) {
        o.txn_check_after_ms = 200;
        o.txn_check_interval_ms = 200;
        o.txn_max_checks = 100;
      });
  f.broker.CreateTopic("orders", 1);
  f.Sql("CREATE TABLE app_orders (ref text PRIMARY KEY)");
  f.StartRelay();

  // The producer's pattern: half message carrying its own transaction id, local work, commit,
  // and then it "dies" before EndTransaction.
  auto half = [&](pqxx::work& tx, const std::string& payload) {
    const std::string xid = tx.exec("SELECT pg_current_xact_id()::text")[0][0].c_str();
    v1::ProduceRequest p;
    p.set_topic("orders");
    p.mutable_transactional()->set_producer_group("shop");
    p.mutable_transactional()->set_check_ref(xid);
    p.add_messages()->set_payload(payload);
    auto r = f.broker.client->Produce(p);
    if (!r.ok()) throw std::runtime_error(std::string(r.status().message()));
    return r->transaction_id();
  };
  pqxx::connection c1(f.app.conninfo()), c2(f.app.conninfo()), c3(f.app.conninfo());
  {
    pqxx::work tx(c1);
    half(tx, "committed-locally");
    tx.exec("INSERT INTO app_orders VALUES ('a')");
    tx.commit();
  }
  std::string rolled_back;
  {
    pqxx::work tx(c2);
    rolled_back = half(tx, "rolled-back-locally");
    tx.abort();
  }
  pqxx::work in_progress(c3);
  const std::string pending = half(in_progress, "in-progress");

  CHECK(Payloads(f.broker, "g", "orders", 1) == std::vector<std::string>{"committed-locally"});
  auto state_of = [&](const std::string& id) {
    v1::ListTransactionsRequest req;
    v1::ListTransactionsResponse resp;
    grpc::ClientContext ctx;
    if (!f.broker.client->admin().ListTransactions(&ctx, req, &resp).ok())
      return v1::TransactionInfo();
    for (const auto& t : resp.transactions()) {
      if (t.transaction_id() == id) return t;
    }
    return v1::TransactionInfo();
  };
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (state_of(rolled_back).state() != v1::TXN_ROLLED_BACK && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(state_of(rolled_back).state() == v1::TXN_ROLLED_BACK);
  // Still in progress: asked and answered UNKNOWN, several times, and not decided.
  while (state_of(pending).checks_sent() < 3 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(state_of(pending).checks_sent() >= 3);
  CHECK(state_of(pending).state() == v1::TXN_PREPARED);
  in_progress.commit();  // the local transaction ends: the next check commits it
  CHECK(Payloads(f.broker, "g", "orders", 1) == std::vector<std::string>{"in-progress"});

  // A check_ref that is not a transaction id goes to --check-query.
  v1::ProduceRequest p;
  p.set_topic("orders");
  p.mutable_transactional()->set_producer_group("shop");
  p.mutable_transactional()->set_check_ref("order-77");
  p.add_messages()->set_payload("by-query");
  REQUIRE(f.broker.client->Produce(p).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  CHECK(f.broker.Consume("g", "orders", 1).messages_size() == 0);  // UNKNOWN: no row yet
  f.Sql("INSERT INTO app_orders VALUES ('order-77')");
  CHECK(Payloads(f.broker, "g", "orders", 1) == std::vector<std::string>{"by-query"});

  // The broker's metrics saw the checks and the answers (broker and relay share this process).
  const std::string text = metrics::Default().Render();
  CHECK(test::Sample(text, "ferry_txn_checks_total{producer_group=\"shop\",outcome=\"sent\"}") >=
        6);
  CHECK(test::Sample(text, "ferry_txn_check_answers_total{decision=\"TRANSACTION_COMMIT\"}") >= 3);
  CHECK(test::Sample(text, "ferry_txn_check_answers_total{decision=\"TRANSACTION_ROLLBACK\"}") >=
        1);
  CHECK(test::Sample(text, "ferry_txn_check_answers_total{decision=\"TRANSACTION_UNKNOWN\"}") >= 3);
}

TEST_CASE("relay metrics: published - failed - pending and its age - publish latency - /healthz",
          "[integration][relay][metrics]") {
  RelayFixture f([](relay::RelayOptions& o) {
    o.metrics_listen = "127.0.0.1:0";
    o.poll_interval_ms = 20;
  });
  f.broker.CreateTopic("orders", 1);
  f.StartRelay();
  const int port = f.relay_->metrics_port();
  REQUIRE(port > 0);
  for (int i = 0; i < 10; ++i) {
    f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('orders', '" + std::to_string(i) +
          "')");
  }
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('no.such.topic', 'x')");
  REQUIRE(Payloads(f.broker, "g", "orders", 10).size() == 10);
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (f.One("SELECT count(*) FROM ferry_outbox WHERE status = 'failed'") != "1" &&
         Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string text = test::Scrape(port);
  CHECK(test::Sample(text, "ferry_relay_published_total{topic=\"orders\"}") == 10);
  CHECK(test::Sample(text, "ferry_relay_publish_latency_seconds_count") == 10);
  CHECK(test::Sample(text,
                     "ferry_relay_publish_errors_total{topic=\"no.such.topic\",kind=\"failed\"}") ==
        1);
  CHECK(test::Sample(text, "ferry_relay_outbox_rows{status=\"failed\"}") == 1);
  CHECK(test::Sample(text, "ferry_relay_outbox_rows{status=\"pending\"}") == 0);
  CHECK(test::Sample(text, "ferry_relay_oldest_pending_age_seconds") == 0);
  CHECK(test::Sample(text, "ferry_db_pool_max_connections{pool=\"ferry-relay\"}") == 2);
  CHECK(test::Healthz(port).first == 200);

  // The broker goes away: rows wait (pending, aging) and /healthz says why.
  f.broker.server->Shutdown();
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('orders', 'while down')");
  std::pair<int, std::string> health;
  while ((health = test::Healthz(port)).first == 200 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(health.first == 503);
  CHECK(health.second.find("broker") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  text = test::Scrape(port);
  CHECK(test::Sample(text, "ferry_relay_outbox_rows{status=\"pending\"}") == 1);
  CHECK(test::Sample(text, "ferry_relay_oldest_pending_age_seconds") >= 1);
  CHECK(test::Sample(
            text, "ferry_relay_publish_errors_total{topic=\"orders\",kind=\"unreachable\"}") >= 1);
}

TEST_CASE("C++ Enqueue: the row is published with its headers - only if the transaction commits",
          "[integration][relay]") {
  RelayFixture f;
  f.broker.CreateTopic("orders", 2);
  f.StartRelay();
  pqxx::connection c(f.app.conninfo());
  std::string id;
  {
    pqxx::work tx(c);
    Enqueue(tx, "orders", "order-1", "rolled back", {});
    tx.abort();
  }
  {
    pqxx::work tx(c);
    id = Enqueue(tx, "orders", "order-2", std::string("bin\0ary", 7), {{"type", "created"}});
    tx.commit();
  }
  auto got = f.broker.Consume("g", "orders", 10, 5000);
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == std::string("bin\0ary", 7));
  CHECK(got.messages(0).key() == "order-2");
  CHECK(got.messages(0).headers().at("type") == "created");
  CHECK(got.messages(0).headers().at("ferry-outbox-id") == id);
  CHECK(f.broker.Consume("g", "orders", 10, 1000).messages_size() == 0);
}

TEST_CASE(
    "outbox headers: other JSON values are sent as their text - headers that are not an "
    "object or that set ferry-outbox-id fail the row with the reason - neighbours flow",
    "[integration][relay]") {
  RelayFixture f;
  f.broker.CreateTopic("orders", 1);
  f.Sql(
      "INSERT INTO ferry_outbox (topic, payload, headers) VALUES "
      "('orders', 'typed', '{\"n\": 1, \"s\": \"x\", \"o\": {\"a\": [true, null]}}'), "
      "('orders', 'array', '[1, 2]'), "
      "('orders', 'string', '\"created\"'), "
      "('orders', 'forged', '{\"ferry-outbox-id\": \"00000000-0000-0000-0000-000000000000\"}'), "
      "('orders', 'plain', '{}')");
  f.StartRelay();
  auto got = f.broker.Consume("g", "orders", 10, 5000);
  std::map<std::string, v1::DeliveredMessage> by_payload;
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (by_payload.size() < 2 && Clock::now() < give_up) {
    for (const auto& m : got.messages()) by_payload[m.payload()] = m;
    if (by_payload.size() < 2) got = f.broker.Consume("g", "orders", 10, 1000);
  }
  REQUIRE(by_payload.size() == 2);
  const auto& typed = by_payload.at("typed").headers();
  CHECK(typed.at("n") == "1");
  CHECK(typed.at("s") == "x");
  CHECK(typed.at("o") == R"({"a":[true,null]})");
  CHECK(typed.size() == 4);  // with ferry-outbox-id
  CHECK(by_payload.at("plain").headers().size() == 1);

  CHECK(
      f.One("SELECT string_agg(convert_from(payload, 'UTF8') || ': ' || last_error, ' | ' "
            "ORDER BY convert_from(payload, 'UTF8')) FROM ferry_outbox WHERE status = 'failed'") ==
      "array: headers: must be a JSON object of header names to values, got array | "
      "forged: headers: \"ferry-outbox-id\" is set by the relay (the row id) | "
      "string: headers: must be a JSON object of header names to values, got string");
  CHECK(f.broker.Consume("g", "orders", 10, 500).messages_size() == 0);  // nothing else sent
}

TEST_CASE(
    "a row that fails in the middle of a key's run holds back the later rows of its key "
    "until it is skipped - then they are published in order",
    "[integration][relay]") {
  RelayFixture f;
  f.broker.CreateTopic("orders", 1);
  for (int i = 1; i <= 5; ++i) {
    f.Sql("INSERT INTO ferry_outbox (topic, key, payload, headers) VALUES ('orders', 'order-1', '" +
          std::to_string(i) + "', '" + (i == 3 ? "[\"not an object\"]" : "{}") + "')");
  }
  f.Sql("INSERT INTO ferry_outbox (topic, key, payload) VALUES ('orders', 'order-2', 'other')");
  f.StartRelay();
  std::vector<std::string> got = Payloads(f.broker, "g", "orders", 3);
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"1", "2", "other"});
  CHECK(f.One("SELECT string_agg(convert_from(payload, 'UTF8') || ' ' || status || ' ' || "
              "coalesce(last_error, ''), ' | ' ORDER BY key_seq) FROM ferry_outbox "
              "WHERE key = 'order-1' AND status <> 'sent'") ==
        "3 failed headers: must be a JSON object of header names to values, got array | "
        "4 pending held back: an earlier row of its key was not published | "
        "5 pending held back: an earlier row of its key was not published");
  CHECK(f.broker.Consume("g", "orders", 10, 1000).messages_size() == 0);  // 4 and 5 wait

  f.Sql("SELECT ferry_outbox_skip(id, 'bad headers') FROM ferry_outbox WHERE payload = '3'");
  CHECK(Payloads(f.broker, "g", "orders", 2) == std::vector<std::string>{"4", "5"});
}

TEST_CASE("sent rows are deleted after their retention - open and failed rows stay",
          "[integration][relay]") {
  RelayFixture f([](relay::RelayOptions& o) { o.sent_retention_ms = 500; });
  f.broker.CreateTopic("t", 1);
  f.StartRelay();
  f.Sql("INSERT INTO ferry_outbox (topic, payload) SELECT 't', 'x' FROM generate_series(1, 50)");
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('missing', 'stays failed')");
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (f.One("SELECT count(*) FROM ferry_outbox") != "1" && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(f.One("SELECT count(*) FROM ferry_outbox") == "1");
  CHECK(f.One("SELECT status FROM ferry_outbox") == "failed");
  CHECK(f.broker.Consume("g", "t", 100).messages_size() == 50);  // published before deletion
}

TEST_CASE("inbox: a message id is processed once per consumer group", "[integration][relay]") {
  TempDatabase app(false);
  REQUIRE(relay::MigrateOutbox(app.conninfo()).ok());
  pqxx::connection c(app.conninfo());
  int effects = 0;
  for (int i = 0; i < 3; ++i) {
    pqxx::work tx(c);
    ProcessOnce(tx, "cart", "msg-1", [&](pqxx::work&) { ++effects; });
    tx.commit();
  }
  {
    pqxx::work tx(c);
    CHECK(ProcessOnce(tx, "billing", "msg-1", [&](pqxx::work&) { ++effects; }));
    tx.abort();  // rolled back: not recorded either
  }
  pqxx::work tx(c);
  CHECK(ProcessOnce(tx, "billing", "msg-1", [&](pqxx::work&) { ++effects; }));
  tx.commit();
  CHECK(effects == 3);  // cart once, billing once + the rolled-back try
}

TEST_CASE("the Grafana dashboard only queries series that a running broker and relay export",
          "[integration][relay][metrics]") {
  RelayFixture f(
      [](relay::RelayOptions& o) {
        o.metrics_listen = "127.0.0.1:0";
        o.producer_groups = {"shop"};
      },
      [](broker::BrokerOptions& o) {
        o.metrics_listen = "127.0.0.1:0";
        o.txn_check_after_ms = 100;
        o.txn_check_interval_ms = 100;
      });
  f.broker.CreateTopic("orders", 1);
  f.StartRelay();
  // Traffic of every kind: outbox rows (one to a missing topic), consume and commit, and a
  // transaction nobody ends, so that the broker back-checks it and the relay answers.
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('orders', 'a'), ('no.such', 'b')");
  REQUIRE(Payloads(f.broker, "g", "orders", 1).size() == 1);
  v1::ProduceRequest half;
  half.set_topic("orders");
  half.mutable_transactional()->set_producer_group("shop");
  half.mutable_transactional()->set_check_ref("not-an-xid");
  half.add_messages()->set_payload("h");
  REQUIRE(f.broker.client->Produce(half).ok());
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  std::string text;
  while (Clock::now() < give_up) {
    text = test::Scrape(f.relay_->metrics_port());  // one process: broker's series too
    if (text.find("ferry_txn_check_answers_total{") != std::string::npos &&
        text.find("ferry_relay_publish_errors_total{") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::set<std::string> exported;
  {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("# TYPE ", 0) == 0) exported.insert(line.substr(7, line.find(' ', 7) - 7));
    }
  }
  std::ifstream file(std::string(FERRY_SOURCE_DIR) + "/deploy/grafana/ferry-dashboard.json");
  REQUIRE(file.good());
  const auto dashboard = nlohmann::json::parse(file);
  std::set<std::string> queried;
  const std::regex series(R"(ferry_[a-z_]+)");
  for (const auto& panel : dashboard.at("panels")) {
    if (!panel.contains("targets")) continue;
    for (const auto& target : panel.at("targets")) {
      const std::string expr = target.at("expr").get<std::string>();
      for (std::sregex_iterator it(expr.begin(), expr.end(), series), end; it != end; ++it) {
        std::string name = it->str();
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          const std::string s(suffix);
          if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
            name.resize(name.size() - s.size());
          }
        }
        queried.insert(name);
      }
    }
  }
  REQUIRE(queried.size() >= 20);
  for (const auto& name : queried) {
    INFO("the dashboard queries " << name);
    CHECK(exported.count(name) == 1);
  }
}

TEST_CASE(
    "relay with --broker-token publishes to a broker run with --auth - without a token "
    "rows wait",
    "[integration][relay][security]") {
  broker::BrokerOptions broker_options;
  RelayFixture f(nullptr, [&](broker::BrokerOptions& o) {
    o.auth = true;
    o.auth_cache_ms = 0;
    broker_options = o;
  });
  auto admin_token = broker::CreateAdmin(broker_options, "ops");
  REQUIRE(admin_token.ok());
  ChannelOptions as_admin;
  as_admin.token = *admin_token;
  auto channel = MakeChannel(f.broker.address(), as_admin);
  REQUIRE(channel.ok());
  Client admin(*channel);
  v1::TopicConfig t;
  t.set_name("orders");
  t.set_queues(1);
  REQUIRE(admin.CreateTopic(t).ok());
  v1::CreatePrincipalRequest relay_principal;
  relay_principal.set_name("relay");
  auto* g = relay_principal.add_grants();
  g->set_permission("produce");
  g->set_resource_type("topic");
  g->set_resource_name("orders");
  v1::CreatePrincipalResponse created;
  grpc::ClientContext ctx;
  REQUIRE(admin.admin().CreatePrincipal(&ctx, relay_principal, &created).ok());

  // Without a token the broker refuses the relay: the row stays pending with the reason.
  f.StartRelay();
  f.Sql("INSERT INTO ferry_outbox (topic, payload) VALUES ('orders', 'x')");
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (f.One("SELECT coalesce(last_error, '') FROM ferry_outbox").empty() &&
         Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(f.One("SELECT last_error FROM ferry_outbox").find("UNAUTHENTICATED") != std::string::npos);
  CHECK(f.One("SELECT status FROM ferry_outbox") != "sent");
  f.relay_->Stop();

  // With its token it publishes (the failed row is requeued by a person, as documented).
  f.options.broker_token = created.token();
  f.Sql("SELECT ferry_outbox_requeue(id) FROM ferry_outbox WHERE status = 'failed'");
  f.StartRelay();
  while (f.One("SELECT status FROM ferry_outbox") != "sent" && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(f.One("SELECT status FROM ferry_outbox") == "sent");
}
