#include "broker/txn_checks.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "common/log.h"
#include "common/status.h"
#include "common/metrics.h"

namespace ferry::broker {
namespace {

struct CheckMetrics {
  metrics::Registry::CounterFamily& sent = metrics::Default().Counters(
      "ferry_txn_checks_total",
      "back-checks of undecided transactions by producer group and outcome (sent: to a "
      "connected checker; no_checker: none connected, tried again later)",
      {"producer_group", "outcome"});
  metrics::Registry::CounterFamily& answers = metrics::Default().Counters(
      "ferry_txn_check_answers_total", "answers from checkers by decision", {"decision"});
};

CheckMetrics& Metrics() {
  static CheckMetrics* m = new CheckMetrics();
  return *m;
}

}  // namespace

class TxnChecks::Stream
    : public grpc::ServerBidiReactor<v1::CheckTransactionRequest, v1::CheckTransactionResponse> {
 public:
  Stream(TxnChecks* owner, grpc::CallbackServerContext* ctx) : owner_(owner), ctx_(ctx) {
    StartRead(&request_);
  }

  // Queues a check for the checker; false if the stream is finishing, or if the checker has
  // not read the last kMaxUnread checks (a checker that never reads must not grow the
  // broker's memory: the check goes to another checker, or is tried again later).
  bool Send(v1::CheckTransactionResponse check) {
    constexpr size_t kMaxUnread = 1000;
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || pending_.size() >= kMaxUnread) return false;
    pending_.push_back(std::move(check));
    if (!writing_) {
      writing_ = true;
      StartWrite(&pending_.front());
    }
    return true;
  }

  void End(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    if (authorizing_) {  // the authorization task still uses this stream: it finishes it
      deferred_end_ = status;
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
    if (request_.has_subscribe()) {
      if (subscribed_) {
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "subscribe was sent twice"));
        return;
      }
      absl::Status valid = ValidateCheckSubscribe(request_.subscribe());
      if (!valid.ok()) {
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(valid.message())));
        return;
      }
      if (owner_->auth_ != nullptr) {
        Authorize();  // answering a producer group's checks is acting as that producer group
        return;       // the task subscribes (and reads on) or ends the stream
      }
      Subscribe();  // reads on
      return;
    } else if (request_.has_answer()) {
      if (!subscribed_) {
        End(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "send subscribe first"));
        return;
      }
      owner_->Answer(checker_, request_.answer());
    } else {
      End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a message must set subscribe or answer"));
      return;
    }
    StartRead(&request_);
  }

  // Registers the subscription and reads on.
  void Subscribe() {
    subscribed_ = true;
    checker_ = request_.subscribe().checker_id().empty() ? "anonymous"
                                                         : request_.subscribe().checker_id();
    owner_->Register(this, std::vector<std::string>(request_.subscribe().producer_groups().begin(),
                                                    request_.subscribe().producer_groups().end()));
    StartRead(&request_);
  }

  // The permission check may read the database: on an executor worker, not on this gRPC
  // callback thread. Until it is done no read is outstanding, and End() only records how the
  // stream should end, so the stream outlives the task.
  void Authorize() {
    std::vector<Need> needs;
    for (const auto& g : request_.subscribe().producer_groups()) {
      needs.push_back(Need{Permission::kProduce, Group(g)});
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      authorizing_ = true;
    }
    // Finish() is only ever called after authorizing_ is false again, and Subscribe()'s read
    // is issued while it is still true: a Finish() never precedes that StartRead().
    auto done = [this](const grpc::Status& denied) {
      auto stop_authorizing = [this] {
        std::lock_guard<std::mutex> lock(mu_);
        authorizing_ = false;
        return deferred_end_;
      };
      if (!denied.ok()) {
        stop_authorizing();
        return End(denied);
      }
      bool cancelled;
      {
        std::lock_guard<std::mutex> lock(mu_);
        cancelled = deferred_end_.has_value();
      }
      if (!cancelled) Subscribe();
      if (auto end = stop_authorizing()) End(*end);  // cancelled, or the broker is stopping
    };
    if (!owner_->executor_.TrySubmit([this, needs, done] {
          absl::Status allowed = owner_->auth_->Authorize(*ctx_, needs);
          done(allowed.ok() ? grpc::Status::OK : ToGrpcStatus(allowed));
        })) {
      done(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "the broker is busy (work queue full); retry later"));
    }
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
  TxnChecks* owner_;
  grpc::CallbackServerContext* ctx_;
  v1::CheckTransactionRequest request_;
  bool subscribed_ = false;  // reactions run one at a time: no lock needed
  std::string checker_;
  std::mutex mu_;
  std::deque<v1::CheckTransactionResponse> pending_;
  bool writing_ = false;
  bool finished_ = false;
  bool authorizing_ = false;                  // Authorize()'s task is running
  std::optional<grpc::Status> deferred_end_;  // End() while it ran
};

