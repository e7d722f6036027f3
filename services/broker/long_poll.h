// Long polling without a thread per call: a Consume that found nothing parks a waiter here;
// the waiter is woken when a message is produced to its topic (NOTIFY ferry_messages, relayed
// by NotificationListener), every poll_interval as a fallback, or at its deadline.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/pg/pool.h"

namespace ferry::broker {

class LongPoller {
 public:
  using Clock = std::chrono::steady_clock;
  // Called once, on the poller thread: timed_out is true at the deadline or on Stop(). It must
  // not block (hand work to the executor).
  using Wake = std::function<void(bool timed_out)>;

  explicit LongPoller(std::chrono::milliseconds poll_interval);
  ~LongPoller();

  // A counter that grows with every notification for `topic_id`. Read it before an attempt and
  // pass it to Park, so a message produced during the attempt is not waited for.
  uint64_t Generation(int64_t topic_id);

  // Parks a waiter that takes up to `wants` messages; wakes it at once if the topic's
  // generation moved past `seen`.
  void Park(int64_t topic_id, uint64_t seen, Clock::time_point deadline, uint32_t wants, Wake wake);

  // `count` messages were produced to `topic_id`: wakes the longest-parked waiters of the
  // topic until their wants cover count (kEveryone: all of them). Waking every parked consumer
  // for every produce made each of them run a transaction for a share of ten messages (W3:
  // 2,000 transactions a second for 2,000 messages). Thread-safe.
  static constexpr uint64_t kEveryone = UINT64_MAX;
  void Notify(int64_t topic_id, uint64_t count = kEveryone);

  // Wakes every waiter with timed_out = true and refuses new ones (they are woken at once).
  void Stop();

 private:
  struct Waiter {
    int64_t topic_id;
    Clock::time_point deadline;
    Clock::time_point next_poll;
    uint32_t wants;
    Wake wake;
  };
  void Run();

  const std::chrono::milliseconds poll_interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Waiter> waiters_;
  std::unordered_map<int64_t, uint64_t> generations_;
  bool stopping_ = false;
  std::thread thread_;
};

// Listens on PostgreSQL channel ferry_messages (payload: topic_id) with its own connection and
// forwards each notification to the poller; reconnects after a failure.
class NotificationListener {
 public:
  NotificationListener(const pg::ConnectionPool& pool, LongPoller& poller);
  ~NotificationListener();
  void Stop();

 private:
  void Run();
  const pg::ConnectionPool& pool_;
  LongPoller& poller_;
  std::mutex mu_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ferry::broker
