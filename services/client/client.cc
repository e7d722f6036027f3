#include "client/client.h"

#include "common/status.h"

namespace ferry {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

Client::Client(const std::string& target) : Client(MakeChannel(target)) {}

Client::Client(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      broker_(v1::Broker::NewStub(channel_)),
      admin_(v1::Admin::NewStub(channel_)) {}

bool Client::WaitConnected(std::chrono::milliseconds wait) {
  return channel_->WaitForConnected(std::chrono::system_clock::now() + wait);
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

absl::StatusOr<v1::ProduceResponse> Client::Produce(const v1::ProduceRequest& req) {
  return Call(*broker_, &v1::Broker::Stub::Produce, req, timeout_);
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
