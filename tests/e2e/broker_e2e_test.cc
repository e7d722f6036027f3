// End to end: the real ferry-broker binary on 127.0.0.1, real clients, SIGKILL.
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "client/client.h"
#include "client/transactions.h"
#include "support/broker_process.h"
#include "support/test_db.h"

using namespace ferry;
using ferry::test::BrokerProcess;
using ferry::test::CreateTopic;
using ferry::test::E2eLogPath;
using ferry::test::TempDatabase;

namespace {

// Drains `topic` for `group` with `consumers` threads that ACK everything they get; returns
// how many times each payload was delivered. Stops after `idle_rounds` empty polls per thread.
std::map<std::string, int> Drain(const std::string& address, const std::string& group,
                                 const std::string& topic, int consumers, size_t expected) {
  std::mutex mu;
  std::map<std::string, int> seen;
  std::atomic<size_t> total{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < consumers; ++i) {
    threads.emplace_back([&] {
      Client client(address);
      int empty = 0;
      while (empty < 3 && total.load() < expected) {
        v1::ConsumeRequest req;
        req.set_group(group);
        req.set_topic(topic);
        req.set_max_messages(100);
        req.set_max_wait_ms(500);
        req.set_visibility_timeout_ms(60000);
        auto r = client.Consume(req);
        if (!r.ok() || r->messages_size() == 0) {
          ++empty;
          continue;
        }
        empty = 0;
        std::vector<std::string> receipts;
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto& m : r->messages()) {
            ++seen[m.payload()];
            receipts.push_back(m.receipt());
          }
        }
        total += static_cast<size_t>(r->messages_size());
        (void)client.Ack(group, receipts);  // a lost ACK only means a redelivery
      }
    });
  }
  for (auto& t : threads) t.join();
  return seen;
}

}  // namespace

TEST_CASE(
    "10 000 messages: 3 consumers of one group get each exactly once - a second group "
    "gets all of them too",
    "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("drain"));
  Client client(broker.address());
  CreateTopic(client, "orders", 4);

  constexpr int kMessages = 10000;
  for (int batch = 0; batch < kMessages / 100; ++batch) {
    v1::ProduceRequest req;
    req.set_topic("orders");
    for (int i = 0; i < 100; ++i) {
      const int n = batch * 100 + i;
      auto* m = req.add_messages();
      m->set_key("customer-" + std::to_string(n % 37));
      m->set_payload("m" + std::to_string(n));
    }
    auto r = client.Produce(req);
    REQUIRE(r.ok());
  }

  for (const std::string group : {"billing", "audit"}) {
    auto seen = Drain(broker.address(), group, "orders", 3, kMessages);
    CHECK(seen.size() == static_cast<size_t>(kMessages));
    int repeated = 0;
    for (const auto& [payload, count] : seen) repeated += count > 1 ? 1 : 0;
    CHECK(repeated == 0);
    auto lag = client.GetGroupLag(group, "orders");
    REQUIRE(lag.ok());
    uint64_t remaining = 0;
    for (const auto& q : lag->queues()) remaining += q.lag() + q.in_flight();
    CHECK(remaining == 0);
  }
}

TEST_CASE("a message not committed in time comes back with delivery_attempt 2", "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("redeliver"));
  Client client(broker.address());
  CreateTopic(client, "jobs", 1);
  v1::ProduceRequest p;
  p.set_topic("jobs");
  p.add_messages()->set_payload("job-1");
  REQUIRE(client.Produce(p).ok());

  v1::ConsumeRequest req;
  req.set_group("workers");
  req.set_topic("jobs");
  req.set_max_messages(1);
  req.set_visibility_timeout_ms(1000);
  auto first = client.Consume(req);
  REQUIRE(first.ok());
  REQUIRE(first->messages_size() == 1);
  CHECK(first->messages(0).delivery_attempt() == 1);
  // The consumer "crashes": no commit. After the visibility timeout the message is back.
  req.set_max_wait_ms(5000);
  auto second = client.Consume(req);
  REQUIRE(second.ok());
  REQUIRE(second->messages_size() == 1);
  CHECK(second->messages(0).payload() == "job-1");
  CHECK(second->messages(0).delivery_attempt() == 2);
  auto acked = client.Ack("workers", {second->messages(0).receipt()});
  REQUIRE(acked.ok());
  CHECK(acked->results(0).status() == v1::COMMITTED);
}

