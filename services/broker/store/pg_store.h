// PgStore: the Store on PostgreSQL, and the broker's only SQL. Every method is one PostgreSQL
// transaction on a pooled connection, with named statements prepared on every connection (a
// typo fails at start). Thread-safe. The methods are defined by concern, each file holding its
// statements next to their users: pg_store_topics.cc, pg_store_produce.cc,
// pg_store_delivery.cc, pg_store_settle.cc, pg_store_groups.cc, pg_store_dead_letters.cc,
// pg_store_txn.cc, pg_store_auth.cc, pg_store_retention.cc, pg_store_metrics.cc.
//
// Offsets: a producing transaction holds an advisory lock per queue it appends to (in queue
// order) from reading the queue's end until commit, so appends to one queue commit in offset
// order and offsets are dense.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/connection>
#include <set>
#include <unordered_map>
#include <vector>

#include "broker/store/store.h"
#include "common/pg/pool.h"

namespace ferry::broker {

namespace store_internal {
class Notifier;
}  // namespace store_internal

class PgStore final : public Store {
 public:
  // `choose_queue` routes every message this store appends (produce, delayed moves, commits of
  // transactions, redrives to a topic); it must be thread-safe.
  PgStore(pg::ConnectionPool& pool, QueueChooser choose_queue, TxnTiming timing = {});
  ~PgStore() override;

  // Every statement of the store; give it to the pool's constructor.
  static std::vector<pg::Statement> AllStatements();

  // Store (store.h has each method's contract).
  absl::StatusOr<TopicInfo> CreateTopic(TopicInfo topic) override;
  absl::StatusOr<std::vector<TopicInfo>> ListTopics() override;
  absl::StatusOr<TopicDescription> DescribeTopic(const std::string& name) override;
  absl::Status DeleteTopic(const std::string& name) override;
  absl::StatusOr<TopicInfo> UpdateTopic(const std::string& name,
                                        std::optional<int64_t> retention_ms,
                                        std::optional<int64_t> dedup_window_ms) override;
  absl::StatusOr<PeekResult> PeekMessages(const std::string& topic, uint32_t queue, int64_t from,
                                          int64_t max, const PeekFilter& filter) override;
  absl::StatusOr<MessageWhereabouts> GetMessage(const std::string& topic, uint32_t queue,
                                                int64_t offset) override;
  absl::StatusOr<std::vector<std::pair<GroupPolicy, std::vector<std::string>>>> ListGroups()
      override;
  absl::Status DeleteGroup(const std::string& name) override;
  absl::StatusOr<std::vector<Appended>> Append(const std::string& topic,
                                               const std::vector<NewMessage>& messages) override;
  absl::StatusOr<int64_t> MoveDueDelayed(int64_t limit) override;
  absl::Status CancelDelayed(const std::string& topic, int64_t delayed_id) override;
  absl::StatusOr<LeaseBatch> Lease(const LeaseRequest& request) override;
  absl::StatusOr<std::vector<LeaseBatch>> LeaseMany(
      const std::vector<LeaseRequest>& requests) override;
  absl::StatusOr<std::vector<SettleResult>> Settle(
      const std::string& group, const std::vector<Settlement>& settlements) override;
  absl::StatusOr<std::vector<SettleResult>> ExtendLeases(const std::string& group,
                                                         const std::vector<DeliveryRef>& refs,
                                                         uint32_t visibility_ms) override;
  absl::StatusOr<GroupPolicy> CreateGroup(const std::string& name, const GroupUpdate& policy,
                                          const std::vector<std::string>& topics) override;
  absl::StatusOr<GroupPolicy> UpdateGroup(const std::string& name,
                                          const GroupUpdate& update) override;
  absl::StatusOr<std::pair<GroupPolicy, std::vector<std::string>>> DescribeGroup(
      const std::string& name) override;
  absl::StatusOr<std::vector<QueueMove>> ResetGroup(const std::string& group,
                                                    const std::string& topic,
                                                    const ResetTarget& target) override;
  absl::StatusOr<GroupLagReport> GroupLag(const std::string& group,
                                          const std::string& topic) override;
  absl::StatusOr<std::vector<DeadLetterRow>> ListDeadLetters(const std::string& group,
                                                             const std::string& topic,
                                                             int64_t after_id,
                                                             int64_t limit) override;
  absl::StatusOr<RedriveReport> RedriveDeadLetters(const std::string& group,
                                                   const std::vector<int64_t>& ids, bool all,
                                                   const std::string& to_topic) override;
  absl::StatusOr<int64_t> PurgeDeadLetters(const std::string& group,
                                           const std::vector<int64_t>& ids, bool all) override;
  absl::StatusOr<std::string> BeginTransaction(const TxnBegin& begin) override;
  absl::StatusOr<std::optional<std::string>> TransactionProducerGroup(
      const std::string& txn_id) override;
  absl::StatusOr<std::string> AppendHalf(const std::string& txn_id, const TxnBegin* begin,
                                         const std::string& topic,
                                         const std::vector<NewMessage>& messages) override;
  absl::StatusOr<std::vector<SettleResult>> AttachAcks(
      const std::string& txn_id, const std::string& group,
      const std::vector<DeliveryRef>& refs) override;
  absl::StatusOr<TxnOutcome> EndTransaction(const std::string& txn_id, TxnDecision decision,
                                            const std::string& actor, const std::string& reason,
                                            bool by_admin) override;
  absl::StatusOr<std::vector<TxnCheck>> ClaimDueChecks(const std::vector<std::string>& groups,
                                                       const std::string& broker_id,
                                                       int64_t limit) override;
  absl::Status UnclaimCheck(const std::string& txn_id, const std::string& broker_id) override;
  absl::Status AnswerCheck(const CheckAnswer& answer) override;
  absl::Status TouchCheckers(const std::string& broker_id,
                             const std::vector<std::pair<std::string, int>>& checkers) override;
  absl::StatusOr<TxnDetail> GetTransaction(const std::string& txn_id) override;
  absl::StatusOr<std::vector<TxnRow>> ListTransactions(std::optional<TxnState> state,
                                                       const std::string& producer_group,
                                                       int64_t limit) override;
  absl::Status RearmChecks(const std::string& txn_id, const std::string& actor,
                           const std::string& reason) override;
  absl::StatusOr<std::optional<PrincipalRecord>> FindPrincipalByTokenHash(
      const std::string& sha256) override;
  absl::Status CreatePrincipal(const std::string& name, const std::string& token_sha256,
                               const std::vector<GrantRecord>& grants) override;
  absl::Status DeletePrincipal(const std::string& name) override;
  absl::Status SetToken(const std::string& name, const std::string& token_sha256) override;
  absl::StatusOr<std::vector<PrincipalRecord>> ListPrincipals() override;
  absl::Status Grant(const std::string& principal, const GrantRecord& grant) override;
  absl::StatusOr<bool> Revoke(const std::string& principal, const GrantRecord& grant) override;
  absl::StatusOr<std::string> ReceiptKey() override;
  absl::Status EnsureSegments(int ahead) override;
  absl::StatusOr<RetentionReport> ApplyRetention(int64_t batch) override;
  absl::StatusOr<int64_t> DeleteExpiredDedup(int64_t limit) override;
  absl::Status Probe(int64_t timeout_ms) override;
  absl::StatusOr<std::vector<metrics::GaugeFamily>> MetricGauges() override;
  absl::Status Heartbeat(const BrokerInstanceRow& self) override;
  absl::StatusOr<int64_t> RecordStats(int64_t interval_ms, int64_t keep_ms) override;
  absl::StatusOr<ClusterStatusRow> ClusterStatus() override;
  absl::StatusOr<std::vector<HistorySample>> History(const std::string& group,
                                                     const std::string& topic, int64_t since_ms,
                                                     int64_t until_ms, int64_t max_points) override;

