#include "common/executor.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>

using ferry::Executor;

TEST_CASE("executor: runs what it accepts - refuses beyond its queue - refuses after Shutdown",
          "[unit][executor]") {
  Executor ex(1, 2);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false, started = false;
  std::atomic<int> ran{0};
  REQUIRE(ex.TrySubmit([&] {
    std::unique_lock<std::mutex> lock(mu);
    started = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    ++ran;
  }));
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return started; });  // the worker is busy; the queue is empty
  }
  CHECK(ex.TrySubmit([&] { ++ran; }));
  CHECK(ex.TrySubmit([&] { ++ran; }));
  CHECK_FALSE(ex.TrySubmit([&] { ++ran; }));  // the queue holds 2
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  ex.Shutdown();  // runs what was queued
  CHECK(ran == 3);
  CHECK_FALSE(ex.TrySubmit([&] { ++ran; }));
  CHECK(ran == 3);
}
