// Admin: the doors of ferry.v1.Admin's operations in the domain layer (topics, groups, lag,
// dead letters, delayed messages, transactions, principals). Like Broker's doors, each one
// validates, authorizes once and does the work through the Store; the gRPC AdminService, and
// later the console, call these and nothing below them.
//
// Permissions: admin on the topic (CreateTopic, Update/DeleteTopic, CancelDelayed) or on the
// group (Create/Update/DeleteGroup, ResetGroup, dead letters), consume on the group
// (GetGroupLag, DescribeGroup, GetHistory of a group), consume on the topic (DescribeTopic,
// PeekMessages, GetMessage: reading never consumes; GetHistory of a topic), consume on the
// cluster (GetClusterStatus), admin on the cluster (ListTransactions, principals), admin on the
// transaction's producer group (GetTransaction, ResolveTransaction, RearmTransactionChecks).
// ListTopics and ListGroups answer everyone with the topics and groups the caller holds any grant
// on (all of them with consume on the cluster); WhoAmI needs no grant. Admin implies consume and
// produce.
//
// Blocking (database I/O): call it from the executor. Thread-safe.
#pragma once

#include <absl/status/status.h>

#include "broker/auth.h"
#include "broker/store/store.h"
#include "broker/validation.h"
#include "ferry/v1/admin.pb.h"

namespace ferry::broker {

class Admin {
 public:
  Admin(Store& store, Authorizer& authorizer, Limits limits)
      : store_(store), authorizer_(authorizer), limits_(limits) {}

  absl::Status CreateTopic(const Caller& c, const v1::CreateTopicRequest& req,
                           v1::CreateTopicResponse* resp);
  absl::Status ListTopics(const Caller& c, const v1::ListTopicsRequest& req,
                          v1::ListTopicsResponse* resp);
  absl::Status DescribeTopic(const Caller& c, const v1::DescribeTopicRequest& req,
                             v1::DescribeTopicResponse* resp);
  absl::Status DeleteTopic(const Caller& c, const v1::DeleteTopicRequest& req,
                           v1::DeleteTopicResponse* resp);
  absl::Status UpdateTopic(const Caller& c, const v1::UpdateTopicRequest& req,
                           v1::UpdateTopicResponse* resp);
  absl::Status PeekMessages(const Caller& c, const v1::PeekMessagesRequest& req,
                            v1::PeekMessagesResponse* resp);
  absl::Status GetMessage(const Caller& c, const v1::GetMessageRequest& req,
                          v1::GetMessageResponse* resp);
  absl::Status ListGroups(const Caller& c, const v1::ListGroupsRequest& req,
                          v1::ListGroupsResponse* resp);
  absl::Status DeleteGroup(const Caller& c, const v1::DeleteGroupRequest& req,
                           v1::DeleteGroupResponse* resp);
  absl::Status GetGroupLag(const Caller& c, const v1::GetGroupLagRequest& req,
                           v1::GetGroupLagResponse* resp);
  absl::Status CreateGroup(const Caller& c, const v1::CreateGroupRequest& req,
                           v1::CreateGroupResponse* resp);
  absl::Status UpdateGroup(const Caller& c, const v1::UpdateGroupRequest& req,
                           v1::UpdateGroupResponse* resp);
  absl::Status DescribeGroup(const Caller& c, const v1::DescribeGroupRequest& req,
                             v1::DescribeGroupResponse* resp);
  absl::Status ResetGroup(const Caller& c, const v1::ResetGroupRequest& req,
                          v1::ResetGroupResponse* resp);
  absl::Status ListDeadLetters(const Caller& c, const v1::ListDeadLettersRequest& req,
                               v1::ListDeadLettersResponse* resp);
  absl::Status RedriveDeadLetters(const Caller& c, const v1::RedriveDeadLettersRequest& req,
                                  v1::RedriveDeadLettersResponse* resp);
  absl::Status PurgeDeadLetters(const Caller& c, const v1::PurgeDeadLettersRequest& req,
                                v1::PurgeDeadLettersResponse* resp);
  absl::Status CancelDelayed(const Caller& c, const v1::CancelDelayedRequest& req,
                             v1::CancelDelayedResponse* resp);
  absl::Status ListTransactions(const Caller& c, const v1::ListTransactionsRequest& req,
                                v1::ListTransactionsResponse* resp);
  absl::Status GetTransaction(const Caller& c, const v1::GetTransactionRequest& req,
                              v1::GetTransactionResponse* resp);
  // An administrator's decision; the only door that may decide a CHECK_EXHAUSTED transaction.
  absl::Status ResolveTransaction(const Caller& c, const v1::ResolveTransactionRequest& req,
                                  v1::ResolveTransactionResponse* resp);
  absl::Status RearmTransactionChecks(const Caller& c, const v1::RearmTransactionChecksRequest& req,
                                      v1::RearmTransactionChecksResponse* resp);
  absl::Status CreatePrincipal(const Caller& c, const v1::CreatePrincipalRequest& req,
                               v1::CreatePrincipalResponse* resp);
  absl::Status RotateToken(const Caller& c, const v1::RotateTokenRequest& req,
                           v1::RotateTokenResponse* resp);
  absl::Status DeletePrincipal(const Caller& c, const v1::DeletePrincipalRequest& req,
                               v1::DeletePrincipalResponse* resp);
  absl::Status ListPrincipals(const Caller& c, const v1::ListPrincipalsRequest& req,
                              v1::ListPrincipalsResponse* resp);
  absl::Status WhoAmI(const Caller& c, const v1::WhoAmIRequest& req, v1::WhoAmIResponse* resp);
  absl::Status GetClusterStatus(const Caller& c, const v1::GetClusterStatusRequest& req,
                                v1::GetClusterStatusResponse* resp);
  absl::Status GetHistory(const Caller& c, const v1::GetHistoryRequest& req,
                          v1::GetHistoryResponse* resp);
  // The stats sampling interval GetHistory reports (the broker's --stats-interval-ms).
  void set_stats_interval_ms(int64_t ms) { stats_interval_ms_ = ms; }
  absl::Status Grant(const Caller& c, const v1::GrantRequest& req, v1::GrantResponse* resp);
  absl::Status Revoke(const Caller& c, const v1::RevokeRequest& req, v1::RevokeResponse* resp);

 private:
  absl::Status Allow(const Caller& c, Permission p, Resource r) {
    return authorizer_.Check(c, {Need{p, std::move(r)}});
  }

  Store& store_;
  Authorizer& authorizer_;
  const Limits limits_;
  int64_t stats_interval_ms_ = 0;
};

}  // namespace ferry::broker
