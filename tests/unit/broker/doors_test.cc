// The domain doors without a database: a request is validated and authorized before the store
// is reached, and a store failure never lets a request through.
#include <catch2/catch.hpp>

#include "broker/admin.h"
#include "broker/broker.h"
#include "support/unimplemented_store.h"

using namespace ferry;
using namespace ferry::broker;

namespace {

Caller As(const std::string& name, std::vector<GrantRecord> grants) {
  return Caller::Of(std::make_shared<const PrincipalRecord>(PrincipalRecord{name, grants, 0}));
}

struct Doors {
  test::UnimplementedStore store;
  Authorizer authorizer{store};
  Broker broker{store, authorizer, ReceiptCodec(std::string(32, 'k')), Limits{}};
  Admin admin{store, authorizer, Limits{}};
};

}  // namespace

TEST_CASE("doors: bad requests and missing permissions are refused before the store",
          "[unit][doors]") {
  Doors d;
  const Caller cart = As("cart", {{"produce", "topic", "orders"}, {"produce", "group", "cart"}});
  v1::ProduceRequest produce;
  v1::ProduceResponse produced;
  CHECK(d.broker.Produce(cart, produce, &produced).code() == absl::StatusCode::kInvalidArgument);
  produce.set_topic("payments");
  produce.add_messages()->set_payload("x");
  CHECK(d.broker.Produce(cart, produce, &produced).code() == absl::StatusCode::kPermissionDenied);
  produce.set_topic("orders");
  produce.mutable_transactional()->set_producer_group("shop");
  CHECK(d.broker.Produce(cart, produce, &produced).code() == absl::StatusCode::kPermissionDenied);

  CheckAnswer answer{"00000000-0000-0000-0000-000000000001", 7, "shop", TxnDecision::kCommit,
                     "test"};
  CHECK(d.broker.AnswerCheck(cart, answer).code() == absl::StatusCode::kPermissionDenied);
  v1::CheckSubscribe sub;
  sub.add_producer_groups("shop");
  CHECK(d.broker.SubscribeChecks(cart, sub).code() == absl::StatusCode::kPermissionDenied);

  v1::ResolveTransactionRequest resolve;
  v1::ResolveTransactionResponse resolved;
  resolve.set_transaction_id("not-a-uuid");
  CHECK(d.admin.ResolveTransaction(cart, resolve, &resolved).code() ==
        absl::StatusCode::kInvalidArgument);
  v1::GetClusterStatusResponse cluster;
  CHECK(d.admin.GetClusterStatus(cart, {}, &cluster).code() == absl::StatusCode::kPermissionDenied);
  v1::GetHistoryRequest history;
  v1::GetHistoryResponse points;
  history.set_group("billing");
  CHECK(d.admin.GetHistory(cart, history, &points).code() == absl::StatusCode::kPermissionDenied);
  history.clear_group();
  CHECK(d.admin.GetHistory(cart, history, &points).code() == absl::StatusCode::kInvalidArgument);
  v1::PeekMessagesRequest peek;
  v1::PeekMessagesResponse peeked;
  peek.set_topic("orders");
  peek.set_produced_after_unix_ms(2000);
  peek.set_produced_before_unix_ms(1000);
  CHECK(d.admin.PeekMessages(cart, peek, &peeked).code() == absl::StatusCode::kInvalidArgument);
  v1::RearmTransactionChecksRequest rearm;
  v1::RearmTransactionChecksResponse rearmed;
  rearm.set_transaction_id("00000000-0000-0000-0000-000000000001");
  rearm.set_reason(std::string(5000, 'x'));
  CHECK(d.admin.RearmTransactionChecks(cart, rearm, &rearmed).code() ==
        absl::StatusCode::kInvalidArgument);
  v1::GetTransactionRequest get_txn;
  v1::GetTransactionResponse got_txn;
  get_txn.set_transaction_id("not-a-uuid");
  CHECK(d.admin.GetTransaction(cart, get_txn, &got_txn).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(d.store.calls == 0);
  // WhoAmI needs no grant and reads nothing: the console asks it first.
  v1::WhoAmIResponse who;
  REQUIRE(d.admin.WhoAmI(cart, {}, &who).ok());
  CHECK(who.principal() == "cart");
  CHECK(who.auth_enabled());
  CHECK(who.grants_size() == 2);
}

TEST_CASE("doors: joining a transaction asks for its producer group - a failed lookup refuses",
          "[unit][doors]") {
  Doors d;
  const Caller cart = As("cart", {{"produce", "topic", "orders"}, {"produce", "group", "cart"}});
  v1::ProduceRequest produce;
  produce.set_topic("orders");
  produce.add_messages()->set_payload("x");
  produce.set_transaction_id("00000000-0000-0000-0000-000000000001");
  v1::ProduceResponse produced;
  absl::Status s = d.broker.Produce(cart, produce, &produced);
  CHECK(s.code() == absl::StatusCode::kUnimplemented);  // the lookup's error, not OK
  CHECK(d.store.calls == 1);
  CHECK(produced.results_size() == 0);
}

TEST_CASE("doors: redriving dead letters to a topic is producing to it - refused without the grant",
          "[unit][doors]") {
  Doors d;
  const Caller ops = As("ops", {{"admin", "group", "billing"}});
  v1::RedriveDeadLettersRequest redrive;
  redrive.set_group("billing");
  redrive.set_all(true);
  redrive.set_to_topic("payments");
  v1::RedriveDeadLettersResponse resp;
  absl::Status s = d.admin.RedriveDeadLetters(ops, redrive, &resp);
  CHECK(s.code() == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(s.message()) == "principal 'ops' lacks permission produce on topic 'payments'");
  CHECK(d.store.calls == 0);
  redrive.clear_to_topic();  // back to its own group: admin on the group is enough
  CHECK(d.admin.RedriveDeadLetters(ops, redrive, &resp).code() == absl::StatusCode::kUnimplemented);
  CHECK(d.store.calls == 1);
}
