// The broker's gRPC services, in process, on a real PostgreSQL: what a client sees.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "broker/routing.h"
#include "broker/server.h"
#include "client/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "support/broker_fixture.h"

using namespace ferry;
using ferry::test::TempDatabase;

namespace {
using Fixture = test::BrokerFixture;
using test::Receipts;
}  // namespace

TEST_CASE("produce - consume - commit: the basic contract", "[integration][service]") {
  Fixture f;
  f.CreateTopic("orders", 3);
  v1::ProduceRequest req;
  req.set_topic("orders");
  auto* m = req.add_messages();
  m->set_key("order-42");
  m->set_payload(std::string("bin\0ary\xff", 8));
  (*m->mutable_headers())["trace"] = "abc";
  auto produced = f.client->Produce(req);
  REQUIRE(produced.ok());
  REQUIRE(produced->results_size() == 1);
  CHECK(produced->results(0).queue() == broker::QueueForKey("order-42", 3));

  auto got = f.Consume("billing", "orders", 10);
  REQUIRE(got.messages_size() == 1);
  const auto& d = got.messages(0);
  CHECK(d.payload() == std::string("bin\0ary\xff", 8));
  CHECK(d.key() == "order-42");
  CHECK(d.headers().at("trace") == "abc");
  CHECK(d.delivery_attempt() == 1);
  CHECK(d.topic() == "orders");
  CHECK(d.queue() == produced->results(0).queue());
  CHECK(d.offset() == produced->results(0).offset());
  CHECK(d.produced_at().seconds() > 0);

  auto c1 = f.client->Ack("billing", {d.receipt()});
  REQUIRE(c1.ok());
  CHECK(c1->results(0).status() == v1::COMMITTED);
  auto c2 = f.client->Ack("billing", {d.receipt()});
  REQUIRE(c2.ok());
  CHECK(c2->results(0).status() == v1::ALREADY_COMMITTED);  // committing twice is harmless

  CHECK(f.Consume("billing", "orders", 10).messages_size() == 0);  // nothing left
  CHECK(f.Consume("audit", "orders", 10).messages_size() == 1);    // another group sees it

  auto lag = f.client->GetGroupLag("billing", "orders");
  REQUIRE(lag.ok());
  REQUIRE(lag->queues_size() == 3);
  for (const auto& q : lag->queues()) {
    CHECK(q.lag() == 0);
    CHECK(q.committed_offset() == q.end_offset());
  }
}

TEST_CASE(
    "payloads come back byte for byte (every byte value - empty - 1 MiB) produced now - delayed "
    "- in a transaction",
    "[integration][service]") {
  Fixture f;
  f.CreateTopic("blobs", 1);
  std::string every_byte;
  for (int i = 0; i < 256; ++i) every_byte.push_back(static_cast<char>(i));
  std::string large(1 << 20, '\0');
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>((i * 7919) >> 3);
  const std::vector<std::string> payloads = {every_byte, "", large, std::string(3, '\0')};

  std::vector<std::string> sent;
  auto produce = [&](uint64_t delay_ms, const std::string& txn) {
    v1::ProduceRequest req;
    req.set_topic("blobs");
    req.set_transaction_id(txn);
    for (const auto& p : payloads) {
      auto* m = req.add_messages();
      m->set_payload(p);
      m->set_delay_ms(delay_ms);
      sent.push_back(p);
    }
    auto r = f.client->Produce(req);
    REQUIRE(r.ok());
  };
  produce(0, "");
  produce(200, "");
  v1::BeginTransactionRequest begin;
  begin.set_producer_group("blob-writer");
  v1::BeginTransactionResponse begun;
  {
    grpc::ClientContext ctx;
    REQUIRE(f.client->broker().BeginTransaction(&ctx, begin, &begun).ok());
  }
  produce(0, begun.transaction_id());
  {
    v1::EndTransactionRequest end;
    end.set_transaction_id(begun.transaction_id());
    end.set_decision(v1::TRANSACTION_COMMIT);
    v1::EndTransactionResponse ended;
    grpc::ClientContext ctx;
    REQUIRE(f.client->broker().EndTransaction(&ctx, end, &ended).ok());
  }

  std::vector<std::string> got;
  for (int round = 0; round < 20 && got.size() < sent.size(); ++round) {
    auto r = f.Consume("reader", "blobs", 100, 500);
    for (const auto& m : r.messages()) got.push_back(m.payload());
  }
  REQUIRE(got.size() == sent.size());
  std::multiset<std::string> want(sent.begin(), sent.end()), have(got.begin(), got.end());
  CHECK(want == have);
  CHECK(got[0] == every_byte);  // the immediate batch comes first, in order
  CHECK(got[1].empty());
  CHECK(got[2] == large);
}

