// The broker's domain model: the values that pass between the domain layer (Broker, Admin,
// TxnChecks) and the store. Plain structs, no behaviour beyond RetryDelayMs; no protobuf, no SQL.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/delivery_ref.h"

namespace ferry::broker {

struct TopicInfo {
  int64_t topic_id = 0;
  std::string name;
  uint32_t queue_count = 0;
  int64_t retention_ms = 0;
  int64_t dedup_window_ms = 0;
  int64_t created_at_ms = 0;
  bool ordered = false;
};

struct QueueState {
  uint32_t queue_id = 0;
  int64_t first_offset = 0;  // oldest stored; == end_offset when the queue is empty
  int64_t end_offset = 0;    // the offset the next message gets
};

struct NewMessage {
  std::optional<std::string> key;
  std::string payload;
  std::string headers_json;   // a JSON object of string values
  std::string dedup_id;       // empty: none
  int64_t deliver_at_ms = 0;  // unix ms; later than now: a delayed message
};

struct Appended {
  uint32_t queue = 0;
  int64_t offset = 0;
  bool duplicate = false;
  bool delayed = false;  // stored as a delayed message (queue/offset not known yet)
  int64_t delayed_id = 0;
};

// Chooses the queue of a message given the topic's queue count.
using QueueChooser = std::function<uint32_t(const NewMessage&, uint32_t queue_count)>;

// A group's delivery policy (consumer_groups).
struct GroupPolicy {
  int64_t group_id = 0;
  std::string name;
  uint32_t max_delivery_attempts = 16;
  std::vector<int64_t> backoff_ms;  // by failed attempt; the last repeats
  int64_t backoff_min_ms = 0;       // > 0: exponential instead of the list
  int64_t backoff_max_ms = 0;
  bool ordered = false;
  bool start_latest = false;
  int64_t created_at_ms = 0;
};

// Fields of a policy to change; unset ones stay.
struct GroupUpdate {
  std::optional<uint32_t> max_delivery_attempts;
  std::optional<std::vector<int64_t>> backoff_ms;  // non-empty
  std::optional<int64_t> backoff_min_ms;
  std::optional<int64_t> backoff_max_ms;
  std::optional<bool> ordered;
  std::optional<bool> start_latest;
};

// How long to wait before delivering again a message whose `attempt`-th delivery failed, when
// the consumer named no delay: 3 s in ordered mode (retried in place), else the group's
// exponential or listed backoff.
int64_t RetryDelayMs(const GroupPolicy& policy, bool ordered, int32_t attempt);
inline constexpr int64_t kOrderedRetryMs = 3000;

struct LeaseRequest {
  std::string group;
  std::string topic;
  uint32_t max_messages = 1;
  uint32_t visibility_ms = 30000;
  bool start_latest = false;  // where a group created by this call starts
  uint64_t max_bytes = 0;     // stop adding messages past this many payload bytes (>= 1 kept)
};

struct LeasedMessage {
  uint32_t queue = 0;
  int64_t offset = 0;
  std::optional<std::string> key;
  std::string payload;
  std::string headers_json;
  int64_t produced_at_us = 0;
  int32_t attempt = 0;
  int64_t lease_token = 0;
};

struct LeaseBatch {
  int64_t group_id = 0;
  int64_t topic_id = 0;
  std::vector<LeasedMessage> messages;  // due redeliveries first, then by queue and offset
};

enum class Outcome { kAck, kRetry, kDeadLetter };

struct Settlement {
  DeliveryRef ref;
  Outcome outcome = Outcome::kAck;
  int64_t retry_delay_ms = -1;  // kRetry: < 0 = the group's backoff; 0 = now
  std::string reason;           // kDeadLetter
};

enum class SettleStatus {
  kCommitted,         // ACK settled by this call
  kRetryScheduled,    // RETRY accepted
  kDeadLettered,      // moved to dead letters by this call
  kExtended,          // ExtendLeases: the lease was extended
  kAttached,          // AttachAcks: held until the transaction ends
  kAlreadyCommitted,  // settled before (or a retry is already scheduled)
  kStale,             // delivered again since this receipt was issued
  kWrongGroup,        // the receipt was issued to another group
  kTopicGone,         // its topic (or the group) no longer exists
};

struct SettleResult {
  SettleStatus status = SettleStatus::kTopicGone;
  int64_t retry_at_ms = 0;  // kRetryScheduled
  std::string detail;
};

struct QueueLag {
  std::string topic;
  uint32_t queue = 0;
  int64_t end_offset = 0;
  int64_t committed_offset = 0;
  int64_t delivered_offset = 0;
  int64_t in_flight = 0;
  int64_t retrying = 0;
  int64_t dead_letters = 0;
  int64_t oldest_unacked_age_ms = 0;
};

struct GroupLagReport {
  std::vector<QueueLag> queues;
  std::vector<std::pair<std::string, int64_t>> delayed;  // topic -> delayed messages
};

// A message as stored, read without a lease (PeekMessages, GetMessage).
struct StoredMessageRow {
  uint32_t queue = 0;
  int64_t offset = 0;
  std::optional<std::string> key;
  std::string payload;
  std::string headers_json;
  int64_t produced_at_ms = 0;
  std::string dedup_id;
};

// PeekMessages' filters: a message matches when every set one does.
struct PeekFilter {
  std::optional<std::string> key;
  std::optional<std::string> dedup_id;
  int64_t produced_after_ms = 0;   // 0: none (inclusive)
  int64_t produced_before_ms = 0;  // 0: none (exclusive)
  bool queue_from_key = false;     // read the queue `key` is routed to, not the one asked
  bool any() const { return key || dedup_id || produced_after_ms > 0 || produced_before_ms > 0; }
};

struct PeekResult {
  std::vector<StoredMessageRow> messages;
  int64_t next_offset = 0;
  int64_t first_offset = 0;
  int64_t end_offset = 0;
  uint32_t queue_count = 0;  // the topic's
  uint32_t queue = 0;        // the queue read
};

// Where one message is for one group (view message_status).
struct MessageGroupStateRow {
  std::string group;
  std::string state;  // pending, in_flight, retrying, redriven, in_txn, dead_lettered, acked
  int32_t attempt = 0;
  int64_t deadline_ms = 0;  // 0: none
  std::string dead_letter_reason;
  int64_t dead_letter_id = 0;
};

struct MessageWhereabouts {
  StoredMessageRow message;
  std::vector<MessageGroupStateRow> groups;
};

struct TopicDescription {
  TopicInfo topic;
  std::vector<QueueState> queues;
  int64_t delayed_messages = 0;
};

// Where ResetGroup moves a group.
struct ResetTarget {
  enum class Kind { kEarliest, kLatest, kTimestamp, kOffsets } kind = Kind::kEarliest;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<uint32_t, int64_t>> offsets;  // queue -> offset
  bool dry_run = false;                               // compute the moves, change nothing
};

// One queue's move by a reset: from `previous` (the delivered position) to `position`.
struct QueueMove {
  uint32_t queue = 0;
  int64_t previous = 0;
  int64_t position = 0;
};

struct DeadLetterRow {
  int64_t id = 0;
  std::string topic;
  uint32_t queue = 0;
  int64_t offset = 0;
  std::optional<std::string> key;
  std::optional<std::string> payload;  // nullopt: removed by retention before it died
  std::string headers_json;
  int32_t attempts = 0;
  std::string reason;
  int64_t produced_at_ms = 0;
  int64_t first_delivered_at_ms = 0;
  int64_t last_delivered_at_ms = 0;
  int64_t dead_at_ms = 0;
};

struct RetentionReport {
  int64_t segments = 0;  // whole segments (partitions) dropped
  int64_t messages = 0;  // removed row by row (topics sharing a segment with longer retention)
  int64_t leases = 0;    // deliveries and retries that ended with their message
};

struct RedriveReport {
  int64_t redriven = 0;
  std::vector<std::pair<int64_t, std::string>> failures;  // id -> why it stayed
};

// Back-check timing of transactions (broker flags --txn-*).
struct TxnTiming {
  int64_t check_after_ms = 6000;      // first check this long after begin (unless timeout_ms)
  int64_t check_interval_ms = 30000;  // then again this often
  int32_t max_checks = 15;            // UNKNOWN (or unanswered) checks before CHECK_EXHAUSTED
};

enum class TxnState { kPrepared, kCommitted, kRolledBack, kCheckExhausted };
enum class TxnDecision { kCommit, kRollback, kUnknown };

struct TxnBegin {
  std::string producer_group;
  std::string check_ref;
  int64_t timeout_ms = 0;  // 0: TxnTiming::check_after_ms
};

struct TxnOutcome {
  TxnState state = TxnState::kPrepared;
  int64_t messages = 0;                  // made visible or discarded by this call
  std::vector<int64_t> topics_appended;  // topics that received messages (for wake-ups)
};

struct TxnCheck {
  int64_t check_id = 0;
  std::string txn_id;
  std::string check_ref;
  std::string producer_group;
  std::vector<std::string> topics;
  int64_t message_count = 0;
  std::vector<std::pair<std::string, NewMessage>> sample;  // (topic, message), first few
  int32_t check_number = 0;
  int64_t began_at_ms = 0;
};

// A checker's answer to one back-check (TxnChecks binds it to a check sent on its stream).
struct CheckAnswer {
  std::string txn_id;
  int64_t check_id = 0;
  std::string producer_group;  // of the check that was sent
  TxnDecision decision = TxnDecision::kUnknown;
  std::string actor;  // for the audit trail
};

struct TxnEventRow {
  int64_t at_ms = 0;
  std::string kind, actor, detail;
};

struct TxnRow {
  std::string txn_id, producer_group, check_ref;
  TxnState state = TxnState::kPrepared;
  int64_t began_at_ms = 0, ended_at_ms = 0, next_check_at_ms = 0;
  int32_t checks_sent = 0;
  int64_t messages = 0, attached_acks = 0;
  std::vector<std::string> topics;
  bool checker_connected = false;
  std::vector<TxnEventRow> events;
};

struct AttachedAckRow {
  std::string group, topic;
  uint32_t queue = 0;
  int64_t offset = 0;
};

struct TxnDetail {
  TxnRow txn;
  std::vector<std::pair<std::string, StoredMessageRow>> messages;  // topic, message
  std::vector<AttachedAckRow> acks;
};

// ---- principals and grants (--auth) ----

struct GrantRecord {
  std::string permission;     // produce | consume | admin
  std::string resource_type;  // topic | group | cluster
  std::string resource_name;  // a name or "*" ("*" for cluster)
};

struct PrincipalRecord {
  std::string name;
  std::vector<GrantRecord> grants;
  int64_t created_at_ms = 0;
};

// ---- the console's reports ----

struct BrokerInstanceRow {
  std::string broker_id, version, listen;
  int64_t started_at_ms = 0, seen_at_ms = 0;
  bool alive = false;
};

struct CheckerRow {
  std::string producer_group, broker_id;
  int32_t checkers = 0;
  int64_t seen_at_ms = 0;
};

struct ClusterStatusRow {
  std::vector<BrokerInstanceRow> brokers;
  std::vector<CheckerRow> checkers;
  std::string server_version;
  int64_t size_bytes = 0, messages_bytes = 0;
  int32_t connections = 0, max_connections = 0;
  bool in_recovery = false;
  int64_t now_ms = 0;
};

// One row of stats_samples.
struct HistorySample {
  int64_t at_ms = 0;
  std::string topic;
  int64_t end_offset = 0, position = 0, backlog = 0, unsettled = 0, in_flight = 0, retrying = 0,
          dead_letters = 0, oldest_unacked_ms = 0, delayed = 0;
};

}  // namespace ferry::broker
