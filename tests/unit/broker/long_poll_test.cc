#include "broker/long_poll.h"

#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>

using namespace ferry::broker;
using namespace std::chrono_literals;

namespace {

// Records how a waiter was woken.
struct Woken {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  bool timed_out = false;
  LongPoller::Wake Callback() {
    return [this](bool t) {
      std::lock_guard<std::mutex> lock(mu);
      ++calls;
      timed_out = t;
      cv.notify_all();
    };
  }
  bool Wait(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, d, [&] { return calls > 0; });
  }
};

}  // namespace

TEST_CASE("long poll: a notification wakes the waiter of its topic at once - not others",
          "[unit][long-poll]") {
  LongPoller poller(10s);  // no fallback poll during the test
  Woken a, b;
  const auto deadline = LongPoller::Clock::now() + 10s;
  poller.Park(1, poller.Generation(1), deadline, 100, a.Callback());
  poller.Park(2, poller.Generation(2), deadline, 100, b.Callback());
  poller.Notify(1);
  REQUIRE(a.Wait(2s));
  CHECK_FALSE(a.timed_out);
  CHECK_FALSE(b.Wait(100ms));
  poller.Stop();  // wakes the rest with timed_out
  REQUIRE(b.Wait(2s));
  CHECK(b.timed_out);
  CHECK(b.calls == 1);
}

TEST_CASE("long poll: a notification between reading the generation and parking is not lost",
          "[unit][long-poll]") {
  LongPoller poller(10s);
  const uint64_t seen = poller.Generation(7);
  poller.Notify(7);  // a produce while the consume attempt ran
  Woken w;
  poller.Park(7, seen, LongPoller::Clock::now() + 10s, 100, w.Callback());
  REQUIRE(w.Wait(1s));
  CHECK_FALSE(w.timed_out);
}

TEST_CASE("long poll: the deadline wakes a waiter with timed_out - once", "[unit][long-poll]") {
  LongPoller poller(10s);
  Woken w;
  poller.Park(3, poller.Generation(3), LongPoller::Clock::now() + 50ms, 100, w.Callback());
  REQUIRE(w.Wait(2s));
  CHECK(w.timed_out);
  poller.Notify(3);
  std::this_thread::sleep_for(50ms);
  CHECK(w.calls == 1);
}

TEST_CASE(
    "long poll: a count of new messages wakes only the waiters it takes - longest parked first - "
    "no count wakes every waiter",
    "[unit][long-poll]") {
  LongPoller poller(10s);
  const auto deadline = LongPoller::Clock::now() + 10s;
  Woken a, b, c;
  poller.Park(5, poller.Generation(5), deadline, 10, a.Callback());
  poller.Park(5, poller.Generation(5), deadline, 10, b.Callback());
  poller.Park(5, poller.Generation(5), deadline, 10, c.Callback());
  poller.Notify(5, 10);  // one waiter's worth
  REQUIRE(a.Wait(2s));
  CHECK_FALSE(b.Wait(100ms));
  CHECK_FALSE(c.Wait(10ms));
  poller.Notify(5, 11);  // takes both of the others
  REQUIRE(b.Wait(2s));
  REQUIRE(c.Wait(2s));
  CHECK_FALSE(b.timed_out);
  CHECK_FALSE(c.timed_out);

  Woken d, e;
  poller.Park(6, poller.Generation(6), deadline, 100, d.Callback());
  poller.Park(6, poller.Generation(6), deadline, 100, e.Callback());
  poller.Notify(6);  // no count: everyone
  REQUIRE(d.Wait(2s));
  REQUIRE(e.Wait(2s));
  poller.Stop();
}
