#include "broker/broker_service.h"

#include <chrono>

#include "common/log.h"

namespace ferry::broker {

using rpc::Clock;
using rpc::Finish;

grpc::ServerUnaryReactor* BrokerService::Produce(grpc::CallbackServerContext* ctx,
                                                 const grpc::ByteBuffer* in,
                                                 grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ProduceRequest, v1::ProduceResponse>(
      ctx, in, out, "Produce", [this](const Caller& c, const auto& req, auto* resp) {
        return broker_.Produce(c, req, resp);
      });
}

grpc::ServerUnaryReactor* BrokerService::Commit(grpc::CallbackServerContext* ctx,
                                                const grpc::ByteBuffer* in, grpc::ByteBuffer* out) {
  return edge_.Unary<v1::CommitRequest, v1::CommitResponse>(
      ctx, in, out, "Commit", [this](const Caller& c, const auto& req, auto* resp) {
        return broker_.Commit(c, req, resp);
      });
}

grpc::ServerUnaryReactor* BrokerService::ExtendLease(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* in,
                                                     grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ExtendLeaseRequest, v1::ExtendLeaseResponse>(
      ctx, in, out, "ExtendLease", [this](const Caller& c, const auto& req, auto* resp) {
        return broker_.ExtendLease(c, req, resp);
      });
}

grpc::ServerUnaryReactor* BrokerService::BeginTransaction(grpc::CallbackServerContext* ctx,
                                                          const grpc::ByteBuffer* in,
                                                          grpc::ByteBuffer* out) {
  return edge_.Unary<v1::BeginTransactionRequest, v1::BeginTransactionResponse>(
      ctx, in, out, "BeginTransaction", [this](const Caller& c, const auto& req, auto* resp) {
        return broker_.BeginTransaction(c, req, resp);
      });
}

grpc::ServerUnaryReactor* BrokerService::EndTransaction(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* in,
                                                        grpc::ByteBuffer* out) {
  return edge_.Unary<v1::EndTransactionRequest, v1::EndTransactionResponse>(
      ctx, in, out, "EndTransaction", [this](const Caller& c, const auto& req, auto* resp) {
        return broker_.EndTransaction(c, req, resp);
      });
}

// Consume: the door once, then attempts; an attempt that finds nothing parks the call in the
// LongPoller (no thread waits) until a produce to the topic, a poll interval or the deadline.
struct BrokerService::ConsumeCall {
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  grpc::ByteBuffer* out;
  v1::ConsumeRequest req;
  Clock::time_point start;
  Clock::time_point deadline;  // of the long poll
  std::optional<Broker::ConsumeTicket> ticket;
  v1::ConsumeResponse resp;