 private:
  pg::ConnectionPool& pool_;
  const QueueChooser choose_queue_;
  const TxnTiming timing_;
  // One Consume inside LeaseMany's transaction.
  void LeaseInTx(pqxx::work& tx, const LeaseRequest& req, const TopicInfo& info,
                 const GroupPolicy& group, int32_t lowest_segment, LeaseBatch& batch);

  // Topics this process has produced to (queue_count never changes): a Produce of messages due
  // now to one of them is one statement (AppendOneStatement). ferry_append checks the id and the
  // queue count and writes nothing if the topic is not so any more; then it is looked up again.
  struct ProduceTopic {
    int64_t topic_id = 0;
    uint32_t queue_count = 0;
  };
  static constexpr size_t kProduceTopicsKept = 10000;
  std::mutex produce_topics_mu_;
  std::unordered_map<std::string, ProduceTopic> produce_topics_;
  // nullopt: the topic is gone or not as cached (nothing was written).
  std::optional<std::vector<Appended>> AppendOneStatement(pqxx::connection& c,
                                                          const ProduceTopic& topic,
                                                          const std::vector<NewMessage>& messages);

  // Sends the notifications of committed messages (NotifyCommitted), off the caller's path.
  std::unique_ptr<store_internal::Notifier> notifier_;
  // (group_id, topic_id) pairs whose group_queues rows exist: skips the insert on later calls.
  std::mutex known_mu_;
  std::set<std::pair<int64_t, int64_t>> known_positions_;
  // When this process last looked for due ranges of a (group, topic): at most every
  // kDueRangeCheckMs. The look walks the due index from its start, and while a snapshot is
  // held every range settled since stays in it as a dead entry; checking on every Consume made
  // that walk the cost of every Consume (issue 15, W6). A due range waits at most that long.
  std::mutex due_mu_;
  std::map<std::pair<int64_t, int64_t>, std::chrono::steady_clock::time_point> due_checked_;
  // Probe()'s own connection (a pool busy with long transactions is not an outage).
  std::mutex probe_mu_;
  std::unique_ptr<pqxx::connection> probe_conn_;
};

}  // namespace ferry::broker
