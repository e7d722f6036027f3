// Broker: the doors of ferry.v1.Broker's operations in the domain layer. Each door validates
// the request (INVALID_ARGUMENT / RESOURCE_EXHAUSTED naming the field), checks the caller's
// permissions (PERMISSION_DENIED) and does the work through the Store, then fills the reply.
// Every face (gRPC, and later the console) calls these and nothing below them.
//
// Blocking (database I/O): call it from the executor, never from a gRPC callback thread.
// Thread-safe.
#pragma once

#include <absl/status/status.h>

#include "broker/auth.h"
#include "broker/group_commit.h"
#include "broker/receipt.h"
#include "broker/store/store.h"
#include "broker/validation.h"
#include "ferry/v1/broker.pb.h"

namespace ferry::broker {

// What it takes to produce, consume, or act on a transaction (the README's Security section
// says the same):
//   Produce            produce on the topic; with `transactional`, produce on its producer
//                      group; with `transaction_id`, produce on that transaction's group
//   Consume            consume on the topic and on the group
//   Commit             consume on the group; with `transaction_id`, also produce on that
//                      transaction's producer group (the ACKs become part of it)
//   ExtendLease        consume on the group
//   Begin/EndTransaction, CheckTransaction (subscribe and answer)
//                      produce on the (transaction's) producer group
// Group commit limits: the most one shared transaction carries.
inline constexpr size_t kGroupCommitMessages = 5000;
inline constexpr size_t kGroupCommitSettlements = 5000;
inline constexpr uint64_t kGroupCommitBytes = 32u << 20;
// Concurrent Consume calls of one group and topic served by one transaction (at most this many).
inline constexpr size_t kGroupCommitConsumes = 16;

class Broker {
 public:
  Broker(Store& store, Authorizer& authorizer, ReceiptCodec codec, Limits limits,
         bool group_commit = true)
      : store_(store),
        authorizer_(authorizer),
        codec_(std::move(codec)),
        limits_(limits),
        group_commit_(group_commit),
        produce_lanes_(kGroupCommitMessages, kGroupCommitBytes),
        settle_lanes_(kGroupCommitSettlements, UINT64_MAX),
        consume_lanes_(kGroupCommitConsumes, UINT64_MAX) {}

  // Stores the messages (or half messages of a transaction); one result per message after
  // commit.
  absl::Status Produce(const Caller& caller, const v1::ProduceRequest& req,
                       v1::ProduceResponse* resp);

  // Consume is a door and then attempts: a long poll tries again when messages arrive.
  // OpenConsume validates and authorizes once and returns what the attempts need.
  class ConsumeTicket {
   public:
    const std::string& topic() const { return lease_.topic; }

   private:
    friend class Broker;
    LeaseRequest lease_;
  };
  absl::StatusOr<ConsumeTicket> OpenConsume(const Caller& caller, const v1::ConsumeRequest& req);
  // One attempt to lease messages, without waiting. Sets *topic_id so a caller that got
  // nothing can wait for that topic's notifications.
  absl::Status ConsumeOnce(const ConsumeTicket& ticket, v1::ConsumeResponse* resp,
                           int64_t* topic_id);

  // Settles receipts (ACK, RETRY, DEAD_LETTER), or attaches ACKs to a transaction; one result
  // per entry.
  absl::Status Commit(const Caller& caller, const v1::CommitRequest& req, v1::CommitResponse* resp);
  // Extends the leases of current receipts; one result per receipt.
  absl::Status ExtendLease(const Caller& caller, const v1::ExtendLeaseRequest& req,
                           v1::ExtendLeaseResponse* resp);

  absl::Status BeginTransaction(const Caller& caller, const v1::BeginTransactionRequest& req,
                                v1::BeginTransactionResponse* resp);
  absl::Status EndTransaction(const Caller& caller, const v1::EndTransactionRequest& req,
                              v1::EndTransactionResponse* resp);

  // CheckTransaction: subscribing to producer groups' back-checks is acting as them.
  absl::Status SubscribeChecks(const Caller& caller, const v1::CheckSubscribe& sub);
  // An answer to a check that was sent on the caller's stream (TxnChecks binds it: the
  // check id, the transaction and the producer group come from the check, not from the
  // checker). FAILED_PRECONDITION when the store finds no such check for that transaction.
  absl::Status AnswerCheck(const Caller& caller, const CheckAnswer& answer);

 private:
  // Group commit (group_commit.h): concurrent produces to one topic share one transaction and
  // one WAL flush; so do concurrent Commits of one group (without a transaction).
  absl::StatusOr<std::vector<Appended>> GroupAppend(const std::string& topic,
                                                    const std::vector<NewMessage>& messages);
  // Decodes receipts: refs of the valid ones, INVALID_RECEIPT results for the others;
  // index_of[i] is entry i's position in refs (or -1).
  template <typename GetReceipt>
  std::vector<DeliveryRef> DecodeReceipts(int n, GetReceipt receipt_of,
                                          google::protobuf::RepeatedPtrField<v1::CommitResult>* out,
                                          std::vector<int>* index_of) const;

  Store& store_;
  Authorizer& authorizer_;
  const ReceiptCodec codec_;
  const Limits limits_;
  const bool group_commit_;
  GroupCommit<NewMessage, Appended> produce_lanes_;
  GroupCommit<Settlement, SettleResult> settle_lanes_;
  GroupCommit<LeaseRequest, LeaseBatch> consume_lanes_;
};

// The most payload bytes one Consume reply carries (it always carries at least one message).
inline constexpr uint64_t kMaxConsumeReplyBytes = 32u << 20;

}  // namespace ferry::broker
