#include "broker/broker_service.h"

#include <chrono>

#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"

namespace ferry::broker {
namespace {

using Clock = std::chrono::steady_clock;

// Counted at the gRPC edge: every call, and the messages that went through it.
struct RpcMetrics {
  metrics::Registry::CounterFamily& calls = metrics::Default().Counters(
      "ferry_rpc_requests_total", "gRPC calls by method and status code", {"method", "code"});
  metrics::Registry::HistogramFamily& latency = metrics::Default().Histograms(
      "ferry_rpc_duration_seconds", "gRPC call duration, long-poll waits included", {"method"},
      metrics::LatencyBuckets());
  metrics::Registry::CounterFamily& produced =
      metrics::Default().Counters("ferry_produced_messages_total",
                                  "messages accepted by Produce (duplicates included)", {"topic"});
  metrics::Registry::CounterFamily& delivered = metrics::Default().Counters(
      "ferry_delivered_messages_total", "messages handed out by Consume (redeliveries included)",
      {"topic", "group"});
  metrics::Registry::CounterFamily& settled = metrics::Default().Counters(
      "ferry_commit_results_total", "Commit entries by group and result", {"group", "result"});
};

RpcMetrics& Metrics() {
  static RpcMetrics* m = new RpcMetrics();
  return *m;
}

// Finishes `reactor` with `status`, counts the call and writes the access line for it.
void Finish(grpc::ServerUnaryReactor* reactor, const char* rpc, Clock::time_point start,
            const absl::Status& status) {
  static const auto access = ferry::log::Get("access");
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  Metrics().calls.With({rpc, absl::StatusCodeToString(status.code())}).Add();
  Metrics().latency.With({rpc}).Observe(static_cast<double>(us) / 1e6);
  if (status.ok()) {
    access->debug("rpc={} code=OK dur_us={}", rpc, us);
  } else {
    access->info("rpc={} code={} dur_us={} msg=\"{}\"", rpc,
                 absl::StatusCodeToString(status.code()), us, std::string(status.message()));
  }
  reactor->Finish(ToGrpcStatus(status));
}

// What a call needs with --auth (auth == nullptr: authentication is off).
struct Access {
  Authorizer* auth;
  std::vector<Need> needs;
};

// The shape of every unary handler: validate, check the caller's token and permissions, run
// `work` on the executor, finish once. Validation comes first: a name is checked before it is
// looked up in the grants.
template <typename Work>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, Executor& executor,
                                const char* rpc, Access access, absl::Status valid, Work work) {
  auto* reactor = ctx->DefaultReactor();
  const auto start = Clock::now();
  if (!valid.ok()) {
    Finish(reactor, rpc, start, valid);
    return reactor;
  }
  if (!executor.TrySubmit([ctx, reactor, rpc, start, access = std::move(access), work]() mutable {
        if (access.auth != nullptr) {
          absl::Status allowed = access.auth->Authorize(*ctx, access.needs);
          if (!allowed.ok()) {
            Finish(reactor, rpc, start, allowed);
            return;
          }
        }
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
  out->set_ordered(t.ordered);
}

void ToProto(const GroupPolicy& g, v1::GroupConfig* out) {
  out->set_name(g.name);
  out->set_max_delivery_attempts(g.max_delivery_attempts);
  for (int64_t b : g.backoff_ms) out->add_backoff_ms(static_cast<uint64_t>(b));
  out->set_backoff_min_ms(static_cast<uint64_t>(g.backoff_min_ms));
  out->set_backoff_max_ms(static_cast<uint64_t>(g.backoff_max_ms));
  out->set_ordered(g.ordered);
  out->set_start_position(g.start_latest ? v1::START_POSITION_LATEST : v1::START_POSITION_EARLIEST);
}

}  // namespace

grpc::ServerUnaryReactor* BrokerService::Produce(grpc::CallbackServerContext* ctx,
                                                 const v1::ProduceRequest* req,
                                                 v1::ProduceResponse* resp) {
  Access access{auth_, {Need{Permission::kProduce, Topic(req->topic())}}};
  if (req->has_transactional()) {
    access.needs.push_back(
        Need{Permission::kProduce, Group(req->transactional().producer_group())});
  }
  return Unary(ctx, executor_, "Produce", std::move(access),
               ValidateProduce(*req, broker_.limits()), [this, req, resp] {
                 absl::Status s = broker_.Produce(*req, resp);
                 if (s.ok()) Metrics().produced.With({req->topic()}).Add(req->messages_size());
                 return s;
               });
}

grpc::ServerUnaryReactor* BrokerService::Commit(grpc::CallbackServerContext* ctx,
                                                const v1::CommitRequest* req,
                                                v1::CommitResponse* resp) {
  return Unary(
      ctx, executor_, "Commit", Access{auth_, {Need{Permission::kConsume, Group(req->group())}}},
      ValidateCommit(*req, broker_.limits()), [this, req, resp] {
        absl::Status s = broker_.Commit(*req, resp);
        if (s.ok()) {
          for (const auto& r : resp->results()) {
            Metrics().settled.With({req->group(), v1::CommitStatus_Name(r.status())}).Add();
          }
        }
        return s;
      });
}

grpc::ServerUnaryReactor* BrokerService::ExtendLease(grpc::CallbackServerContext* ctx,
                                                     const v1::ExtendLeaseRequest* req,
                                                     v1::ExtendLeaseResponse* resp) {
  return Unary(ctx, executor_, "ExtendLease",
               Access{auth_, {Need{Permission::kConsume, Group(req->group())}}},
               ValidateExtendLease(*req, broker_.limits()),
               [this, req, resp] { return broker_.ExtendLease(*req, resp); });
}

grpc::ServerUnaryReactor* BrokerService::BeginTransaction(grpc::CallbackServerContext* ctx,
                                                          const v1::BeginTransactionRequest* req,
                                                          v1::BeginTransactionResponse* resp) {
  return Unary(
      ctx, executor_, "BeginTransaction",
      Access{auth_, {Need{Permission::kProduce, Group(req->producer_group())}}},
      ValidateBeginTransaction("", req->producer_group(), req->check_ref(), req->timeout_ms()),
      [this, req, resp] { return broker_.BeginTransaction(*req, resp); });
}

grpc::ServerUnaryReactor* BrokerService::EndTransaction(grpc::CallbackServerContext* ctx,
                                                        const v1::EndTransactionRequest* req,
                                                        v1::EndTransactionResponse* resp) {
  return Unary(ctx, executor_, "EndTransaction",
               Access{auth_, {Need{Permission::kProduce, TransactionGroup(req->transaction_id())}}},
               ValidateEndTransaction(*req),
               [this, req, resp] { return broker_.EndTransaction(*req, resp); });
}

grpc::ServerBidiReactor<v1::CheckTransactionRequest, v1::CheckTransactionResponse>*
BrokerService::CheckTransaction(grpc::CallbackServerContext* ctx) {
  return checks_.Open(ctx);
}

struct BrokerService::ConsumeCall {
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  const v1::ConsumeRequest* req;
  v1::ConsumeResponse* resp;
  Clock::time_point start;
  Clock::time_point deadline;  // of the long poll
  bool authorized = false;
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
  auto call =
      std::make_shared<ConsumeCall>(ConsumeCall{ctx, reactor, req, resp, start, deadline, false});
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
  if (auth_ != nullptr && !call->authorized) {
    absl::Status allowed =
        auth_->Authorize(*call->ctx, {Need{Permission::kConsume, Topic(call->req->topic())},
                                      Need{Permission::kConsume, Group(call->req->group())}});
    if (!allowed.ok()) {
      Finish(call->reactor, "Consume", call->start, allowed);
      return;
    }
    call->authorized = true;  // once per call, not once per long-poll wake-up
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
    if (status.ok() && call->resp->messages_size() > 0) {
      Metrics()
          .delivered.With({call->req->topic(), call->req->group()})
          .Add(call->resp->messages_size());
    }
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
  return Unary(
      ctx, executor_, "CreateTopic",
      Access{auth_, {Need{Permission::kAdmin, Topic(req->topic().name())}}},
      ValidateTopicConfig(req->topic(), limits_), [this, req, resp]() -> absl::Status {
        TopicInfo t;
        t.name = req->topic().name();
        t.queue_count = req->topic().queues() == 0 ? kDefaultQueues : req->topic().queues();
        t.retention_ms = static_cast<int64_t>(
            req->topic().retention_ms() == 0 ? kDefaultRetentionMs : req->topic().retention_ms());
        t.dedup_window_ms = static_cast<int64_t>(req->topic().dedup_window_ms() == 0
                                                     ? kDefaultDedupWindowMs
                                                     : req->topic().dedup_window_ms());
        t.ordered = req->topic().ordered();
        auto created = store_.CreateTopic(t);
        if (!created.ok()) return created.status();
        ToProto(*created, resp->mutable_topic());
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminService::ListTopics(grpc::CallbackServerContext* ctx,
                                                   const v1::ListTopicsRequest* /*req*/,
                                                   v1::ListTopicsResponse* resp) {
  return Unary(ctx, executor_, "ListTopics", Access{auth_, {Need{Permission::kAdmin, Cluster()}}},
               absl::OkStatus(), [this, resp]() -> absl::Status {
                 auto topics = store_.ListTopics();
                 if (!topics.ok()) return topics.status();
                 for (const auto& t : *topics) ToProto(t, resp->add_topics());
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::DescribeTopic(grpc::CallbackServerContext* ctx,
                                                      const v1::DescribeTopicRequest* req,
                                                      v1::DescribeTopicResponse* resp) {
  return Unary(ctx, executor_, "DescribeTopic",
               Access{auth_, {Need{Permission::kAdmin, Topic(req->name())}}},
               ValidateName("name", req->name()), [this, req, resp]() -> absl::Status {
                 auto d = store_.DescribeTopic(req->name());
                 if (!d.ok()) return d.status();
                 ToProto(d->topic, resp->mutable_topic());
                 resp->set_created_at_unix_ms(static_cast<uint64_t>(d->topic.created_at_ms));
                 resp->set_delayed_messages(static_cast<uint64_t>(d->delayed_messages));
                 for (const QueueState& q : d->queues) {
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
  return Unary(
      ctx, executor_, "DeleteTopic", Access{auth_, {Need{Permission::kAdmin, Topic(req->name())}}},
      ValidateName("name", req->name()), [this, req] { return store_.DeleteTopic(req->name()); });
}

grpc::ServerUnaryReactor* AdminService::GetGroupLag(grpc::CallbackServerContext* ctx,
                                                    const v1::GetGroupLagRequest* req,
                                                    v1::GetGroupLagResponse* resp) {
  absl::Status valid = ValidateName("group", req->group());
  if (valid.ok() && !req->topic().empty()) valid = ValidateName("topic", req->topic());
  return Unary(ctx, executor_, "GetGroupLag",
               Access{auth_, {Need{Permission::kConsume, Group(req->group())}}}, valid,
               [this, req, resp]() -> absl::Status {
                 auto lag = store_.GroupLag(req->group(), req->topic());
                 if (!lag.ok()) return lag.status();
                 resp->set_group(req->group());
                 for (const auto& [topic, delayed] : lag->delayed) {
                   auto* d = resp->add_delayed();
                   d->set_topic(topic);
                   d->set_delayed(static_cast<uint64_t>(delayed));
                 }
                 for (const QueueLag& l : lag->queues) {
                   auto* q = resp->add_queues();
                   q->set_topic(l.topic);
                   q->set_queue(l.queue);
                   q->set_end_offset(static_cast<uint64_t>(l.end_offset));
                   q->set_committed_offset(static_cast<uint64_t>(l.committed_offset));
                   q->set_delivered_offset(static_cast<uint64_t>(l.delivered_offset));
                   q->set_in_flight(static_cast<uint64_t>(l.in_flight));
                   q->set_lag(static_cast<uint64_t>(l.end_offset - l.committed_offset));
                   q->set_oldest_unacked_age_ms(static_cast<uint64_t>(l.oldest_unacked_age_ms));
                   q->set_retrying(static_cast<uint64_t>(l.retrying));
                   q->set_dead_letters(static_cast<uint64_t>(l.dead_letters));
                 }
                 return absl::OkStatus();
               });
}

namespace {

GroupUpdate PolicyFrom(const v1::GroupConfig& g) {
  GroupUpdate u;
  if (g.max_delivery_attempts() > 0) u.max_delivery_attempts = g.max_delivery_attempts();
  if (g.backoff_ms_size() > 0) u.backoff_ms.emplace(g.backoff_ms().begin(), g.backoff_ms().end());
  if (g.backoff_min_ms() > 0) u.backoff_min_ms = static_cast<int64_t>(g.backoff_min_ms());
  if (g.backoff_max_ms() > 0) u.backoff_max_ms = static_cast<int64_t>(g.backoff_max_ms());
  u.ordered = g.ordered();
  u.start_latest = g.start_position() == v1::START_POSITION_LATEST;
  return u;
}

GroupUpdate UpdateFrom(const v1::UpdateGroupRequest& r) {
  GroupUpdate u;
  if (r.has_max_delivery_attempts()) u.max_delivery_attempts = r.max_delivery_attempts();
  if (r.set_backoff()) u.backoff_ms.emplace(r.backoff_ms().begin(), r.backoff_ms().end());
  if (r.has_backoff_min_ms()) u.backoff_min_ms = static_cast<int64_t>(r.backoff_min_ms());
  if (r.has_backoff_max_ms()) u.backoff_max_ms = static_cast<int64_t>(r.backoff_max_ms());
  if (r.has_ordered()) u.ordered = r.ordered();
  if (r.has_start_position()) u.start_latest = r.start_position() == v1::START_POSITION_LATEST;
  return u;
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::CreateGroup(grpc::CallbackServerContext* ctx,
                                                    const v1::CreateGroupRequest* req,
                                                    v1::CreateGroupResponse* resp) {
  return Unary(ctx, executor_, "CreateGroup",
               Access{auth_, {Need{Permission::kAdmin, Group(req->group().name())}}},
               ValidateCreateGroup(*req), [this, req, resp]() -> absl::Status {
                 auto g = store_.CreateGroup(
                     req->group().name(), PolicyFrom(req->group()),
                     std::vector<std::string>(req->topics().begin(), req->topics().end()));
                 if (!g.ok()) return g.status();
                 ToProto(*g, resp->mutable_group());
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::UpdateGroup(grpc::CallbackServerContext* ctx,
                                                    const v1::UpdateGroupRequest* req,
                                                    v1::UpdateGroupResponse* resp) {
  return Unary(ctx, executor_, "UpdateGroup",
               Access{auth_, {Need{Permission::kAdmin, Group(req->name())}}},
               ValidateUpdateGroup(*req), [this, req, resp]() -> absl::Status {
                 auto g = store_.UpdateGroup(req->name(), UpdateFrom(*req));
                 if (!g.ok()) return g.status();
                 ToProto(*g, resp->mutable_group());
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::DescribeGroup(grpc::CallbackServerContext* ctx,
                                                      const v1::DescribeGroupRequest* req,
                                                      v1::DescribeGroupResponse* resp) {
  return Unary(ctx, executor_, "DescribeGroup",
               Access{auth_, {Need{Permission::kConsume, Group(req->name())}}},
               ValidateName("name", req->name()), [this, req, resp]() -> absl::Status {
                 auto g = store_.DescribeGroup(req->name());
                 if (!g.ok()) return g.status();
                 ToProto(g->first, resp->mutable_group());
                 for (const auto& t : g->second) resp->add_topics(t);
                 resp->set_created_at_unix_ms(static_cast<uint64_t>(g->first.created_at_ms));
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::ResetGroup(grpc::CallbackServerContext* ctx,
                                                   const v1::ResetGroupRequest* req,
                                                   v1::ResetGroupResponse* resp) {
  return Unary(ctx, executor_, "ResetGroup",
               Access{auth_, {Need{Permission::kAdmin, Group(req->group())}}},
               ValidateResetGroup(*req, limits_), [this, req, resp]() -> absl::Status {
                 ResetTarget target;
                 switch (req->to_case()) {
                   case v1::ResetGroupRequest::kPosition:
                     target.kind = req->position() == v1::START_POSITION_LATEST
                                       ? ResetTarget::Kind::kLatest
                                       : ResetTarget::Kind::kEarliest;
                     break;
                   case v1::ResetGroupRequest::kTimestampMs:
                     target.kind = ResetTarget::Kind::kTimestamp;
                     target.timestamp_ms = static_cast<int64_t>(req->timestamp_ms());
                     break;
                   case v1::ResetGroupRequest::kOffsets:
                     target.kind = ResetTarget::Kind::kOffsets;
                     for (const auto& o : req->offsets().offsets()) {
                       target.offsets.emplace_back(o.queue(), static_cast<int64_t>(o.offset()));
                     }
                     break;
                   case v1::ResetGroupRequest::TO_NOT_SET:
                     break;  // rejected by validation
                 }
                 auto positions = store_.ResetGroup(req->group(), req->topic(), target);
                 if (!positions.ok()) return positions.status();
                 for (const auto& [q, o] : *positions) {
                   auto* p = resp->add_positions();
                   p->set_queue(q);
                   p->set_offset(static_cast<uint64_t>(o));
                 }
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::ListDeadLetters(grpc::CallbackServerContext* ctx,
                                                        const v1::ListDeadLettersRequest* req,
                                                        v1::ListDeadLettersResponse* resp) {
  return Unary(
      ctx, executor_, "ListDeadLetters",
      Access{auth_, {Need{Permission::kAdmin, Group(req->group())}}}, ValidateListDeadLetters(*req),
      [this, req, resp]() -> absl::Status {
        const int64_t after = *ParsePageToken(req->page_token());
        const int64_t limit = req->page_size() == 0 ? 100 : req->page_size();
        auto rows = store_.ListDeadLetters(req->group(), req->topic(), after, limit);
        if (!rows.ok()) return rows.status();
        for (const DeadLetterRow& r : *rows) {
          auto* d = resp->add_dead_letters();
          d->set_id(static_cast<uint64_t>(r.id));
          d->set_topic(r.topic);
          d->set_queue(r.queue);
          d->set_offset(static_cast<uint64_t>(r.offset));
          if (r.key) d->set_key(*r.key);
          if (r.payload) d->set_payload(*r.payload);
          HeadersFromJson(r.headers_json, d->mutable_headers());
          d->set_attempts(static_cast<uint32_t>(r.attempts));
          d->set_reason(r.reason);
          d->set_produced_at_unix_ms(static_cast<uint64_t>(r.produced_at_ms));
          d->set_first_delivered_at_unix_ms(static_cast<uint64_t>(r.first_delivered_at_ms));
          d->set_last_delivered_at_unix_ms(static_cast<uint64_t>(r.last_delivered_at_ms));
          d->set_dead_at_unix_ms(static_cast<uint64_t>(r.dead_at_ms));
        }
        if (static_cast<int64_t>(rows->size()) == limit) {
          resp->set_next_page_token(std::to_string(rows->back().id));
        }
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminService::RedriveDeadLetters(grpc::CallbackServerContext* ctx,
                                                           const v1::RedriveDeadLettersRequest* req,
                                                           v1::RedriveDeadLettersResponse* resp) {
  return Unary(ctx, executor_, "RedriveDeadLetters",
               Access{auth_, {Need{Permission::kAdmin, Group(req->group())}}},
               ValidateRedrive(*req), [this, req, resp]() -> absl::Status {
                 std::vector<int64_t> ids(req->ids().begin(), req->ids().end());
                 auto report = store_.RedriveDeadLetters(req->group(), ids, req->all(),
                                                         req->to_topic(), broker_.Chooser());
                 if (!report.ok()) return report.status();
                 resp->set_redriven(static_cast<uint64_t>(report->redriven));
                 for (const auto& [id, why] : report->failures) {
                   auto* f = resp->add_failures();
                   f->set_id(static_cast<uint64_t>(id));
                   f->set_reason(why);
                 }
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::PurgeDeadLetters(grpc::CallbackServerContext* ctx,
                                                         const v1::PurgeDeadLettersRequest* req,
                                                         v1::PurgeDeadLettersResponse* resp) {
  return Unary(ctx, executor_, "PurgeDeadLetters",
               Access{auth_, {Need{Permission::kAdmin, Group(req->group())}}}, ValidatePurge(*req),
               [this, req, resp]() -> absl::Status {
                 std::vector<int64_t> ids(req->ids().begin(), req->ids().end());
                 auto purged = store_.PurgeDeadLetters(req->group(), ids, req->all());
                 if (!purged.ok()) return purged.status();
                 resp->set_purged(static_cast<uint64_t>(*purged));
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::CancelDelayed(grpc::CallbackServerContext* ctx,
                                                      const v1::CancelDelayedRequest* req,
                                                      v1::CancelDelayedResponse* /*resp*/) {
  return Unary(ctx, executor_, "CancelDelayed",
               Access{auth_, {Need{Permission::kAdmin, Topic(req->topic())}}},
               ValidateCancelDelayed(*req), [this, req] {
                 return store_.CancelDelayed(req->topic(), static_cast<int64_t>(req->delayed_id()));
               });
}

}  // namespace ferry::broker

namespace ferry::broker {

grpc::ServerUnaryReactor* AdminService::ListTransactions(grpc::CallbackServerContext* ctx,
                                                         const v1::ListTransactionsRequest* req,
                                                         v1::ListTransactionsResponse* resp) {
  return Unary(ctx, executor_, "ListTransactions",
               Access{auth_, {Need{Permission::kAdmin, Cluster()}}}, ValidateListTransactions(*req),
               [this, req, resp]() -> absl::Status {
                 std::optional<TxnState> state;
                 switch (req->state()) {
                   case v1::TXN_PREPARED:
                     state = TxnState::kPrepared;
                     break;
                   case v1::TXN_COMMITTED:
                     state = TxnState::kCommitted;
                     break;
                   case v1::TXN_ROLLED_BACK:
                     state = TxnState::kRolledBack;
                     break;
                   case v1::TXN_CHECK_EXHAUSTED:
                     state = TxnState::kCheckExhausted;
                     break;
                   default:
                     break;
                 }
                 auto rows = store_.ListTransactions(state, req->producer_group(),
                                                     req->limit() == 0 ? 100 : req->limit());
                 if (!rows.ok()) return rows.status();
                 for (const TxnRow& r : *rows) {
                   auto* t = resp->add_transactions();
                   t->set_transaction_id(r.txn_id);
                   t->set_producer_group(r.producer_group);
                   t->set_check_ref(r.check_ref);
                   t->set_state(ToProto(r.state));
                   t->set_began_at_unix_ms(static_cast<uint64_t>(r.began_at_ms));
                   t->set_ended_at_unix_ms(static_cast<uint64_t>(r.ended_at_ms));
                   t->set_checks_sent(static_cast<uint32_t>(r.checks_sent));
                   t->set_next_check_at_unix_ms(static_cast<uint64_t>(r.next_check_at_ms));
                   t->set_messages(static_cast<uint32_t>(r.messages));
                   t->set_attached_acks(static_cast<uint32_t>(r.attached_acks));
                   for (const auto& topic : r.topics) t->add_topics(topic);
                   t->set_checker_connected(r.checker_connected);
                   for (const TxnEventRow& e : r.events) {
                     auto* ev = t->add_events();
                     ev->set_at_unix_ms(static_cast<uint64_t>(e.at_ms));
                     ev->set_kind(e.kind);
                     ev->set_actor(e.actor);
                     ev->set_detail(e.detail);
                   }
                 }
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::ResolveTransaction(grpc::CallbackServerContext* ctx,
                                                           const v1::ResolveTransactionRequest* req,
                                                           v1::ResolveTransactionResponse* resp) {
  return Unary(ctx, executor_, "ResolveTransaction",
               Access{auth_, {Need{Permission::kAdmin, TransactionGroup(req->transaction_id())}}},
               ValidateResolveTransaction(*req), [this, req, resp]() -> absl::Status {
                 auto ended = store_.EndTransaction(
                     req->transaction_id(), FromProto(req->decision()), "admin", req->reason(),
                     /*by_admin=*/true, broker_.Chooser());
                 if (!ended.ok()) return ended.status();
                 resp->set_state(ToProto(ended->state));
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::RearmTransactionChecks(
    grpc::CallbackServerContext* ctx, const v1::RearmTransactionChecksRequest* req,
    v1::RearmTransactionChecksResponse* /*resp*/) {
  return Unary(ctx, executor_, "RearmTransactionChecks",
               Access{auth_, {Need{Permission::kAdmin, TransactionGroup(req->transaction_id())}}},
               ValidateTransactionId("transaction_id", req->transaction_id()),
               [this, req] { return store_.RearmChecks(req->transaction_id(), "admin"); });
}

// ---- principals and grants (--auth) -------------------------------------------------------

namespace {

GrantRecord ToRecord(const v1::AccessGrant& g) {
  return GrantRecord{g.permission(), g.resource_type(),
                     g.resource_type() == "cluster" ? "*" : g.resource_name()};
}

absl::Status ValidateGrants(const google::protobuf::RepeatedPtrField<v1::AccessGrant>& grants) {
  if (grants.size() > 100) {
    return absl::InvalidArgumentError("grants: " + std::to_string(grants.size()) +
                                      " in one call; at most 100");
  }
  for (int i = 0; i < grants.size(); ++i) {
    absl::Status s = ValidateAccessGrant("grants[" + std::to_string(i) + "]", grants[i]);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::CreatePrincipal(grpc::CallbackServerContext* ctx,
                                                        const v1::CreatePrincipalRequest* req,
                                                        v1::CreatePrincipalResponse* resp) {
  absl::Status valid = ValidatePrincipalName("name", req->name());
  if (valid.ok()) valid = ValidateGrants(req->grants());
  return Unary(ctx, executor_, "CreatePrincipal",
               Access{auth_, {Need{Permission::kAdmin, Cluster()}}}, valid,
               [this, req, resp]() -> absl::Status {
                 NewToken t = GenerateToken();
                 absl::Status s = auth_store_.CreatePrincipal(req->name(), t.sha256);
                 if (!s.ok()) return s;
                 for (const auto& g : req->grants()) {
                   s = auth_store_.Grant(req->name(), ToRecord(g));
                   if (!s.ok()) return s;
                 }
                 ferry::log::Get("auth")->info("event=principal_created principal={}", req->name());
                 resp->set_token(t.token);
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::RotateToken(grpc::CallbackServerContext* ctx,
                                                    const v1::RotateTokenRequest* req,
                                                    v1::RotateTokenResponse* resp) {
  return Unary(ctx, executor_, "RotateToken", Access{auth_, {Need{Permission::kAdmin, Cluster()}}},
               ValidatePrincipalName("name", req->name()), [this, req, resp]() -> absl::Status {
                 NewToken t = GenerateToken();
                 absl::Status s = auth_store_.SetToken(req->name(), t.sha256);
                 if (!s.ok()) return s;
                 ferry::log::Get("auth")->info("event=token_rotated principal={}", req->name());
                 resp->set_token(t.token);
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::DeletePrincipal(grpc::CallbackServerContext* ctx,
                                                        const v1::DeletePrincipalRequest* req,
                                                        v1::DeletePrincipalResponse* /*resp*/) {
  return Unary(ctx, executor_, "DeletePrincipal",
               Access{auth_, {Need{Permission::kAdmin, Cluster()}}},
               ValidatePrincipalName("name", req->name()),
               [this, req] { return auth_store_.DeletePrincipal(req->name()); });
}

grpc::ServerUnaryReactor* AdminService::ListPrincipals(grpc::CallbackServerContext* ctx,
                                                       const v1::ListPrincipalsRequest* /*req*/,
                                                       v1::ListPrincipalsResponse* resp) {
  return Unary(ctx, executor_, "ListPrincipals",
               Access{auth_, {Need{Permission::kAdmin, Cluster()}}}, absl::OkStatus(),
               [this, resp]() -> absl::Status {
                 auto all = auth_store_.ListPrincipals();
                 if (!all.ok()) return all.status();
                 for (const auto& p : *all) {
                   auto* out = resp->add_principals();
                   out->set_name(p.name);
                   out->set_created_at_unix_ms(static_cast<uint64_t>(p.created_at_ms));
                   for (const auto& g : p.grants) {
                     auto* og = out->add_grants();
                     og->set_permission(g.permission);
                     og->set_resource_type(g.resource_type);
                     og->set_resource_name(g.resource_name);
                   }
                 }
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* AdminService::Grant(grpc::CallbackServerContext* ctx,
                                              const v1::GrantRequest* req,
                                              v1::GrantResponse* /*resp*/) {
  absl::Status valid = ValidatePrincipalName("principal", req->principal());
  if (valid.ok()) valid = ValidateAccessGrant("grant", req->grant());
  return Unary(ctx, executor_, "Grant", Access{auth_, {Need{Permission::kAdmin, Cluster()}}}, valid,
               [this, req] {
                 ferry::log::Get("auth")->info(
                     "event=granted principal={} permission={} "
                     "resource={}:{}",
                     req->principal(), req->grant().permission(), req->grant().resource_type(),
                     req->grant().resource_name());
                 return auth_store_.Grant(req->principal(), ToRecord(req->grant()));
               });
}

grpc::ServerUnaryReactor* AdminService::Revoke(grpc::CallbackServerContext* ctx,
                                               const v1::RevokeRequest* req,
                                               v1::RevokeResponse* /*resp*/) {
  absl::Status valid = ValidatePrincipalName("principal", req->principal());
  if (valid.ok()) valid = ValidateAccessGrant("grant", req->grant());
  return Unary(
      ctx, executor_, "Revoke", Access{auth_, {Need{Permission::kAdmin, Cluster()}}}, valid,
      [this, req]() -> absl::Status {
        auto removed = auth_store_.Revoke(req->principal(), ToRecord(req->grant()));
        if (!removed.ok()) return removed.status();
        if (!*removed) {
          return absl::NotFoundError("principal '" + req->principal() + "' has no such grant");
        }
        return absl::OkStatus();
      });
}

}  // namespace ferry::broker
