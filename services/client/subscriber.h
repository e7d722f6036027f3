// ferry::Subscriber: a consume loop with flow control, lease extension and batched commits, as
// the Python, Go and Node clients have (clients/).
//
//   ferry::Subscriber sub(client, "orders", "billing", [](const v1::DeliveredMessage& m) {
//     if (m.payload().empty()) return ferry::Outcome::DeadLetter("empty order");
//     charge(m);                     // throws: RETRY on the group's backoff, what() as reason
//     return ferry::Outcome::Ack();
//   });
//   ...
//   sub.Stop();                      // releases what has not started, waits for the rest
//
// Threads: one pulls (long poll), `concurrency` run the handler, one extends leases (every
// lease/3 while a message is held, for at most max_lease_extension) and sends commits (100
// entries or 10 ms). STALE_RECEIPT results are counted and logged, not raised. Ordered groups
// (or topics): a queue's messages run one after another, and after a RETRY the rest of its
// batch is released (RETRY now) so that nothing overtakes it.
#pragma once

#include <absl/status/status.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"

namespace ferry {

// What a handler decided about a message.
struct Outcome {
  v1::CommitOutcome outcome = v1::ACK;
  std::optional<uint32_t> retry_delay_ms;  // RETRY: after this long; unset: the group's backoff
  std::string reason;                      // RETRY / DEAD_LETTER: kept with the dead letter

  static Outcome Ack() { return {}; }
  static Outcome Retry(std::string reason = "", std::optional<uint32_t> delay_ms = std::nullopt) {
    return {v1::RETRY, delay_ms, std::move(reason)};
  }
  static Outcome DeadLetter(std::string reason) {
    return {v1::DEAD_LETTER, std::nullopt, std::move(reason)};
  }
};

struct SubscriberOptions {
  int max_outstanding_messages = 1000;  // received and not settled
  size_t max_outstanding_bytes = 100 << 20;
  int concurrency = 10;                    // handler threads
  std::chrono::milliseconds lease{30000};  // 1 s to 12 h
  std::chrono::milliseconds max_lease_extension{std::chrono::hours(1)};
  std::chrono::milliseconds max_wait{5000};  // long poll
  std::optional<bool> ordered;               // unset: ask the broker (DescribeTopic/Group)
  v1::StartPosition start = v1::START_POSITION_EARLIEST;
};

struct SubscriberStats {
  int64_t received = 0, acked = 0, retried = 0, dead_lettered = 0, released = 0, stale_receipts = 0,
          invalid_receipts = 0, lease_extensions = 0, handler_errors = 0, max_outstanding_seen = 0;
};

class Subscriber {
 public:
  using Handler = std::function<Outcome(const v1::DeliveredMessage&)>;

  Subscriber(Client& client, std::string topic, std::string group, Handler handler,
             SubscriberOptions options = {});
  ~Subscriber();  // Stop()
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // Stops pulling, releases messages not started (delivered again now), gives running handlers
  // up to `wait` to finish and sends the commits (a handler still running then is waited for,
  // but its outcome is not sent: the message comes back after its lease). Idempotent.
  void Stop(std::chrono::milliseconds wait = std::chrono::seconds(30));
  SubscriberStats stats() const;
  size_t outstanding() const;
  // Why it stopped on its own (a Consume error that retrying cannot fix), else OK.
  absl::Status error() const;

 private:
  struct Item {
    v1::DeliveredMessage msg;
    size_t size = 0;
    std::chrono::steady_clock::time_point received_at, lease_until;
    std::string chain;  // ordered: topic/queue
    bool started = false;
    bool done = false;
  };
  struct Settle {
    std::shared_ptr<Item> item;
    v1::CommitEntry entry;
    std::chrono::steady_clock::time_point queued;
  };

  bool IsOrdered();
  void Pull();
  void Work();
  void Keep();
  void Handle(std::shared_ptr<Item> item);
  std::shared_ptr<Item> NextLocked(const Item& item, bool release_rest);
  void ReleaseLocked(const std::shared_ptr<Item>& item, const std::string& why);
  void SettleLocked(const std::shared_ptr<Item>& item, v1::CommitEntry entry);
  void CommitBatch(std::vector<Settle> batch);
  void Extend();

  Client& client_;
  const std::string topic_, group_;
  Handler handler_;
  const SubscriberOptions o_;
  bool ordered_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Item>> inflight_;  // by receipt, until settled
  size_t bytes_ = 0;
  std::deque<std::shared_ptr<Item>> work_;
  std::map<std::string, std::deque<std::shared_ptr<Item>>> chains_;
  std::vector<Settle> settles_;
  int running_ = 0;
  bool stopping_ = false;  // no more pulling, no new handler starts
  bool stopped_ = false;   // the keeper sends what is left and exits
  SubscriberStats stats_;
  absl::Status error_;
  std::unique_ptr<grpc::ClientContext> pull_ctx_;
  std::thread puller_, keeper_;
  std::vector<std::thread> workers_;
};

}  // namespace ferry