TEST_CASE("kill -9 of the broker mid-produce: every acknowledged message survives", "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("kill"));
  {
    Client admin(broker.address());
    CreateTopic(admin, "payments", 4);
  }

  std::mutex mu;
  std::set<std::string> acknowledged;
  std::atomic<bool> stop{false};
  std::atomic<int> sent_calls{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      Client client(broker.address());
      client.set_timeout(std::chrono::milliseconds(2000));
      for (int call = 0; !stop.load(); ++call) {
        v1::ProduceRequest req;
        req.set_topic("payments");
        std::vector<std::string> ids;
        for (int i = 0; i < 20; ++i) {
          ids.push_back("p" + std::to_string(p) + "-" + std::to_string(call) + "-" +
                        std::to_string(i));
          auto* m = req.add_messages();
          m->set_payload(ids.back());
          m->set_dedup_id(ids.back());
        }
        ++sent_calls;
        auto r = client.Produce(req);
        if (r.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          acknowledged.insert(ids.begin(), ids.end());
        }
      }
    });
  }
  while (sent_calls.load() < 40) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  broker.Kill();  // SIGKILL in the middle of the produce loop
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (auto& t : producers) t.join();
  REQUIRE(acknowledged.size() >= 40 * 20 / 2);

  broker.Start();  // same database, new process
  // Drain everything stored (acknowledged or not), until the topic stays empty.
  auto seen = Drain(broker.address(), "settlement", "payments", 2, SIZE_MAX);
  size_t lost = 0;
  for (const auto& id : acknowledged) lost += seen.count(id) == 0 ? 1 : 0;
  CHECK(lost == 0);
  size_t repeated = 0;
  for (const auto& [id, count] : seen) repeated += count > 1 ? 1 : 0;
  CHECK(repeated == 0);
}

