// The data-plane doors (broker.h): validate, authorize once, work through the Store, reply.
#include "broker/broker.h"

#include <absl/strings/str_cat.h>

#include <chrono>

#include "broker/convert.h"
#include "common/metrics.h"
#include "common/status.h"

namespace ferry::broker {
namespace {

// What went through the doors (by every face).
struct FlowMetrics {
  metrics::Registry::CounterFamily& produced =
      metrics::Default().Counters("ferry_produced_messages_total",
                                  "messages accepted by Produce (duplicates included)", {"topic"});
  metrics::Registry::CounterFamily& delivered = metrics::Default().Counters(
      "ferry_delivered_messages_total", "messages handed out by Consume (redeliveries included)",
      {"topic", "group"});
  metrics::Registry::CounterFamily& settled = metrics::Default().Counters(
      "ferry_commit_results_total", "Commit entries by group and result", {"group", "result"});
};

FlowMetrics& Metrics() {
  static FlowMetrics* m = new FlowMetrics();
  return *m;
}

int64_t NowMs() {
  // Not TimeUtil::GetCurrentTime(): in protobuf 3.21 it has one-second resolution, which made
  // delayed messages due up to a second early.
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

absl::StatusOr<std::vector<Appended>> Broker::GroupAppend(const std::string& topic,
                                                          const std::vector<NewMessage>& messages) {
  uint64_t bytes = 0;
  for (const auto& m : messages) bytes += m.payload.size() + m.headers_json.size();
  return produce_lanes_.Run(topic, messages, bytes,
                            [this](const std::string& t, const std::vector<NewMessage>& all) {
                              return store_.Append(t, all);
                            });
}

absl::Status Broker::Produce(const Caller& caller, const v1::ProduceRequest& req,
                             v1::ProduceResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateProduce(req, limits_));
  std::vector<Need> needs{{Permission::kProduce, Topic(req.topic())}};
  if (req.has_transactional()) {
    needs.push_back({Permission::kProduce, Group(req.transactional().producer_group())});
  } else if (!req.transaction_id().empty()) {
    // Adding to a transaction is producing as its producer group.
    needs.push_back({Permission::kProduce, TransactionGroup(req.transaction_id())});
  }
  FERRY_RETURN_IF_ERROR(authorizer_.Check(caller, needs));
  const int64_t now_ms = NowMs();
  std::vector<NewMessage> messages;
  messages.reserve(req.messages_size());
  for (const auto& m : req.messages()) messages.push_back(FromProto(m, now_ms));
  if (!req.transaction_id().empty() || req.has_transactional()) {
    // Half messages: durable, invisible until the transaction commits.
    const TxnBegin begin = FromProto(req.transactional());
    auto id = store_.AppendHalf(req.transaction_id(), req.has_transactional() ? &begin : nullptr,
                                req.topic(), messages);
    if (!id.ok()) return id.status();
    resp->set_transaction_id(*id);
    for (int i = 0; i < req.messages_size(); ++i) resp->add_results()->set_half(true);
  } else {
    auto appended =
        group_commit_ ? GroupAppend(req.topic(), messages) : store_.Append(req.topic(), messages);
    if (!appended.ok()) return appended.status();
    for (const Appended& a : *appended) ToProto(a, resp->add_results());
  }
  Metrics().produced.With({req.topic()}).Add(req.messages_size());
  return absl::OkStatus();
}

absl::StatusOr<Broker::ConsumeTicket> Broker::OpenConsume(const Caller& caller,
                                                          const v1::ConsumeRequest& req) {
  FERRY_RETURN_IF_ERROR(ValidateConsume(req, limits_));
  FERRY_RETURN_IF_ERROR(authorizer_.Check(caller, {{Permission::kConsume, Topic(req.topic())},
                                                   {Permission::kConsume, Group(req.group())}}));
  ConsumeTicket ticket;
  LeaseRequest& lease = ticket.lease_;
  lease.group = req.group();
  lease.topic = req.topic();
  lease.max_messages = req.max_messages() == 0 ? 1 : req.max_messages();
  lease.visibility_ms =
      req.visibility_timeout_ms() == 0 ? kDefaultVisibilityMs : req.visibility_timeout_ms();
  lease.start_latest = req.start_position() == v1::START_POSITION_LATEST;
  lease.max_bytes = kMaxConsumeReplyBytes;
  return ticket;
}

absl::Status Broker::ConsumeOnce(const ConsumeTicket& ticket, v1::ConsumeResponse* resp,
                                 int64_t* topic_id) {
  absl::StatusOr<LeaseBatch> batch;
  if (group_commit_) {
    // Consumers of one group and topic that call at the same time share one transaction (and
    // one WAL flush); each still gets its own batch. The key includes where a group created by
    // the call starts, since the first request of a lane decides it.
    const LeaseRequest& lease = ticket.lease_;
    const std::string key = absl::StrCat(lease.group, "\n", lease.topic, "\n", lease.start_latest);
    auto one = consume_lanes_.Run(key, {lease}, 0,
                                  [this](const std::string&, const std::vector<LeaseRequest>& all) {
                                    return store_.LeaseMany(all);
                                  });
    if (one.ok()) {
      batch = std::move(one->front());
    } else {
      batch = one.status();
    }
  } else {
    batch = store_.Lease(ticket.lease_);
  }
  if (!batch.ok()) return batch.status();
  *topic_id = batch->topic_id;
  for (LeasedMessage& m : batch->messages) {
    std::string receipt = codec_.Encode(
        DeliveryRef{batch->group_id, batch->topic_id, m.queue, m.offset, m.lease_token});
    ToProto(std::move(m), ticket.topic(), std::move(receipt), resp->add_messages());
  }
  if (resp->messages_size() > 0) {
    Metrics().delivered.With({ticket.topic(), ticket.lease_.group}).Add(resp->messages_size());
  }
  return absl::OkStatus();
}

template <typename GetReceipt>
std::vector<DeliveryRef> Broker::DecodeReceipts(
    int n, GetReceipt receipt_of, google::protobuf::RepeatedPtrField<v1::CommitResult>* out,
    std::vector<int>* index_of) const {
  std::vector<DeliveryRef> refs;
  index_of->assign(n, -1);
  for (int i = 0; i < n; ++i) {
    v1::CommitResult* r = out->Add();
    auto ref = codec_.Decode(receipt_of(i));
    if (!ref.ok()) {
      r->set_status(v1::INVALID_RECEIPT);
      r->set_detail(std::string(ref.status().message()));
      continue;
    }
    (*index_of)[i] = static_cast<int>(refs.size());
    refs.push_back(*ref);
  }
  return refs;
}

absl::Status Broker::Commit(const Caller& caller, const v1::CommitRequest& req,
                            v1::CommitResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateCommit(req, limits_));
  std::vector<Need> needs{{Permission::kConsume, Group(req.group())}};
  if (!req.transaction_id().empty()) {
    // The ACKs take effect when that transaction commits: acting as its producer group.
    needs.push_back({Permission::kProduce, TransactionGroup(req.transaction_id())});
  }
  FERRY_RETURN_IF_ERROR(authorizer_.Check(caller, needs));
  std::vector<int> index_of;
  const std::vector<DeliveryRef> refs = DecodeReceipts(
      req.entries_size(), [&](int i) -> const std::string& { return req.entries(i).receipt(); },
      resp->mutable_results(), &index_of);
  if (!refs.empty()) {
    absl::StatusOr<std::vector<SettleResult>> results;
    if (!req.transaction_id().empty()) {
      // ACKs attached to a transaction (validation allowed only ACK outcomes here).
      results = store_.AttachAcks(req.transaction_id(), req.group(), refs);
    } else {
      std::vector<Settlement> settlements;
      for (int i = 0; i < req.entries_size(); ++i) {
        if (index_of[i] < 0) continue;
        const v1::CommitEntry& e = req.entries(i);
        settlements.push_back(Settlement{
            refs[index_of[i]], FromProto(e.outcome()),
            e.has_retry_delay_ms() ? static_cast<int64_t>(e.retry_delay_ms()) : -1, e.reason()});
      }
      results = group_commit_ ? settle_lanes_.Run(req.group(), settlements, 0,
                                                  [this](const std::string& group,
                                                         const std::vector<Settlement>& all) {
                                                    return store_.Settle(group, all);
                                                  })
                              : store_.Settle(req.group(), settlements);
    }
    if (!results.ok()) return results.status();
    for (int i = 0; i < req.entries_size(); ++i) {
      if (index_of[i] < 0) continue;
      v1::CommitResult* out = resp->mutable_results(i);
      ToProto((*results)[index_of[i]], out);
      if (out->status() == v1::TRANSACTION_PENDING) {
        out->set_detail("applied when transaction " + req.transaction_id() + " commits");
      }
    }
  }
  for (const auto& r : resp->results()) {
    Metrics().settled.With({req.group(), v1::CommitStatus_Name(r.status())}).Add();
  }
  return absl::OkStatus();
}

absl::Status Broker::ExtendLease(const Caller& caller, const v1::ExtendLeaseRequest& req,
                                 v1::ExtendLeaseResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateExtendLease(req, limits_));
  FERRY_RETURN_IF_ERROR(authorizer_.Check(caller, {{Permission::kConsume, Group(req.group())}}));
  std::vector<int> index_of;
  const std::vector<DeliveryRef> refs = DecodeReceipts(
      req.receipts_size(), [&](int i) -> const std::string& { return req.receipts(i); },
      resp->mutable_results(), &index_of);
  if (refs.empty()) return absl::OkStatus();
  auto extended = store_.ExtendLeases(req.group(), refs, req.visibility_timeout_ms());
  if (!extended.ok()) return extended.status();
  for (int i = 0; i < req.receipts_size(); ++i) {
    if (index_of[i] >= 0) ToProto((*extended)[index_of[i]], resp->mutable_results(i));
  }
  return absl::OkStatus();
}

