#include "broker/broker_service.h"

#include <chrono>

#include "common/log.h"
#include "common/status.h"

namespace ferry::broker {
namespace {

using Clock = std::chrono::steady_clock;

// Finishes `reactor` with `status` and writes the access line for the call.
void Finish(grpc::ServerUnaryReactor* reactor, const char* rpc, Clock::time_point start,
            const absl::Status& status) {
  static const auto access = ferry::log::Get("access");
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  if (status.ok()) {
    access->debug("rpc={} code=OK dur_us={}", rpc, us);
  } else {
    access->info("rpc={} code={} dur_us={} msg=\"{}\"", rpc, absl::StatusCodeToString(status.code()),
                 us, std::string(status.message()));
  }
  reactor->Finish(ToGrpcStatus(status));
}

// The shape of every unary handler: validate, run `work` on the executor, finish once.
template <typename Work>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, Executor& executor,
                                const char* rpc, absl::Status valid, Work work) {
  auto* reactor = ctx->DefaultReactor();
  const auto start = Clock::now();
  if (!valid.ok()) {
    Finish(reactor, rpc, start, valid);
    return reactor;
  }
  if (!executor.TrySubmit([reactor, rpc, start, work]() mutable {
        Finish(reactor, rpc, start, work());
      })) {
    Finish(reactor, rpc, start,
           absl::ResourceExhaustedError("the broker is busy (work queue full); retry later"));
  }
  return reactor;
}

void ToProto(const TopicInfo& t, v1::TopicConfig* out) {
  out->set_name(t.name);
  out->set_queues(t.queue_count);
  out->set_retention_ms(static_cast<uint64_t>(t.retention_ms));
  out->set_dedup_window_ms(static_cast<uint64_t>(t.dedup_window_ms));
}

}  // namespace

grpc::ServerUnaryReactor* BrokerService::Produce(grpc::CallbackServerContext* ctx,
                                                 const v1::ProduceRequest* req,
                                                 v1::ProduceResponse* resp) {
  return Unary(ctx, executor_, "Produce", ValidateProduce(*req, broker_.limits()),
               [this, req, resp] { return broker_.Produce(*req, resp); });
}

grpc::ServerUnaryReactor* BrokerService::Commit(grpc::CallbackServerContext* ctx,
                                                const v1::CommitRequest* req,
                                                v1::CommitResponse* resp) {
  return Unary(ctx, executor_, "Commit", ValidateCommit(*req, broker_.limits()),
               [this, req, resp] { return broker_.Commit(*req, resp); });
}

struct BrokerService::ConsumeCall {
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  const v1::ConsumeRequest* req;
  v1::ConsumeResponse* resp;
  Clock::time_point start;
  Clock::time_point deadline;  // of the long poll
};

grpc::ServerUnaryReactor* BrokerService::Consume(grpc::CallbackServerContext* ctx,
                                                 const v1::ConsumeRequest* req,
                                                 v1::ConsumeResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  const auto start = Clock::now();
  if (absl::Status s = ValidateConsume(*req, broker_.limits()); !s.ok()) {
    Finish(reactor, "Consume", start, s);
    return reactor;
  }
  // Answer (possibly empty) a little before the client's own deadline, so it hears back.
  auto deadline = start + std::chrono::milliseconds(req->max_wait_ms());
  const auto client_deadline = ctx->deadline();
  const auto now_sys = std::chrono::system_clock::now();
  if (client_deadline < now_sys + std::chrono::hours(24 * 365)) {
    const auto margin = std::chrono::milliseconds(100);
    const auto client_left = client_deadline - now_sys - margin;
    if (start + client_left < deadline) {
      deadline = start + std::chrono::duration_cast<Clock::duration>(client_left);
    }
  }
  auto call = std::make_shared<ConsumeCall>(ConsumeCall{ctx, reactor, req, resp, start, deadline});
  if (!executor_.TrySubmit([this, call] { ConsumeAttempt(call); })) {
    Finish(reactor, "Consume", start,
           absl::ResourceExhaustedError("the broker is busy (work queue full); retry later"));
  }
  return reactor;
}

void BrokerService::ConsumeAttempt(std::shared_ptr<ConsumeCall> call) {
  if (call->ctx->IsCancelled()) {  // the client went away: lease nothing to nobody
    Finish(call->reactor, "Consume", call->start, absl::CancelledError("the client cancelled"));
    return;
  }
  int64_t topic_id = 0;
  // A notification that arrives while the attempt runs must wake the waiter: read the topic's
  // generation first. The topic id is only known after the first attempt, so the very first
  // attempt parks with "seen" taken after it (costs at most one poll interval).
  call->resp->Clear();
  absl::Status status = broker_.ConsumeOnce(*call->req, call->resp, &topic_id);
  const uint64_t seen = topic_id != 0 ? poller_.Generation(topic_id) : 0;
  if (!status.ok() || call->resp->messages_size() > 0 || Clock::now() >= call->deadline ||
      call->ctx->IsCancelled()) {
    Finish(call->reactor, "Consume", call->start, status);
    return;
  }
  poller_.Park(topic_id, seen, call->deadline, [this, call](bool timed_out) {
    if (timed_out) {
      Finish(call->reactor, "Consume", call->start, absl::OkStatus());
      return;
    }
    if (!executor_.TrySubmit([this, call] { ConsumeAttempt(call); })) {
      Finish(call->reactor, "Consume", call->start, absl::OkStatus());  // empty: client polls again
    }
  });
}

