#include "client/transactions.h"

#include <chrono>

#include "common/status.h"

namespace ferry {

absl::StatusOr<std::string> TransactionProducer::Send(
    const std::string& topic, const std::vector<v1::ProducedMessage>& messages,
    const std::string& check_ref, const std::function<LocalResult(const std::string&)>& local) {
  v1::ProduceRequest req;
  req.set_topic(topic);
  req.mutable_transactional()->set_producer_group(group_);
  req.mutable_transactional()->set_check_ref(check_ref);
  for (const auto& m : messages) *req.add_messages() = m;
  auto produced = client_.Produce(req);
  if (!produced.ok()) return produced.status();
  const std::string id = produced->transaction_id();

  LocalResult result = LocalResult::kUnknown;
  try {
    result = local(id);
  } catch (...) {
    result = LocalResult::kUnknown;  // the back-check will find out
  }
  if (result == LocalResult::kUnknown) return id;
  v1::EndTransactionRequest end;
  end.set_transaction_id(id);
  end.set_decision(result == LocalResult::kCommit ? v1::TRANSACTION_COMMIT
                                                  : v1::TRANSACTION_ROLLBACK);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + client_.timeout());
  v1::EndTransactionResponse resp;
  grpc::Status s = client_.broker().EndTransaction(&ctx, end, &resp);
  // A lost EndTransaction is not an error for the caller: the back-check resolves it.
  (void)s;
  return id;
}

TransactionChecker::TransactionChecker(std::shared_ptr<grpc::Channel> channel,
                                       std::vector<std::string> groups, std::string checker_id,
                                       Decide decide)
    : channel_(std::move(channel)),
      stub_(v1::Broker::NewStub(channel_)),
      groups_(std::move(groups)),
      checker_id_(std::move(checker_id)),
      decide_(std::move(decide)) {}

TransactionChecker::~TransactionChecker() { Stop(); }

void TransactionChecker::Start() {
  thread_ = std::thread([this] { Run(); });
}

void TransactionChecker::Stop() {
  stopping_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void TransactionChecker::Run() {
  while (!stopping_) {
    grpc::ClientContext ctx;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      active_ = &ctx;
    }
    auto stream = stub_->CheckTransaction(&ctx);
    v1::CheckTransactionRequest sub;
    for (const auto& g : groups_) sub.mutable_subscribe()->add_producer_groups(g);
    sub.mutable_subscribe()->set_checker_id(checker_id_);
    if (stream->Write(sub)) {
      v1::CheckTransactionResponse in;
      while (stream->Read(&in)) {
        if (!in.has_check()) continue;  // a refused answer (CheckAnswerRejected): nothing to do
        v1::TransactionDecision decision = v1::TRANSACTION_UNKNOWN;
        try {
          decision = decide_(in.check());
        } catch (...) {
          decision = v1::TRANSACTION_UNKNOWN;
        }
        v1::CheckTransactionRequest answer;
        answer.mutable_answer()->set_transaction_id(in.check().transaction_id());
        answer.mutable_answer()->set_check_id(in.check().check_id());
        answer.mutable_answer()->set_decision(decision);
        if (!stream->Write(answer)) break;
        ++answered_;
      }
    }
    stream->WritesDone();
    stream->Finish();
    {
      std::lock_guard<std::mutex> lock(mu_);
      active_ = nullptr;
    }
    for (int i = 0; i < 10 && !stopping_; ++i) {  // reconnect after a second
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

}  // namespace ferry
