// Group commit: concurrent calls with the same key (a topic's produces, a group's commits)
// share one PostgreSQL transaction and one WAL flush. The first caller to find no write
// running for its key becomes the leader and writes everything queued for the key (up to
// max_items / max_bytes) in one call; the others wait for their results. Batches grow only
// when callers overlap: no linger, no added latency for a caller alone.
#pragma once

#include <absl/status/statusor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::broker {

template <typename In, typename Out>
class GroupCommit {
 public:
  // Writes the inputs of several calls at once; returns one result per input, in order.
  using Write = std::function<absl::StatusOr<std::vector<Out>>(const std::string& key,
                                                               const std::vector<In>& inputs)>;

  GroupCommit(size_t max_items, uint64_t max_bytes)
      : max_items_(max_items), max_bytes_(max_bytes) {}

  // `bytes`: what this call weighs against max_bytes. A failed write fails every call in it.
  absl::StatusOr<std::vector<Out>> Run(const std::string& key, const std::vector<In>& inputs,
                                       uint64_t bytes, const Write& write) {
    Pending mine{&inputs, bytes, absl::UnknownError("not written"), false};
    std::unique_lock<std::mutex> lock(mu_);
    lanes_[key].queue.push_back(&mine);
    while (!mine.done) {
      Lane& lane = lanes_[key];  // re-read each pass: a lane is erased when it runs empty
      if (lane.flushing) {
        cv_.wait(lock);
        continue;
      }
      // Lead: take what is queued, in arrival order. Our own call may not fit this batch;
      // then we lead (or wait for) the next one.
      lane.flushing = true;
      std::vector<Pending*> batch;
      size_t count = 0;
      uint64_t size = 0;
      while (!lane.queue.empty()) {
        Pending* p = lane.queue.front();
        if (!batch.empty() &&
            (count + p->inputs->size() > max_items_ || size + p->bytes > max_bytes_)) {
          break;
        }
        lane.queue.pop_front();
        batch.push_back(p);
        count += p->inputs->size();
        size += p->bytes;
      }
      lock.unlock();
      std::vector<In> combined;
      combined.reserve(count);
      for (Pending* p : batch)
        combined.insert(combined.end(), p->inputs->begin(), p->inputs->end());
      absl::StatusOr<std::vector<Out>> written = write(key, combined);
      if (written.ok() && written->size() != combined.size()) {
        written = absl::InternalError("group commit: one result per input expected");
      }
      lock.lock();
      size_t at = 0;
      for (Pending* p : batch) {
        if (written.ok()) {
          p->result =
              std::vector<Out>(written->begin() + at, written->begin() + at + p->inputs->size());
        } else {
          p->result = written.status();
        }
        at += p->inputs->size();
        p->done = true;
      }
      Lane& after = lanes_[key];
      after.flushing = false;
      if (after.queue.empty()) lanes_.erase(key);
      cv_.notify_all();
    }
    return std::move(mine.result);
  }

 private:
  struct Pending {
    const std::vector<In>* inputs;
    uint64_t bytes;
    absl::StatusOr<std::vector<Out>> result;
    bool done;
  };
  struct Lane {
    std::deque<Pending*> queue;
    bool flushing = false;
  };
  const size_t max_items_;
  const uint64_t max_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Lane> lanes_;
};

}  // namespace ferry::broker