  void Finish(const absl::Status& status) {
    absl::Status s = status;
    if (s.ok()) s = rpc::Serialize(resp, out);
    rpc::Finish(reactor, "Consume", start, s);
  }
};

grpc::ServerUnaryReactor* BrokerService::Consume(grpc::CallbackServerContext* ctx,
                                                 const grpc::ByteBuffer* in,
                                                 grpc::ByteBuffer* out) {
  auto* reactor = ctx->DefaultReactor();
  auto call = std::make_shared<ConsumeCall>();
  call->ctx = ctx;
  call->reactor = reactor;
  call->out = out;
  call->start = Clock::now();
  if (absl::Status s = rpc::Parse(*in, &call->req); !s.ok()) {
    Finish(reactor, "Consume", call->start, s);
    return reactor;
  }
  // Answer (possibly empty) a little before the client's own deadline, so it hears back.
  call->deadline = call->start + std::chrono::milliseconds(call->req.max_wait_ms());
  const auto client_deadline = ctx->deadline();
  const auto now_sys = std::chrono::system_clock::now();
  if (client_deadline < now_sys + std::chrono::hours(24 * 365)) {
    const auto margin = std::chrono::milliseconds(100);
    const auto client_left = client_deadline - now_sys - margin;
    if (call->start + client_left < call->deadline) {
      call->deadline = call->start + std::chrono::duration_cast<Clock::duration>(client_left);
    }
  }
  if (!edge_.executor().TrySubmit([this, call] { ConsumeAttempt(call); })) {
    Finish(reactor, "Consume", call->start, rpc::Busy());
  }
  return reactor;
}

void BrokerService::ConsumeAttempt(std::shared_ptr<ConsumeCall> call) {
  if (call->ctx->IsCancelled()) {  // the client went away: lease nothing to nobody
    call->Finish(absl::CancelledError("the client cancelled"));
    return;
  }
  if (!call->ticket) {  // the door, once per call (not once per long-poll wake-up)
    absl::StatusOr<Caller> caller = edge_.Authenticate(*call->ctx);
    if (!caller.ok()) return call->Finish(caller.status());
    auto ticket = broker_.OpenConsume(*caller, call->req);
    if (!ticket.ok()) return call->Finish(ticket.status());
    call->ticket = *std::move(ticket);
  }
  int64_t topic_id = 0;
  // A notification that arrives while the attempt runs must wake the waiter: read the topic's
  // generation first. The topic id is only known after the first attempt, so the very first
  // attempt parks with "seen" taken after it (costs at most one poll interval).
  call->resp.Clear();
  absl::Status status = broker_.ConsumeOnce(*call->ticket, &call->resp, &topic_id);
  const uint64_t seen = topic_id != 0 ? poller_.Generation(topic_id) : 0;
  if (!status.ok() || call->resp.messages_size() > 0 || Clock::now() >= call->deadline ||
      call->ctx->IsCancelled()) {
    const int got = call->resp.messages_size();
    if (status.ok() && topic_id != 0 && got > 0 &&
        got >= static_cast<int>(std::max<uint32_t>(call->req.max_messages(), 1))) {
      // A full batch: more may be waiting; wake the next parked consumer of the topic.
      poller_.Notify(topic_id, 1);
    }
    call->Finish(status);
    return;
  }
  poller_.Park(
      topic_id, seen, call->deadline, call->req.max_messages(), [this, call](bool timed_out) {
        if (timed_out || !edge_.executor().TrySubmit([this, call] { ConsumeAttempt(call); })) {
          call->Finish(absl::OkStatus());  // empty: the client polls again
        }
      });
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* BrokerService::CheckTransaction(
    grpc::CallbackServerContext* ctx) {
  return checks_.Open(ctx);
}

grpc::ServerUnaryReactor* AdminService::CreateTopic(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::CreateTopicRequest, v1::CreateTopicResponse>(
      ctx, in, out, "CreateTopic", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.CreateTopic(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::UpdateTopic(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::UpdateTopicRequest, v1::UpdateTopicResponse>(
      ctx, in, out, "UpdateTopic", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.UpdateTopic(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::PeekMessages(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* in,
                                                     grpc::ByteBuffer* out) {
  return edge_.Unary<v1::PeekMessagesRequest, v1::PeekMessagesResponse>(
      ctx, in, out, "PeekMessages", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.PeekMessages(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::GetMessage(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* in,
                                                   grpc::ByteBuffer* out) {
  return edge_.Unary<v1::GetMessageRequest, v1::GetMessageResponse>(
      ctx, in, out, "GetMessage", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.GetMessage(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::ListGroups(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* in,
                                                   grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ListGroupsRequest, v1::ListGroupsResponse>(
      ctx, in, out, "ListGroups", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.ListGroups(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::DeleteGroup(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::DeleteGroupRequest, v1::DeleteGroupResponse>(
      ctx, in, out, "DeleteGroup", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.DeleteGroup(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::ListTopics(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* in,
                                                   grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ListTopicsRequest, v1::ListTopicsResponse>(
      ctx, in, out, "ListTopics", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.ListTopics(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::DescribeTopic(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* in,
                                                      grpc::ByteBuffer* out) {
  return edge_.Unary<v1::DescribeTopicRequest, v1::DescribeTopicResponse>(
      ctx, in, out, "DescribeTopic", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.DescribeTopic(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::DeleteTopic(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::DeleteTopicRequest, v1::DeleteTopicResponse>(
      ctx, in, out, "DeleteTopic", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.DeleteTopic(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::GetGroupLag(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::GetGroupLagRequest, v1::GetGroupLagResponse>(
      ctx, in, out, "GetGroupLag", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.GetGroupLag(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::CreateGroup(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::CreateGroupRequest, v1::CreateGroupResponse>(
      ctx, in, out, "CreateGroup", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.CreateGroup(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::UpdateGroup(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::UpdateGroupRequest, v1::UpdateGroupResponse>(
      ctx, in, out, "UpdateGroup", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.UpdateGroup(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::DescribeGroup(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* in,
                                                      grpc::ByteBuffer* out) {
  return edge_.Unary<v1::DescribeGroupRequest, v1::DescribeGroupResponse>(
      ctx, in, out, "DescribeGroup", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.DescribeGroup(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::ResetGroup(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* in,
                                                   grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ResetGroupRequest, v1::ResetGroupResponse>(
      ctx, in, out, "ResetGroup", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.ResetGroup(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::ListDeadLetters(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* in,
                                                        grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ListDeadLettersRequest, v1::ListDeadLettersResponse>(
      ctx, in, out, "ListDeadLetters", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.ListDeadLetters(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::RedriveDeadLetters(grpc::CallbackServerContext* ctx,
                                                           const grpc::ByteBuffer* in,
                                                           grpc::ByteBuffer* out) {
  return edge_.Unary<v1::RedriveDeadLettersRequest, v1::RedriveDeadLettersResponse>(
      ctx, in, out, "RedriveDeadLetters", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.RedriveDeadLetters(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::PurgeDeadLetters(grpc::CallbackServerContext* ctx,
                                                         const grpc::ByteBuffer* in,
                                                         grpc::ByteBuffer* out) {
  return edge_.Unary<v1::PurgeDeadLettersRequest, v1::PurgeDeadLettersResponse>(
      ctx, in, out, "PurgeDeadLetters", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.PurgeDeadLetters(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::CancelDelayed(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* in,
                                                      grpc::ByteBuffer* out) {
  return edge_.Unary<v1::CancelDelayedRequest, v1::CancelDelayedResponse>(
      ctx, in, out, "CancelDelayed", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.CancelDelayed(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::ListTransactions(grpc::CallbackServerContext* ctx,
                                                         const grpc::ByteBuffer* in,
                                                         grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ListTransactionsRequest, v1::ListTransactionsResponse>(
      ctx, in, out, "ListTransactions", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.ListTransactions(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::ResolveTransaction(grpc::CallbackServerContext* ctx,
                                                           const grpc::ByteBuffer* in,
                                                           grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ResolveTransactionRequest, v1::ResolveTransactionResponse>(
      ctx, in, out, "ResolveTransaction", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.ResolveTransaction(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::RearmTransactionChecks(grpc::CallbackServerContext* ctx,
                                                               const grpc::ByteBuffer* in,
                                                               grpc::ByteBuffer* out) {
  return edge_.Unary<v1::RearmTransactionChecksRequest, v1::RearmTransactionChecksResponse>(
      ctx, in, out, "RearmTransactionChecks", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.RearmTransactionChecks(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::CreatePrincipal(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* in,
                                                        grpc::ByteBuffer* out) {
  return edge_.Unary<v1::CreatePrincipalRequest, v1::CreatePrincipalResponse>(
      ctx, in, out, "CreatePrincipal", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.CreatePrincipal(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::RotateToken(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* in,
                                                    grpc::ByteBuffer* out) {
  return edge_.Unary<v1::RotateTokenRequest, v1::RotateTokenResponse>(
      ctx, in, out, "RotateToken", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.RotateToken(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::DeletePrincipal(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* in,
                                                        grpc::ByteBuffer* out) {
  return edge_.Unary<v1::DeletePrincipalRequest, v1::DeletePrincipalResponse>(
      ctx, in, out, "DeletePrincipal", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.DeletePrincipal(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::ListPrincipals(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* in,
                                                       grpc::ByteBuffer* out) {
  return edge_.Unary<v1::ListPrincipalsRequest, v1::ListPrincipalsResponse>(
      ctx, in, out, "ListPrincipals", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.ListPrincipals(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::Grant(grpc::CallbackServerContext* ctx,
                                              const grpc::ByteBuffer* in, grpc::ByteBuffer* out) {
  return edge_.Unary<v1::GrantRequest, v1::GrantResponse>(
      ctx, in, out, "Grant",
      [this](const Caller& c, const auto& req, auto* resp) { return admin_.Grant(c, req, resp); });
}

grpc::ServerUnaryReactor* AdminService::Revoke(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* in, grpc::ByteBuffer* out) {
  return edge_.Unary<v1::RevokeRequest, v1::RevokeResponse>(
      ctx, in, out, "Revoke",
      [this](const Caller& c, const auto& req, auto* resp) { return admin_.Revoke(c, req, resp); });
}

grpc::ServerUnaryReactor* AdminService::WhoAmI(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* in, grpc::ByteBuffer* out) {
  return edge_.Unary<v1::WhoAmIRequest, v1::WhoAmIResponse>(
      ctx, in, out, "WhoAmI",
      [this](const Caller& c, const auto& req, auto* resp) { return admin_.WhoAmI(c, req, resp); });
}

grpc::ServerUnaryReactor* AdminService::GetClusterStatus(grpc::CallbackServerContext* ctx,
                                                         const grpc::ByteBuffer* in,
                                                         grpc::ByteBuffer* out) {
  return edge_.Unary<v1::GetClusterStatusRequest, v1::GetClusterStatusResponse>(
      ctx, in, out, "GetClusterStatus", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.GetClusterStatus(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::GetHistory(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* in,
                                                   grpc::ByteBuffer* out) {
  return edge_.Unary<v1::GetHistoryRequest, v1::GetHistoryResponse>(
      ctx, in, out, "GetHistory", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.GetHistory(c, req, resp);
      });
}

grpc::ServerUnaryReactor* AdminService::GetTransaction(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* in,
                                                       grpc::ByteBuffer* out) {
  return edge_.Unary<v1::GetTransactionRequest, v1::GetTransactionResponse>(
      ctx, in, out, "GetTransaction", [this](const Caller& c, const auto& req, auto* resp) {
        return admin_.GetTransaction(c, req, resp);
      });
}

}  // namespace ferry::broker