TEST_CASE("receipts: tampered and foreign-group receipts are reported per entry",
          "[integration][service]") {
  Fixture f;
  f.CreateTopic("t", 1);
  f.Produce("t", {"a", "b"});
  auto got = f.Consume("g1", "t", 2);
  REQUIRE(got.messages_size() == 2);
  std::string tampered = got.messages(0).receipt();
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  f.Consume("g2", "t", 1);  // creates group g2

  v1::CommitRequest req;
  req.set_group("g2");
  req.add_entries()->set_receipt(got.messages(0).receipt());  // issued to g1
  req.add_entries()->set_receipt(tampered);
  auto* retry = req.add_entries();
  retry->set_receipt(got.messages(1).receipt());
  retry->set_outcome(v1::RETRY);
  auto r = f.client->Commit(req);
  REQUIRE(r.ok());  // the call succeeds; each entry says what happened
  CHECK(r->results(0).status() == v1::INVALID_RECEIPT);
  CHECK(r->results(1).status() == v1::INVALID_RECEIPT);
  CHECK(r->results(2).status() == v1::INVALID_RECEIPT);  // a RETRY of g1's receipt by g2

  // Nothing was settled for g1 by any of that.
  auto lag = f.client->GetGroupLag("g1", "t");
  REQUIRE(lag.ok());
  REQUIRE(lag->queues_size() == 1);
  CHECK(lag->queues(0).committed_offset() == 0);
  CHECK(lag->queues(0).in_flight() == 2);
  auto ok = f.client->Ack("g1", Receipts(got));
  REQUIRE(ok.ok());
  CHECK(ok->results(0).status() == v1::COMMITTED);
  CHECK(ok->results(1).status() == v1::COMMITTED);
}

TEST_CASE("an expired lease is delivered again with attempt 2 - the old receipt is stale",
          "[integration][service]") {
  Fixture f;
  f.CreateTopic("t", 1);
  f.Produce("t", {"work"});
  auto first = f.Consume("g", "t", 1, 0, /*visibility_ms=*/1000);
  REQUIRE(first.messages_size() == 1);
  CHECK(f.Consume("g", "t", 1).messages_size() == 0);      // leased: invisible to the group
  auto second = f.Consume("g", "t", 1, /*wait_ms=*/5000);  // long poll past the lease
  REQUIRE(second.messages_size() == 1);
  CHECK(second.messages(0).delivery_attempt() == 2);
  CHECK(second.messages(0).offset() == first.messages(0).offset());

  auto stale = f.client->Ack("g", Receipts(first));
  REQUIRE(stale.ok());
  CHECK(stale->results(0).status() == v1::STALE_RECEIPT);
  auto fresh = f.client->Ack("g", Receipts(second));
  REQUIRE(fresh.ok());
  CHECK(fresh->results(0).status() == v1::COMMITTED);
}

TEST_CASE("a long poll returns the message produced while it waits", "[integration][service]") {
  Fixture f;
  f.CreateTopic("t", 2);
  CHECK(f.Consume("g", "t", 1).messages_size() == 0);  // group exists, nothing yet
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    f.Produce("t", {"late"});
  });
  auto got = f.Consume("g", "t", 10, /*wait_ms=*/10000);
  producer.join();
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == "late");
}

