#include "broker/broker.h"

#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include <chrono>

namespace ferry::broker {
std::string HeadersToJson(const google::protobuf::Map<std::string, std::string>& headers) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : headers) j[k] = v;
  return j.dump();
}

void HeadersFromJson(const std::string& text, google::protobuf::Map<std::string, std::string>* out) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  for (const auto& [k, v] : j.items()) {
    (*out)[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
}

QueueChooser Broker::Chooser() {
  return [this](const NewMessage& m, uint32_t queue_count) {
    return m.key ? QueueForKey(*m.key, queue_count) : spreader_.Next(queue_count);
  };
}

absl::StatusOr<std::vector<Appended>> Broker::GroupAppend(
    const std::string& topic, const std::vector<NewMessage>& messages) {
  uint64_t bytes = 0;
  for (const auto& m : messages) bytes += m.payload.size() + m.headers_json.size();
  PendingProduce mine{&messages, bytes, absl::UnknownError("not written"), false};
  std::unique_lock<std::mutex> lock(lanes_mu_);
  lanes_[topic].queue.push_back(&mine);
  while (!mine.done) {
    Lane& lane = lanes_[topic];  // re-read each pass: a lane is erased when it runs empty
    if (lane.flushing) {
      lanes_cv_.wait(lock);
      continue;
    }
    // Lead: take what is queued, in arrival order, and write it in one transaction. Our own
    // request may not fit this batch; then we lead (or wait for) the next one.
    lane.flushing = true;
    std::vector<PendingProduce*> batch;
    size_t count = 0;
    uint64_t size = 0;
    while (!lane.queue.empty()) {
      PendingProduce* p = lane.queue.front();
      if (!batch.empty() && (count + p->messages->size() > kGroupCommitMessages ||
                             size + p->bytes > kGroupCommitBytes)) {
        break;
      }
      lane.queue.pop_front();
      batch.push_back(p);
      count += p->messages->size();
      size += p->bytes;
    }
    lock.unlock();
    std::vector<NewMessage> combined;
    combined.reserve(count);
    for (PendingProduce* p : batch) {
      combined.insert(combined.end(), p->messages->begin(), p->messages->end());
    }
    auto written = store_.Append(topic, combined, Chooser());
    lock.lock();
    size_t at = 0;
    for (PendingProduce* p : batch) {
      if (written.ok()) {
        p->result = std::vector<Appended>(written->begin() + at,
                                          written->begin() + at + p->messages->size());
      } else {
        p->result = written.status();
      }
      at += p->messages->size();
      p->done = true;
    }
    Lane& after = lanes_[topic];
    after.flushing = false;
    if (after.queue.empty()) lanes_.erase(topic);
    lanes_cv_.notify_all();
  }
  return std::move(mine.result);
}

absl::Status Broker::Produce(const v1::ProduceRequest& req, v1::ProduceResponse* resp) {
  using google::protobuf::util::TimeUtil;
  // Not TimeUtil::GetCurrentTime(): in protobuf 3.21 it has one-second resolution, which made
  // delayed messages due up to a second early.
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::vector<NewMessage> messages;
  messages.reserve(req.messages_size());
  for (const auto& m : req.messages()) {
    NewMessage n;
    if (!m.key().empty()) n.key = m.key();
    n.payload = m.payload();
    n.headers_json = HeadersToJson(m.headers());
    n.dedup_id = m.dedup_id();
    if (m.has_deliver_at()) {
      n.deliver_at_ms = TimeUtil::TimestampToMilliseconds(m.deliver_at());
    } else if (m.delay_ms() > 0) {
      n.deliver_at_ms = now_ms + static_cast<int64_t>(m.delay_ms());
    }
    messages.push_back(std::move(n));
  }
  if (!req.transaction_id().empty() || req.has_transactional()) {
    // Half messages: durable, invisible until the transaction commits.
    TxnBegin begin;
    if (req.has_transactional()) {
      begin.producer_group = req.transactional().producer_group();
      begin.check_ref = req.transactional().check_ref();
      begin.timeout_ms = static_cast<int64_t>(req.transactional().timeout_ms());
    }
    auto id = store_.AppendHalf(req.transaction_id(), req.has_transactional() ? &begin : nullptr,
                                req.topic(), messages);
    if (!id.ok()) return id.status();
    resp->set_transaction_id(*id);
    for (int i = 0; i < req.messages_size(); ++i) resp->add_results()->set_half(true);
    return absl::OkStatus();
  }
  auto appended = group_commit_ ? GroupAppend(req.topic(), messages)
                                : store_.Append(req.topic(), messages, Chooser());
  if (!appended.ok()) return appended.status();
  for (const Appended& a : *appended) {
    v1::ProduceResult* r = resp->add_results();
    r->set_queue(a.queue);
    r->set_offset(static_cast<uint64_t>(a.offset));
    r->set_duplicate(a.duplicate);
    r->set_delayed(a.delayed);
    r->set_delayed_id(static_cast<uint64_t>(a.delayed_id));
  }
  return absl::OkStatus();
}

absl::Status Broker::ConsumeOnce(const v1::ConsumeRequest& req, v1::ConsumeResponse* resp,
                                 int64_t* topic_id) {
  LeaseRequest lease;
  lease.group = req.group();
  lease.topic = req.topic();
  lease.max_messages = req.max_messages() == 0 ? 1 : req.max_messages();
  lease.visibility_ms =
      req.visibility_timeout_ms() == 0 ? kDefaultVisibilityMs : req.visibility_timeout_ms();
  lease.start_latest = req.start_position() == v1::START_POSITION_LATEST;
  lease.max_bytes = kMaxConsumeReplyBytes;
  auto batch = store_.Lease(lease);
  if (!batch.ok()) return batch.status();
  *topic_id = batch->topic_id;
  for (LeasedMessage& m : batch->messages) {
    v1::DeliveredMessage* d = resp->add_messages();
    d->set_receipt(codec_.Encode(
        DeliveryRef{batch->group_id, batch->topic_id, m.queue, m.offset, m.lease_token}));
    d->set_delivery_attempt(static_cast<uint32_t>(m.attempt));
    d->set_topic(req.topic());
    d->set_queue(m.queue);
    d->set_offset(static_cast<uint64_t>(m.offset));
    if (m.key) d->set_key(*m.key);
    d->set_payload(std::move(m.payload));
    HeadersFromJson(m.headers_json, d->mutable_headers());
    *d->mutable_produced_at() =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(m.produced_at_us);
  }
  return absl::OkStatus();
}

void ToProto(const SettleResult& r, v1::CommitResult* out) {
  switch (r.status) {
    case SettleStatus::kCommitted:
      out->set_status(v1::COMMITTED);
      break;
    case SettleStatus::kRetryScheduled:
      out->set_status(v1::RETRY_SCHEDULED);
      *out->mutable_retry_at() =
          google::protobuf::util::TimeUtil::MillisecondsToTimestamp(r.retry_at_ms);
      break;
    case SettleStatus::kDeadLettered:
      out->set_status(v1::DEAD_LETTERED);
      break;
    case SettleStatus::kExtended:
      out->set_status(v1::LEASE_EXTENDED);
      break;
    case SettleStatus::kAlreadyCommitted:
      out->set_status(v1::ALREADY_COMMITTED);
      out->set_detail("already settled for this group");
      break;
    case SettleStatus::kStale:
      out->set_status(v1::STALE_RECEIPT);
      out->set_detail(
          "the lease expired and the message was delivered again; use the newer receipt");
      break;
    case SettleStatus::kWrongGroup:
      out->set_status(v1::INVALID_RECEIPT);
      out->set_detail("the receipt was issued to another consumer group");
      break;
    case SettleStatus::kTopicGone:
      out->set_status(v1::TOPIC_NOT_FOUND);
      out->set_detail("the receipt's topic or group no longer exists");
      break;
  }
  if (!r.detail.empty()) out->set_detail(r.detail);
}

absl::Status Broker::Commit(const v1::CommitRequest& req, v1::CommitResponse* resp) {
  std::vector<Settlement> settlements;
  std::vector<int> index_of(req.entries_size(), -1);  // entry -> index in settlements
  for (int i = 0; i < req.entries_size(); ++i) {
    const v1::CommitEntry& e = req.entries(i);
    v1::CommitResult* r = resp->add_results();
    auto ref = codec_.Decode(e.receipt());
    if (!ref.ok()) {
      r->set_status(v1::INVALID_RECEIPT);
      r->set_detail(std::string(ref.status().message()));
      continue;
    }
    Settlement st;
    st.ref = *ref;
    st.outcome = e.outcome() == v1::RETRY         ? Outcome::kRetry
                 : e.outcome() == v1::DEAD_LETTER ? Outcome::kDeadLetter
                                                  : Outcome::kAck;
    st.retry_delay_ms = e.retry_delay_ms();
    st.reason = e.reason();
    index_of[i] = static_cast<int>(settlements.size());
    settlements.push_back(std::move(st));
  }
  if (settlements.empty()) return absl::OkStatus();
  if (!req.transaction_id().empty()) {
    // ACKs attached to a transaction (validation allowed only ACK outcomes here).
    std::vector<DeliveryRef> refs;
    for (const Settlement& st : settlements) refs.push_back(st.ref);
    auto attached = store_.AttachAcks(req.transaction_id(), req.group(), refs);
    if (!attached.ok()) return attached.status();
    for (int i = 0; i < req.entries_size(); ++i) {
      if (index_of[i] < 0) continue;
      const SettleResult& r = (*attached)[index_of[i]];
      v1::CommitResult* out = resp->mutable_results(i);
      if (r.status == SettleStatus::kCommitted) {
        out->set_status(v1::TRANSACTION_PENDING);
        out->set_detail("applied when transaction " + req.transaction_id() + " commits");
      } else {
        ToProto(r, out);
      }
    }
    return absl::OkStatus();
  }
  auto settled = store_.Settle(req.group(), settlements);
  if (!settled.ok()) return settled.status();
  for (int i = 0; i < req.entries_size(); ++i) {
    if (index_of[i] >= 0) ToProto((*settled)[index_of[i]], resp->mutable_results(i));
  }
  return absl::OkStatus();
}

v1::TransactionState ToProto(TxnState state) {
  switch (state) {
    case TxnState::kPrepared:
      return v1::TXN_PREPARED;
    case TxnState::kCommitted:
      return v1::TXN_COMMITTED;
    case TxnState::kRolledBack:
      return v1::TXN_ROLLED_BACK;
    case TxnState::kCheckExhausted:
      return v1::TXN_CHECK_EXHAUSTED;
  }
  return v1::TRANSACTION_STATE_UNSPECIFIED;
}

TxnDecision FromProto(v1::TransactionDecision decision) {
  switch (decision) {
    case v1::TRANSACTION_COMMIT:
      return TxnDecision::kCommit;
    case v1::TRANSACTION_ROLLBACK:
      return TxnDecision::kRollback;
    default:
      return TxnDecision::kUnknown;  // never COMMIT by accident
  }
}

absl::Status Broker::BeginTransaction(const v1::BeginTransactionRequest& req,
                                      v1::BeginTransactionResponse* resp) {
  auto id = store_.BeginTransaction(
      TxnBegin{req.producer_group(), req.check_ref(), static_cast<int64_t>(req.timeout_ms())});
  if (!id.ok()) return id.status();
  resp->set_transaction_id(*id);
  return absl::OkStatus();
}

absl::Status Broker::EndTransaction(const v1::EndTransactionRequest& req,
                                    v1::EndTransactionResponse* resp) {
  auto ended = store_.EndTransaction(req.transaction_id(), FromProto(req.decision()), "producer",
                                     "", /*by_admin=*/false, Chooser());
  if (!ended.ok()) return ended.status();
  resp->set_state(ToProto(ended->state));
  resp->set_messages(static_cast<uint32_t>(ended->messages));
  return absl::OkStatus();
}

absl::Status Broker::ExtendLease(const v1::ExtendLeaseRequest& req,
                                 v1::ExtendLeaseResponse* resp) {
  std::vector<DeliveryRef> refs;
  std::vector<int> index_of(req.receipts_size(), -1);
  for (int i = 0; i < req.receipts_size(); ++i) {
    v1::CommitResult* r = resp->add_results();
    auto ref = codec_.Decode(req.receipts(i));
    if (!ref.ok()) {
      r->set_status(v1::INVALID_RECEIPT);
      r->set_detail(std::string(ref.status().message()));
      continue;
    }
    index_of[i] = static_cast<int>(refs.size());
    refs.push_back(*ref);
  }
  if (refs.empty()) return absl::OkStatus();
  const uint32_t visibility =
      req.visibility_timeout_ms() == 0 ? kDefaultVisibilityMs : req.visibility_timeout_ms();
  auto extended = store_.ExtendLeases(req.group(), refs, visibility);
  if (!extended.ok()) return extended.status();
  for (int i = 0; i < req.receipts_size(); ++i) {
    if (index_of[i] >= 0) ToProto((*extended)[index_of[i]], resp->mutable_results(i));
  }
  return absl::OkStatus();
}

}  // namespace ferry::broker
