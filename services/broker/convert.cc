// Proto <-> model conversions (convert.h).
#include "broker/convert.h"

#include <google/protobuf/util/time_util.h>

#include <map>
#include <nlohmann/json.hpp>

namespace ferry::broker {

using google::protobuf::util::TimeUtil;

std::string HeadersToJson(const google::protobuf::Map<std::string, std::string>& headers) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : headers) j[k] = v;
  return j.dump();
}

void HeadersFromJson(const std::string& text,
                     google::protobuf::Map<std::string, std::string>* out) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  for (const auto& [k, v] : j.items()) {
    (*out)[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
}

NewMessage FromProto(const v1::ProducedMessage& m, int64_t now_ms) {
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
  return n;
}

void ToProto(const NewMessage& m, v1::ProducedMessage* out) {
  if (m.key) out->set_key(*m.key);
  out->set_payload(m.payload);
  out->set_dedup_id(m.dedup_id);
  HeadersFromJson(m.headers_json, out->mutable_headers());
}

void ToProto(const Appended& a, v1::ProduceResult* out) {
  out->set_queue(a.queue);
  out->set_offset(static_cast<uint64_t>(a.offset));
  out->set_duplicate(a.duplicate);
  out->set_delayed(a.delayed);
  out->set_delayed_id(static_cast<uint64_t>(a.delayed_id));
}

void ToProto(LeasedMessage&& m, const std::string& topic, std::string receipt,
             v1::DeliveredMessage* out) {
  out->set_receipt(std::move(receipt));
  out->set_delivery_attempt(static_cast<uint32_t>(m.attempt));
  out->set_topic(topic);
  out->set_queue(m.queue);
  out->set_offset(static_cast<uint64_t>(m.offset));
  if (m.key) out->set_key(*m.key);
  out->set_payload(std::move(m.payload));
  HeadersFromJson(m.headers_json, out->mutable_headers());
  *out->mutable_produced_at() = TimeUtil::MicrosecondsToTimestamp(m.produced_at_us);
}

TxnBegin FromProto(const v1::TransactionOptions& t) {
  return TxnBegin{t.producer_group(), t.check_ref(), static_cast<int64_t>(t.timeout_ms())};
}

Outcome FromProto(v1::CommitOutcome outcome) {
  switch (outcome) {
    case v1::RETRY:
      return Outcome::kRetry;
    case v1::DEAD_LETTER:
      return Outcome::kDeadLetter;
    default:
      return Outcome::kAck;
  }
}

void ToProto(const SettleResult& r, v1::CommitResult* out) {
  switch (r.status) {
    case SettleStatus::kCommitted:
      out->set_status(v1::COMMITTED);
      break;
    case SettleStatus::kRetryScheduled:
      out->set_status(v1::RETRY_SCHEDULED);
      *out->mutable_retry_at() = TimeUtil::MillisecondsToTimestamp(r.retry_at_ms);
      break;
    case SettleStatus::kDeadLettered:
      out->set_status(v1::DEAD_LETTERED);
      break;
    case SettleStatus::kExtended:
      out->set_status(v1::LEASE_EXTENDED);
      break;
    case SettleStatus::kAttached:
      out->set_status(v1::TRANSACTION_PENDING);
      out->set_detail("applied when the transaction commits");
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

std::optional<TxnState> FromProto(v1::TransactionState state) {
  switch (state) {
    case v1::TXN_PREPARED:
      return TxnState::kPrepared;
    case v1::TXN_COMMITTED:
      return TxnState::kCommitted;
    case v1::TXN_ROLLED_BACK:
      return TxnState::kRolledBack;
    case v1::TXN_CHECK_EXHAUSTED:
      return TxnState::kCheckExhausted;
    default:
      return std::nullopt;
  }
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

void ToProto(const TxnRow& r, v1::TransactionInfo* t) {
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

void ToProto(const TxnCheck& ch, v1::TransactionCheck* c) {
  c->set_check_id(static_cast<uint64_t>(ch.check_id));
  c->set_transaction_id(ch.txn_id);
  c->set_check_ref(ch.check_ref);
  c->set_producer_group(ch.producer_group);
  for (const auto& t : ch.topics) c->add_topics(t);
  c->set_message_count(static_cast<uint32_t>(ch.message_count));
  for (const auto& [topic, m] : ch.sample) ToProto(m, c->add_messages());
  c->set_check_number(static_cast<uint32_t>(ch.check_number));
  *c->mutable_began_at() = TimeUtil::MillisecondsToTimestamp(ch.began_at_ms);
}

TopicInfo FromProto(const v1::TopicConfig& c) {
  TopicInfo t;
  t.name = c.name();
  t.queue_count = c.queues() == 0 ? kDefaultQueues : c.queues();
  t.retention_ms =
      static_cast<int64_t>(c.retention_ms() == 0 ? kDefaultRetentionMs : c.retention_ms());
  t.dedup_window_ms =
      static_cast<int64_t>(c.dedup_window_ms() == 0 ? kDefaultDedupWindowMs : c.dedup_window_ms());
  t.ordered = c.ordered();
  return t;
}

void ToProto(const TopicInfo& t, v1::TopicConfig* out) {
  out->set_name(t.name);
  out->set_queues(t.queue_count);
  out->set_retention_ms(static_cast<uint64_t>(t.retention_ms));
  out->set_dedup_window_ms(static_cast<uint64_t>(t.dedup_window_ms));
  out->set_ordered(t.ordered);
}

void ToProto(const TopicDescription& d, v1::DescribeTopicResponse* out) {
  ToProto(d.topic, out->mutable_topic());
  out->set_created_at_unix_ms(static_cast<uint64_t>(d.topic.created_at_ms));
  out->set_delayed_messages(static_cast<uint64_t>(d.delayed_messages));
  for (const QueueState& q : d.queues) {
    auto* info = out->add_queues();
    info->set_queue(q.queue_id);
    info->set_first_offset(static_cast<uint64_t>(q.first_offset));
    info->set_end_offset(static_cast<uint64_t>(q.end_offset));
    info->set_message_count(static_cast<uint64_t>(q.end_offset - q.first_offset));
  }
}

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

void ToProto(const GroupPolicy& g, v1::GroupConfig* out) {
  out->set_name(g.name);
  out->set_max_delivery_attempts(g.max_delivery_attempts);
  for (int64_t b : g.backoff_ms) out->add_backoff_ms(static_cast<uint64_t>(b));
  out->set_backoff_min_ms(static_cast<uint64_t>(g.backoff_min_ms));
  out->set_backoff_max_ms(static_cast<uint64_t>(g.backoff_max_ms));
  out->set_ordered(g.ordered);
  out->set_start_position(g.start_latest ? v1::START_POSITION_LATEST : v1::START_POSITION_EARLIEST);
}

ResetTarget FromProto(const v1::ResetGroupRequest& r) {
  ResetTarget target;
  target.dry_run = r.dry_run();
  switch (r.to_case()) {
    case v1::ResetGroupRequest::kPosition:
      target.kind = r.position() == v1::START_POSITION_LATEST ? ResetTarget::Kind::kLatest
                                                              : ResetTarget::Kind::kEarliest;
      break;
    case v1::ResetGroupRequest::kTimestampMs:
      target.kind = ResetTarget::Kind::kTimestamp;
      target.timestamp_ms = static_cast<int64_t>(r.timestamp_ms());
      break;
    case v1::ResetGroupRequest::kOffsets:
      target.kind = ResetTarget::Kind::kOffsets;
      for (const auto& o : r.offsets().offsets()) {
        target.offsets.emplace_back(o.queue(), static_cast<int64_t>(o.offset()));
      }
      break;
    case v1::ResetGroupRequest::TO_NOT_SET:
      break;  // refused by validation
  }
  return target;
}

void ToProto(const GroupLagReport& lag, v1::GetGroupLagResponse* out) {
  for (const auto& [topic, delayed] : lag.delayed) {
    auto* d = out->add_delayed();
    d->set_topic(topic);
    d->set_delayed(static_cast<uint64_t>(delayed));
  }
  for (const QueueLag& l : lag.queues) {
    auto* q = out->add_queues();
    q->set_topic(l.topic);
    q->set_queue(l.queue);
    q->set_end_offset(static_cast<uint64_t>(l.end_offset));
    q->set_committed_offset(static_cast<uint64_t>(l.committed_offset));
    q->set_delivered_offset(static_cast<uint64_t>(l.delivered_offset));
    q->set_in_flight(static_cast<uint64_t>(l.in_flight));
    q->set_lag(static_cast<uint64_t>(l.end_offset - l.committed_offset));
    q->set_backlog(static_cast<uint64_t>(std::max<int64_t>(0, l.end_offset - l.delivered_offset)));
    q->set_unsettled(static_cast<uint64_t>(l.in_flight + l.retrying));
    q->set_oldest_unacked_age_ms(static_cast<uint64_t>(l.oldest_unacked_age_ms));
    q->set_retrying(static_cast<uint64_t>(l.retrying));
    q->set_dead_letters(static_cast<uint64_t>(l.dead_letters));
  }
}

void ToProto(const DeadLetterRow& r, v1::DeadLetter* d) {
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

void ToProto(const RedriveReport& r, v1::RedriveDeadLettersResponse* out) {
  out->set_redriven(static_cast<uint64_t>(r.redriven));
  for (const auto& [id, why] : r.failures) {
    auto* f = out->add_failures();
    f->set_id(static_cast<uint64_t>(id));
    f->set_reason(why);
  }
}

GrantRecord FromProto(const v1::AccessGrant& g) {
  return GrantRecord{g.permission(), g.resource_type(),
                     g.resource_type() == "cluster" ? "*" : g.resource_name()};
}

void ToProto(const GrantRecord& g, v1::AccessGrant* out) {
  out->set_permission(g.permission);
  out->set_resource_type(g.resource_type);
  out->set_resource_name(g.resource_name);
}

void ToProto(const PrincipalRecord& p, v1::Principal* out) {
  out->set_name(p.name);
  out->set_created_at_unix_ms(static_cast<uint64_t>(p.created_at_ms));
  for (const auto& g : p.grants) ToProto(g, out->add_grants());
}

void ToProto(const ClusterStatusRow& s, v1::GetClusterStatusResponse* out) {
  for (const auto& b : s.brokers) {
    auto* o = out->add_brokers();
    o->set_broker_id(b.broker_id);
    o->set_version(b.version);
    o->set_listen(b.listen);
    o->set_started_at_unix_ms(static_cast<uint64_t>(b.started_at_ms));
    o->set_seen_at_unix_ms(static_cast<uint64_t>(b.seen_at_ms));
    o->set_alive(b.alive);
  }
  for (const auto& k : s.checkers) {
    auto* o = out->add_checkers();
    o->set_producer_group(k.producer_group);
    o->set_broker_id(k.broker_id);
    o->set_checkers(static_cast<uint32_t>(k.checkers));
    o->set_seen_at_unix_ms(static_cast<uint64_t>(k.seen_at_ms));
  }
  auto* db = out->mutable_database();
  db->set_server_version(s.server_version);
  db->set_size_bytes(static_cast<uint64_t>(s.size_bytes));
  db->set_connections(static_cast<uint32_t>(s.connections));
  db->set_max_connections(static_cast<uint32_t>(s.max_connections));
  db->set_in_recovery(s.in_recovery);
  db->set_messages_bytes(static_cast<uint64_t>(s.messages_bytes));
  out->set_now_unix_ms(static_cast<uint64_t>(s.now_ms));
}

void ToProto(const HistorySample& p, v1::HistoryPoint* out) {
  out->set_at_unix_ms(static_cast<uint64_t>(p.at_ms));
  out->set_topic(p.topic);
  out->set_end_offset(static_cast<uint64_t>(p.end_offset));
  out->set_position(static_cast<uint64_t>(p.position));
  out->set_backlog(static_cast<uint64_t>(p.backlog));
  out->set_unsettled(static_cast<uint64_t>(p.unsettled));
  out->set_in_flight(static_cast<uint64_t>(p.in_flight));
  out->set_retrying(static_cast<uint64_t>(p.retrying));
  out->set_dead_letters(static_cast<uint64_t>(p.dead_letters));
  out->set_oldest_unacked_ms(static_cast<uint64_t>(p.oldest_unacked_ms));
  out->set_delayed(static_cast<uint64_t>(p.delayed));
}

void ToProto(const TxnDetail& d, v1::GetTransactionResponse* out) {
  ToProto(d.txn, out->mutable_transaction());
  for (const auto& [topic, m] : d.messages) ToProto(m, topic, out->add_messages());
  for (const auto& a : d.acks) {
    auto* o = out->add_acks();
    o->set_group(a.group);
    o->set_topic(a.topic);
    o->set_queue(a.queue);
    o->set_offset(static_cast<uint64_t>(a.offset));
  }
}

void ToProto(const StoredMessageRow& m, const std::string& topic, v1::StoredMessage* out) {
  out->set_topic(topic);
  out->set_queue(m.queue);
  out->set_offset(static_cast<uint64_t>(m.offset));
  if (m.key) out->set_key(*m.key);
  out->set_payload(m.payload);
  HeadersFromJson(m.headers_json, out->mutable_headers());
  out->set_produced_at_unix_ms(static_cast<uint64_t>(m.produced_at_ms));
  out->set_dedup_id(m.dedup_id);
}

void ToProto(const MessageGroupStateRow& g, v1::MessageGroupState* out) {
  static const std::map<std::string, v1::MessageState> kStates{
      {"pending", v1::MESSAGE_PENDING},
      {"in_flight", v1::MESSAGE_IN_FLIGHT},
      {"retrying", v1::MESSAGE_RETRYING},
      {"redriven", v1::MESSAGE_REDRIVEN},
      {"in_txn", v1::MESSAGE_IN_TRANSACTION},
      {"acked", v1::MESSAGE_ACKED},
      {"dead_lettered", v1::MESSAGE_DEAD_LETTERED}};
  out->set_group(g.group);
  auto it = kStates.find(g.state);
  out->set_state(it == kStates.end() ? v1::MESSAGE_STATE_UNSPECIFIED : it->second);
  out->set_attempt(static_cast<uint32_t>(g.attempt));
  // An in_txn lease is held (deadline infinity): no deadline to show.
  if (g.deadline_ms > 0 && g.state != "in_txn") {
    out->set_deadline_unix_ms(static_cast<uint64_t>(g.deadline_ms));
  }
  out->set_dead_letter_reason(g.dead_letter_reason);
  out->set_dead_letter_id(static_cast<uint64_t>(g.dead_letter_id));
}

}  // namespace ferry::broker
