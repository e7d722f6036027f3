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

void Client::SetDeadline(grpc::ClientContext& ctx, std::chrono::milliseconds extra) const {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout_ + extra);
}

namespace {
template <typename Resp, typename Call>
absl::StatusOr<Resp> Invoke(Call call) {
  Resp resp;
  grpc::Status s = call(&resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp;
}
}  // namespace

absl::StatusOr<v1::ProduceResponse> Client::Produce(const v1::ProduceRequest& req) {
  return Invoke<v1::ProduceResponse>([&](v1::ProduceResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::milliseconds(0));
    return broker_->Produce(&ctx, req, resp);
  });
}

absl::StatusOr<v1::ConsumeResponse> Client::Consume(const v1::ConsumeRequest& req) {
  return Invoke<v1::ConsumeResponse>([&](v1::ConsumeResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::milliseconds(req.max_wait_ms()));
    return broker_->Consume(&ctx, req, resp);
  });
}

absl::StatusOr<v1::CommitResponse> Client::Commit(const v1::CommitRequest& req) {
  return Invoke<v1::CommitResponse>([&](v1::CommitResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::milliseconds(0));
    return broker_->Commit(&ctx, req, resp);
  });
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
  return Invoke<v1::CreateTopicResponse>([&](v1::CreateTopicResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::milliseconds(0));
    return admin_->CreateTopic(&ctx, req, resp);
  });
}

absl::StatusOr<v1::ListTopicsResponse> Client::ListTopics() {
  return Invoke<v1::ListTopicsResponse>([&](v1::ListTopicsResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::milliseconds(0));
    return admin_->ListTopics(&ctx, v1::ListTopicsRequest(), resp);
  });
}

absl::StatusOr<v1::DescribeTopicResponse> Client::DescribeTopic(const std::string& name) {
  v1::DescribeTopicRequest req;
  req.set_name(name);
  return Invoke<v1::DescribeTopicResponse>([&](v1::DescribeTopicResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::milliseconds(0));
    return admin_->DescribeTopic(&ctx, req, resp);
  });
}

absl::Status Client::DeleteTopic(const std::string& name) {
  v1::DeleteTopicRequest req;
  req.set_name(name);
  return Invoke<v1::DeleteTopicResponse>([&](v1::DeleteTopicResponse* resp) {
           grpc::ClientContext ctx;
           SetDeadline(ctx, std::chrono::milliseconds(0));
           return admin_->DeleteTopic(&ctx, req, resp);
         })
      .status();
}

absl::StatusOr<v1::GetGroupLagResponse> Client::GetGroupLag(const std::string& group,
                                                            const std::string& topic) {
  v1::GetGroupLagRequest req;
  req.set_group(group);
  req.set_topic(topic);
  return Invoke<v1::GetGroupLagResponse>([&](v1::GetGroupLagResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::milliseconds(0));
    return admin_->GetGroupLag(&ctx, req, resp);
  });
}

}  // namespace ferry