TEST_CASE("two brokers on one database: a long poll on one is woken by a produce on the other",
          "[e2e][wakeup]") {
  TempDatabase db;
  BrokerProcess producer_side(db.conninfo(), test::FreePort(), E2eLogPath("wake-a"));
  // The consumer's broker re-checks only every 10 s on its own: a prompt answer can only come
  // from the other broker's notification (PostgreSQL NOTIFY at commit).
  BrokerProcess consumer_side(db.conninfo(), test::FreePort(), E2eLogPath("wake-b"),
                              {"--poll-interval-ms", "10000"});
  Client a(producer_side.address());
  Client b(consumer_side.address());
  CreateTopic(a, "events", 2);
  v1::ConsumeRequest req;
  req.set_group("listeners");
  req.set_topic("events");
  req.set_max_messages(10);
  REQUIRE(b.Consume(req).ok());  // the group exists, nothing to read

  req.set_max_wait_ms(9000);
  std::chrono::milliseconds waited{0};
  absl::StatusOr<v1::ConsumeResponse> got;
  std::thread consumer([&] {
    const auto start = std::chrono::steady_clock::now();
    got = b.Consume(req);
    waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  v1::ProduceRequest p;
  p.set_topic("events");
  p.add_messages()->set_payload("ping");
  REQUIRE(a.Produce(p).ok());
  consumer.join();
  REQUIRE(got.ok());
  REQUIRE(got->messages_size() == 1);
  CHECK(got->messages(0).payload() == "ping");
  CHECK(waited < std::chrono::milliseconds(5000));  // far below the 10 s fallback
}

TEST_CASE("kill -9 of the broker while delayed messages wait: they are delivered after restart",
          "[e2e][delayed]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("delayed"));
  Client client(broker.address());
  CreateTopic(client, "later", 2);
  v1::ProduceRequest p;
  p.set_topic("later");
  for (int i = 0; i < 20; ++i) {
    auto* m = p.add_messages();
    m->set_payload("d" + std::to_string(i));
    m->set_delay_ms(1500 + 50 * i);
  }
  auto produced = client.Produce(p);
  REQUIRE(produced.ok());
  broker.Kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // all due while no broker runs
  broker.Start();
  auto seen = Drain(broker.address(), "g", "later", 2, 20);
  CHECK(seen.size() == 20);
  for (const auto& [payload, count] : seen) CHECK(count == 1);
}

namespace {

std::string BeginTxn(Client& c, const std::string& group) {
  v1::BeginTransactionRequest req;
  req.set_producer_group(group);
  v1::BeginTransactionResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Status s = c.broker().BeginTransaction(&ctx, req, &resp);
  if (!s.ok()) throw std::runtime_error(s.error_message());
  return resp.transaction_id();
}

grpc::Status EndTxn(Client& c, const std::string& txn, v1::TransactionDecision d) {
  v1::EndTransactionRequest req;
  req.set_transaction_id(txn);
  req.set_decision(d);
  v1::EndTransactionResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return c.broker().EndTransaction(&ctx, req, &resp);
}

std::map<std::string, v1::TransactionState> TxnStates(Client& c) {
  v1::ListTransactionsRequest req;
  req.set_limit(1000);
  v1::ListTransactionsResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = c.admin().ListTransactions(&ctx, req, &resp);
  if (!s.ok()) throw std::runtime_error(s.error_message());
  std::map<std::string, v1::TransactionState> out;
  for (const auto& t : resp.transactions()) out[t.transaction_id()] = t.state();
  return out;
}

}  // namespace

TEST_CASE("kill -9 between half messages and EndTransaction: the transaction waits - then commits",
          "[e2e][txn]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("txn-pending"));
  std::string txn;
  {
    Client c(broker.address());
    CreateTopic(c, "orders", 2);
    txn = BeginTxn(c, "shop");
    v1::ProduceRequest p;
    p.set_topic("orders");
    p.set_transaction_id(txn);
    p.add_messages()->set_payload("order-1");
    REQUIRE(c.Produce(p).ok());
  }
  broker.Kill();
  broker.Start();
  Client c(broker.address());
  CHECK(TxnStates(c)[txn] == v1::TXN_PREPARED);
  CHECK(Drain(broker.address(), "g", "orders", 1, SIZE_MAX).empty());  // still invisible
  REQUIRE(EndTxn(c, txn, v1::TRANSACTION_COMMIT).ok());
  auto seen = Drain(broker.address(), "g", "orders", 1, 1);
  CHECK(seen.size() == 1);
  CHECK(seen.count("order-1") == 1);
}

TEST_CASE("kill -9 during commits: every transaction is all or nothing - and resolvable",
          "[e2e][txn]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("txn-commit"));
  constexpr int kTxns = 30, kPerTopic = 100;
  std::vector<std::string> txns;
  {
    Client c(broker.address());
    CreateTopic(c, "a", 2);
    CreateTopic(c, "b", 2);
    for (int t = 0; t < kTxns; ++t) {
      txns.push_back(BeginTxn(c, "bulk"));
      for (const std::string topic : {"a", "b"}) {
        v1::ProduceRequest p;
        p.set_topic(topic);
        p.set_transaction_id(txns.back());
        for (int i = 0; i < kPerTopic; ++i) {
          p.add_messages()->set_payload("t" + std::to_string(t) + "-" + topic + std::to_string(i));
        }
        REQUIRE(c.Produce(p).ok());
      }
    }
  }
  std::atomic<int> ended{0};
  std::thread committer([&] {
    Client c(broker.address());
    for (const auto& t : txns) {
      if (!EndTxn(c, t, v1::TRANSACTION_COMMIT).ok()) return;  // the broker died
      ++ended;
    }
  });
  while (ended.load() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  broker.Kill();  // in the middle of the commits
  committer.join();
  REQUIRE(ended.load() < kTxns);  // the kill really came in the middle

  broker.Start();
  Client c(broker.address());
  auto states = TxnStates(c);
  auto count_by_txn = [&](const std::string& group) {
    std::map<int, int> per_txn;
    for (const std::string topic : {"a", "b"}) {
      for (const auto& [payload, n] : Drain(broker.address(), group, topic, 1, SIZE_MAX)) {
        per_txn[std::stoi(payload.substr(1, payload.find('-') - 1))] += n;
      }
    }
    return per_txn;
  };
  auto visible = count_by_txn("before");
  int committed = 0;
  for (int t = 0; t < kTxns; ++t) {
    INFO("transaction " << t);
    const auto state = states[txns[t]];
    REQUIRE((state == v1::TXN_COMMITTED || state == v1::TXN_PREPARED));
    if (state == v1::TXN_COMMITTED) {
      ++committed;
      CHECK(visible[t] == 2 * kPerTopic);  // all of it
    } else {
      CHECK(visible[t] == 0);  // none of it
      CHECK(EndTxn(c, txns[t], v1::TRANSACTION_COMMIT).ok());
    }
  }
  CHECK(committed >= 5);
  auto after = count_by_txn("after");
  for (int t = 0; t < kTxns; ++t) CHECK(after[t] == 2 * kPerTopic);
}

TEST_CASE(
    "two brokers: a checker connected to one gets the checks of a transaction begun on the "
    "other - each check sent once",
    "[e2e][txn]") {
  TempDatabase db;
  // First check soon; a second one (which would ask again) only after 5 s.
  const std::vector<std::string> fast = {
      "--txn-check-after-ms", "300", "--txn-check-interval-ms", "5000", "--txn-max-checks", "5"};
  BrokerProcess a(db.conninfo(), test::FreePort(), E2eLogPath("txn-a"), fast);
  BrokerProcess b(db.conninfo(), test::FreePort(), E2eLogPath("txn-b"), fast);
  Client ca(a.address());
  CreateTopic(ca, "orders", 1);
  TransactionProducer producer(ca, "shop");
  v1::ProducedMessage m;
  m.set_payload("order-9");
  auto txn = producer.Send("orders", {m}, "order-9",
                           [](const std::string&) { return LocalResult::kUnknown; });
  REQUIRE(txn.ok());
  std::atomic<int> asked{0};
  // Two checkers, one on each broker: the transaction is checked by exactly one of them.
  TransactionChecker on_b(MakeChannel(b.address()), {"shop"}, "checker-b",
                          [&](const v1::TransactionCheck&) {
                            ++asked;
                            return v1::TRANSACTION_COMMIT;
                          });
  TransactionChecker on_a(MakeChannel(a.address()), {"shop"}, "checker-a",
                          [&](const v1::TransactionCheck&) {
                            ++asked;
                            return v1::TRANSACTION_COMMIT;
                          });
  on_b.Start();
  on_a.Start();
  auto seen = Drain(b.address(), "g", "orders", 1, 1);
  for (int i = 0; i < 20 && seen.empty(); ++i) seen = Drain(b.address(), "g", "orders", 1, 1);
  on_a.Stop();
  on_b.Stop();
  CHECK(seen.count("order-9") == 1);
  CHECK(asked == 1);  // committed at the first check: nobody was asked twice
  CHECK(TxnStates(ca)[*txn] == v1::TXN_COMMITTED);
}

TEST_CASE("SIGTERM drains an in-flight Produce: it succeeds - new calls are refused - exit 0",
          "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("drain"),
                       {"--shutdown-grace-ms", "10000"});
  Client client(broker.address());
  CreateTopic(client, "t", 1);

  // Hold the queue's row lock, so the next Produce waits inside the broker.
  pqxx::connection locker(db.conninfo());
  pqxx::work lock(locker);
  lock.exec("SELECT 1 FROM queues FOR UPDATE");

  std::atomic<bool> produced_done{false};
  absl::Status produced;
  std::thread producer([&] {
    v1::ProduceRequest req;
    req.set_topic("t");
    req.add_messages()->set_payload("in flight at SIGTERM");
    client.set_timeout(std::chrono::seconds(20));
    auto r = client.Produce(req);
    produced = r.status();
    produced_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  REQUIRE_FALSE(produced_done.load());  // waiting on the lock

  std::atomic<int> exit_code{-2};
  std::thread terminator([&] { exit_code = broker.Terminate(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(exit_code.load() == -2);  // still draining
  Client late(broker.address());
  late.set_timeout(std::chrono::milliseconds(2000));
  auto refused = late.ListTopics();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kUnavailable);

  lock.commit();  // the in-flight Produce can finish now
  producer.join();
  terminator.join();
  CHECK(produced.ok());
  CHECK(exit_code.load() == 0);

  // The drained message was stored.
  broker.Start();
  Client after(broker.address());
  v1::ConsumeRequest req;
  req.set_group("g");
  req.set_topic("t");
  req.set_max_messages(10);
  auto got = after.Consume(req);
  REQUIRE(got.ok());
  REQUIRE(got->messages_size() == 1);
  CHECK(got->messages(0).payload() == "in flight at SIGTERM");
}
