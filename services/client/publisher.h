// ferry::Publisher: batching publishes, as the Python, Go and Node clients do (clients/).
//
//   ferry::Publisher pub(client);                       // 100 messages / 1 MiB / 10 ms per batch
//   v1::ProducedMessage m;
//   m.set_key("order-1");
//   m.set_payload("order 1 created");
//   auto stored = pub.Publish("orders", m);              // std::future<StatusOr<PublishResult>>
//   pub.Flush();
//   pub.ResumePublish("orders", "order-1");             // after a failure paused that key
//
// Every message carries a dedup id (generated when empty), and a batch is retried with the
// same ids (Client::ProduceWithRetry) on UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED
// for `retry_for`: a batch whose answer was lost is not stored twice. Order per key: keyed
// messages go to one of `lanes` lanes per topic by crc32(key), and a lane has at most one batch
// in flight (retries included). When a keyed batch fails for good, its keys are paused (as
// Pub/Sub's ordering keys): their queued messages and later publishes fail with
// FAILED_PRECONDITION until ResumePublish. Thread-safe.
#pragma once

#include <absl/status/statusor.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"

namespace ferry {

struct PublisherOptions {
  int max_messages = 100;                     // per batch, 1 to 1000
  size_t max_bytes = 1 << 20;                 // per batch, at most 16 MiB
  std::chrono::milliseconds max_latency{10};  // how long a message waits for company
  int max_in_flight = 8;                      // batches being sent at once
  int lanes = 8;                              // keyed lanes per topic
  std::chrono::milliseconds retry_for{std::chrono::minutes(10)};
  size_t max_outstanding = 100000;  // Publish blocks beyond this
};

struct PublishResult {
  uint32_t queue = 0;
  uint64_t offset = 0;
  bool duplicate = false;  // the caller's dedup id was stored before
  bool delayed = false;
  uint64_t delayed_id = 0;
  std::string dedup_id;
};

class Publisher {
 public:
  explicit Publisher(Client& client, PublisherOptions options = {});
  ~Publisher();  // Close()
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Queues one message; the future is ready once the broker stored it (or gave up).
  std::future<absl::StatusOr<PublishResult>> Publish(const std::string& topic,
                                                     v1::ProducedMessage message);
  // Sends everything queued now and waits until it is resolved; false on timeout.
  bool Flush(std::chrono::milliseconds wait = std::chrono::hours(24));
  // Flushes, then stops the threads; Publish answers FAILED_PRECONDITION afterwards.
  void Close();
  // Lets `key` be published to `topic` again after a failure paused it.
  void ResumePublish(const std::string& topic, const std::string& key);

 private:
  struct Pending {
    v1::ProducedMessage message;
    bool generated_id = false;
    size_t size = 0;
    std::promise<absl::StatusOr<PublishResult>> promise;
  };
  using Batch = std::vector<std::unique_ptr<Pending>>;
  struct Lane {
    std::string topic;
    bool ordered = false;
    std::deque<std::unique_ptr<Pending>> pending;
    size_t pending_bytes = 0;
    std::chrono::steady_clock::time_point first_at;
    std::deque<Batch> ready;
    int in_flight = 0;
  };
  struct Job {
    Lane* lane;
    Batch batch;
  };

  void Run();     // cuts batches and hands them to the senders
  void Sender();  // sends batches
  Batch Cut(Lane& lane);
  absl::Status Send(Lane& lane, Batch batch);
  // Pauses `keys` of lane's topic after `why`; fails their queued messages; returns how many.
  size_t PauseLocked(Lane& lane, const std::vector<std::string>& keys, const absl::Status& why);
  absl::Status PausedError(const std::string& topic, const std::string& key) const;

  Client& client_;
  const PublisherOptions o_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<std::string, int>, std::unique_ptr<Lane>> lanes_;
  std::deque<Job> jobs_;
  std::map<std::pair<std::string, std::string>, absl::Status> paused_;  // (topic, key) -> why
  size_t outstanding_ = 0;
  int in_flight_ = 0;
  int flushing_ = 0;
  bool closed_ = false;
  bool stop_ = false;
  std::thread runner_;
  std::vector<std::thread> senders_;
};

}  // namespace ferry
