#include "client/client.h"

#include <absl/strings/match.h>
#include <grpcpp/support/client_interceptor.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "common/config.h"
#include "common/status.h"

namespace ferry {

namespace {

grpc::ChannelArguments FerryChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return args;
}

// Adds the bearer token to every call's initial metadata (works on plaintext channels too,
// where gRPC's call credentials are refused).
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::string token) : header_("Bearer " + std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel (it owns the factory)
};

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   FerryChannelArguments());
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target,
                                                           const ChannelOptions& o) {
  grpc::ChannelArguments args = FerryChannelArguments();
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("a client certificate needs both its cert and key files");
  }
  if (!o.tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    auto ca = config::ReadFile(o.tls_ca_file, "TLS CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    if (!o.tls_cert_file.empty()) {
      auto cert = config::ReadFile(o.tls_cert_file, "TLS client certificate");
      if (!cert.ok()) return cert.status();
      auto key = config::ReadFile(o.tls_key_file, "TLS client key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
    if (!o.tls_server_name.empty()) args.SetSslTargetNameOverride(o.tls_server_name);
  } else if (!o.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("a client certificate needs the TLS CA file as well");
  }
  if (o.token.empty()) return grpc::CreateCustomChannel(target, creds, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<TokenInterceptorFactory>(o.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, creds, args,
                                                                 std::move(factories));
}

Client::Client(const std::string& target) : Client(MakeChannel(target)) {}

Client::Client(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      broker_(v1::Broker::NewStub(channel_)),
      admin_(v1::Admin::NewStub(channel_)) {}

bool Client::WaitConnected(std::chrono::milliseconds wait) {
  return channel_->WaitForConnected(std::chrono::system_clock::now() + wait);
}

std::string NewDedupId() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char out[33];
  snprintf(out, sizeof(out), "%016llx%016llx", static_cast<unsigned long long>(rng()),
           static_cast<unsigned long long>(rng()));
  return out;
}

namespace {

// One unary call with a deadline of `timeout` from now; the gRPC status as an absl::Status.
template <typename Stub, typename Req, typename Resp>
absl::StatusOr<Resp> Call(Stub& stub,
                          grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                          const Req& req, std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  Resp resp;
  grpc::Status s = (stub.*method)(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp;
}

}  // namespace

bool IsRetryable(const absl::Status& s) {
  if (absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsAborted(s)) return true;
  // RESOURCE_EXHAUSTED is "busy" (retry) or a size limit (retrying cannot help).
  return absl::IsResourceExhausted(s) && !absl::StrContains(s.message(), "are allowed") &&
         !absl::StrContains(s.message(), "larger than") &&
         !absl::StrContains(s.message(), "at most");
}

absl::StatusOr<v1::ProduceResponse> Client::Produce(const v1::ProduceRequest& req) {
  return Call(*broker_, &v1::Broker::Stub::Produce, req, timeout_);
}

absl::StatusOr<v1::ProduceResponse> Client::ProduceWithRetry(v1::ProduceRequest req,
                                                             std::chrono::milliseconds retry_for) {
  if (!req.transaction_id().empty() || req.has_transactional()) return Produce(req);
  std::vector<bool> generated(static_cast<size_t>(req.messages_size()), false);
  for (int i = 0; i < req.messages_size(); ++i) {
    auto* m = req.mutable_messages(i);
    if (m->dedup_id().empty()) {
      m->set_dedup_id("auto-" + NewDedupId());
      generated[static_cast<size_t>(i)] = true;
    }
  }
  const auto give_up = std::chrono::steady_clock::now() + retry_for;
  std::mt19937_64 rng(std::random_device{}());
  std::chrono::milliseconds backoff(50);
  for (;;) {
    absl::StatusOr<v1::ProduceResponse> r = Produce(req);
    const bool retryable = !r.ok() && IsRetryable(r.status());
    if (!retryable || std::chrono::steady_clock::now() + backoff > give_up) {
      if (r.ok()) {
        for (int i = 0; i < r->results_size() && i < req.messages_size(); ++i) {
          if (generated[static_cast<size_t>(i)]) r->mutable_results(i)->set_duplicate(false);
        }
      }
      return r;
    }
    // Full jitter: somewhere in [backoff/2, backoff], so that clients do not retry in step.
    std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(jitter(rng)));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(2));
  }
}

absl::StatusOr<v1::ConsumeResponse> Client::Consume(const v1::ConsumeRequest& req) {
  return Call(*broker_, &v1::Broker::Stub::Consume, req,
              timeout_ + std::chrono::milliseconds(req.max_wait_ms()));
}

absl::StatusOr<v1::CommitResponse> Client::Commit(const v1::CommitRequest& req) {
  return Call(*broker_, &v1::Broker::Stub::Commit, req, timeout_);
}

absl::StatusOr<v1::ExtendLeaseResponse> Client::ExtendLease(const v1::ExtendLeaseRequest& req) {
  return Call(*broker_, &v1::Broker::Stub::ExtendLease, req, timeout_);
}

absl::StatusOr<v1::CommitResponse> Client::Ack(const std::string& group,
                                               const std::vector<std::string>& receipts) {
  v1::CommitRequest req;
  req.set_group(group);
  for (const auto& r : receipts) {
    auto* e = req.add_entries();
    e->set_receipt(r);
    e->set_outcome(v1::ACK);
  }
  return Commit(req);
}

absl::StatusOr<v1::CreateTopicResponse> Client::CreateTopic(const v1::TopicConfig& topic) {
  v1::CreateTopicRequest req;
  *req.mutable_topic() = topic;
  return Call(*admin_, &v1::Admin::Stub::CreateTopic, req, timeout_);
}

absl::StatusOr<v1::ListTopicsResponse> Client::ListTopics() {
  return Call(*admin_, &v1::Admin::Stub::ListTopics, v1::ListTopicsRequest(), timeout_);
}

absl::StatusOr<v1::DescribeTopicResponse> Client::DescribeTopic(const std::string& name) {
  v1::DescribeTopicRequest req;
  req.set_name(name);
  return Call(*admin_, &v1::Admin::Stub::DescribeTopic, req, timeout_);
}

absl::Status Client::DeleteTopic(const std::string& name) {
  v1::DeleteTopicRequest req;
  req.set_name(name);
  return Call(*admin_, &v1::Admin::Stub::DeleteTopic, req, timeout_).status();
}

absl::StatusOr<v1::GetGroupLagResponse> Client::GetGroupLag(const std::string& group,
                                                            const std::string& topic) {
  v1::GetGroupLagRequest req;
  req.set_group(group);
  req.set_topic(topic);
  return Call(*admin_, &v1::Admin::Stub::GetGroupLag, req, timeout_);
}

}  // namespace ferry
