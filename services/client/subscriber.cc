#include "client/subscriber.h"

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "common/status.h"

namespace ferry {

namespace {

constexpr size_t kMaxReason = 4096;

std::string Reason(std::string text) {
  std::replace(text.begin(), text.end(), '\0', ' ');
  if (text.size() <= kMaxReason) return text;
  text.resize(kMaxReason);
  while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) text.pop_back();
  if (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80)) text.pop_back();
  return text;
}

std::chrono::milliseconds Jittered(std::chrono::milliseconds c) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int64_t> d(c.count() / 2, c.count());
  return std::chrono::milliseconds(d(rng));
}

}  // namespace

Subscriber::Subscriber(Client& client, std::string topic, std::string group, Handler handler,
                       SubscriberOptions options)
    : client_(client),
      topic_(std::move(topic)),
      group_(std::move(group)),
      handler_(std::move(handler)),
      o_([&] {
        options.max_outstanding_messages = std::max(options.max_outstanding_messages, 1);
        options.concurrency = std::max(options.concurrency, 1);
        options.lease = std::clamp<std::chrono::milliseconds>(
            options.lease, std::chrono::seconds(1), std::chrono::hours(12));
        return options;
      }()) {
  ordered_ = o_.ordered ? *o_.ordered : IsOrdered();
  puller_ = std::thread([this] { Pull(); });
  keeper_ = std::thread([this] { Keep(); });
  for (int i = 0; i < o_.concurrency; ++i) workers_.emplace_back([this] { Work(); });
}

Subscriber::~Subscriber() { Stop(); }

bool Subscriber::IsOrdered() {
  // Asked until the broker answers (guessing "unordered" would break an ordered group's order);
  // a caller without admin reads gets a warning and unordered.
  absl::Status s;
  std::chrono::milliseconds backoff(100);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  for (;;) {
    auto topic = client_.DescribeTopic(topic_);
    if (topic.ok() && topic->topic().ordered()) return true;
    s = topic.status();
    if (topic.ok()) {
      v1::DescribeGroupRequest req;
      req.set_name(group_);
      v1::DescribeGroupResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + client_.timeout());
      s = FromGrpcStatus(client_.admin().DescribeGroup(&ctx, req, &resp));
      if (s.ok()) return resp.group().ordered();
    }
    if (!IsRetryable(s) || std::chrono::steady_clock::now() + backoff > give_up) break;
    std::this_thread::sleep_for(Jittered(backoff));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
  }
  if (absl::IsNotFound(s)) return false;  // a group this subscription creates: not ordered
  if (absl::IsPermissionDenied(s) || absl::IsUnauthenticated(s)) {
    spdlog::warn(
        "ferry: cannot tell whether {}/{} is ordered ({}): handling messages concurrently; "
        "set SubscriberOptions::ordered for an ordered group",
        topic_, group_, s.ToString());
    return false;
  }
  spdlog::error("ferry: subscription {}/{} cannot start: {}", topic_, group_, s.ToString());
  error_ = s;
  stopping_ = true;  // the puller exits at once; error() says why
  return false;
}

SubscriberStats Subscriber::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

size_t Subscriber::outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return inflight_.size();
}

absl::Status Subscriber::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

void Subscriber::Stop(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_ || !puller_.joinable()) return;
    stopping_ = true;
    if (pull_ctx_) pull_ctx_->TryCancel();
    cv_.notify_all();
  }
  puller_.join();
  {
    std::unique_lock<std::mutex> lock(mu_);
    for (auto& item : work_)
      ReleaseLocked(item, "released: the subscriber stopped before handling it");
    work_.clear();
    cv_.notify_all();
    cv_.wait_until(lock, deadline, [&] { return running_ == 0; });
    cv_.wait_until(lock, deadline, [&] { return settles_.empty(); });
    stopped_ = true;
    cv_.notify_all();
  }
  keeper_.join();
  // A handler still running past `wait` is waited for (C++ cannot cancel it); its outcome is
  // then not sent: its message comes back when its lease ends.
  for (auto& w : workers_) w.join();
}

