// Store: the face of the broker's storage. The domain layer (Broker, Admin, TxnChecks, the
// server's upkeep threads) depends on this interface only; PgStore (store/pg_store.h) is the
// PostgreSQL implementation, and a topic placement over several clusters or a test double
// would be another.
//
// The contract of every implementation: each method is one atomic unit (one PostgreSQL
// transaction in PgStore); it returns a status instead of throwing; it is safe to call from
// many threads at once; it may block on I/O, so call it from the executor or a background
// thread, never from a gRPC callback. Errors: NOT_FOUND names the missing topic, group or
// transaction; UNAVAILABLE means the database could not be reached (retryable); other codes are
// listed per method. Queues are chosen by the router the implementation was built with.
#pragma once

#include <absl/status/statusor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/model.h"
#include "common/metrics.h"

namespace ferry::broker {

class Store {
 public:
  virtual ~Store() = default;

  // ---- topics (pg_store_topics.cc) ----

  // ALREADY_EXISTS if a topic has that name. Fills created_at_ms and topic_id.
  virtual absl::StatusOr<TopicInfo> CreateTopic(TopicInfo topic) = 0;
  virtual absl::StatusOr<std::vector<TopicInfo>> ListTopics() = 0;
  // NOT_FOUND with the name.
  virtual absl::StatusOr<TopicDescription> DescribeTopic(const std::string& name) = 0;
  // Removes the topic, its messages, dedup entries and every group's progress on it. NOT_FOUND.
  virtual absl::Status DeleteTopic(const std::string& name) = 0;
  // Unset values stay. NOT_FOUND if absent.
  virtual absl::StatusOr<TopicInfo> UpdateTopic(const std::string& name,
                                                std::optional<int64_t> retention_ms,
                                                std::optional<int64_t> dedup_window_ms) = 0;
  // Up to `max` stored messages of a queue from `from` (the oldest if below it); no lease.
  // With a filter, reads at most kPeekScanLimit messages and returns the matches among them;
  // next_offset is past the last one read.
  static constexpr int64_t kPeekScanLimit = 100000;
  virtual absl::StatusOr<PeekResult> PeekMessages(const std::string& topic, uint32_t queue,
                                                  int64_t from, int64_t max,
                                                  const PeekFilter& filter) = 0;
  // One stored message and its state for every group with a position on its queue.
  virtual absl::StatusOr<MessageWhereabouts> GetMessage(const std::string& topic, uint32_t queue,
                                                        int64_t offset) = 0;

  // ---- produce and delayed messages (pg_store_produce.cc) ----

  // Stores `messages` in `topic`, skipping those whose dedup_id is stored within the dedup
  // window (or repeats an earlier one of this call): those get the original position with
  // duplicate = true. Messages due later are kept as delayed messages. Returns one entry per
  // message, in order, after commit. NOT_FOUND if the topic does not exist.
  virtual absl::StatusOr<std::vector<Appended>> Append(const std::string& topic,
                                                       const std::vector<NewMessage>& messages) = 0;
  // Moves up to `limit` due delayed messages into their queues (each exactly once, whichever
  // broker runs it). Returns how many moved.
  virtual absl::StatusOr<int64_t> MoveDueDelayed(int64_t limit) = 0;
  // Cancels a delayed message not yet due. NOT_FOUND if there is none with that id in topic.
  virtual absl::Status CancelDelayed(const std::string& topic, int64_t delayed_id) = 0;

  // ---- delivery (pg_store_delivery.cc: Lease; pg_store_settle.cc: Settle, ExtendLeases) ----

  // Leases up to max_messages to the group. Unordered groups: first messages due again
  // (expired lease, retry, redrive; at the last attempt an expired one goes to dead letters),
  // then messages never delivered. Ordered groups (or topics): only queues no consumer holds,
  // each from its lowest unsettled offset. Creates the group and its positions on first use.
  // An empty batch means nothing is available now. NOT_FOUND if the topic does not exist.
  virtual absl::StatusOr<LeaseBatch> Lease(const LeaseRequest& request) = 0;
  // Several Consume calls of one group and topic (and start position) at once, in one
  // transaction: one batch per request, in order, as if they had come one after the other.
  virtual absl::StatusOr<std::vector<LeaseBatch>> LeaseMany(
      const std::vector<LeaseRequest>& requests) = 0;
  // Applies each settlement for `group`; one result per settlement, in order.
  virtual absl::StatusOr<std::vector<SettleResult>> Settle(
      const std::string& group, const std::vector<Settlement>& settlements) = 0;
  // Moves the deadline of each still-current lease to now + visibility_ms (kExtended).
  virtual absl::StatusOr<std::vector<SettleResult>> ExtendLeases(
      const std::string& group, const std::vector<DeliveryRef>& refs, uint32_t visibility_ms) = 0;

  // ---- groups (pg_store_groups.cc) ----

