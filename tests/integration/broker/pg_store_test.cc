// PgStore against a real PostgreSQL with the real schema.
#include "broker/store/pg_store.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "support/test_db.h"

using namespace ferry::broker;
using ferry::test::TempDatabase;

namespace {

TopicInfo Topic(const std::string& name, uint32_t queues, int64_t dedup_window_ms = 86400000) {
  TopicInfo t;
  t.name = name;
  t.queue_count = queues;
  t.retention_ms = 7LL * 86400000;
  t.dedup_window_ms = dedup_window_ms;
  return t;
}

NewMessage Msg(const std::string& payload, const std::string& dedup_id = "") {
  NewMessage m;
  m.payload = payload;
  m.headers_json = "{}";
  m.dedup_id = dedup_id;
  return m;
}

uint32_t Queue0(const NewMessage&, uint32_t) { return 0; }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The store routes with `choose` (Queue0 unless a test sets another).
struct Fixture {
  TempDatabase db;
  ferry::pg::ConnectionPool pool{db.conninfo(), 8, "test", PgStore::AllStatements(),
                                 ferry::pg::PlanMode::kGeneric};
  QueueChooser choose = Queue0;
  PgStore store{pool, [this](const NewMessage& m, uint32_t n) { return choose(m, n); }};
};

}  // namespace

TEST_CASE("4 concurrent producers on one queue: offsets are dense and a reader never sees a gap",
          "[integration][store]") {
  Fixture f;
  auto topic = f.store.CreateTopic(Topic("dense", 1));
  REQUIRE(topic.ok());

  constexpr int kProducers = 4;
  constexpr int kCallsEach = 60;
  std::atomic<int> producers_left{kProducers};
  std::mutex mu;
  std::vector<int64_t> acknowledged;
  std::atomic<int> produce_errors{0};

  // Reader 1: raw snapshots of the table. Whatever is visible must be exactly 0..k-1.
  std::atomic<int> gaps_seen{0}, snapshots{0};
  std::thread snapshot_reader([&] {
    pqxx::connection c(f.db.conninfo());
    int64_t last_count = 0;
    while (producers_left.load() > 0) {
      pqxx::read_transaction tx(c);
      auto r = tx.exec_params(
          "SELECT count(*), COALESCE(max(msg_offset) + 1, 0) FROM messages WHERE topic_id = $1",
          topic->topic_id);
      const int64_t count = r[0][0].as<int64_t>(), end = r[0][1].as<int64_t>();
      if (count != end || count < last_count) ++gaps_seen;
      last_count = count;
      ++snapshots;
    }
  });

  // Reader 2: a consumer group, which must get offsets 0, 1, 2, ... with no gap or repeat.
  std::atomic<int> order_violations{0};
  std::atomic<int64_t> consumed{0};
  std::thread consumer([&] {
    int64_t expected = 0;
    while (producers_left.load() > 0 || consumed.load() < kProducers * kCallsEach * 3) {
      LeaseRequest req;
      req.group = "reader";
      req.topic = "dense";
      req.max_messages = 50;
      req.visibility_ms = 60000;
      auto batch = f.store.Lease(req);
      if (!batch.ok()) continue;
      if (batch->messages.empty()) {
        if (producers_left.load() == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      std::vector<Settlement> acks;
      for (const auto& m : batch->messages) {
        if (m.offset != expected) ++order_violations;
        expected = m.offset + 1;
        acks.push_back(Settlement{
            DeliveryRef{batch->group_id, batch->topic_id, m.queue, m.offset, m.lease_token},
            Outcome::kAck, 0, ""});
      }
      consumed += static_cast<int64_t>(batch->messages.size());
      if (!f.store.Settle("reader", acks).ok()) ++order_violations;  // Catch2: main thread only
    }
  });

  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kCallsEach; ++i) {
        std::vector<NewMessage> batch;
        const int n = 1 + (i + p) % 5;
        for (int k = 0; k < n; ++k) batch.push_back(Msg("p" + std::to_string(p)));
        auto r = f.store.Append("dense", batch);
        if (!r.ok()) {
          ++produce_errors;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& a : *r) acknowledged.push_back(a.offset);
      }
      --producers_left;
    });
  }
  for (auto& t : producers) t.join();
  snapshot_reader.join();
  consumer.join();

  REQUIRE(produce_errors == 0);
  std::sort(acknowledged.begin(), acknowledged.end());
  const int64_t total = static_cast<int64_t>(acknowledged.size());
  for (int64_t i = 0; i < total; ++i) REQUIRE(acknowledged[i] == i);  // dense, no repeats
  CHECK(snapshots > 0);
  CHECK(gaps_seen == 0);
  CHECK(order_violations == 0);
  // The consumer got everything (drain what it missed at the very end).
  LeaseRequest rest;
  rest.group = "reader";
  rest.topic = "dense";
  rest.max_messages = 1000;
  auto tail = f.store.Lease(rest);
  REQUIRE(tail.ok());
  CHECK(consumed + static_cast<int64_t>(tail->messages.size()) == total);
}