void Subscriber::Pull() {
  std::chrono::milliseconds backoff(100);
  for (;;) {
    v1::ConsumeRequest req;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || (inflight_.size() < static_cast<size_t>(o_.max_outstanding_messages) &&
                             bytes_ < o_.max_outstanding_bytes);
      });
      if (stopping_) return;
      req.set_max_messages(static_cast<uint32_t>(std::min<size_t>(
          static_cast<size_t>(o_.max_outstanding_messages) - inflight_.size(), 1000)));
      pull_ctx_ = std::make_unique<grpc::ClientContext>();
      pull_ctx_->set_deadline(std::chrono::system_clock::now() + client_.timeout() + o_.max_wait);
      pull_ctx_->set_wait_for_ready(true);
    }
    req.set_group(group_);
    req.set_topic(topic_);
    req.set_max_wait_ms(static_cast<uint32_t>(o_.max_wait.count()));
    req.set_visibility_timeout_ms(static_cast<uint32_t>(o_.lease.count()));
    req.set_start_position(o_.start);
    v1::ConsumeResponse resp;
    const absl::Status s = FromGrpcStatus(client_.broker().Consume(pull_ctx_.get(), req, &resp));
    std::unique_lock<std::mutex> lock(mu_);
    pull_ctx_.reset();
    if (stopping_) return;
    if (!s.ok()) {
      if (!IsRetryable(s)) {
        spdlog::error("ferry: consume {}/{} failed: {}; the subscription stops", topic_, group_,
                      s.ToString());
        error_ = s;
        stopping_ = true;
        cv_.notify_all();
        return;
      }
      const auto wait = Jittered(backoff);
      spdlog::warn("ferry: consume {}/{} failed: {}; again in {} ms", topic_, group_, s.ToString(),
                   wait.count());
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
      cv_.wait_for(lock, wait, [&] { return stopping_; });
      continue;
    }
    backoff = std::chrono::milliseconds(100);
    const auto now = std::chrono::steady_clock::now();
    for (auto& m : *resp.mutable_messages()) {
      auto item = std::make_shared<Item>();
      item->size = m.ByteSizeLong();
      item->received_at = now;
      item->lease_until = now + o_.lease;
      item->msg = std::move(m);
      inflight_[item->msg.receipt()] = item;
      bytes_ += item->size;
      ++stats_.received;
      if (ordered_) {
        item->chain = absl::StrCat(item->msg.topic(), "/", item->msg.queue());
        auto it = chains_.find(item->chain);
        if (it != chains_.end()) {
          it->second.push_back(item);  // runs after the ones before it
          continue;
        }
        chains_[item->chain];
      }
      work_.push_back(item);
    }
    stats_.max_outstanding_seen =
        std::max<int64_t>(stats_.max_outstanding_seen, static_cast<int64_t>(inflight_.size()));
    cv_.notify_all();
  }
}

void Subscriber::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return !work_.empty() || stopped_ || (stopping_ && running_ == 0); });
    if (work_.empty()) {
      if (stopped_ || stopping_) return;
      continue;
    }
    auto item = work_.front();
    work_.pop_front();
    ++running_;
    lock.unlock();
    Handle(item);
    lock.lock();
    --running_;
    cv_.notify_all();
  }
}

void Subscriber::Handle(std::shared_ptr<Item> item) {
  while (item) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || item->done) {
        ReleaseLocked(item, "released: the subscriber stopped before handling it");
        item = NextLocked(*item, true);
        continue;
      }
      item->started = true;
    }
    Outcome out;
    bool failed = false;
    try {
      out = handler_(item->msg);
    } catch (const std::exception& e) {
      failed = true;
      out = Outcome::Retry(e.what());
    } catch (...) {
      failed = true;
      out = Outcome::Retry("unknown exception");
    }
    if (failed) {
      spdlog::warn("ferry: handler failed on {}/{}/{} (attempt {}): {}", item->msg.topic(),
                   item->msg.queue(), item->msg.offset(), item->msg.delivery_attempt(), out.reason);
    }
    v1::CommitEntry entry;
    entry.set_receipt(item->msg.receipt());
    entry.set_outcome(out.outcome);
    entry.set_reason(Reason(out.reason));
    if (out.outcome == v1::RETRY && out.retry_delay_ms)
      entry.set_retry_delay_ms(*out.retry_delay_ms);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.handler_errors += failed;
    item->done = true;
    SettleLocked(item, std::move(entry));
    item = NextLocked(*item, out.outcome == v1::RETRY);
  }
}

std::shared_ptr<Subscriber::Item> Subscriber::NextLocked(const Item& item, bool release_rest) {
  if (item.chain.empty()) return nullptr;
  auto it = chains_.find(item.chain);
  if (it == chains_.end()) return nullptr;
  if (release_rest) {
    for (auto& rest : it->second) {
      ReleaseLocked(rest, "released: an earlier message of its queue is being retried");
    }
    it->second.clear();
  }
  if (it->second.empty()) {
    chains_.erase(it);
    return nullptr;
  }
  auto next = it->second.front();
  it->second.pop_front();
  return next;
}

void Subscriber::ReleaseLocked(const std::shared_ptr<Item>& item, const std::string& why) {
  if (item->done) return;
  item->done = true;
  ++stats_.released;
  v1::CommitEntry entry;
  entry.set_receipt(item->msg.receipt());
  entry.set_outcome(v1::RETRY);
  entry.set_retry_delay_ms(0);
  entry.set_reason(why);
  SettleLocked(item, std::move(entry));
}

void Subscriber::SettleLocked(const std::shared_ptr<Item>& item, v1::CommitEntry entry) {
  settles_.push_back(Settle{item, std::move(entry), std::chrono::steady_clock::now()});
  cv_.notify_all();
}

