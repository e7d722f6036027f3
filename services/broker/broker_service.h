// gRPC adapters for ferry.v1.Broker and ferry.v1.Admin (callback API, raw bytes: rpc.h parses
// them). Each handler is decode, call the domain door, encode: the doors (broker.h, admin.h)
// validate and authorize. Consume adds the long poll; CheckTransaction is TxnChecks' stream.
#pragma once

#include <grpcpp/grpcpp.h>

#include "broker/admin.h"
#include "broker/broker.h"
#include "broker/long_poll.h"
#include "broker/rpc.h"
#include "broker/txn_checks.h"
#include "ferry/v1/admin.grpc.pb.h"
#include "ferry/v1/broker.grpc.pb.h"

namespace ferry::broker {

// Service with every method of the list in its raw (ByteBuffer) callback form.
template <typename Base, template <class> class... Raw>
struct AllRaw;
template <typename Base>
struct AllRaw<Base> {
  using type = Base;
};
template <typename Base, template <class> class First, template <class> class... Rest>
struct AllRaw<Base, First, Rest...> {
  using type = First<typename AllRaw<Base, Rest...>::type>;
};

using RawBrokerService =
    AllRaw<v1::Broker::Service, v1::Broker::WithRawCallbackMethod_Produce,
           v1::Broker::WithRawCallbackMethod_Consume, v1::Broker::WithRawCallbackMethod_Commit,
           v1::Broker::WithRawCallbackMethod_ExtendLease,
           v1::Broker::WithRawCallbackMethod_BeginTransaction,
           v1::Broker::WithRawCallbackMethod_EndTransaction,
           v1::Broker::WithRawCallbackMethod_CheckTransaction>::type;
using RawAdminService = AllRaw<
    v1::Admin::Service, v1::Admin::WithRawCallbackMethod_CreateTopic,
    v1::Admin::WithRawCallbackMethod_ListTopics, v1::Admin::WithRawCallbackMethod_DescribeTopic,
    v1::Admin::WithRawCallbackMethod_DeleteTopic, v1::Admin::WithRawCallbackMethod_UpdateTopic,
    v1::Admin::WithRawCallbackMethod_PeekMessages, v1::Admin::WithRawCallbackMethod_GetMessage,
    v1::Admin::WithRawCallbackMethod_ListGroups, v1::Admin::WithRawCallbackMethod_DeleteGroup,
    v1::Admin::WithRawCallbackMethod_GetGroupLag, v1::Admin::WithRawCallbackMethod_CreateGroup,
    v1::Admin::WithRawCallbackMethod_UpdateGroup, v1::Admin::WithRawCallbackMethod_DescribeGroup,
    v1::Admin::WithRawCallbackMethod_ResetGroup, v1::Admin::WithRawCallbackMethod_ListDeadLetters,
    v1::Admin::WithRawCallbackMethod_RedriveDeadLetters,
    v1::Admin::WithRawCallbackMethod_PurgeDeadLetters,
    v1::Admin::WithRawCallbackMethod_CancelDelayed,
    v1::Admin::WithRawCallbackMethod_ListTransactions,
    v1::Admin::WithRawCallbackMethod_ResolveTransaction,
    v1::Admin::WithRawCallbackMethod_RearmTransactionChecks,
    v1::Admin::WithRawCallbackMethod_CreatePrincipal, v1::Admin::WithRawCallbackMethod_RotateToken,
    v1::Admin::WithRawCallbackMethod_DeletePrincipal,
    v1::Admin::WithRawCallbackMethod_ListPrincipals, v1::Admin::WithRawCallbackMethod_Grant,
    v1::Admin::WithRawCallbackMethod_Revoke, v1::Admin::WithRawCallbackMethod_WhoAmI,
    v1::Admin::WithRawCallbackMethod_GetClusterStatus, v1::Admin::WithRawCallbackMethod_GetHistory,
    v1::Admin::WithRawCallbackMethod_GetTransaction>::type;

class BrokerService final : public RawBrokerService {
 public:
  BrokerService(Broker& broker, rpc::Edge& edge, LongPoller& poller, TxnChecks& checks)
      : broker_(broker), edge_(edge), poller_(poller), checks_(checks) {}

  grpc::ServerUnaryReactor* Produce(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                    grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* Consume(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                    grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* Commit(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ExtendLease(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* BeginTransaction(grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* in,
                                             grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* EndTransaction(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* in,
                                           grpc::ByteBuffer* out) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* CheckTransaction(
      grpc::CallbackServerContext* ctx) override;

 private:
  struct ConsumeCall;
  void ConsumeAttempt(std::shared_ptr<ConsumeCall> call);

  Broker& broker_;
  rpc::Edge& edge_;
  LongPoller& poller_;
  TxnChecks& checks_;
};

class AdminService final : public RawAdminService {
 public:
  AdminService(Admin& admin, rpc::Edge& edge) : admin_(admin), edge_(edge) {}

  grpc::ServerUnaryReactor* CreateTopic(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ListTopics(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* DescribeTopic(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* in,
                                          grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* DeleteTopic(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* UpdateTopic(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* PeekMessages(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* in,
                                         grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* GetMessage(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ListGroups(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* DeleteGroup(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* GetGroupLag(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* CreateGroup(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* UpdateGroup(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* DescribeGroup(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* in,
                                          grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ResetGroup(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ListDeadLetters(grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* in,
                                            grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* RedriveDeadLetters(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* in,
                                               grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* PurgeDeadLetters(grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* in,
                                             grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* CancelDelayed(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* in,
                                          grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ListTransactions(grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* in,
                                             grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ResolveTransaction(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* in,
                                               grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* RearmTransactionChecks(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* in,
                                                   grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* CreatePrincipal(grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* in,
                                            grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* RotateToken(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in, grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* DeletePrincipal(grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* in,
                                            grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* ListPrincipals(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* in,
                                           grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* Grant(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                  grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* Revoke(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* GetClusterStatus(grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* in,
                                             grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* GetTransaction(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* in,
                                           grpc::ByteBuffer* out) override;
  grpc::ServerUnaryReactor* GetHistory(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override;

 private:
  Admin& admin_;
  rpc::Edge& edge_;
};

}  // namespace ferry::broker