TEST_CASE("a parked consumer is woken by the notification of the commit - not by its next poll",
          "[integration][service]") {
  // Polls only every 10 s: a consumer waiting 5 s gets the message only if the produce's
  // notification (sent by the store's notifier thread, through PostgreSQL) wakes it.
  Fixture f([](broker::BrokerOptions& o) { o.poll_interval_ms = 10000; });
  f.CreateTopic("t", 2);
  CHECK(f.Consume("g", "t", 1).messages_size() == 0);  // group exists, nothing yet
  for (int round = 0; round < 2; ++round) {
    std::thread producer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      f.Produce("t", {"late-" + std::to_string(round)});
    });
    auto got = f.Consume("g", "t", 10, /*wait_ms=*/5000);
    producer.join();
    REQUIRE(got.messages_size() == 1);
    CHECK(got.messages(0).payload() == "late-" + std::to_string(round));
    CHECK(f.Settle("g", got.messages(0).receipt(), v1::ACK).status() == v1::COMMITTED);
  }
}

TEST_CASE("a group created at LATEST sees only later messages", "[integration][service]") {
  Fixture f;
  f.CreateTopic("t", 2);
  f.Produce("t", {"old1", "old2"});
  CHECK(f.Consume("late", "t", 10, 0, 0, v1::START_POSITION_LATEST).messages_size() == 0);
  f.Produce("t", {"new"});
  auto got = f.Consume("late", "t", 10);
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == "new");
}

TEST_CASE("bad requests get precise errors and change nothing", "[integration][service]") {
  Fixture f;
  f.CreateTopic("t", 1);
  f.Produce("t", {"keep"});

  auto code_of = [](const absl::Status& s) { return s.code(); };
  v1::ProduceRequest bad_name;
  bad_name.set_topic("no spaces");
  bad_name.add_messages()->set_payload("x");
  auto r1 = f.client->Produce(bad_name);
  CHECK(code_of(r1.status()) == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(r1.status().message()).rfind("topic", 0) == 0);

  v1::ProduceRequest too_big;
  too_big.set_topic("t");
  too_big.add_messages()->set_payload(std::string((1 << 20) + 1, 'x'));
  CHECK(code_of(f.client->Produce(too_big).status()) == absl::StatusCode::kResourceExhausted);

  v1::ProduceRequest unknown;
  unknown.set_topic("nope");
  unknown.add_messages()->set_payload("x");
  auto r3 = f.client->Produce(unknown);
  CHECK(code_of(r3.status()) == absl::StatusCode::kNotFound);
  CHECK(std::string(r3.status().message()).find("nope") != std::string::npos);

  v1::ConsumeRequest bad_vis;
  bad_vis.set_group("g");
  bad_vis.set_topic("t");
  bad_vis.set_visibility_timeout_ms(10);
  CHECK(code_of(f.client->Consume(bad_vis).status()) == absl::StatusCode::kInvalidArgument);

  v1::TopicConfig bad_topic;
  bad_topic.set_name("x");
  bad_topic.set_queues(1000);
  CHECK(code_of(f.client->CreateTopic(bad_topic).status()) == absl::StatusCode::kInvalidArgument);
  v1::TopicConfig dup;
  dup.set_name("t");
  CHECK(code_of(f.client->CreateTopic(dup).status()) == absl::StatusCode::kAlreadyExists);
  CHECK(code_of(f.client->DeleteTopic("nope")) == absl::StatusCode::kNotFound);
  CHECK(code_of(f.client->GetGroupLag("nobody", "").status()) == absl::StatusCode::kNotFound);

  CHECK(f.StoredMessages() == 1);
  auto got = f.Consume("g", "t", 10);
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == "keep");
}