TxnChecks::TxnChecks(PgStore& store, Broker& broker, Executor& executor, std::string broker_id,
                     std::chrono::milliseconds poll, Authorizer* auth)
    : auth_(auth),
      store_(store),
      broker_(broker),
      executor_(executor),
      broker_id_(std::move(broker_id)),
      poll_(poll),
      thread_([this] { Run(); }) {}

TxnChecks::~TxnChecks() { Stop(); }

grpc::ServerBidiReactor<v1::CheckTransactionRequest, v1::CheckTransactionResponse>*
TxnChecks::Open(grpc::CallbackServerContext* ctx) {
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

void TxnChecks::Answer(const std::string& checker, const v1::CheckAnswer& answer) {
  const std::string actor = "checker " + checker + " via broker " + broker_id_;
  const std::string txn_id = answer.transaction_id();
  const auto check_id = static_cast<int64_t>(answer.check_id());
  const TxnDecision decision = FromProto(answer.decision());
  if (!ValidateTransactionId("answer.transaction_id", txn_id).ok()) return;  // nothing to match
  const std::string& name = v1::TransactionDecision_Name(answer.decision());
  Metrics().answers.With({name.empty() ? "UNRECOGNIZED" : name}).Add();
  // Dropped if the executor is full: an unanswered check counts as UNKNOWN, never as COMMIT.
  executor_.TrySubmit([this, actor, txn_id, check_id, decision] {
    absl::Status s = store_.AnswerCheck(txn_id, check_id, decision, actor, broker_.Chooser());
    if (!s.ok()) {
      ferry::log::Get("broker.txn")
          ->warn("event=answer_failed txn={} error=\"{}\"", txn_id, std::string(s.message()));
    }
  });
}

void TxnChecks::Stop() {
  std::vector<Stream*> open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    open.assign(streams_.begin(), streams_.end());
    // End() under mu_: Unregister (from OnDone) needs mu_, so no stream is deleted meanwhile.
    for (Stream* s : open) s->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "broker shutting down"));
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
      logger->warn("event=claim_failed error=\"{}\"", std::string(checks.status().message()));
      continue;
    }
    for (const TxnCheck& ch : *checks) {
      v1::CheckTransactionResponse out;
      auto* c = out.mutable_check();
      c->set_check_id(static_cast<uint64_t>(ch.check_id));
      c->set_transaction_id(ch.txn_id);
      c->set_check_ref(ch.check_ref);
      c->set_producer_group(ch.producer_group);
      for (const auto& t : ch.topics) c->add_topics(t);
      c->set_message_count(static_cast<uint32_t>(ch.message_count));
      for (const auto& [topic, m] : ch.sample) {
        auto* pm = c->add_messages();
        if (m.key) pm->set_key(*m.key);
        pm->set_payload(m.payload);
        pm->set_dedup_id(m.dedup_id);
        HeadersFromJson(m.headers_json, pm->mutable_headers());
        (void)topic;
      }
      c->set_check_number(static_cast<uint32_t>(ch.check_number));
      *c->mutable_began_at() =
          google::protobuf::util::TimeUtil::MillisecondsToTimestamp(ch.began_at_ms);
      bool sent = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = by_group_.find(ch.producer_group);
        if (it != by_group_.end() && !it->second.empty()) {
          for (size_t k = 0; k < it->second.size() && !sent; ++k) {
            sent = it->second[(round_robin_++) % it->second.size()]->Send(out);
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
