// ferry::Client: a small synchronous C++ client for the Ferry broker (ferry.v1.Broker and
// ferry.v1.Admin). Every call has a deadline; errors come back as absl::Status with the gRPC
// code and the broker's message. Thread-safe (gRPC stubs are).
#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "ferry/v1/admin.grpc.pb.h"
#include "ferry/v1/broker.grpc.pb.h"

namespace ferry {

class Client {
 public:
  // `target`: HOST:PORT of a broker, e.g. "127.0.0.1:7420".
  explicit Client(const std::string& target);
  // Uses an existing channel (e.g. a server's in-process channel).
  explicit Client(std::shared_ptr<grpc::Channel> channel);

  // Deadline of calls other than Consume (which adds its max_wait_ms to this).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // Waits until the channel is connected. False if it is not within `wait`.
  bool WaitConnected(std::chrono::milliseconds wait);

  absl::StatusOr<v1::ProduceResponse> Produce(const v1::ProduceRequest& req);

  // Produce that survives a broker restart or a database failover: every message without a
  // dedup_id gets a random one, and the call is retried with the same ids when IsRetryable
  // (exponential backoff with jitter, 50 ms to 2 s)
  // until `retry_for` has passed. A message stored by an attempt whose answer was lost is
  // answered by the retry as a duplicate; for the ids generated here that is this call's own
  // message, so its `duplicate` is cleared. Requests in a transaction (transaction_id or
  // transactional) are sent once: a retried begin would open a second transaction.
  absl::StatusOr<v1::ProduceResponse> ProduceWithRetry(
      v1::ProduceRequest req, std::chrono::milliseconds retry_for = std::chrono::seconds(30));
  absl::StatusOr<v1::ConsumeResponse> Consume(const v1::ConsumeRequest& req);
  absl::StatusOr<v1::CommitResponse> Commit(const v1::CommitRequest& req);
  absl::StatusOr<v1::ExtendLeaseResponse> ExtendLease(const v1::ExtendLeaseRequest& req);

  absl::StatusOr<v1::CreateTopicResponse> CreateTopic(const v1::TopicConfig& topic);
  absl::StatusOr<v1::ListTopicsResponse> ListTopics();
  absl::StatusOr<v1::DescribeTopicResponse> DescribeTopic(const std::string& name);
  absl::Status DeleteTopic(const std::string& name);
  absl::StatusOr<v1::GetGroupLagResponse> GetGroupLag(const std::string& group,
                                                      const std::string& topic);

  // Admin calls beyond the common ones, with this client's deadline.
  v1::Admin::Stub& admin() { return *admin_; }
  v1::Broker::Stub& broker() { return *broker_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Convenience: ACKs every receipt for `group`; returns the per-receipt results.
  absl::StatusOr<v1::CommitResponse> Ack(const std::string& group,
                                         const std::vector<std::string>& receipts);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> broker_;
  std::unique_ptr<v1::Admin::Stub> admin_;
  std::chrono::milliseconds timeout_{10000};
};

// 128 random bits as 32 hex digits: a dedup id nobody else produces.
std::string NewDedupId();

// UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, and RESOURCE_EXHAUSTED when the broker is busy (not
// a size limit: those say "at most ... are allowed" and retrying cannot help them).
bool IsRetryable(const absl::Status& status);

// How to reach a broker that runs with TLS and/or token authentication.
struct ChannelOptions {
  std::string token;            // sent as "authorization: Bearer <token>" on every call
  std::string tls_ca_file;      // set = TLS; the PEM CA bundle that signed the broker's certificate
  std::string tls_cert_file;    // client certificate (PEM), for brokers with --tls-client-ca
  std::string tls_key_file;     // its private key (PEM)
  std::string tls_server_name;  // expected name in the broker's certificate ("" = the host)
};

// A plaintext channel with Ferry's message size limits (64 MiB each way).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);
// A channel with TLS and/or a token. INVALID_ARGUMENT when a file cannot be read or only one
// of cert/key is given.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target,
                                                           const ChannelOptions& options);

}  // namespace ferry