TEST_CASE("dedup within one call - across calls - per topic - and after the window",
          "[integration][store][dedup]") {
  Fixture f;
  REQUIRE(f.store.CreateTopic(Topic("orders", 4)).ok());
  REQUIRE(f.store.CreateTopic(Topic("other", 4)).ok());
  REQUIRE(f.store.CreateTopic(Topic("short", 1, /*dedup_window_ms=*/1000)).ok());
  f.choose = [n = std::make_shared<std::atomic<uint32_t>>(0)](const NewMessage&, uint32_t q) {
    return (*n)++ % q;
  };

  SECTION("within one call the first message wins; the rest point at it") {
    auto r = f.store.Append("orders", {Msg("a", "id-1"), Msg("b", "id-1"), Msg("c")});
    REQUIRE(r.ok());
    CHECK_FALSE((*r)[0].duplicate);
    CHECK((*r)[1].duplicate);
    CHECK((*r)[1].queue == (*r)[0].queue);
    CHECK((*r)[1].offset == (*r)[0].offset);
    CHECK_FALSE((*r)[2].duplicate);
    auto d = f.store.DescribeTopic("orders");
    int64_t stored = 0;
    for (const auto& q : d->queues) stored += q.end_offset - q.first_offset;
    CHECK(stored == 2);
  }

  SECTION("across calls a duplicate returns the original position and stores nothing") {
    auto first = f.store.Append("orders", {Msg("a", "id-2")});
    REQUIRE(first.ok());
    for (int i = 0; i < 3; ++i) {
      auto again = f.store.Append("orders", {Msg("a again", "id-2")});
      REQUIRE(again.ok());
      CHECK((*again)[0].duplicate);
      CHECK((*again)[0].queue == (*first)[0].queue);
      CHECK((*again)[0].offset == (*first)[0].offset);
    }
    auto d = f.store.DescribeTopic("orders");
    int64_t stored = 0;
    for (const auto& q : d->queues) stored += q.end_offset - q.first_offset;
    CHECK(stored == 1);
  }

  SECTION("the same dedup_id in another topic is a different message") {
    REQUIRE(f.store.Append("orders", {Msg("a", "id-3")}).ok());
    auto other = f.store.Append("other", {Msg("a", "id-3")});
    REQUIRE(other.ok());
    CHECK_FALSE((*other)[0].duplicate);
  }

  SECTION("concurrent sends of one dedup_id store it once") {
    std::atomic<int> stored{0}, duplicates{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 20; ++i) {
          auto r = f.store.Append("orders", {Msg("x", "race-" + std::to_string(i))});
          if (!r.ok()) {
            ++errors;
          } else if ((*r)[0].duplicate) {
            ++duplicates;
          } else {
            ++stored;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    CHECK(errors == 0);
    CHECK(stored == 20);
    CHECK(duplicates == 60);
  }

  SECTION("after the dedup window the id is accepted again") {
    auto first = f.store.Append("short", {Msg("a", "id-4")});
    REQUIRE(first.ok());
    auto dup = f.store.Append("short", {Msg("a", "id-4")});
    CHECK((*dup)[0].duplicate);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    auto later = f.store.Append("short", {Msg("a", "id-4")});
    REQUIRE(later.ok());
    CHECK_FALSE((*later)[0].duplicate);
    CHECK((*later)[0].offset == (*first)[0].offset + 1);
    auto expired = f.store.DeleteExpiredDedup(100);
    REQUIRE(expired.ok());
    CHECK(*expired == 0);  // the entry was renewed by the later send, not left behind
  }
}

// The first Produce to a topic looks it up (a transaction of several statements); later ones
// are one statement (ferry_append, migrations/broker/0008). Both must give the same answers.
TEST_CASE(
    "a topic produced to before takes the one-statement path with the same positions and dedup",
    "[integration][store][dedup]") {
  Fixture f;
  REQUIRE(f.store.CreateTopic(Topic("t", 2)).ok());
  f.choose = [](const NewMessage& m, uint32_t n) {
    return static_cast<uint32_t>(m.payload[0] - 'a') % n;
  };
  auto first = f.store.Append("t", {Msg("a0"), Msg("b0")});  // looks the topic up
  REQUIRE(first.ok());
  CHECK((*first)[0].queue == 0);
  CHECK((*first)[0].offset == 0);
  CHECK((*first)[1].queue == 1);
  CHECK((*first)[1].offset == 0);

  NewMessage delayed = Msg("a-delayed", "id-delayed");
  delayed.deliver_at_ms = NowMs() + 3600000;
  auto later = f.store.Append("t", {delayed});  // delayed: the long path
  REQUIRE(later.ok());
  REQUIRE((*later)[0].delayed);

  // One call: queue 0 gets two, queue 1 one; an id twice in the call; an id of a delayed message.
  auto r = f.store.Append(
      "t", {Msg("a1", "id-1"), Msg("b1"), Msg("a2", "id-1"), Msg("a3"), Msg("b2", "id-delayed")});
  REQUIRE(r.ok());
  REQUIRE(r->size() == 5);
  CHECK_FALSE((*r)[0].duplicate);
  CHECK((*r)[0].queue == 0);
  CHECK((*r)[0].offset == 1);
  CHECK((*r)[1].queue == 1);
  CHECK((*r)[1].offset == 1);
  CHECK((*r)[2].duplicate);  // the first of the call wins
  CHECK((*r)[2].queue == 0);
  CHECK((*r)[2].offset == 1);
  CHECK_FALSE((*r)[3].duplicate);
  CHECK((*r)[3].queue == 0);
  CHECK((*r)[3].offset == 2);  // dense: the duplicate took no offset
  CHECK((*r)[4].duplicate);    // waiting as a delayed message
  CHECK((*r)[4].delayed);
  CHECK((*r)[4].delayed_id == (*later)[0].delayed_id);

  auto again = f.store.Append("t", {Msg("a9", "id-1")});  // across calls
  REQUIRE(again.ok());
  CHECK((*again)[0].duplicate);
  CHECK((*again)[0].queue == 0);
  CHECK((*again)[0].offset == 1);

  auto d = f.store.DescribeTopic("t");
  REQUIRE(d.ok());
  REQUIRE(d->queues.size() == 2);
  CHECK(d->queues[0].end_offset == 3);
  CHECK(d->queues[1].end_offset == 2);

  // Deleted and created again with another queue count: the cached view is refused, nothing is
  // written with it, and the produce lands in the new topic.
  REQUIRE(f.store.DeleteTopic("t").ok());
  REQUIRE(f.store.CreateTopic(Topic("t", 1)).ok());
  auto fresh = f.store.Append("t", {Msg("b3")});
  REQUIRE(fresh.ok());
  CHECK((*fresh)[0].queue == 0);
  CHECK((*fresh)[0].offset == 0);
  REQUIRE(f.store.DeleteTopic("t").ok());
  CHECK(f.store.Append("t", {Msg("a4")}).status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("an unknown topic is NOT_FOUND and stores nothing", "[integration][store]") {
  Fixture f;
  auto r = f.store.Append("missing", {Msg("a")});
  REQUIRE(r.status().code() == absl::StatusCode::kNotFound);
  CHECK(std::string(r.status().message()).find("\"missing\"") != std::string::npos);
  REQUIRE(f.store.CreateTopic(Topic("dup", 1)).ok());
  CHECK(f.store.CreateTopic(Topic("dup", 2)).status().code() == absl::StatusCode::kAlreadyExists);
}
