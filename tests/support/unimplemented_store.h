// A Store whose every method answers UNIMPLEMENTED (and counts the call): for DB-free tests of
// the domain doors, which must refuse bad or unauthorized requests before reaching the store.
// A new Store method fails to compile here until it is added.
#pragma once

#include <atomic>

#include "broker/store/store.h"

namespace ferry::test {

class UnimplementedStore : public broker::Store {
 public:
  std::atomic<int> calls{0};

  absl::StatusOr<broker::TopicInfo> CreateTopic(broker::TopicInfo /*topic*/) override {
    ++calls;
    return absl::UnimplementedError("CreateTopic");
  }
  absl::StatusOr<std::vector<broker::TopicInfo>> ListTopics() override {
    ++calls;
    return absl::UnimplementedError("ListTopics");
  }
  absl::StatusOr<broker::TopicDescription> DescribeTopic(const std::string& /*name*/) override {
    ++calls;
    return absl::UnimplementedError("DescribeTopic");
  }
  absl::StatusOr<broker::TopicInfo> UpdateTopic(
      const std::string& /*name*/, std::optional<int64_t> /*retention_ms*/,
      std::optional<int64_t> /*dedup_window_ms*/) override {
    ++calls;
    return absl::UnimplementedError("UpdateTopic");
  }
  absl::StatusOr<broker::PeekResult> PeekMessages(const std::string& /*topic*/, uint32_t /*queue*/,
                                                  int64_t /*from*/, int64_t /*max*/,
                                                  const broker::PeekFilter& /*filter*/) override {
    ++calls;
    return absl::UnimplementedError("PeekMessages");
  }
  absl::StatusOr<broker::MessageWhereabouts> GetMessage(const std::string& /*topic*/,
                                                        uint32_t /*queue*/,
                                                        int64_t /*offset*/) override {
    ++calls;
    return absl::UnimplementedError("GetMessage");
  }
  absl::StatusOr<std::vector<std::pair<broker::GroupPolicy, std::vector<std::string>>>> ListGroups()
      override {
    ++calls;
    return absl::UnimplementedError("ListGroups");
  }
  absl::Status DeleteGroup(const std::string& /*name*/) override {
    ++calls;
    return absl::UnimplementedError("DeleteGroup");
  }
  absl::Status DeleteTopic(const std::string& /*name*/) override {
    ++calls;
    return absl::UnimplementedError("DeleteTopic");
  }
  absl::StatusOr<std::vector<broker::Appended>> Append(
      const std::string& /*topic*/, const std::vector<broker::NewMessage>& /*messages*/) override {
    ++calls;
    return absl::UnimplementedError("Append");
  }
  absl::StatusOr<int64_t> MoveDueDelayed(int64_t /*limit*/) override {
    ++calls;
    return absl::UnimplementedError("MoveDueDelayed");
  }
  absl::Status CancelDelayed(const std::string& /*topic*/, int64_t /*delayed_id*/) override {
    ++calls;
    return absl::UnimplementedError("CancelDelayed");
  }
  absl::StatusOr<std::vector<broker::LeaseBatch>> LeaseMany(
      const std::vector<broker::LeaseRequest>& /*requests*/) override {
    return absl::UnimplementedError("LeaseMany");
  }
  absl::StatusOr<broker::LeaseBatch> Lease(const broker::LeaseRequest& /*request*/) override {
    ++calls;
    return absl::UnimplementedError("Lease");
  }
  absl::StatusOr<std::vector<broker::SettleResult>> Settle(
      const std::string& /*group*/,
      const std::vector<broker::Settlement>& /*settlements*/) override {
    ++calls;
    return absl::UnimplementedError("Settle");
  }
  absl::StatusOr<std::vector<broker::SettleResult>> ExtendLeases(
      const std::string& /*group*/, const std::vector<broker::DeliveryRef>& /*refs*/,
      uint32_t /*visibility_ms*/) override {
    ++calls;
    return absl::UnimplementedError("ExtendLeases");
  }
  absl::StatusOr<broker::GroupPolicy> CreateGroup(
      const std::string& /*name*/, const broker::GroupUpdate& /*policy*/,
      const std::vector<std::string>& /*topics*/) override {
    ++calls;
    return absl::UnimplementedError("CreateGroup");
  }
  absl::StatusOr<broker::GroupPolicy> UpdateGroup(const std::string& /*name*/,
                                                  const broker::GroupUpdate& /*update*/) override {
    ++calls;
    return absl::UnimplementedError("UpdateGroup");
  }
  absl::StatusOr<std::pair<broker::GroupPolicy, std::vector<std::string>>> DescribeGroup(
      const std::string& /*name*/) override {
    ++calls;
    return absl::UnimplementedError("DescribeGroup");
  }
  absl::StatusOr<std::vector<broker::QueueMove>> ResetGroup(
      const std::string& /*group*/, const std::string& /*topic*/,
      const broker::ResetTarget& /*target*/) override {
    ++calls;
    return absl::UnimplementedError("ResetGroup");
  }
  absl::StatusOr<broker::GroupLagReport> GroupLag(const std::string& /*group*/,
                                                  const std::string& /*topic*/) override {
    ++calls;
    return absl::UnimplementedError("GroupLag");
  }
  absl::StatusOr<std::vector<broker::DeadLetterRow>> ListDeadLetters(const std::string& /*group*/,
                                                                     const std::string& /*topic*/,
                                                                     int64_t /*after_id*/,
                                                                     int64_t /*limit*/) override {
    ++calls;
    return absl::UnimplementedError("ListDeadLetters");
  }
  absl::StatusOr<broker::RedriveReport> RedriveDeadLetters(
      const std::string& /*group*/, const std::vector<int64_t>& /*ids*/, bool /*all*/,
      const std::string& /*to_topic*/) override {
    ++calls;
    return absl::UnimplementedError("RedriveDeadLetters");
  }
  absl::StatusOr<int64_t> PurgeDeadLetters(const std::string& /*group*/,
                                           const std::vector<int64_t>& /*ids*/,
                                           bool /*all*/) override {
    ++calls;
    return absl::UnimplementedError("PurgeDeadLetters");
  }
  absl::StatusOr<std::string> BeginTransaction(const broker::TxnBegin& /*begin*/) override {
    ++calls;
    return absl::UnimplementedError("BeginTransaction");
  }
  absl::StatusOr<std::optional<std::string>> TransactionProducerGroup(
      const std::string& /*txn_id*/) override {
    ++calls;
    return absl::UnimplementedError("TransactionProducerGroup");
  }
  absl::StatusOr<std::string> AppendHalf(
      const std::string& /*txn_id*/, const broker::TxnBegin* /*begin*/,
      const std::string& /*topic*/, const std::vector<broker::NewMessage>& /*messages*/) override {
    ++calls;
    return absl::UnimplementedError("AppendHalf");
  }
  absl::StatusOr<std::vector<broker::SettleResult>> AttachAcks(
      const std::string& /*txn_id*/, const std::string& /*group*/,
      const std::vector<broker::DeliveryRef>& /*refs*/) override {
    ++calls;
    return absl::UnimplementedError("AttachAcks");
  }
  absl::StatusOr<broker::TxnOutcome> EndTransaction(const std::string& /*txn_id*/,
                                                    broker::TxnDecision /*decision*/,
                                                    const std::string& /*actor*/,
                                                    const std::string& /*reason*/,
                                                    bool /*by_admin*/) override {
    ++calls;
    return absl::UnimplementedError("EndTransaction");
  }
  absl::StatusOr<std::vector<broker::TxnCheck>> ClaimDueChecks(
      const std::vector<std::string>& /*groups*/, const std::string& /*broker_id*/,
      int64_t /*limit*/) override {
    ++calls;
    return absl::UnimplementedError("ClaimDueChecks");
  }
  absl::Status UnclaimCheck(const std::string& /*txn_id*/,
                            const std::string& /*broker_id*/) override {
    ++calls;
    return absl::UnimplementedError("UnclaimCheck");
  }
  absl::Status AnswerCheck(const broker::CheckAnswer& /*answer*/) override {
    ++calls;
    return absl::UnimplementedError("AnswerCheck");
  }
  absl::Status TouchCheckers(
      const std::string& /*broker_id*/,
      const std::vector<std::pair<std::string, int>>& /*checkers*/) override {
    ++calls;
    return absl::UnimplementedError("TouchCheckers");
  }
  absl::StatusOr<broker::TxnDetail> GetTransaction(const std::string& /*txn_id*/) override {
    ++calls;
    return absl::UnimplementedError("GetTransaction");
  }
  absl::StatusOr<std::vector<broker::TxnRow>> ListTransactions(
      std::optional<broker::TxnState> /*state*/, const std::string& /*producer_group*/,
      int64_t /*limit*/) override {
    ++calls;
    return absl::UnimplementedError("ListTransactions");
  }
  absl::Status RearmChecks(const std::string& /*txn_id*/, const std::string& /*actor*/,
                           const std::string& /*reason*/) override {
    ++calls;
    return absl::UnimplementedError("RearmChecks");
  }
  absl::StatusOr<std::optional<broker::PrincipalRecord>> FindPrincipalByTokenHash(
      const std::string& /*sha256*/) override {
    ++calls;
    return absl::UnimplementedError("FindPrincipalByTokenHash");
  }
  absl::Status CreatePrincipal(const std::string& /*name*/, const std::string& /*token_sha256*/,
                               const std::vector<broker::GrantRecord>& /*grants*/) override {
    ++calls;
    return absl::UnimplementedError("CreatePrincipal");
  }
  absl::Status DeletePrincipal(const std::string& /*name*/) override {
    ++calls;
    return absl::UnimplementedError("DeletePrincipal");
  }
  absl::Status SetToken(const std::string& /*name*/, const std::string& /*token_sha256*/) override {
    ++calls;
    return absl::UnimplementedError("SetToken");
  }
  absl::StatusOr<std::vector<broker::PrincipalRecord>> ListPrincipals() override {
    ++calls;
    return absl::UnimplementedError("ListPrincipals");
  }
  absl::Status Grant(const std::string& /*principal*/,
                     const broker::GrantRecord& /*grant*/) override {
    ++calls;
    return absl::UnimplementedError("Grant");
  }
  absl::StatusOr<bool> Revoke(const std::string& /*principal*/,
                              const broker::GrantRecord& /*grant*/) override {
    ++calls;
    return absl::UnimplementedError("Revoke");
  }
  absl::StatusOr<std::string> ReceiptKey() override {
    ++calls;
    return absl::UnimplementedError("ReceiptKey");
  }
  absl::Status EnsureSegments(int /*ahead*/) override {
    ++calls;
    return absl::UnimplementedError("EnsureSegments");
  }
  absl::StatusOr<broker::RetentionReport> ApplyRetention(int64_t /*batch*/) override {
    ++calls;
    return absl::UnimplementedError("ApplyRetention");
  }
  absl::StatusOr<int64_t> DeleteExpiredDedup(int64_t /*limit*/) override {
    ++calls;
    return absl::UnimplementedError("DeleteExpiredDedup");
  }
  absl::Status Probe(int64_t /*timeout_ms*/) override {
    ++calls;
    return absl::UnimplementedError("Probe");
  }
  absl::StatusOr<std::vector<metrics::GaugeFamily>> MetricGauges() override {
    ++calls;
    return absl::UnimplementedError("MetricGauges");
  }
  absl::Status Heartbeat(const broker::BrokerInstanceRow& /*self*/) override {
    ++calls;
    return absl::UnimplementedError("Heartbeat");
  }
  absl::StatusOr<int64_t> RecordStats(int64_t /*interval_ms*/, int64_t /*keep_ms*/) override {
    ++calls;
    return absl::UnimplementedError("RecordStats");
  }
  absl::StatusOr<broker::ClusterStatusRow> ClusterStatus() override {
    ++calls;
    return absl::UnimplementedError("ClusterStatus");
  }
  absl::StatusOr<std::vector<broker::HistorySample>> History(const std::string& /*group*/,
                                                             const std::string& /*topic*/,
                                                             int64_t /*since_ms*/,
                                                             int64_t /*until_ms*/,
                                                             int64_t /*max_points*/) override {
    ++calls;
    return absl::UnimplementedError("History");
  }
};

}  // namespace ferry::test
