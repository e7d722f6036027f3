#include "broker/txn_checks.h"

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <optional>

#include "broker/convert.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"

namespace ferry::broker {
namespace {

struct CheckMetrics {
  CheckMetrics() {  // every decision has its series from the start, at 0
    for (const char* d :
         {"TRANSACTION_COMMIT", "TRANSACTION_ROLLBACK", "TRANSACTION_UNKNOWN", "REJECTED"}) {
      answers.With({d});
    }
  }
  metrics::Registry::CounterFamily& sent = metrics::Default().Counters(
      "ferry_txn_checks_total",
      "back-checks of undecided transactions by producer group and outcome (sent: to a "
      "connected checker; no_checker: none connected, tried again later)",
      {"producer_group", "outcome"});
  metrics::Registry::CounterFamily& answers = metrics::Default().Counters(
      "ferry_txn_check_answers_total",
      "answers from checkers by decision (REJECTED: not an answer to a check sent on its "
      "stream, or refused)",
      {"decision"});
};

CheckMetrics& Metrics() {
  static CheckMetrics* m = new CheckMetrics();
  return *m;
}

grpc::Status Grpc(absl::StatusCode code, const std::string& message) {
  return ToGrpcStatus(absl::Status(code, message));
}

}  // namespace

class TxnChecks::Stream : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  Stream(TxnChecks* owner, grpc::CallbackServerContext* ctx) : owner_(owner), ctx_(ctx) {
    StartRead(&in_);
  }