grpc::ServerUnaryReactor* AdminService::CreateTopic(grpc::CallbackServerContext* ctx,
                                                    const v1::CreateTopicRequest* req,
                                                    v1::CreateTopicResponse* resp) {
  return Unary(ctx, executor_, "CreateTopic", ValidateTopicConfig(req->topic(), limits_),
               [this, req, resp]() -> absl::Status {
                 TopicInfo t;
                 t.name = req->topic().name();
                 t.queue_count = req->topic().queues() == 0 ? kDefaultQueues : req->topic().queues();
                 t.retention_ms = static_cast<int64_t>(
                     req->topic().retention_ms() == 0 ? kDefaultRetentionMs
                                                      : req->topic().retention_ms());
                 t.dedup_window_ms = static_cast<int64_t>(
                     req->topic().dedup_window_ms() == 0 ? kDefaultDedupWindowMs
                                                         : req->topic().dedup_window_ms());
                 auto created = store_.CreateTopic(t);
                 if (!created.ok()) return created.status();
                 ToProto(*created, resp->mutable_topic());
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::ListTopics(grpc::CallbackServerContext* ctx,
                                                   const v1::ListTopicsRequest* /*req*/,
                                                   v1::ListTopicsResponse* resp) {
  return Unary(ctx, executor_, "ListTopics", absl::OkStatus(), [this, resp]() -> absl::Status {
    auto topics = store_.ListTopics();
    if (!topics.ok()) return topics.status();
    for (const auto& t : *topics) ToProto(t, resp->add_topics());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::DescribeTopic(grpc::CallbackServerContext* ctx,
                                                      const v1::DescribeTopicRequest* req,
                                                      v1::DescribeTopicResponse* resp) {
  return Unary(ctx, executor_, "DescribeTopic", ValidateName("name", req->name()),
               [this, req, resp]() -> absl::Status {
                 auto d = store_.DescribeTopic(req->name());
                 if (!d.ok()) return d.status();
                 ToProto(d->first, resp->mutable_topic());
                 resp->set_created_at_unix_ms(static_cast<uint64_t>(d->first.created_at_ms));
                 for (const QueueState& q : d->second) {
                   auto* info = resp->add_queues();
                   info->set_queue(q.queue_id);
                   info->set_first_offset(static_cast<uint64_t>(q.first_offset));
                   info->set_end_offset(static_cast<uint64_t>(q.end_offset));
                   info->set_message_count(static_cast<uint64_t>(q.end_offset - q.first_offset));
                 }
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::DeleteTopic(grpc::CallbackServerContext* ctx,
                                                    const v1::DeleteTopicRequest* req,
                                                    v1::DeleteTopicResponse* /*resp*/) {
  return Unary(ctx, executor_, "DeleteTopic", ValidateName("name", req->name()),
               [this, req] { return store_.DeleteTopic(req->name()); });
}

grpc::ServerUnaryReactor* AdminService::GetGroupLag(grpc::CallbackServerContext* ctx,
                                                    const v1::GetGroupLagRequest* req,
                                                    v1::GetGroupLagResponse* resp) {
  absl::Status valid = ValidateName("group", req->group());
  if (valid.ok() && !req->topic().empty()) valid = ValidateName("topic", req->topic());
  return Unary(ctx, executor_, "GetGroupLag", valid, [this, req, resp]() -> absl::Status {
    auto lag = store_.GroupLag(req->group(), req->topic());
    if (!lag.ok()) return lag.status();
    resp->set_group(req->group());
    for (const QueueLag& l : *lag) {
      auto* q = resp->add_queues();
      q->set_topic(l.topic);
      q->set_queue(l.queue);
      q->set_end_offset(static_cast<uint64_t>(l.end_offset));
      q->set_committed_offset(static_cast<uint64_t>(l.committed_offset));
      q->set_delivered_offset(static_cast<uint64_t>(l.delivered_offset));
      q->set_in_flight(static_cast<uint64_t>(l.in_flight));
      q->set_lag(static_cast<uint64_t>(l.end_offset - l.committed_offset));
      q->set_oldest_unacked_age_ms(static_cast<uint64_t>(l.oldest_unacked_age_ms));
    }
    return absl::OkStatus();
  });
}

}  // namespace ferry::broker
