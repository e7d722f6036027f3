#include "broker/long_poll.h"

#include <algorithm>
#include <vector>

#include "common/log.h"

namespace ferry::broker {

LongPoller::LongPoller(std::chrono::milliseconds poll_interval)
    : poll_interval_(poll_interval), thread_([this] { Run(); }) {}

LongPoller::~LongPoller() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

uint64_t LongPoller::Generation(int64_t topic_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return generations_[topic_id];
}

void LongPoller::Park(int64_t topic_id, uint64_t seen, Clock::time_point deadline, uint32_t wants,
                      Wake wake) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      const auto now = Clock::now();
      const bool moved = generations_[topic_id] != seen;
      waiters_.push_back(Waiter{topic_id, deadline, moved ? now : now + poll_interval_,
                                std::max<uint32_t>(wants, 1), std::move(wake)});
      cv_.notify_one();
      return;
    }
  }
  wake(true);
}

void LongPoller::Notify(int64_t topic_id, uint64_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generations_[topic_id];
  uint64_t covered = 0;
  const auto now = Clock::now();
  for (Waiter& w : waiters_) {  // in parking order: the longest waiting first
    if (covered >= count) break;
    if (w.topic_id != topic_id || w.next_poll <= now) continue;  // other topic, or woken already
    w.next_poll = now;
    covered += w.wants;
  }
  if (covered > 0) cv_.notify_one();
}

void LongPoller::Stop() {
  std::list<Waiter> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    left.swap(waiters_);
    cv_.notify_one();
  }
  for (Waiter& w : left) w.wake(true);
}

void LongPoller::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const auto now = Clock::now();
    std::vector<std::pair<Wake, bool>> due;
    auto next = now + std::chrono::seconds(1);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->deadline <= now) {
        due.emplace_back(std::move(it->wake), true);
        it = waiters_.erase(it);
      } else if (it->next_poll <= now) {
        due.emplace_back(std::move(it->wake), false);
        it = waiters_.erase(it);
      } else {
        next = std::min({next, it->deadline, it->next_poll});
        ++it;
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (auto& [wake, timed_out] : due) wake(timed_out);
      lock.lock();
      continue;
    }
    cv_.wait_until(lock, next);
  }
}

NotificationListener::NotificationListener(const pg::ConnectionPool& pool, LongPoller& poller)
    : pool_(pool), poller_(poller), thread_([this] { Run(); }) {}

NotificationListener::~NotificationListener() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void NotificationListener::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
}

namespace {

class Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, LongPoller& poller)
      : pqxx::notification_receiver(c, "ferry_messages"), poller_(poller) {}
  // "topic_id" or "topic_id:count" (NotifyCommitted).
  void operator()(const std::string& payload, int /*backend_pid*/) override {
    try {
      const auto colon = payload.find(':');
      if (colon == std::string::npos) {
        poller_.Notify(std::stoll(payload));
      } else {
        poller_.Notify(std::stoll(payload.substr(0, colon)),
                       std::max<int64_t>(1, std::stoll(payload.substr(colon + 1))));
      }
    } catch (const std::exception&) {
      // Not ours: ignore.
    }
  }

 private:
  LongPoller& poller_;
};

}  // namespace

void NotificationListener::Run() {
  auto logger = ferry::log::Get("broker.listen");
  auto stopping = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  };
  while (!stopping()) {
    try {
      auto conn = pool_.OpenDedicated("listen");
      Receiver receiver(*conn, poller_);
      logger->info("event=listening channel=ferry_messages");
      while (!stopping()) conn->await_notification(0, 200000);
    } catch (const std::exception& e) {
      logger->warn("event=listen_failed error={} retry_in_ms=1000", ferry::log::Quote(e.what()));
      for (int i = 0; i < 10 && !stopping(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
}

}  // namespace ferry::broker