  // Queues `out` (carrying check `check`) for the checker and remembers the check as sent on
  // this stream. False if the stream is finishing or the checker has kMaxUnread unread.
  bool SendCheck(const TxnCheck& check, const v1::CheckTransactionResponse& out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || deferred_end_ || pending_.size() >= kMaxUnread) return false;
    sent_[check.check_id] = Sent{check.txn_id, check.producer_group};
    if (sent_.size() > kMaxOutstandingChecks) sent_.erase(sent_.begin());  // the oldest
    QueueWriteLocked(out);
    return true;
  }

  // Finishes the stream with `status`, now or when the running tasks are done.
  void End(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    if (tasks_ > 0) {
      if (!deferred_end_) deferred_end_ = status;
      return;
    }
    finished_ = true;
    Finish(status);
  }

  const std::string& checker() const { return checker_; }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the checker closed its side
      End(grpc::Status::OK);
      return;
    }
    v1::CheckTransactionRequest req;
    if (absl::Status parsed = rpc::Parse(in_, &req); !parsed.ok()) {
      End(ToGrpcStatus(parsed));
      return;
    }
    if (req.has_subscribe()) {
      if (subscribed_) {
        End(Grpc(absl::StatusCode::kInvalidArgument, "subscribe was sent twice"));
        return;
      }
      subscribed_ = true;
      // The door may read the database: on the executor. No read is outstanding until it is
      // done; then Subscribe() reads on, or the stream ends.
      RunTask(
          [this, sub = req.subscribe()] {
            absl::StatusOr<Caller> caller = owner_->edge_.Authenticate(*ctx_);
            absl::Status s =
                caller.ok() ? owner_->broker_.SubscribeChecks(*caller, sub) : caller.status();
            if (!s.ok()) return End(ToGrpcStatus(s));
            Subscribe(sub);
          },
          [this] { End(ToGrpcStatus(rpc::Busy())); });
      return;
    }
    if (req.has_answer()) {
      if (!subscribed_) {
        End(Grpc(absl::StatusCode::kFailedPrecondition, "send subscribe first"));
        return;
      }
      Answer(req.answer());
      StartRead(&in_);
      return;
    }
    End(Grpc(absl::StatusCode::kInvalidArgument, "a message must set subscribe or answer"));
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.pop_front();
    if (!ok || finished_ || pending_.empty()) {
      writing_ = false;
      return;
    }
    StartWrite(&pending_.front());
  }

  void OnCancel() override { End(grpc::Status::CANCELLED); }

  void OnDone() override {
    owner_->Unregister(this);
    delete this;
  }

 private:
  struct Sent {
    std::string txn_id;
    std::string producer_group;
  };

  // Registers the subscription and reads on (from the subscribe task).
  void Subscribe(const v1::CheckSubscribe& sub) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (deferred_end_) return;  // cancelled meanwhile, or the broker is stopping
    }
    checker_ = sub.checker_id().empty() ? "anonymous" : sub.checker_id();
    // Headers now, before any check can be written: the checker learns that its subscription
    // is live (and can say so) without waiting for the first check.
    StartSendInitialMetadata();
    owner_->Register(
        this, std::vector<std::string>(sub.producer_groups().begin(), sub.producer_groups().end()));
    StartRead(&in_);
  }

  // Binds an answer to the check it names, then applies it through the door on the executor.
  void Answer(const v1::CheckAnswer& a) {
    const auto check_id = static_cast<int64_t>(a.check_id());
    std::optional<Sent> sent;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sent_.find(check_id);
      if (it != sent_.end() && it->second.txn_id == a.transaction_id()) {
        sent = std::move(it->second);
        sent_.erase(it);
      }
    }
    if (!sent) {
      Reject(a.check_id(), a.transaction_id(),
             absl::StrCat("check ", a.check_id(), " for transaction ",
                          a.transaction_id().substr(0, 64),
                          " was not sent on this stream, or was answered already: an answer counts "
                          "only for a check this stream received"));
      return;
    }
    const std::string& name = v1::TransactionDecision_Name(a.decision());
    Metrics().answers.With({name.empty() ? "UNRECOGNIZED" : name}).Add();
    CheckAnswer answer{sent->txn_id, check_id, sent->producer_group, FromProto(a.decision()),
                       "checker " + checker_ + " via broker " + owner_->broker_id_};
    RunTask(
        [this, answer] {
          absl::StatusOr<Caller> caller = owner_->edge_.Authenticate(*ctx_);
          absl::Status s =
              caller.ok() ? owner_->broker_.AnswerCheck(*caller, answer) : caller.status();
          if (!s.ok()) {
            ferry::log::Get("broker.txn")
                ->warn("event=answer_refused txn={} check={} error={}", answer.txn_id,
                       answer.check_id, ferry::log::Quote(std::string(s.message())));
            Reject(answer.check_id, answer.txn_id, std::string(s.message()));
          }
        },
        // An unapplied answer counts as none: the transaction is checked again later.
        [this, answer] {
          Reject(answer.check_id, answer.txn_id,
                 "the broker is busy; the transaction will be checked again");
        });
  }

  // Tells the checker its answer was not taken (dropped if it does not read its messages).
  void Reject(uint64_t check_id, const std::string& txn_id, const std::string& reason) {
    Metrics().answers.With({"REJECTED"}).Add();
    v1::CheckTransactionResponse out;
    auto* r = out.mutable_rejected();
    r->set_check_id(check_id);
    r->set_transaction_id(txn_id.substr(0, 64));
    r->set_reason(reason.substr(0, kMaxStatusMessage));
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || pending_.size() >= kMaxUnread) return;
    QueueWriteLocked(out);
  }

  void QueueWriteLocked(const v1::CheckTransactionResponse& out) {
    grpc::ByteBuffer buf;
    if (!rpc::Serialize(out, &buf).ok()) return;
    pending_.push_back(std::move(buf));
    if (!writing_) {
      writing_ = true;
      StartWrite(&pending_.front());
    }
  }

  // Runs `task` on the executor (or `busy` here when it is full); the stream does not finish
  // while a task runs, so a task may use it.
  void RunTask(std::function<void()> task, std::function<void()> busy) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++tasks_;
    }
    if (!owner_->edge_.executor().TrySubmit([this, task] {
          task();
          TaskDone();
        })) {
      busy();
      TaskDone();
    }
  }

  void TaskDone() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--tasks_ == 0 && deferred_end_ && !finished_) {
      finished_ = true;
      Finish(*deferred_end_);
    }
  }

  TxnChecks* owner_;
  grpc::CallbackServerContext* ctx_;
  grpc::ByteBuffer in_;
  bool subscribed_ = false;  // reactions run one at a time: no lock needed
  std::string checker_;      // set before any answer is read
  std::mutex mu_;
  std::deque<grpc::ByteBuffer> pending_;
  std::map<int64_t, Sent> sent_;  // by check id
  bool writing_ = false;
  bool finished_ = false;
  int tasks_ = 0;                             // executor tasks using this stream
  std::optional<grpc::Status> deferred_end_;  // End() while tasks ran
};