  // CreateGroup: ALREADY_EXISTS; fixes start positions on `topics` (NOT_FOUND if one does not
  // exist). UpdateGroup / DescribeGroup: NOT_FOUND.
  virtual absl::StatusOr<GroupPolicy> CreateGroup(const std::string& name,
                                                  const GroupUpdate& policy,
                                                  const std::vector<std::string>& topics) = 0;
  virtual absl::StatusOr<GroupPolicy> UpdateGroup(const std::string& name,
                                                  const GroupUpdate& update) = 0;
  virtual absl::StatusOr<std::pair<GroupPolicy, std::vector<std::string>>> DescribeGroup(
      const std::string& name) = 0;
  // Moves the group's position on `topic` and releases its leases there. Returns the new
  // position of every queue. NOT_FOUND for an unknown group or topic; INVALID_ARGUMENT for a
  // queue the topic does not have.
  virtual absl::StatusOr<std::vector<std::pair<GroupPolicy, std::vector<std::string>>>>
  ListGroups() = 0;
  virtual absl::Status DeleteGroup(const std::string& name) = 0;  // NOT_FOUND if absent
  // With target.dry_run, returns the moves and changes nothing (the console's preview).
  virtual absl::StatusOr<std::vector<QueueMove>> ResetGroup(const std::string& group,
                                                            const std::string& topic,
                                                            const ResetTarget& target) = 0;
  // Per queue progress of `group` on every topic it reads (or only `topic` if not empty).
  // NOT_FOUND if the group (or the topic) does not exist.
  virtual absl::StatusOr<GroupLagReport> GroupLag(const std::string& group,
                                                  const std::string& topic) = 0;

  // ---- dead letters (pg_store_dead_letters.cc) ----

  // Dead letters of `group` with id > after_id (and of `topic` if not empty), oldest first.
  virtual absl::StatusOr<std::vector<DeadLetterRow>> ListDeadLetters(const std::string& group,
                                                                     const std::string& topic,
                                                                     int64_t after_id,
                                                                     int64_t limit) = 0;
  // Back to the group with attempts reset (to_topic empty), or produced to to_topic.
  virtual absl::StatusOr<RedriveReport> RedriveDeadLetters(const std::string& group,
                                                           const std::vector<int64_t>& ids,
                                                           bool all,
                                                           const std::string& to_topic) = 0;
  virtual absl::StatusOr<int64_t> PurgeDeadLetters(const std::string& group,
                                                   const std::vector<int64_t>& ids, bool all) = 0;

  // ---- transactions and back-checks (pg_store_txn.cc) ----

  // Begins a PREPARED transaction; returns its id (a UUID).
  virtual absl::StatusOr<std::string> BeginTransaction(const TxnBegin& begin) = 0;
  // The producer group of a transaction, or nullopt when there is no such transaction.
  virtual absl::StatusOr<std::optional<std::string>> TransactionProducerGroup(
      const std::string& txn_id) = 0;
  // Stores `messages` as half messages of transaction `txn_id`, or of a new one when `begin`
  // is set. Returns the transaction id. NOT_FOUND (topic or transaction), FAILED_PRECONDITION
  // when the transaction is no longer PREPARED.
  virtual absl::StatusOr<std::string> AppendHalf(const std::string& txn_id, const TxnBegin* begin,
                                                 const std::string& topic,
                                                 const std::vector<NewMessage>& messages) = 0;
  // Attaches ACKs to a PREPARED transaction: each current lease is held (state in_txn) until
  // the transaction ends. kCommitted in the result means "attached" here.
  virtual absl::StatusOr<std::vector<SettleResult>> AttachAcks(
      const std::string& txn_id, const std::string& group,
      const std::vector<DeliveryRef>& refs) = 0;
  // COMMIT: half messages appended to their queues (dedup, delayed as in Append) and attached
  // ACKs applied, atomically. ROLLBACK: half messages discarded, attached ACKs released
  // (delivered again). The same decision again returns the state; another decision on a final
  // state is FAILED_PRECONDITION. `by_admin` may also decide a CHECK_EXHAUSTED transaction.
  virtual absl::StatusOr<TxnOutcome> EndTransaction(const std::string& txn_id, TxnDecision decision,
                                                    const std::string& actor,
                                                    const std::string& reason, bool by_admin) = 0;
  // Claims up to `limit` due PREPARED transactions of `groups` for a back-check by this broker
  // (counted as sent, next check scheduled); those past max_checks become CHECK_EXHAUSTED.
  virtual absl::StatusOr<std::vector<TxnCheck>> ClaimDueChecks(
      const std::vector<std::string>& groups, const std::string& broker_id, int64_t limit) = 0;
  // A claimed check could not be sent: not counted, due again now.
  virtual absl::Status UnclaimCheck(const std::string& txn_id, const std::string& broker_id) = 0;
  // A checker's answer to a check that was sent. FAILED_PRECONDITION, changing nothing, unless
  // the transaction belongs to answer.producer_group and check answer.check_id was sent for it.
  // Then: COMMIT / ROLLBACK end a PREPARED transaction; UNKNOWN is recorded, and past max_checks
  // makes it CHECK_EXHAUSTED; an answer for a decided transaction is only recorded.
  virtual absl::Status AnswerCheck(const CheckAnswer& answer) = 0;
  // This broker has `checkers` connected per producer group (for "no checker" in the admin view).
  virtual absl::Status TouchCheckers(const std::string& broker_id,
                                     const std::vector<std::pair<std::string, int>>& checkers) = 0;
  // One transaction with its half messages and attached ACKs. NOT_FOUND.
  virtual absl::StatusOr<TxnDetail> GetTransaction(const std::string& txn_id) = 0;
  virtual absl::StatusOr<std::vector<TxnRow>> ListTransactions(std::optional<TxnState> state,
                                                               const std::string& producer_group,
                                                               int64_t limit) = 0;
  // CHECK_EXHAUSTED -> PREPARED, checks reset. FAILED_PRECONDITION from another state.
  virtual absl::Status RearmChecks(const std::string& txn_id, const std::string& actor,
                                   const std::string& reason) = 0;

