#include "broker/broker.h"

#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

namespace ferry::broker {
namespace {

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

}  // namespace

absl::Status Broker::Produce(const v1::ProduceRequest& req, v1::ProduceResponse* resp) {
  std::vector<NewMessage> messages;
  messages.reserve(req.messages_size());
  for (const auto& m : req.messages()) {
    NewMessage n;
    if (!m.key().empty()) n.key = m.key();
    n.payload = m.payload();
    n.headers_json = HeadersToJson(m.headers());
    n.dedup_id = m.dedup_id();
    messages.push_back(std::move(n));
  }
  auto appended = store_.Append(req.topic(), messages,
                                [this](const NewMessage& m, uint32_t queue_count) {
                                  return m.key ? QueueForKey(*m.key, queue_count)
                                               : spreader_.Next(queue_count);
                                });
  if (!appended.ok()) return appended.status();
  for (const Appended& a : *appended) {
    v1::ProduceResult* r = resp->add_results();
    r->set_queue(a.queue);
    r->set_offset(static_cast<uint64_t>(a.offset));
    r->set_duplicate(a.duplicate);
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

absl::Status Broker::Commit(const v1::CommitRequest& req, v1::CommitResponse* resp) {
  std::vector<DeliveryRef> targets;
  std::vector<int> target_of(req.entries_size(), -1);  // entry -> index in targets
  for (int i = 0; i < req.entries_size(); ++i) {
    resp->add_results();
    const v1::CommitEntry& e = req.entries(i);
    v1::CommitResult* r = resp->mutable_results(i);
    if (e.outcome() == v1::RETRY || e.outcome() == v1::DEAD_LETTER) {
      r->set_status(v1::UNSUPPORTED_OUTCOME);
      r->set_detail("RETRY and DEAD_LETTER are not supported yet: let the lease expire to retry");
      continue;
    }
    auto ref = codec_.Decode(e.receipt());
    if (!ref.ok()) {
      r->set_status(v1::INVALID_RECEIPT);
      r->set_detail(std::string(ref.status().message()));
      continue;
    }
    target_of[i] = static_cast<int>(targets.size());
    targets.push_back(*ref);
  }
  if (targets.empty()) return absl::OkStatus();
  auto acked = store_.Ack(req.group(), targets);
  if (!acked.ok()) return acked.status();
  for (int i = 0; i < req.entries_size(); ++i) {
    if (target_of[i] < 0) continue;
    v1::CommitResult* r = resp->mutable_results(i);
    switch ((*acked)[target_of[i]]) {
      case AckStatus::kCommitted:
        r->set_status(v1::COMMITTED);
        break;
      case AckStatus::kAlreadyCommitted:
        r->set_status(v1::ALREADY_COMMITTED);
        r->set_detail("already committed for this group");
        break;
      case AckStatus::kStale:
        r->set_status(v1::STALE_RECEIPT);
        r->set_detail(
            "the lease expired and the message was delivered again; commit the newer receipt");
        break;
      case AckStatus::kWrongGroup:
        r->set_status(v1::INVALID_RECEIPT);
        r->set_detail("the receipt was issued to another consumer group");
        break;
      case AckStatus::kTopicGone:
        r->set_status(v1::TOPIC_NOT_FOUND);
        r->set_detail("the receipt's topic or group no longer exists");
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace ferry::broker
