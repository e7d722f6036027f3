// A fixed set of worker threads with a bounded queue, for blocking work (database calls) that
// must not run on gRPC's callback threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry {

class Executor {
 public:
  // Starts `threads` workers; at most `max_queued` tasks wait for a worker.
  Executor(int threads, size_t max_queued);
  // Runs what is queued, then joins the workers.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task`. Returns false, without running it, when the queue is full or Shutdown() was
  // called: the caller answers RESOURCE_EXHAUSTED / UNAVAILABLE instead of growing a backlog.
  // Thread-safe.
  bool TrySubmit(std::function<void()> task);

  // Stops accepting, runs what is queued, joins the workers. Idempotent.
  void Shutdown();

 private:
  void Work();

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ferry
