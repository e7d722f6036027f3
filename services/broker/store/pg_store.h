// PgStore: the broker's only SQL. Every method is one PostgreSQL transaction on a pooled
// connection, returns a status instead of throwing, and is safe to call from many threads.
//
// Offsets: a producing transaction locks the rows of the queues it appends to (in queue order)
// from taking offsets until commit, so appends to one queue commit in offset order and offsets
// are dense. Readers only read below queues.next_offset, which commits with the messages.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "broker/delivery_ref.h"
#include "common/metrics.h"
#include "common/pg/pool.h"

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
  std::string headers_json;  // a JSON object of string values
  std::string dedup_id;      // empty: none
  int64_t deliver_at_ms = 0; // unix ms; later than now: a delayed message
};

struct Appended {
  uint32_t queue = 0;
  int64_t offset = 0;
  bool duplicate = false;
  bool delayed = false;    // stored as a delayed message (queue/offset not known yet)
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
  int64_t retry_delay_ms = 0;  // kRetry: 0 = the group's backoff
  std::string reason;          // kDeadLetter
};

enum class SettleStatus {
  kCommitted,         // ACK settled by this call
  kRetryScheduled,    // RETRY accepted
  kDeadLettered,      // moved to dead letters by this call
  kExtended,          // ExtendLeases: the lease was extended
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
  int64_t check_after_ms = 6000;     // first check this long after begin (unless timeout_ms)
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
  int64_t messages = 0;  // made visible or discarded by this call
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

class PgStore {
 public:
  explicit PgStore(pg::ConnectionPool& pool, TxnTiming timing = {})
      : pool_(pool), timing_(timing) {}

  // The prepared statements this store uses; give AllStatements() to the pool's constructor.
  static std::vector<pg::Statement> Statements();
  static std::vector<pg::Statement> AllStatements();

  // ALREADY_EXISTS if a topic has that name. Fills created_at_ms and topic_id.
  absl::StatusOr<TopicInfo> CreateTopic(TopicInfo topic);
  absl::StatusOr<std::vector<TopicInfo>> ListTopics();
  // NOT_FOUND with the name.
  absl::StatusOr<TopicDescription> DescribeTopic(const std::string& name);
  // Removes the topic, its messages, dedup entries and every group's progress on it. NOT_FOUND.
  absl::Status DeleteTopic(const std::string& name);

  // Stores `messages` in `topic` in one transaction, skipping those whose dedup_id is stored
  // within the dedup window (or repeats an earlier one of this call): those get the original
  // position with duplicate = true. Messages due later go to delayed_messages. Returns one
  // entry per message, in order, after commit. NOT_FOUND if the topic does not exist.
  absl::StatusOr<std::vector<Appended>> Append(const std::string& topic,
                                               const std::vector<NewMessage>& messages,
                                               const QueueChooser& choose_queue);

  // Moves up to `limit` due delayed messages into their queues (each exactly once, whichever
  // broker runs it). Returns how many moved.
  absl::StatusOr<int64_t> MoveDueDelayed(int64_t limit, const QueueChooser& choose_queue);

  // Cancels a delayed message not yet due. NOT_FOUND if there is none with that id in topic.
  absl::Status CancelDelayed(const std::string& topic, int64_t delayed_id);

  // Leases up to max_messages to the group. Unordered groups: first messages due again
  // (expired lease, retry, redrive; at the last attempt an expired one goes to dead letters),
  // then messages never delivered. Ordered groups (or topics): only queues no consumer holds,
  // each from its lowest unsettled offset. Creates the group and its positions on first use.
  // An empty batch means nothing is available now. NOT_FOUND if the topic does not exist.
  absl::StatusOr<LeaseBatch> Lease(const LeaseRequest& request);

  // Applies each settlement for `group`; one result per settlement, in order.
  absl::StatusOr<std::vector<SettleResult>> Settle(const std::string& group,
                                                   const std::vector<Settlement>& settlements);

  // Moves the deadline of each still-current lease to now + visibility_ms.
  absl::StatusOr<std::vector<SettleResult>> ExtendLeases(const std::string& group,
                                                         const std::vector<DeliveryRef>& refs,
                                                         uint32_t visibility_ms);

  // Group policy. CreateGroup: ALREADY_EXISTS; fixes start positions on `topics` (NOT_FOUND if
  // one does not exist). UpdateGroup / DescribeGroup: NOT_FOUND.
  absl::StatusOr<GroupPolicy> CreateGroup(const std::string& name, const GroupUpdate& policy,
                                          const std::vector<std::string>& topics);
  absl::StatusOr<GroupPolicy> UpdateGroup(const std::string& name, const GroupUpdate& update);
  absl::StatusOr<std::pair<GroupPolicy, std::vector<std::string>>> DescribeGroup(
      const std::string& name);

  // Moves the group's position on `topic` and releases its leases there. Returns the new
  // position of every queue. NOT_FOUND for an unknown group or topic; INVALID_ARGUMENT for a
  // queue the topic does not have.
  absl::StatusOr<std::vector<std::pair<uint32_t, int64_t>>> ResetGroup(
      const std::string& group, const std::string& topic, const ResetTarget& target);

