// gRPC adapters for ferry.v1.Broker and ferry.v1.Admin (callback API). Each handler validates
// the request, hands the blocking work to the executor and finishes the reactor exactly once,
// from the executor (or at once when validation fails or the executor is full).
#pragma once

#include <grpcpp/grpcpp.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/long_poll.h"
#include "broker/store/pg_auth_store.h"
#include "broker/txn_checks.h"
#include "common/executor.h"
#include "ferry/v1/admin.grpc.pb.h"
#include "ferry/v1/broker.grpc.pb.h"

namespace ferry::broker {

class BrokerService final : public v1::Broker::CallbackService {
 public:
  // `auth`: nullptr when --auth is off.
  BrokerService(Broker& broker, Executor& executor, LongPoller& poller, TxnChecks& checks,
                Authorizer* auth)
      : broker_(broker), executor_(executor), poller_(poller), checks_(checks), auth_(auth) {}

  grpc::ServerUnaryReactor* Produce(grpc::CallbackServerContext* ctx,
                                    const v1::ProduceRequest* req,
                                    v1::ProduceResponse* resp) override;
  grpc::ServerUnaryReactor* Consume(grpc::CallbackServerContext* ctx,
                                    const v1::ConsumeRequest* req,
                                    v1::ConsumeResponse* resp) override;
  grpc::ServerUnaryReactor* Commit(grpc::CallbackServerContext* ctx, const v1::CommitRequest* req,
                                   v1::CommitResponse* resp) override;
  grpc::ServerUnaryReactor* ExtendLease(grpc::CallbackServerContext* ctx,
                                        const v1::ExtendLeaseRequest* req,
                                        v1::ExtendLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* BeginTransaction(grpc::CallbackServerContext* ctx,
                                             const v1::BeginTransactionRequest* req,
                                             v1::BeginTransactionResponse* resp) override;
  grpc::ServerUnaryReactor* EndTransaction(grpc::CallbackServerContext* ctx,
                                           const v1::EndTransactionRequest* req,
                                           v1::EndTransactionResponse* resp) override;
  grpc::ServerBidiReactor<v1::CheckTransactionRequest, v1::CheckTransactionResponse>*
  CheckTransaction(grpc::CallbackServerContext* ctx) override;

 private:
  struct ConsumeCall;
  void ConsumeAttempt(std::shared_ptr<ConsumeCall> call);

  Broker& broker_;
  Executor& executor_;
  LongPoller& poller_;
  TxnChecks& checks_;
  Authorizer* const auth_;
};

class AdminService final : public v1::Admin::CallbackService {
 public:
  AdminService(PgStore& store, PgAuthStore& auth_store, Broker& broker, Executor& executor,
                Authorizer* auth)
      : store_(store),
        auth_store_(auth_store),
        broker_(broker),
        limits_(broker.limits()),
        executor_(executor),
        auth_(auth) {}

  grpc::ServerUnaryReactor* CreateTopic(grpc::CallbackServerContext* ctx,
                                        const v1::CreateTopicRequest* req,
                                        v1::CreateTopicResponse* resp) override;
  grpc::ServerUnaryReactor* ListTopics(grpc::CallbackServerContext* ctx,
                                       const v1::ListTopicsRequest* req,
                                       v1::ListTopicsResponse* resp) override;
  grpc::ServerUnaryReactor* DescribeTopic(grpc::CallbackServerContext* ctx,
                                          const v1::DescribeTopicRequest* req,
                                          v1::DescribeTopicResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteTopic(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteTopicRequest* req,
                                        v1::DeleteTopicResponse* resp) override;
  grpc::ServerUnaryReactor* GetGroupLag(grpc::CallbackServerContext* ctx,
                                        const v1::GetGroupLagRequest* req,
                                        v1::GetGroupLagResponse* resp) override;
  grpc::ServerUnaryReactor* CreateGroup(grpc::CallbackServerContext* ctx,
                                        const v1::CreateGroupRequest* req,
                                        v1::CreateGroupResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateGroup(grpc::CallbackServerContext* ctx,
                                        const v1::UpdateGroupRequest* req,
                                        v1::UpdateGroupResponse* resp) override;
  grpc::ServerUnaryReactor* DescribeGroup(grpc::CallbackServerContext* ctx,
                                          const v1::DescribeGroupRequest* req,
                                          v1::DescribeGroupResponse* resp) override;
  grpc::ServerUnaryReactor* ResetGroup(grpc::CallbackServerContext* ctx,
                                       const v1::ResetGroupRequest* req,
                                       v1::ResetGroupResponse* resp) override;
  grpc::ServerUnaryReactor* ListDeadLetters(grpc::CallbackServerContext* ctx,
                                            const v1::ListDeadLettersRequest* req,
                                            v1::ListDeadLettersResponse* resp) override;
  grpc::ServerUnaryReactor* RedriveDeadLetters(grpc::CallbackServerContext* ctx,
                                               const v1::RedriveDeadLettersRequest* req,
                                               v1::RedriveDeadLettersResponse* resp) override;
  grpc::ServerUnaryReactor* PurgeDeadLetters(grpc::CallbackServerContext* ctx,
                                             const v1::PurgeDeadLettersRequest* req,
                                             v1::PurgeDeadLettersResponse* resp) override;
  grpc::ServerUnaryReactor* CancelDelayed(grpc::CallbackServerContext* ctx,
                                          const v1::CancelDelayedRequest* req,
                                          v1::CancelDelayedResponse* resp) override;
  grpc::ServerUnaryReactor* ListTransactions(grpc::CallbackServerContext* ctx,
                                             const v1::ListTransactionsRequest* req,
                                             v1::ListTransactionsResponse* resp) override;
  grpc::ServerUnaryReactor* ResolveTransaction(grpc::CallbackServerContext* ctx,
                                               const v1::ResolveTransactionRequest* req,
                                               v1::ResolveTransactionResponse* resp) override;
  grpc::ServerUnaryReactor* RearmTransactionChecks(
      grpc::CallbackServerContext* ctx, const v1::RearmTransactionChecksRequest* req,
      v1::RearmTransactionChecksResponse* resp) override;

  grpc::ServerUnaryReactor* CreatePrincipal(grpc::CallbackServerContext* ctx,
                                            const v1::CreatePrincipalRequest* req,
                                            v1::CreatePrincipalResponse* resp) override;
  grpc::ServerUnaryReactor* RotateToken(grpc::CallbackServerContext* ctx,
                                        const v1::RotateTokenRequest* req,
                                        v1::RotateTokenResponse* resp) override;
  grpc::ServerUnaryReactor* DeletePrincipal(grpc::CallbackServerContext* ctx,
                                            const v1::DeletePrincipalRequest* req,
                                            v1::DeletePrincipalResponse* resp) override;
  grpc::ServerUnaryReactor* ListPrincipals(grpc::CallbackServerContext* ctx,
                                           const v1::ListPrincipalsRequest* req,
                                           v1::ListPrincipalsResponse* resp) override;
  grpc::ServerUnaryReactor* Grant(grpc::CallbackServerContext* ctx, const v1::GrantRequest* req,
                                  v1::GrantResponse* resp) override;
  grpc::ServerUnaryReactor* Revoke(grpc::CallbackServerContext* ctx, const v1::RevokeRequest* req,
                                   v1::RevokeResponse* resp) override;

 private:
  PgStore& store_;
  PgAuthStore& auth_store_;
  Broker& broker_;
  const Limits limits_;
  Executor& executor_;
  Authorizer* const auth_;
};

}  // namespace ferry::broker
