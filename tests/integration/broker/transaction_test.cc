// Transactions on a real PostgreSQL: atomic multi-topic commit, back-checks, attached ACKs,
// administrator resolution, late and conflicting decisions.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <set>
#include <thread>

#include "client/transactions.h"
#include "support/broker_fixture.h"

using namespace ferry;
using test::BrokerFixture;
using Clock = std::chrono::steady_clock;

namespace {

void FastChecks(broker::BrokerOptions& o) {
  o.txn_check_after_ms = 300;
  o.txn_check_interval_ms = 300;
  o.txn_max_checks = 3;
}

std::string Begin(BrokerFixture& f, const std::string& group, const std::string& ref = "") {
  v1::BeginTransactionRequest req;
  req.set_producer_group(group);
  req.set_check_ref(ref);
  v1::BeginTransactionResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = f.client->broker().BeginTransaction(&ctx, req, &resp);
  if (!s.ok()) throw std::runtime_error(s.error_message());
  return resp.transaction_id();
}

absl::StatusOr<v1::ProduceResponse> ProduceHalf(BrokerFixture& f, const std::string& txn,
                                                const std::string& topic,
                                                const std::vector<std::string>& payloads) {
  v1::ProduceRequest req;
  req.set_topic(topic);
  req.set_transaction_id(txn);
  for (const auto& p : payloads) req.add_messages()->set_payload(p);
  return f.client->Produce(req);
}

grpc::Status End(BrokerFixture& f, const std::string& txn, v1::TransactionDecision d,
                 v1::EndTransactionResponse* resp = nullptr) {
  v1::EndTransactionRequest req;
  req.set_transaction_id(txn);
  req.set_decision(d);
  v1::EndTransactionResponse ignored;
  grpc::ClientContext ctx;
  return f.client->broker().EndTransaction(&ctx, req, resp != nullptr ? resp : &ignored);
}

v1::TransactionInfo Find(BrokerFixture& f, const std::string& txn) {
  v1::ListTransactionsRequest req;
  req.set_limit(1000);
  v1::ListTransactionsResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = f.client->admin().ListTransactions(&ctx, req, &resp);
  if (!s.ok()) throw std::runtime_error(s.error_message());
  for (const auto& t : resp.transactions()) {
    if (t.transaction_id() == txn) return t;
  }
  throw std::runtime_error("transaction not listed: " + txn);
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto give_up = Clock::now() + limit;
  while (Clock::now() < give_up) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

std::set<std::string> Drain(BrokerFixture& f, const std::string& group, const std::string& topic,
                            uint32_t wait_ms) {
  std::set<std::string> out;
  for (;;) {
    auto got = f.Consume(group, topic, 100, wait_ms);
    if (got.messages_size() == 0) return out;
    for (const auto& m : got.messages()) {
      out.insert(m.payload());
      f.Settle(group, m.receipt(), v1::ACK);
    }
    wait_ms = 0;
  }
}

}  // namespace

TEST_CASE("a commit across 3 topics becomes visible at once - a rollback never",
          "[integration][txn]") {
  BrokerFixture f;
  const std::vector<std::string> topics = {"orders", "invoices", "shipments"};
  for (const auto& t : topics) f.CreateTopic(t, 2);
  const std::string txn = Begin(f, "shop");
  for (const auto& t : topics) {
    auto r = ProduceHalf(f, txn, t, {"from-" + t});
    REQUIRE(r.ok());
    CHECK(r->transaction_id() == txn);
    CHECK(r->results(0).half());
  }
  for (const auto& t : topics) CHECK(f.Consume("audit", t, 10).messages_size() == 0);

  // A consumer polling the three topics: the moment it sees one of the transaction's messages,
  // the other two must be there as well.
  std::atomic<bool> seen_all{false};
  std::atomic<int> partial{0};
  std::thread poller([&] {
    Client c(f.address());
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    std::set<std::string> seen;
    while (seen.size() < topics.size() && Clock::now() < give_up) {
      for (const auto& t : topics) {
        if (seen.count(t) != 0) continue;
        v1::ConsumeRequest req;
        req.set_group("poller");
        req.set_topic(t);
        req.set_max_messages(10);
        auto got = c.Consume(req);
        if (got.ok() && got->messages_size() > 0) {
          seen.insert(t);
          // First sighting: the others, right now.
          for (const auto& other : topics) {
            if (seen.count(other) != 0) continue;
            req.set_topic(other);
            auto o = c.Consume(req);
            if (o.ok() && o->messages_size() > 0) {
              seen.insert(other);
            } else {
              ++partial;
            }
          }
        }
      }
    }
    seen_all = seen.size() == topics.size();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  v1::EndTransactionResponse ended;
  REQUIRE(End(f, txn, v1::TRANSACTION_COMMIT, &ended).ok());
  poller.join();
  CHECK(ended.state() == v1::TXN_COMMITTED);
  CHECK(ended.messages() == 3);
  CHECK(partial == 0);
  CHECK(seen_all);

  const std::string undone = Begin(f, "shop");
  REQUIRE(ProduceHalf(f, undone, "orders", {"never"}).ok());
  REQUIRE(End(f, undone, v1::TRANSACTION_ROLLBACK, &ended).ok());
  CHECK(ended.state() == v1::TXN_ROLLED_BACK);
  CHECK(ended.messages() == 1);
  CHECK(Drain(f, "late", "orders", 1000) == std::set<std::string>{"from-orders"});
  CHECK(f.Query("SELECT count(*) FROM half_messages").at(0) == "0");
}

TEST_CASE(
    "the producer dies after its local commit: back-checks decide - COMMIT delivers - "
    "ROLLBACK discards - UNKNOWN exhausts - an administrator resolves",
    "[integration][txn]") {
  BrokerFixture f(FastChecks);
  f.CreateTopic("payments", 2);
  TransactionProducer producer(*f.client, "payments-svc");
  auto send = [&](const std::string& ref, const std::string& payload) {
    v1::ProducedMessage m;
    m.set_payload(payload);
    auto id = producer.Send("payments", {m}, ref,
                            [](const std::string&) { return LocalResult::kUnknown; });  // "dies"
    if (!id.ok()) throw std::runtime_error(std::string(id.status().message()));
    return *id;
  };
  const std::string commit_me = send("order-1:committed", "charge-1");
  const std::string rollback_me = send("order-2:rolled-back", "charge-2");
  const std::string unknown = send("order-3:unknown", "charge-3");

  TransactionChecker checker(MakeChannel(f.address()), {"payments-svc"}, "test-checker",
                             [](const v1::TransactionCheck& check) {
                               if (check.check_ref() == "order-1:committed") {
                                 return v1::TRANSACTION_COMMIT;
                               }
                               if (check.check_ref() == "order-2:rolled-back") {
                                 return v1::TRANSACTION_ROLLBACK;
                               }
                               return v1::TRANSACTION_UNKNOWN;
                             });
  checker.Start();
  CHECK(WaitFor([&] { return Find(f, unknown).state() == v1::TXN_CHECK_EXHAUSTED; }));
  CHECK(Find(f, commit_me).state() == v1::TXN_COMMITTED);
  CHECK(Find(f, rollback_me).state() == v1::TXN_ROLLED_BACK);
  const auto exhausted = Find(f, unknown);
  CHECK(exhausted.checks_sent() == 3);
  int checks = 0, answers = 0;
  bool marked = false;
  for (const auto& e : exhausted.events()) {
    checks += e.kind() == "check" ? 1 : 0;
    answers += e.kind() == "answer" ? 1 : 0;
    marked = marked || e.kind() == "exhausted";
  }
  CHECK(checks == 3);
  CHECK(answers == 3);
  CHECK(marked);
  CHECK(exhausted.messages() == 1);  // kept, invisible
  CHECK(Drain(f, "billing", "payments", 500) == std::set<std::string>{"charge-1"});

  // Only an administrator moves it on, with a reason on record.
  CHECK(End(f, unknown, v1::TRANSACTION_COMMIT).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);
  v1::ResolveTransactionRequest resolve;
  resolve.set_transaction_id(unknown);
  resolve.set_decision(v1::TRANSACTION_COMMIT);
  resolve.set_reason("order 3 found in the ledger");
  v1::ResolveTransactionResponse resolved;
  {
    grpc::ClientContext ctx;
    REQUIRE(f.client->admin().ResolveTransaction(&ctx, resolve, &resolved).ok());
  }
  CHECK(resolved.state() == v1::TXN_COMMITTED);
  CHECK(Drain(f, "billing", "payments", 1000) == std::set<std::string>{"charge-3"});
  bool audited = false;
  const v1::TransactionInfo after = Find(f, unknown);
  for (const auto& e : after.events()) {
    audited = audited || (e.kind() == "resolve" && e.actor() == "admin" &&
                          e.detail().find("order 3 found in the ledger") != std::string::npos);
  }
  CHECK(audited);
  checker.Stop();
}

TEST_CASE("no checker connected: nothing is counted - a checker connects: checks start",
          "[integration][txn]") {
  BrokerFixture f(FastChecks);
  f.CreateTopic("t", 1);
  const std::string txn = Begin(f, "lonely", "ref-1");
  REQUIRE(ProduceHalf(f, txn, "t", {"x"}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // five check intervals
  auto info = Find(f, txn);
  CHECK(info.state() == v1::TXN_PREPARED);
  CHECK(info.checks_sent() == 0);
  CHECK_FALSE(info.checker_connected());

  TransactionChecker checker(MakeChannel(f.address()), {"lonely"}, "late-checker",
                             [](const v1::TransactionCheck&) { return v1::TRANSACTION_UNKNOWN; });
  checker.Start();
  CHECK(WaitFor([&] { return Find(f, txn).checks_sent() > 0; }));
  CHECK(WaitFor([&] { return Find(f, txn).checker_connected(); }));
  // Re-arm after exhaustion: checks start from zero again.
  CHECK(WaitFor([&] { return Find(f, txn).state() == v1::TXN_CHECK_EXHAUSTED; }));
  checker.Stop();
  v1::RearmTransactionChecksRequest rearm;
  rearm.set_transaction_id(txn);
  v1::RearmTransactionChecksResponse ignored;
  {
    grpc::ClientContext ctx;
    REQUIRE(f.client->admin().RearmTransactionChecks(&ctx, rearm, &ignored).ok());
  }
  CHECK(Find(f, txn).state() == v1::TXN_PREPARED);
  CHECK(Find(f, txn).checks_sent() == 0);
}

TEST_CASE("ACKs attached to a transaction apply if and only if it commits", "[integration][txn]") {
  BrokerFixture f;
  f.CreateTopic("in", 1);
  f.CreateTopic("out", 1);

  // Commit: the input message is settled and the output appears, together.
  f.Produce("in", {"work-1"});
  auto got = f.Consume("proc", "in", 1, 0, 1000);
  REQUIRE(got.messages_size() == 1);
  const std::string txn = Begin(f, "processor");
  REQUIRE(ProduceHalf(f, txn, "out", {"result-1"}).ok());
  v1::CommitRequest attach;
  attach.set_group("proc");
  attach.set_transaction_id(txn);
  attach.add_entries()->set_receipt(got.messages(0).receipt());
  auto pending = f.client->Commit(attach);
  REQUIRE(pending.ok());
  CHECK(pending->results(0).status() == v1::TRANSACTION_PENDING);
  // Held for the transaction: not redelivered even after its visibility timeout.
  CHECK(f.Consume("proc", "in", 1, 1500).messages_size() == 0);
  REQUIRE(End(f, txn, v1::TRANSACTION_COMMIT).ok());
  auto lag = f.client->GetGroupLag("proc", "in");
  REQUIRE(lag.ok());
  CHECK(lag->queues(0).lag() == 0);
  CHECK(f.Settle("proc", got.messages(0).receipt(), v1::ACK).status() == v1::ALREADY_COMMITTED);
  CHECK(Drain(f, "reader", "out", 500) == std::set<std::string>{"result-1"});

  // Rollback: the input comes back (next attempt), the output never appears.
  f.Produce("in", {"work-2"});
  auto second = f.Consume("proc", "in", 1);
  REQUIRE(second.messages_size() == 1);
  const std::string txn2 = Begin(f, "processor");
  REQUIRE(ProduceHalf(f, txn2, "out", {"result-2"}).ok());
  attach.set_transaction_id(txn2);
  attach.mutable_entries(0)->set_receipt(second.messages(0).receipt());
  REQUIRE(f.client->Commit(attach).ok());
  REQUIRE(End(f, txn2, v1::TRANSACTION_ROLLBACK).ok());
  auto again = f.Consume("proc", "in", 1, 2000);
  REQUIRE(again.messages_size() == 1);
  CHECK(again.messages(0).payload() == "work-2");
  CHECK(again.messages(0).delivery_attempt() == 2);
  CHECK(Drain(f, "reader", "out", 500).empty());

  // Only ACKs can be attached.
  attach.mutable_entries(0)->set_outcome(v1::RETRY);
  CHECK(f.client->Commit(attach).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("late or conflicting decisions are rejected and change nothing", "[integration][txn]") {
  BrokerFixture f;
  f.CreateTopic("t", 1);
  const std::string txn = Begin(f, "g");
  REQUIRE(ProduceHalf(f, txn, "t", {"x"}).ok());
  v1::EndTransactionResponse ended;
  REQUIRE(End(f, txn, v1::TRANSACTION_COMMIT, &ended).ok());
  CHECK(End(f, txn, v1::TRANSACTION_COMMIT, &ended).ok());  // the same decision: fine
  CHECK(ended.state() == v1::TXN_COMMITTED);
  CHECK(ended.messages() == 0);  // nothing happened twice
  auto conflicting = End(f, txn, v1::TRANSACTION_ROLLBACK);
  CHECK(conflicting.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(conflicting.error_message().find("COMMITTED") != std::string::npos);
  CHECK(ProduceHalf(f, txn, "t", {"late"}).status().code() ==
        absl::StatusCode::kFailedPrecondition);
  v1::ResolveTransactionRequest resolve;
  resolve.set_transaction_id(txn);
  resolve.set_decision(v1::TRANSACTION_ROLLBACK);
  resolve.set_reason("too late");
  v1::ResolveTransactionResponse ignored;
  {
    grpc::ClientContext ctx;
    CHECK(f.client->admin().ResolveTransaction(&ctx, resolve, &ignored).error_code() ==
          grpc::StatusCode::FAILED_PRECONDITION);
  }
  CHECK(Find(f, txn).state() == v1::TXN_COMMITTED);
  CHECK(Drain(f, "g", "t", 500) == std::set<std::string>{"x"});

  CHECK(End(f, "00000000-0000-0000-0000-000000000000", v1::TRANSACTION_COMMIT).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(End(f, "not-a-transaction", v1::TRANSACTION_COMMIT).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(End(f, txn, v1::TRANSACTION_UNKNOWN).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  v1::ProduceRequest both;
  both.set_topic("t");
  both.set_transaction_id(txn);
  both.mutable_transactional()->set_producer_group("g");
  both.add_messages()->set_payload("y");
  CHECK(f.client->Produce(both).status().code() == absl::StatusCode::kInvalidArgument);
}