void Subscriber::Keep() {
  const auto every = std::clamp<std::chrono::milliseconds>(
      o_.lease / 3, std::chrono::milliseconds(500), std::chrono::seconds(5));
  auto next_extend = std::chrono::steady_clock::now() + every;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_until(lock, next_extend, [&] { return !settles_.empty() || stopped_; });
    if (!settles_.empty() && settles_.size() < 100 && !stopping_) {
      // An ACK waits up to 10 ms for company.
      cv_.wait_until(lock, settles_.front().queued + std::chrono::milliseconds(10),
                     [&] { return settles_.size() >= 100 || stopping_; });
    }
    if (!settles_.empty()) {
      const size_t n = std::min<size_t>(settles_.size(), 1000);
      std::vector<Settle> batch(std::make_move_iterator(settles_.begin()),
                                std::make_move_iterator(settles_.begin() + static_cast<long>(n)));
      settles_.erase(settles_.begin(), settles_.begin() + static_cast<long>(n));
      lock.unlock();
      CommitBatch(std::move(batch));
      lock.lock();
      continue;
    }
    if (stopped_) return;
    if (std::chrono::steady_clock::now() >= next_extend) {
      lock.unlock();
      Extend();
      lock.lock();
      next_extend = std::chrono::steady_clock::now() + every;
    }
  }
}

void Subscriber::CommitBatch(std::vector<Settle> batch) {
  v1::CommitRequest req;
  req.set_group(group_);
  for (const auto& s : batch) *req.add_entries() = s.entry;
  // Commit is idempotent: retried for as long as a lease could still be valid.
  absl::StatusOr<v1::CommitResponse> r;
  const auto give_up = std::chrono::steady_clock::now() + o_.lease;
  std::chrono::milliseconds backoff(50);
  for (;;) {
    r = client_.Commit(req);
    if (r.ok() || !IsRetryable(r.status()) || std::chrono::steady_clock::now() + backoff > give_up)
      break;
    std::this_thread::sleep_for(Jittered(backoff));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(2));
  }
  if (!r.ok()) {
    spdlog::error(
        "ferry: commit of {} messages in {} failed: {}; they are delivered again when "
        "their leases end",
        batch.size(), group_, r.status().ToString());
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < batch.size(); ++i) {
    const Item& item = *batch[i].item;
    if (r.ok() && static_cast<int>(i) < r->results_size()) {
      const v1::CommitResult& x = r->results(static_cast<int>(i));
      switch (x.status()) {
        case v1::STALE_RECEIPT:
          ++stats_.stale_receipts;
          spdlog::warn(
              "ferry: stale receipt for {}/{}/{} in {}: its lease had ended and it was "
              "delivered again ({})",
              item.msg.topic(), item.msg.queue(), item.msg.offset(), group_, x.detail());
          break;
        case v1::INVALID_RECEIPT:
        case v1::TOPIC_NOT_FOUND:
          ++stats_.invalid_receipts;
          spdlog::error("ferry: commit refused for {}/{}/{}: {}", item.msg.topic(),
                        item.msg.queue(), item.msg.offset(), x.detail());
          break;
        case v1::DEAD_LETTERED:
          ++stats_.dead_lettered;
          break;
        case v1::RETRY_SCHEDULED:
          if (!absl::StartsWith(batch[i].entry.reason(), "released:")) ++stats_.retried;
          break;
        default:
          ++stats_.acked;
      }
    }
    auto it = inflight_.find(item.msg.receipt());
    if (it != inflight_.end()) {
      bytes_ -= it->second->size;
      inflight_.erase(it);
    }
  }
  cv_.notify_all();
}

void Subscriber::Extend() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Item>> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [receipt, item] : inflight_) {
      if (!item->done && item->lease_until - now < o_.lease * 2 / 3 &&
          now - item->received_at < o_.max_lease_extension) {
        due.push_back(item);
      }
    }
  }
  for (size_t start = 0; start < due.size(); start += 1000) {
    const size_t end = std::min(due.size(), start + 1000);
    v1::ExtendLeaseRequest req;
    req.set_group(group_);
    req.set_visibility_timeout_ms(static_cast<uint32_t>(o_.lease.count()));
    for (size_t i = start; i < end; ++i) req.add_receipts(due[i]->msg.receipt());
    auto r = client_.ExtendLease(req);
    if (!r.ok()) {
      spdlog::warn("ferry: extending {} leases in {} failed: {}", end - start, group_,
                   r.status().ToString());
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = start; i < end && static_cast<int>(i - start) < r->results_size(); ++i) {
      const auto& x = r->results(static_cast<int>(i - start));
      if (x.status() == v1::LEASE_EXTENDED) {
        due[i]->lease_until = now + o_.lease;
        ++stats_.lease_extensions;
      } else if (!due[i]->done) {
        spdlog::warn("ferry: lease of {}/{}/{} not extended: {}", due[i]->msg.topic(),
                     due[i]->msg.queue(), due[i]->msg.offset(), x.detail());
      }
    }
  }
}

}  // namespace ferry
