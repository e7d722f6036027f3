// Broker: the domain operations behind ferry.v1.Broker. Converts requests to store calls,
// routes messages to queues and signs receipts. Blocking (database I/O): call it from the
// executor, never from a gRPC callback thread. Thread-safe.
#pragma once

#include <absl/status/status.h>

#include "broker/receipt.h"
#include "broker/routing.h"
#include "broker/store/pg_store.h"
#include "broker/validation.h"
#include "ferry/v1/broker.pb.h"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>

namespace ferry::broker {

class Broker {
 public:
  Broker(PgStore& store, ReceiptCodec codec, Limits limits, bool group_commit = true)
      : store_(store), codec_(std::move(codec)), limits_(limits), group_commit_(group_commit) {}

  const Limits& limits() const { return limits_; }

  // Stores the (validated) request's messages; fills one result per message after commit.
  absl::Status Produce(const v1::ProduceRequest& req, v1::ProduceResponse* resp);

  // One attempt to lease messages, without waiting. Sets *topic_id so a caller that got
  // nothing can wait for that topic's notifications.
  absl::Status ConsumeOnce(const v1::ConsumeRequest& req, v1::ConsumeResponse* resp,
                           int64_t* topic_id);

  // Settles receipts (ACK, RETRY, DEAD_LETTER); one result per entry.
  absl::Status Commit(const v1::CommitRequest& req, v1::CommitResponse* resp);

  // Transactions. Produce and Commit above take transaction_id / transactional themselves.
  absl::Status BeginTransaction(const v1::BeginTransactionRequest& req,
                                v1::BeginTransactionResponse* resp);
  absl::Status EndTransaction(const v1::EndTransactionRequest& req,
                              v1::EndTransactionResponse* resp);

  // Extends the leases of current receipts; one result per receipt.
  absl::Status ExtendLease(const v1::ExtendLeaseRequest& req, v1::ExtendLeaseResponse* resp);

  // How this broker picks queues: crc32 of the key, or round robin without one. For the store
  // (produce, delayed moves, redrive to a topic).
  QueueChooser Chooser();

 private:
  // Group commit: concurrent produces to one topic share one PostgreSQL transaction (and one
  // fsync). The first caller to find no flush running becomes the leader and writes everything
  // queued for the topic (up to kGroupCommitMessages / kGroupCommitBytes); the others wait for
  // their results. Batches grow only when callers overlap: no linger, no added latency alone.
  struct PendingProduce {
    const std::vector<NewMessage>* messages;
    uint64_t bytes;
    absl::StatusOr<std::vector<Appended>> result;
    bool done = false;
  };
  struct Lane {
    std::deque<PendingProduce*> queue;
    bool flushing = false;
  };
  absl::StatusOr<std::vector<Appended>> GroupAppend(const std::string& topic,
                                                    const std::vector<NewMessage>& messages);

  PgStore& store_;
  const ReceiptCodec codec_;
  const Limits limits_;
  const bool group_commit_;
  KeylessSpreader spreader_;
  std::mutex lanes_mu_;
  std::condition_variable lanes_cv_;
  std::map<std::string, Lane> lanes_;
};

inline constexpr size_t kGroupCommitMessages = 5000;
inline constexpr uint64_t kGroupCommitBytes = 32u << 20;

// The most payload bytes one Consume reply carries (it always carries at least one message).
inline constexpr uint64_t kMaxConsumeReplyBytes = 32u << 20;

// Header maps as stored (a JSON object of strings) and back.
std::string HeadersToJson(const google::protobuf::Map<std::string, std::string>& headers);
void HeadersFromJson(const std::string& text, google::protobuf::Map<std::string, std::string>* out);

v1::TransactionState ToProto(TxnState state);
TxnDecision FromProto(v1::TransactionDecision decision);  // anything else: kUnknown

// Fills a CommitResult from a store result.
void ToProto(const SettleResult& r, v1::CommitResult* out);

}  // namespace ferry::broker