TEST_CASE("topics: list - describe - delete", "[integration][service]") {
  Fixture f;
  f.CreateTopic("b", 2);
  f.CreateTopic("a", 1);
  f.Produce("b", {"1", "2", "3"});
  auto list = f.client->ListTopics();
  REQUIRE(list.ok());
  REQUIRE(list->topics_size() == 2);
  CHECK(list->topics(0).name() == "a");
  CHECK(list->topics(1).queues() == 2);
  auto d = f.client->DescribeTopic("b");
  REQUIRE(d.ok());
  uint64_t count = 0;
  for (const auto& q : d->queues()) count += q.message_count();
  CHECK(count == 3);
  f.Consume("g", "b", 10);
  f.Consume("g", "a", 10);
  CHECK(f.Query("SELECT count(*) FROM group_in_flight").at(0) == "3");  // in flight
  REQUIRE(f.client->DeleteTopic("b").ok());
  CHECK(f.client->DescribeTopic("b").status().code() == absl::StatusCode::kNotFound);
  CHECK(f.StoredMessages() == 0);
  // The deleted topic's deliveries go with it (a trigger on group_queues, not a foreign key).
  CHECK(f.Query("SELECT count(*) FROM group_in_flight").at(0) == "0");
  CHECK(f.Query("SELECT count(*) FROM group_ranges").at(0) == "0");
  CHECK(f.Query("SELECT count(*) FROM group_queues").at(0) == "1");  // g's position in "a"
}