absl::Status Broker::BeginTransaction(const Caller& caller, const v1::BeginTransactionRequest& req,
                                      v1::BeginTransactionResponse* resp) {
  FERRY_RETURN_IF_ERROR(
      ValidateBeginTransaction("", req.producer_group(), req.check_ref(), req.timeout_ms()));
  FERRY_RETURN_IF_ERROR(
      authorizer_.Check(caller, {{Permission::kProduce, Group(req.producer_group())}}));
  auto id = store_.BeginTransaction(
      TxnBegin{req.producer_group(), req.check_ref(), static_cast<int64_t>(req.timeout_ms())});
  if (!id.ok()) return id.status();
  resp->set_transaction_id(*id);
  return absl::OkStatus();
}

absl::Status Broker::EndTransaction(const Caller& caller, const v1::EndTransactionRequest& req,
                                    v1::EndTransactionResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateEndTransaction(req));
  FERRY_RETURN_IF_ERROR(
      authorizer_.Check(caller, {{Permission::kProduce, TransactionGroup(req.transaction_id())}}));
  auto ended = store_.EndTransaction(req.transaction_id(), FromProto(req.decision()),
                                     caller.As("producer"), "", /*by_admin=*/false);
  if (!ended.ok()) return ended.status();
  resp->set_state(ToProto(ended->state));
  resp->set_messages(static_cast<uint32_t>(ended->messages));
  return absl::OkStatus();
}

absl::Status Broker::SubscribeChecks(const Caller& caller, const v1::CheckSubscribe& sub) {
  FERRY_RETURN_IF_ERROR(ValidateCheckSubscribe(sub));
  std::vector<Need> needs;
  for (const auto& g : sub.producer_groups()) needs.push_back({Permission::kProduce, Group(g)});
  return authorizer_.Check(caller, needs);
}

absl::Status Broker::AnswerCheck(const Caller& caller, const CheckAnswer& answer) {
  FERRY_RETURN_IF_ERROR(ValidateTransactionId("answer.transaction_id", answer.txn_id));
  FERRY_RETURN_IF_ERROR(
      authorizer_.Check(caller, {{Permission::kProduce, Group(answer.producer_group)}}));
  return store_.AnswerCheck(answer);
}

}  // namespace ferry::broker