  // Dead letters of `group` with id > after_id (and of `topic` if not empty), oldest first.
  absl::StatusOr<std::vector<DeadLetterRow>> ListDeadLetters(const std::string& group,
                                                             const std::string& topic,
                                                             int64_t after_id, int64_t limit);
  // Back to the group with attempts reset (to_topic empty), or produced to to_topic.
  absl::StatusOr<RedriveReport> RedriveDeadLetters(const std::string& group,
                                                   const std::vector<int64_t>& ids, bool all,
                                                   const std::string& to_topic,
                                                   const QueueChooser& choose_queue);
  absl::StatusOr<int64_t> PurgeDeadLetters(const std::string& group,
                                           const std::vector<int64_t>& ids, bool all);

  // Per queue progress of `group` on every topic it reads (or only `topic` if not empty).
  // NOT_FOUND if the group (or the topic) does not exist.
  absl::StatusOr<GroupLagReport> GroupLag(const std::string& group, const std::string& topic);

  // Gauges for /metrics: queue ends, per group lag / in flight / retrying / oldest unsettled
  // age, dead letters, delayed messages, transactions and half messages by state.
  absl::StatusOr<std::vector<metrics::GaugeFamily>> MetricGauges();

  // ---- transactions (pg_store_txn.cc) ----

  // Begins a PREPARED transaction; returns its id (a UUID).
  absl::StatusOr<std::string> BeginTransaction(const TxnBegin& begin);

  // Stores `messages` as half messages of transaction `txn_id`, or of a new one when `begin` is
  // set. Returns the transaction id. NOT_FOUND (topic or transaction), FAILED_PRECONDITION when
  // the transaction is no longer PREPARED.
  absl::StatusOr<std::string> AppendHalf(const std::string& txn_id, const TxnBegin* begin,
                                         const std::string& topic,
                                         const std::vector<NewMessage>& messages);

  // Attaches ACKs to a PREPARED transaction: each current lease is held (state in_txn) until
  // the transaction ends. kCommitted in the result means "attached" here.
  absl::StatusOr<std::vector<SettleResult>> AttachAcks(const std::string& txn_id,
                                                       const std::string& group,
                                                       const std::vector<DeliveryRef>& refs);

  // COMMIT: half messages appended to their queues (dedup, delayed as in Append) and attached
  // ACKs applied, in one transaction. ROLLBACK: half messages discarded, attached ACKs released
  // (delivered again). The same decision again returns the state; another decision on a final
  // state is FAILED_PRECONDITION. `by_admin` may also decide a CHECK_EXHAUSTED transaction.
  absl::StatusOr<TxnOutcome> EndTransaction(const std::string& txn_id, TxnDecision decision,
                                            const std::string& actor, const std::string& reason,
                                            bool by_admin, const QueueChooser& choose_queue);

  // Claims up to `limit` due PREPARED transactions of `groups` for a back-check by this broker
  // (counted as sent, next check scheduled); those past max_checks become CHECK_EXHAUSTED.
  absl::StatusOr<std::vector<TxnCheck>> ClaimDueChecks(const std::vector<std::string>& groups,
                                                       const std::string& broker_id,
                                                       int64_t limit);
  // A claimed check could not be sent: not counted, due again now.
  absl::Status UnclaimCheck(const std::string& txn_id, const std::string& broker_id);
  // A checker's answer. COMMIT / ROLLBACK end the transaction; UNKNOWN is recorded, and past
  // max_checks makes it CHECK_EXHAUSTED.
  absl::Status AnswerCheck(const std::string& txn_id, int64_t check_id, TxnDecision decision,
                           const std::string& actor, const QueueChooser& choose_queue);
  // This broker has `checkers` connected per producer group (for "no checker" in the admin view).
  absl::Status TouchCheckers(const std::string& broker_id,
                             const std::vector<std::pair<std::string, int>>& checkers);
  absl::StatusOr<std::vector<TxnRow>> ListTransactions(std::optional<TxnState> state,
                                                       const std::string& producer_group,
                                                       int64_t limit);
  // CHECK_EXHAUSTED -> PREPARED, checks reset. FAILED_PRECONDITION from another state.
  absl::Status RearmChecks(const std::string& txn_id, const std::string& actor);

  // The receipt signing key shared by every broker on this database.
  absl::StatusOr<std::string> ReceiptKey();

  // Creates the partitions of the current time segment and the next `ahead` if missing.
  absl::Status EnsureSegments(int ahead);

  // Removes messages older than their topic's retention, and the leases and retries of those
  // messages (they end "expired by retention"): drops each segment whose messages are all
  // expired; deletes the expired prefix of queues whose topic's retention is shorter than the
  // others' in the segment (up to `batch` per queue per call). Also creates segments ahead.
  absl::StatusOr<RetentionReport> ApplyRetention(int64_t batch);

  // Deletes up to `limit` dedup entries whose window has passed. Returns how many.
  absl::StatusOr<int64_t> DeleteExpiredDedup(int64_t limit);

 private:
  pg::ConnectionPool& pool_;
  const TxnTiming timing_;
  // (group_id, topic_id) pairs whose group_queues rows exist: skips the insert on later calls.
  std::mutex known_mu_;
  std::set<std::pair<int64_t, int64_t>> known_positions_;
};

}  // namespace ferry::broker