  // ---- principals and grants (pg_store_auth.cc) ----

  // The principal holding the token with this SHA-256, or nullopt.
  virtual absl::StatusOr<std::optional<PrincipalRecord>> FindPrincipalByTokenHash(
      const std::string& sha256) = 0;
  // ALREADY_EXISTS when the name is taken; the grants are given in the same transaction.
  virtual absl::Status CreatePrincipal(const std::string& name, const std::string& token_sha256,
                                       const std::vector<GrantRecord>& grants) = 0;
  // NOT_FOUND when there is none; its grants go with it.
  virtual absl::Status DeletePrincipal(const std::string& name) = 0;
  // Replaces the token; NOT_FOUND when there is no such principal.
  virtual absl::Status SetToken(const std::string& name, const std::string& token_sha256) = 0;
  virtual absl::StatusOr<std::vector<PrincipalRecord>> ListPrincipals() = 0;
  // NOT_FOUND when the principal does not exist; granting twice is fine.
  virtual absl::Status Grant(const std::string& principal, const GrantRecord& grant) = 0;
  // Returns false when there was no such grant.
  virtual absl::StatusOr<bool> Revoke(const std::string& principal, const GrantRecord& grant) = 0;

  // ---- upkeep and inspection (pg_store_retention.cc, pg_store_metrics.cc) ----

  // The receipt signing key shared by every broker on this database.
  virtual absl::StatusOr<std::string> ReceiptKey() = 0;
  // Creates the storage for the current time segment and the next `ahead` if missing.
  virtual absl::Status EnsureSegments(int ahead) = 0;
  // Removes messages older than their topic's retention, and the leases and retries of those
  // messages (they end "expired by retention"); creates segments ahead.
  virtual absl::StatusOr<RetentionReport> ApplyRetention(int64_t batch) = 0;
  // Deletes up to `limit` dedup entries whose window has passed. Returns how many.
  virtual absl::StatusOr<int64_t> DeleteExpiredDedup(int64_t limit) = 0;
  // OK when the database commits a trivial transaction (replicated to a synchronous standby
  // when there is one) within `timeout_ms` on a connection of its own (not the pool's),
  // UNAVAILABLE otherwise. For the health watcher.
  virtual absl::Status Probe(int64_t timeout_ms) = 0;
  // Gauges for /metrics: queue ends, per group lag / in flight / retrying / oldest unsettled
  // age, dead letters, delayed messages, transactions and half messages by state.
  virtual absl::StatusOr<std::vector<metrics::GaugeFamily>> MetricGauges() = 0;

  // ---- the console's reports (pg_store_console.cc) ----

  // Inserts or refreshes this broker's row in `brokers`.
  virtual absl::Status Heartbeat(const BrokerInstanceRow& self) = 0;
  // One stats sample unless another broker took one within 0.9 interval; drops samples older
  // than keep_ms. Returns the rows written.
  virtual absl::StatusOr<int64_t> RecordStats(int64_t interval_ms, int64_t keep_ms) = 0;
  virtual absl::StatusOr<ClusterStatusRow> ClusterStatus() = 0;
  // Samples of `group` (topic "" = all its topics) or, with group "", of `topic`, in
  // [since_ms, until_ms), at most max_points per topic (evenly thinned). NOT_FOUND: no such
  // group or topic.
  virtual absl::StatusOr<std::vector<HistorySample>> History(const std::string& group,
                                                             const std::string& topic,
                                                             int64_t since_ms, int64_t until_ms,
                                                             int64_t max_points) = 0;
};

}  // namespace ferry::broker