TxnChecks::TxnChecks(Store& store, Broker& broker, rpc::Edge& edge, std::string broker_id,
                     std::chrono::milliseconds poll)
    : store_(store),
      broker_(broker),
      edge_(edge),
      broker_id_(std::move(broker_id)),
      poll_(poll),
      thread_([this] { Run(); }) {
  Metrics();  // the answer series exist from the start
}

TxnChecks::~TxnChecks() { Stop(); }

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* TxnChecks::Open(
    grpc::CallbackServerContext* ctx) {
  auto* stream = new Stream(this, ctx);
  std::lock_guard<std::mutex> lock(mu_);
  streams_.insert(stream);
  if (stopping_) stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "broker shutting down"));
  return stream;
}

void TxnChecks::Register(Stream* stream, const std::vector<std::string>& groups) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& g : groups) by_group_[g].push_back(stream);
  ferry::log::Get("broker.txn")
      ->info("event=checker_connected checker={} groups={}", stream->checker(), groups.size());
  cv_.notify_one();
}

void TxnChecks::Unregister(Stream* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(stream);
  for (auto it = by_group_.begin(); it != by_group_.end();) {
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), stream), v.end());
    it = v.empty() ? by_group_.erase(it) : std::next(it);
  }
  cv_.notify_one();
}

void TxnChecks::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    // End() under mu_: Unregister (from OnDone) needs mu_, so no stream is deleted meanwhile.
    for (Stream* s : streams_) {
      s->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "broker shutting down"));
    }
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void TxnChecks::Run() {
  auto logger = ferry::log::Get("broker.txn");
  auto last_touch = std::chrono::steady_clock::time_point{};
  std::vector<std::pair<std::string, int>> last_counts;
  for (;;) {
    std::vector<std::pair<std::string, int>> counts;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, poll_, [this] { return stopping_; });
      if (stopping_) return;
      for (const auto& [g, v] : by_group_) counts.emplace_back(g, static_cast<int>(v.size()));
    }
    const auto now = std::chrono::steady_clock::now();
    if (counts != last_counts || now - last_touch > std::chrono::seconds(5)) {
      if (store_.TouchCheckers(broker_id_, counts).ok()) {
        last_touch = now;
        last_counts = counts;
      }
    }
    if (counts.empty()) continue;
    std::vector<std::string> groups;
    for (const auto& [g, n] : counts) groups.push_back(g);
    auto checks = store_.ClaimDueChecks(groups, broker_id_, 100);
    if (!checks.ok()) {
      logger->warn("event=claim_failed error={}",
                   ferry::log::Quote(std::string(checks.status().message())));
      continue;
    }
    for (const TxnCheck& ch : *checks) {
      v1::CheckTransactionResponse out;
      ToProto(ch, out.mutable_check());
      bool sent = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = by_group_.find(ch.producer_group);
        if (it != by_group_.end() && !it->second.empty()) {
          for (size_t k = 0; k < it->second.size() && !sent; ++k) {
            sent = it->second[(round_robin_++) % it->second.size()]->SendCheck(ch, out);
          }
        }
      }
      Metrics().sent.With({ch.producer_group, sent ? "sent" : "no_checker"}).Add();
      if (!sent) {
        absl::Status s = store_.UnclaimCheck(ch.txn_id, broker_id_);
        if (!s.ok()) logger->warn("event=unclaim_failed txn={}", ch.txn_id);
      } else {
        logger->debug("event=check_sent txn={} check={} n={}", ch.txn_id, ch.check_id,
                      ch.check_number);
      }
    }
  }
}

}  // namespace ferry::broker
