#include "client/publisher.h"

#include <zlib.h>

#include <algorithm>

namespace ferry {

Publisher::Publisher(Client& client, PublisherOptions options)
    : client_(client), o_([&] {
        options.max_messages = std::clamp(options.max_messages, 1, 1000);
        options.max_bytes = std::clamp<size_t>(options.max_bytes, 1, size_t{16} << 20);
        options.max_in_flight = std::max(options.max_in_flight, 1);
        options.lanes = std::max(options.lanes, 1);
        options.max_outstanding = std::max<size_t>(options.max_outstanding, 1);
        return options;
      }()) {
  runner_ = std::thread([this] { Run(); });
  for (int i = 0; i < o_.max_in_flight; ++i) senders_.emplace_back([this] { Sender(); });
}

Publisher::~Publisher() { Close(); }

std::future<absl::StatusOr<PublishResult>> Publisher::Publish(const std::string& topic,
                                                              v1::ProducedMessage message) {
  auto p = std::make_unique<Pending>();
  auto future = p->promise.get_future();
  if (message.dedup_id().empty()) {
    message.set_dedup_id(NewDedupId());
    p->generated_id = true;
  }
  p->size = message.ByteSizeLong();
  const int lane_no =
      message.key().empty()
          ? -1
          : static_cast<int>(crc32(0L, reinterpret_cast<const Bytef*>(message.key().data()),
                                   static_cast<uInt>(message.key().size())) %
                             static_cast<uLong>(o_.lanes));
  p->message = std::move(message);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return outstanding_ < o_.max_outstanding || closed_; });
  if (closed_) {
    p->promise.set_value(absl::FailedPreconditionError("the publisher is closed"));
    return future;
  }
  if (lane_no >= 0 && paused_.count({topic, p->message.key()})) {
    p->promise.set_value(PausedError(topic, p->message.key()));
    return future;
  }
  auto& lane = lanes_[{topic, lane_no}];
  if (!lane) {
    lane = std::make_unique<Lane>();
    lane->topic = topic;
    lane->ordered = lane_no >= 0;
  }
  if (lane->pending.empty()) lane->first_at = std::chrono::steady_clock::now();
  lane->pending_bytes += p->size;
  lane->pending.push_back(std::move(p));
  ++outstanding_;
  if (lane->pending.size() == 1 || lane->pending.size() >= static_cast<size_t>(o_.max_messages) ||
      lane->pending_bytes >= o_.max_bytes) {
    cv_.notify_all();
  }
  return future;
}

void Publisher::ResumePublish(const std::string& topic, const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  paused_.erase({topic, key});
}

absl::Status Publisher::PausedError(const std::string& topic, const std::string& key) const {
  return absl::FailedPreconditionError(
      "publishing key '" + key + "' to " + topic + " is paused: an earlier message of the key " +
      "failed (" + paused_.at({topic, key}).ToString() + "); call ResumePublish");
}

size_t Publisher::PauseLocked(Lane& lane, const std::vector<std::string>& keys,
                              const absl::Status& why) {
  for (const auto& k : keys) paused_[{lane.topic, k}] = why;
  size_t failed = 0;
  auto fail_paused = [&](auto& items) {
    for (auto it = items.begin(); it != items.end();) {
      if (paused_.count({lane.topic, (*it)->message.key()})) {
        (*it)->promise.set_value(PausedError(lane.topic, (*it)->message.key()));
        it = items.erase(it);
        ++failed;
      } else {
        ++it;
      }
    }
  };
  fail_paused(lane.pending);
  lane.pending_bytes = 0;
  for (const auto& p : lane.pending) lane.pending_bytes += p->size;
  for (auto& b : lane.ready) fail_paused(b);
  lane.ready.erase(std::remove_if(lane.ready.begin(), lane.ready.end(),
                                  [](const Batch& b) { return b.empty(); }),
                   lane.ready.end());
  return failed;
}

bool Publisher::Flush(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  ++flushing_;
  cv_.notify_all();
  const bool done = cv_.wait_for(lock, wait, [&] { return outstanding_ == 0; });
  --flushing_;
  return done;
}

void Publisher::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
  }
  Flush();
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    stop_ = true;
    cv_.notify_all();
  }
  runner_.join();
  for (auto& t : senders_) t.join();
}

Publisher::Batch Publisher::Cut(Lane& lane) {
  Batch batch;
  size_t size = 0;
  while (!lane.pending.empty() && batch.size() < static_cast<size_t>(o_.max_messages)) {
    if (!batch.empty() && size + lane.pending.front()->size > o_.max_bytes) break;
    size += lane.pending.front()->size;
    batch.push_back(std::move(lane.pending.front()));
    lane.pending.pop_front();
  }
  lane.pending_bytes -= size;
  if (!lane.pending.empty()) lane.first_at = std::chrono::steady_clock::now();
  return batch;
}

void Publisher::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const auto now = std::chrono::steady_clock::now();
    auto wake = now + std::chrono::hours(1);
    for (auto& [id, lane] : lanes_) {
      while (!lane->pending.empty() &&
             (flushing_ > 0 || closed_ ||
              lane->pending.size() >= static_cast<size_t>(o_.max_messages) ||
              lane->pending_bytes >= o_.max_bytes || now - lane->first_at >= o_.max_latency)) {
        lane->ready.push_back(Cut(*lane));
      }
      if (!lane->pending.empty()) wake = std::min(wake, lane->first_at + o_.max_latency);
      while (!lane->ready.empty() && in_flight_ < o_.max_in_flight &&
             !(lane->ordered && lane->in_flight > 0)) {
        ++lane->in_flight;
        ++in_flight_;
        jobs_.push_back(Job{lane.get(), std::move(lane->ready.front())});
        lane->ready.pop_front();
        cv_.notify_all();
      }
    }
    cv_.wait_until(lock, std::max(wake, now + std::chrono::microseconds(500)));
  }
}

void Publisher::Sender() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return !jobs_.empty() || stop_; });
    if (jobs_.empty()) return;  // stopping, nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    const size_t n = job.batch.size();
    std::vector<std::string> keys;
    for (const auto& p : job.batch) keys.push_back(p->message.key());
    const absl::Status sent = Send(*job.lane, std::move(job.batch));
    lock.lock();
    if (!sent.ok() && job.lane->ordered) outstanding_ -= PauseLocked(*job.lane, keys, sent);
    --job.lane->in_flight;
    --in_flight_;
    outstanding_ -= n;
    cv_.notify_all();
  }
}

absl::Status Publisher::Send(Lane& lane, Batch batch) {
  v1::ProduceRequest req;
  req.set_topic(lane.topic);
  for (const auto& p : batch) *req.add_messages() = p->message;
  absl::StatusOr<v1::ProduceResponse> r = client_.ProduceWithRetry(req, o_.retry_for);
  for (size_t i = 0; i < batch.size(); ++i) {
    Pending& p = *batch[i];
    if (!r.ok()) {
      p.promise.set_value(r.status());
      continue;
    }
    const v1::ProduceResult& x = r->results(static_cast<int>(i));
    // A generated id found stored was this publish's own earlier attempt: not a duplicate.
    p.promise.set_value(PublishResult{x.queue(), x.offset(), x.duplicate() && !p.generated_id,
                                      x.delayed(), x.delayed_id(), p.message.dedup_id()});
  }
  return r.status();
}

}  // namespace ferry