TEST_CASE("terminated database connections are replaced without failing calls",
          "[integration][service]") {
  Fixture f;
  f.CreateTopic("t", 1);
  f.Produce("t", {"before"});
  {
    pqxx::connection admin(test::AdminConninfo());
    pqxx::nontransaction tx(admin);
    tx.exec_params(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> "
        "pg_backend_pid()",
        f.db.name());
    // pg_terminate_backend only signals: wait until they are gone. (A produce sent while its
    // backend is being ended is in doubt - it may have committed - and fails UNAVAILABLE
    // rather than run twice; this test is about connections found dead before a call.)
    for (int i = 0; i < 100; ++i) {
      if (tx.exec_params1("SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                          f.db.name())[0]
              .as<int>() == 0) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // Every pooled connection is dead now; the broker replaces them without failing a call.
  int ok = 0;
  for (int i = 0; i < 6; ++i) {
    v1::ProduceRequest req;
    req.set_topic("t");
    req.add_messages()->set_payload("after");
    auto r = f.client->Produce(req);
    CHECK(r.status().ok());
    if (r.ok()) ++ok;
  }
  CHECK(ok == 6);
  auto got = f.Consume("g", "t", 100);
  CHECK(got.messages_size() == 1 + ok);  // nothing lost, nothing extra
}

TEST_CASE("database down: UNAVAILABLE (retryable) - back up: the broker recovers by itself",
          "[integration][service]") {
  Fixture f;
  f.CreateTopic("t", 1);
  f.Produce("t", {"before"});
  pqxx::connection admin(test::AdminConninfo());
  auto exec = [&](const std::string& sql) {
    pqxx::nontransaction tx(admin);
    tx.exec(sql);
  };
  const std::string db = pqxx::nontransaction(admin).quote_name(f.db.name());
  exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false");
  exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + f.db.name() +
       "' AND pid <> pg_backend_pid()");

  v1::ProduceRequest req;
  req.set_topic("t");
  req.add_messages()->set_payload("while down");
  auto down = f.client->Produce(req);
  REQUIRE_FALSE(down.ok());
  CHECK(down.status().code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(down.status().message()).find("retry") != std::string::npos);

  exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true");
  req.mutable_messages(0)->set_payload("after");
  auto up = f.client->Produce(req);
  REQUIRE(up.ok());
  auto got = f.Consume("g", "t", 10);
  REQUIRE(got.messages_size() == 2);
  CHECK(got.messages(0).payload() == "before");
  CHECK(got.messages(1).payload() == "after");
}

TEST_CASE(
    "gRPC health follows the database: NOT_SERVING while it is unreachable - SERVING again after",
    "[integration][service]") {
  Fixture f([](broker::BrokerOptions& o) { o.health_interval_ms = 100; });
  auto health = grpc::health::v1::Health::NewStub(
      MakeChannel("127.0.0.1:" + std::to_string(f.server->port())));
  auto status = [&] {
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Status s = health->Check(&ctx, req, &resp);
    REQUIRE(s.ok());
    return resp.status();
  };
  // Polls for up to 5 s (the probe runs every 100 ms).
  auto becomes = [&](grpc::health::v1::HealthCheckResponse::ServingStatus want) {
    for (int i = 0; i < 100 && status() != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status() == want;
  };
  CHECK(status() == grpc::health::v1::HealthCheckResponse::SERVING);

  pqxx::connection admin(test::AdminConninfo());
  auto exec = [&](const std::string& sql) {
    pqxx::nontransaction tx(admin);
    tx.exec(sql);
  };
  const std::string db = pqxx::nontransaction(admin).quote_name(f.db.name());
  exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false");
  exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + f.db.name() +
       "' AND pid <> pg_backend_pid()");
  CHECK(becomes(grpc::health::v1::HealthCheckResponse::NOT_SERVING));

  exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true");
  CHECK(becomes(grpc::health::v1::HealthCheckResponse::SERVING));
  f.CreateTopic("after", 1);  // and the broker works again
}

TEST_CASE(
    "group commit: concurrent produces share transactions - each caller gets its own "
    "positions - dedup across callers holds",
    "[integration][service][group-commit]") {
  Fixture f;
  f.CreateTopic("busy", 2);
  constexpr int kThreads = 8, kCalls = 30, kPerCall = 20;
  std::mutex mu;
  std::map<std::pair<uint32_t, uint64_t>, std::string> claimed;  // position -> payload
  std::map<std::string, std::set<std::pair<uint32_t, uint64_t>>> dedup_positions;
  std::atomic<int> errors{0}, duplicates{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Client c(f.address());
      for (int call = 0; call < kCalls; ++call) {
        v1::ProduceRequest req;
        req.set_topic("busy");
        for (int i = 0; i < kPerCall; ++i) {
          auto* m = req.add_messages();
          m->set_payload("t" + std::to_string(t) + "-" + std::to_string(call) + "-" +
                         std::to_string(i));
          if (i == 0) m->set_dedup_id("shared-" + std::to_string(call));  // same in every thread
        }
        auto r = c.Produce(req);
        if (!r.ok() || r->results_size() != kPerCall) {
          ++errors;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        for (int i = 0; i < kPerCall; ++i) {
          const auto& res = r->results(i);
          const auto pos = std::make_pair(res.queue(), res.offset());
          if (i == 0) dedup_positions[req.messages(0).dedup_id()].insert(pos);
          if (res.duplicate()) {
            ++duplicates;
          } else if (!claimed.emplace(pos, req.messages(i).payload()).second) {
            ++errors;  // two stored messages reported at one position
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  CHECK(duplicates == (kThreads - 1) * kCalls);  // each shared id stored once
  for (const auto& [id, positions] : dedup_positions) CHECK(positions.size() == 1);
  // Every reported position holds exactly the payload that caller sent.
  std::map<std::pair<uint32_t, uint64_t>, std::string> stored;
  for (const auto& row : f.Query("SELECT queue_id || '/' || msg_offset || '/' ||"
                                 " convert_from(payload, 'UTF8') FROM messages")) {
    const auto a = row.find('/'), b = row.find('/', a + 1);
    stored[{static_cast<uint32_t>(std::stoul(row.substr(0, a))),
            std::stoull(row.substr(a + 1, b - a - 1))}] = row.substr(b + 1);
  }
  CHECK(stored == claimed);
  CHECK(stored.size() ==
        static_cast<size_t>(kThreads * kCalls * kPerCall - (kThreads - 1) * kCalls));
}
