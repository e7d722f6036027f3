// The C++ client library's Publisher and Subscriber against a real broker process, the same
// scenarios as the Python, Go and Node libraries' tests (clients/*/): a broker SIGKILLed in the
// middle of 10,000 batched publishes, lease extension, flow control, dead letters with reasons.
#include <absl/strings/match.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "client/client.h"
#include "client/publisher.h"
#include "client/subscriber.h"
#include "support/broker_process.h"
#include "support/test_db.h"

using namespace ferry;
using ferry::test::BrokerProcess;
using ferry::test::CreateTopic;
using ferry::test::E2eLogPath;
using ferry::test::TempDatabase;

namespace {

v1::ProducedMessage Message(const std::string& payload, const std::string& key = "") {
  v1::ProducedMessage m;
  m.set_payload(payload);
  m.set_key(key);
  return m;
}

SubscriberOptions Options(int max_outstanding, int concurrency, std::chrono::milliseconds lease,
                          std::chrono::milliseconds max_wait = std::chrono::seconds(5)) {
  SubscriberOptions o;
  o.max_outstanding_messages = max_outstanding;
  o.concurrency = concurrency;
  o.lease = lease;
  o.max_wait = max_wait;
  return o;
}

// Creates consumer group `name` on `topic` with `group`'s policy fields.
void CreateGroup(Client& client, const std::string& name, const std::string& topic,
                 v1::GroupConfig group) {
  v1::CreateGroupRequest req;
  group.set_name(name);
  *req.mutable_group() = std::move(group);
  req.add_topics(topic);
  grpc::ClientContext ctx;
  v1::CreateGroupResponse resp;
  REQUIRE(client.admin().CreateGroup(&ctx, req, &resp).ok());
}

template <typename F>
bool WaitFor(F done, std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

TEST_CASE(
    "Publisher: 10 000 keyed messages across a broker SIGKILL - all acknowledged - each stored "
    "once - in order per key",
    "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("publisher-kill"));
  Client client(broker.address());
  CreateTopic(client, "orders", 4);

  std::vector<std::future<absl::StatusOr<PublishResult>>> futures;
  {
    Publisher pub(client, [] {
      PublisherOptions o;
      o.retry_for = std::chrono::minutes(2);
      return o;
    }());
    for (int i = 0; i < 5000; ++i) {
      futures.push_back(
          pub.Publish("orders", Message(std::to_string(i), "k" + std::to_string(i % 50))));
    }
    REQUIRE(WaitFor([&] {
      int ready = 0;
      for (auto& f : futures)
        ready += f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
      return ready >= 2500;
    }));
    broker.Kill();
    for (int i = 5000; i < 10000; ++i) {
      futures.push_back(
          pub.Publish("orders", Message(std::to_string(i), "k" + std::to_string(i % 50))));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    broker.Start();
    REQUIRE(pub.Flush(std::chrono::minutes(2)));
  }
  std::set<std::pair<uint32_t, uint64_t>> places;
  for (auto& f : futures) {
    auto r = f.get();
    REQUIRE(r.ok());
    CHECK_FALSE(r->duplicate);  // a retry that found its own earlier attempt is not a duplicate
    places.insert({r->queue, r->offset});
  }
  CHECK(places.size() == 10000);

  std::mutex mu;
  std::vector<std::tuple<uint32_t, uint64_t, std::string, std::string>> got;
  {
    Subscriber sub(
        client, "orders", "audit",
        [&](const v1::DeliveredMessage& m) {
          std::lock_guard<std::mutex> lock(mu);
          got.emplace_back(m.queue(), m.offset(), m.key(), m.payload());
          return Outcome::Ack();
        },
        Options(1000, 10, std::chrono::seconds(30), std::chrono::milliseconds(500)));
    REQUIRE(WaitFor([&] { return sub.stats().acked >= 10000; }, std::chrono::seconds(60)));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  REQUIRE(got.size() == 10000);  // none twice
  std::sort(got.begin(), got.end());
  std::map<std::string, int> last;
  std::set<std::string> payloads;
  for (const auto& [q, o, key, payload] : got) {
    payloads.insert(payload);
    const int n = std::stoi(payload);
    if (last.count(key)) CHECK(last[key] < n);  // stored in publish order per key
    last[key] = n;
  }
  CHECK(payloads.size() == 10000);
}

TEST_CASE("Subscriber: a handler longer than the lease is not redelivered - leases are extended",
          "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("subscriber-lease"));
  Client client(broker.address());
  CreateTopic(client, "slow", 1);
  {
    Publisher pub(client);
    for (int i = 0; i < 3; ++i) pub.Publish("slow", Message("slow " + std::to_string(i)));
  }
  std::mutex mu;
  std::vector<std::string> seen;
  Subscriber sub(
      client, "slow", "workers",
      [&](const v1::DeliveredMessage& m) {
        {
          std::lock_guard<std::mutex> lock(mu);
          seen.push_back(m.payload() + "@" + std::to_string(m.delivery_attempt()));
        }
        std::this_thread::sleep_for(std::chrono::seconds(4));  // four leases of one second
        return Outcome::Ack();
      },
      Options(1000, 3, std::chrono::seconds(1)));
  REQUIRE(WaitFor([&] { return sub.stats().acked == 3; }));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  sub.Stop();
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::string>{"slow 0@1", "slow 1@1", "slow 2@1"});
  CHECK(sub.stats().lease_extensions > 0);
  CHECK(sub.stats().stale_receipts == 0);
}

TEST_CASE(
    "Subscriber: flow control holds the outstanding limit - failing handlers dead-letter "
    "with their reason",
    "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("subscriber-flow"));
  Client client(broker.address());
  CreateTopic(client, "jobs", 4);
  {
    Publisher pub(client);
    for (int i = 0; i < 200; ++i) pub.Publish("jobs", Message(std::to_string(i)));
    pub.Publish("jobs", Message("bad"));
    pub.Publish("jobs", Message("reject"));
  }
  v1::GroupConfig policy;
  policy.set_max_delivery_attempts(2);
  policy.add_backoff_ms(100);
  CreateGroup(client, "workers", "jobs", policy);
  std::atomic<int> running{0}, most{0};
  Subscriber sub(
      client, "jobs", "workers",
      [&](const v1::DeliveredMessage& m) {
        const int now = ++running;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        --running;
        if (m.payload() == "bad") throw std::runtime_error("cannot parse order 7");
        if (m.payload() == "reject") return Outcome::DeadLetter("schema v0 is not supported");
        return Outcome::Ack();
      },
      Options(10, 50, std::chrono::seconds(30)));
  REQUIRE(WaitFor([&] { return sub.stats().acked == 200 && sub.stats().dead_lettered == 2; },
                  std::chrono::seconds(60)));
  sub.Stop();
  CHECK(sub.stats().max_outstanding_seen <= 10);
  CHECK(most.load() <= 10);
  CHECK(most.load() >= 2);
  CHECK(sub.stats().handler_errors == 2);

  v1::ListDeadLettersRequest req;
  req.set_group("workers");
  v1::ListDeadLettersResponse dead;
  grpc::ClientContext ctx;
  REQUIRE(client.admin().ListDeadLetters(&ctx, req, &dead).ok());
  std::map<std::string, std::string> reasons;
  for (const auto& d : dead.dead_letters()) reasons[d.payload()] = d.reason();
  CHECK(reasons ==
        std::map<std::string, std::string>{
            {"bad", "max delivery attempts (2) reached: last outcome RETRY: cannot parse order 7"},
            {"reject", "rejected: schema v0 is not supported"}});
}

TEST_CASE(
    "Publisher: bad input fails at once with the broker's message - unknown topic - "
    "oversized message",
    "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("publisher-bad"));
  Client client(broker.address());
  CreateTopic(client, "orders", 1);
  Publisher pub(client);
  const auto started = std::chrono::steady_clock::now();
  auto missing = pub.Publish("no-such-topic", Message("x")).get();
  REQUIRE_FALSE(missing.ok());
  CHECK(absl::IsNotFound(missing.status()));
  CHECK(absl::StrContains(missing.status().message(), "no-such-topic"));
  auto big = pub.Publish("orders", Message(std::string(5 << 20, 'x'))).get();
  REQUIRE_FALSE(big.ok());
  CHECK(absl::IsResourceExhausted(big.status()));
  CHECK(absl::StrContains(big.status().message(), "are allowed"));
  // Not retried for the publisher's 10 minutes: neither can succeed by retrying.
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(30));
  auto ok = pub.Publish("orders", Message("fine")).get();  // the publisher still works
  CHECK(ok.ok());
}

TEST_CASE("Subscriber: an ordered group handles a queue in order across a retry", "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("subscriber-ordered"));
  Client client(broker.address());
  CreateTopic(client, "ledger", 1);
  v1::GroupConfig policy;
  policy.set_ordered(true);
  CreateGroup(client, "books", "ledger", policy);
  {
    Publisher pub(client);
    for (int i = 0; i < 20; ++i) pub.Publish("ledger", Message(std::to_string(i), "one-key"));
  }
  std::mutex mu;
  std::vector<int> done;
  std::map<int, int> attempts;
  Subscriber sub(
      client, "ledger", "books",
      [&](const v1::DeliveredMessage& m) {
        const int n = std::stoi(m.payload());
        std::lock_guard<std::mutex> lock(mu);
        if (++attempts[n] == 1 && n == 5) return Outcome::Retry("not yet", 200);
        done.push_back(n);
        return Outcome::Ack();
      },
      Options(1000, 8, std::chrono::seconds(30)));
  REQUIRE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return done.size() >= 20;
  }));
  sub.Stop();
  std::vector<int> want(20);
  std::iota(want.begin(), want.end(), 0);
  CHECK(done == want);
  CHECK(attempts[5] == 2);
  CHECK(sub.stats().released > 0);
}

TEST_CASE("Publisher: a failed key is paused until resumed", "[e2e]") {
  TempDatabase db;
  BrokerProcess broker(db.conninfo(), test::FreePort(), E2eLogPath("publisher-pause"));
  Client client(broker.address());
  CreateTopic(client, "orders", 1);
  Publisher pub(client);
  auto first = pub.Publish("orders", Message("1", "k")).get();
  REQUIRE(first.ok());
  CHECK(first->offset == 0);
  auto big = pub.Publish("orders", Message(std::string(5 << 20, 'x'), "k")).get();
  CHECK(absl::IsResourceExhausted(big.status()));
  auto paused = pub.Publish("orders", Message("3", "k")).get();
  CHECK(absl::IsFailedPrecondition(paused.status()));
  CHECK(absl::StrContains(paused.status().message(), "ResumePublish"));
  auto other = pub.Publish("orders", Message("other", "j")).get();
  REQUIRE(other.ok());
  CHECK(other->offset == 1);
  pub.ResumePublish("orders", "k");
  auto again = pub.Publish("orders", Message("4", "k")).get();
  REQUIRE(again.ok());
  CHECK(again->offset == 2);
}
