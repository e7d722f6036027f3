// Transactional producing and back-check answering, in the shape RocketMQ users know.
//
//   ferry::TransactionProducer producer(client, "orders-service");
//   auto id = producer.Send("orders", messages, /*check_ref=*/"", [&](const std::string& txn) {
//     // the application's own database transaction, e.g. insert the order and remember `txn`
//     return ferry::LocalResult::kCommit;
//   });
//
//   ferry::TransactionChecker checker(channel, {"orders-service"}, "orders-1",
//       [&](const ferry::v1::TransactionCheck& check) {
//         return order_exists(check.transaction_id()) ? ferry::v1::TRANSACTION_COMMIT
//                                                     : ferry::v1::TRANSACTION_ROLLBACK;
//       });
//   checker.Start();
#pragma once

#include <absl/status/statusor.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"

namespace ferry {

enum class LocalResult { kCommit, kRollback, kUnknown };

class TransactionProducer {
 public:
  TransactionProducer(Client& client, std::string producer_group)
      : client_(client), group_(std::move(producer_group)) {}

  // Stores `messages` in `topic` as half messages of a new transaction, runs `local` with the
  // transaction id, then ends the transaction with its result. kUnknown (or an exception from
  // `local`) leaves it PREPARED for the back-check. Returns the transaction id; an error if the
  // half messages could not be stored (then `local` did not run).
  absl::StatusOr<std::string> Send(const std::string& topic,
                                   const std::vector<v1::ProducedMessage>& messages,
                                   const std::string& check_ref,
                                   const std::function<LocalResult(const std::string&)>& local);

 private:
  Client& client_;
  const std::string group_;
};

// Opens CheckTransaction for `groups` and answers each check with `decide` (on its own
// thread); reconnects after a failure. An exception from `decide` answers UNKNOWN.
class TransactionChecker {
 public:
  using Decide = std::function<v1::TransactionDecision(const v1::TransactionCheck&)>;

  TransactionChecker(std::shared_ptr<grpc::Channel> channel, std::vector<std::string> groups,
                     std::string checker_id, Decide decide);
  ~TransactionChecker();  // Stop()

  void Start();
  void Stop();
  // Checks answered so far.
  int64_t answered() const { return answered_.load(); }

 private:
  void Run();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
  const std::vector<std::string> groups_;
  const std::string checker_id_;
  const Decide decide_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> answered_{0};
  std::mutex mu_;
  grpc::ClientContext* active_ = nullptr;  // the open stream's context, to cancel it
  std::thread thread_;
};

}  // namespace ferry
