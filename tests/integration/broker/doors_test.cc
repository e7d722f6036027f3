// Issue 14: one door per operation. Each test here failed before its fix: back-check answers
// that decided any PREPARED transaction, produces and commits into another producer group's
// transaction, requests that do not parse answered UNIMPLEMENTED with no message, limits that
// disagreed with the proto, and a transport that read 64 MiB requests whole.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "broker/server.h"
#include "client/client.h"
#include "support/broker_fixture.h"

using namespace ferry;
using test::BrokerFixture;
using test::G;
using test::NewPrincipal;
using test::WithToken;
using namespace std::chrono_literals;

namespace {

void SlowChecks(broker::BrokerOptions& o) {
  o.txn_check_after_ms = 200;
  o.txn_check_interval_ms = 400;
  o.txn_max_checks = 1000;  // never exhausted during a test
}

// A checker stream driven by the test: every response is queued for the test to look at.
class Checker {
 public:
  Checker(Client& client, const std::vector<std::string>& groups) {
    stream_ = client.broker().CheckTransaction(&ctx_);
    v1::CheckTransactionRequest sub;
    for (const auto& g : groups) sub.mutable_subscribe()->add_producer_groups(g);
    sub.mutable_subscribe()->set_checker_id("test");
    REQUIRE(stream_->Write(sub));
    reader_ = std::thread([this] {
      v1::CheckTransactionResponse r;
      while (stream_->Read(&r)) {
        std::lock_guard<std::mutex> lock(mu_);
        got_.push_back(r);
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      cv_.notify_all();
    });
  }
  ~Checker() {
    ctx_.TryCancel();
    reader_.join();
  }

  void Answer(const std::string& txn, uint64_t check_id, v1::TransactionDecision d) {
    v1::CheckTransactionRequest a;
    a.mutable_answer()->set_transaction_id(txn);
    a.mutable_answer()->set_check_id(check_id);
    a.mutable_answer()->set_decision(d);
    REQUIRE(stream_->Write(a));
  }

  // The next check (for `txn` if not empty), skipping other responses; nullopt after `wait`.
  std::optional<v1::TransactionCheck> NextCheck(const std::string& txn = "",
                                                std::chrono::milliseconds wait = 10s) {
    auto r = Next(
        [&](const v1::CheckTransactionResponse& x) {
          return x.has_check() && (txn.empty() || x.check().transaction_id() == txn);
        },
        wait);
    if (!r) return std::nullopt;
    return r->check();
  }
  std::optional<v1::CheckAnswerRejected> NextRejection(std::chrono::milliseconds wait = 10s) {
    auto r = Next([](const v1::CheckTransactionResponse& x) { return x.has_rejected(); }, wait);
    if (!r) return std::nullopt;
    return r->rejected();
  }

 private:
  template <typename Pred>
  std::optional<v1::CheckTransactionResponse> Next(Pred pred, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    const auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
      for (auto it = got_.begin(); it != got_.end(); ++it) {
        if (pred(*it)) {
          auto r = *it;
          got_.erase(it);
          return r;
        }
      }
      if (closed_ || cv_.wait_until(lock, until) == std::cv_status::timeout) return std::nullopt;
    }
  }

  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::CheckTransactionRequest, v1::CheckTransactionResponse>>
      stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::CheckTransactionResponse> got_;
  bool closed_ = false;
};

// Produces one transactional message for `group`; returns the transaction id.
std::string Transactional(Client& c, const std::string& topic, const std::string& group,
                          const std::string& payload) {
  v1::ProduceRequest req;
  req.set_topic(topic);
  req.add_messages()->set_payload(payload);
  req.mutable_transactional()->set_producer_group(group);
  auto r = c.Produce(req);
  REQUIRE(r.ok());
  return r->transaction_id();
}

std::string State(BrokerFixture& f, const std::string& txn) {
  return f.Query("SELECT state FROM transactions WHERE txn_id = '" + txn + "'")[0];
}

// Answers with COMMIT that the broker took (the audit trail's "answer" events).
std::string CommitAnswers(BrokerFixture& f, const std::string& txn) {
  return f.Query("SELECT count(*) FROM transaction_events WHERE txn_id = '" + txn +
                 "' AND kind = 'answer' AND detail LIKE 'COMMIT%'")[0];
}

}  // namespace

TEST_CASE(
    "issue 14: a back-check answer counts only for a check sent on its stream - forged ids, "
    "check 0, another group's live check, the stream's own check ids and a second answer are "
    "refused and change nothing",
    "[integration][txn][security]") {
  BrokerFixture f(SlowChecks);
  f.CreateTopic("orders", 1);
  const std::string victim = Transactional(*f.client, "orders", "victim", "victim");

  Checker attacker(*f.client, {"someone-else"});
  // Before any check was ever sent: a made-up check id, and check 0.
  attacker.Answer(victim, 999999, v1::TRANSACTION_COMMIT);
  auto refused = attacker.NextRejection();
  REQUIRE(refused);
  CHECK(refused->transaction_id() == victim);
  CHECK(refused->reason().find("was not sent on this stream") != std::string::npos);
  attacker.Answer(victim, 0, v1::TRANSACTION_COMMIT);
  REQUIRE(attacker.NextRejection());

  // The victim's own checker answers its first check UNKNOWN; the live check id is then
  // refused on the attacker's stream, and a second answer on the checker's own stream too.
  Checker own(*f.client, {"victim"});
  auto check = own.NextCheck(victim);
  REQUIRE(check);
  own.Answer(victim, check->check_id(), v1::TRANSACTION_UNKNOWN);
  attacker.Answer(victim, check->check_id(), v1::TRANSACTION_COMMIT);
  REQUIRE(attacker.NextRejection());
  own.Answer(victim, check->check_id(), v1::TRANSACTION_COMMIT);
  REQUIRE(own.NextRejection());

  // The stream's own check ids do not carry over to another transaction.
  const std::string mine = Transactional(*f.client, "orders", "someone-else", "mine");
  auto my_check = attacker.NextCheck(mine);
  REQUIRE(my_check);
  attacker.Answer(victim, my_check->check_id(), v1::TRANSACTION_COMMIT);
  REQUIRE(attacker.NextRejection());

  CHECK(State(f, victim) == "PREPARED");
  CHECK(CommitAnswers(f, victim) == "0");
  CHECK(f.Consume("billing", "orders", 10).messages_size() == 0);

  // The check it was sent, answered by its own stream, decides it.
  auto next = own.NextCheck(victim);
  REQUIRE(next);
  own.Answer(victim, next->check_id(), v1::TRANSACTION_COMMIT);
  for (int i = 0; i < 100 && State(f, victim) == "PREPARED"; ++i) std::this_thread::sleep_for(50ms);
  CHECK(State(f, victim) == "COMMITTED");
  auto got = f.Consume("billing", "orders", 10);
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == "victim");
}

TEST_CASE(
    "issue 14 with --auth: a checker may answer only its own group's checks - produce and commit "
    "into another group's transaction are PERMISSION_DENIED",
    "[integration][txn][security]") {
  broker::BrokerOptions opts;
  BrokerFixture f([&](broker::BrokerOptions& o) {
    SlowChecks(o);
    o.auth = true;
    o.auth_cache_ms = 0;
    opts = o;
  });
  auto root_token = broker::CreateAdmin(opts, "root");
  REQUIRE(root_token.ok());
  auto root = WithToken(f, *root_token);
  v1::TopicConfig t;
  t.set_name("orders");
  t.set_queues(1);
  REQUIRE(root->CreateTopic(t).ok());
  auto principal = [&](const std::string& name, const std::vector<v1::AccessGrant>& grants) {
    return WithToken(f, NewPrincipal(*root, name, grants));
  };
  auto shop = principal("shop", {G("produce", "topic", "orders"), G("produce", "group", "shop")});
  auto cart = principal("cart", {G("produce", "topic", "orders"), G("produce", "group", "cart"),
                                 G("consume", "topic", "orders"), G("consume", "group", "cart")});
  const std::string shops = Transactional(*shop, "orders", "shop", "shop's");

  // A checker of its own group answers for shop's transaction: with a made-up id, and with the
  // id of the check shop's own checker is answering.
  Checker shop_checker(*shop, {"shop"});
  auto live = shop_checker.NextCheck(shops);
  REQUIRE(live);
  Checker cart_checker(*cart, {"cart"});
  cart_checker.Answer(shops, 999999, v1::TRANSACTION_COMMIT);
  REQUIRE(cart_checker.NextRejection());
  cart_checker.Answer(shops, live->check_id(), v1::TRANSACTION_COMMIT);
  REQUIRE(cart_checker.NextRejection());
  CHECK(State(f, shops) == "PREPARED");
  CHECK(CommitAnswers(f, shops) == "0");

  // Produce into shop's transaction with rights on topic and group cart only.
  v1::ProduceRequest add;
  add.set_topic("orders");
  add.add_messages()->set_payload("cart's");
  add.set_transaction_id(shops);
  auto added = cart->Produce(add);
  CHECK(added.status().code() == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(added.status().message()).find("group 'shop'") != std::string::npos);
  CHECK(f.Query("SELECT count(*) FROM half_messages WHERE txn_id = '" + shops + "'")[0] == "1");
  CHECK(shop->Produce(add).ok());  // its own producer group may

  // Attaching ACKs to shop's transaction is acting as shop too.
  REQUIRE(root->Produce([] {
                v1::ProduceRequest p;
                p.set_topic("orders");
                p.add_messages()->set_payload("to consume");
                return p;
              }())
              .ok());
  v1::ConsumeRequest take;
  take.set_group("cart");
  take.set_topic("orders");
  auto taken = cart->Consume(take);
  REQUIRE(taken.ok());
  REQUIRE(taken->messages_size() == 1);
  v1::CommitRequest attach;
  attach.set_group("cart");
  attach.set_transaction_id(shops);
  attach.add_entries()->set_receipt(taken->messages(0).receipt());
  auto attached = cart->Commit(attach);
  CHECK(attached.status().code() == absl::StatusCode::kPermissionDenied);
  CHECK(f.Query("SELECT count(*) FROM txn_acks")[0] == "0");

  // shop's own checker still decides it.
  shop_checker.Answer(shops, live->check_id(), v1::TRANSACTION_ROLLBACK);
  for (int i = 0; i < 100 && State(f, shops) == "PREPARED"; ++i) std::this_thread::sleep_for(50ms);
  CHECK(State(f, shops) == "ROLLED_BACK");
}

namespace {

// A raw call: `body` as the request bytes of `method`.
grpc::Status RawCall(BrokerFixture& f, const std::string& method, const std::string& body) {
  grpc::GenericStub stub(grpc::CreateChannel(f.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  grpc::Slice slice(body);
  grpc::ByteBuffer request(&slice, 1), reply;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &reply, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    status = std::move(s);
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  return status;
}

}  // namespace

TEST_CASE(
    "issue 14: a request that does not parse is INVALID_ARGUMENT naming the problem - nothing "
    "changes",
    "[integration][bad-input]") {
  BrokerFixture f;
  f.CreateTopic("orders", 1);
  const std::string before = f.Query("SELECT count(*) FROM messages")[0];

  grpc::Status s = RawCall(f, "/ferry.v1.Broker/Produce", "\xff\xff\xff");
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.error_message().find("not a valid ferry.v1.ProduceRequest") != std::string::npos);

  v1::ProduceRequest ok;
  ok.set_topic("orders");
  ok.add_messages()->set_payload("x");
  std::string bytes = ok.SerializeAsString();
  s = RawCall(f, "/ferry.v1.Broker/Produce", bytes.substr(0, bytes.size() - 2));  // truncated
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.error_message().find("truncated") != std::string::npos);

  // Invalid UTF-8 in a string field, named with its path.
  v1::ProduceRequest bad_key = ok;
  bad_key.mutable_messages(0)->set_key("ok");
  bytes = bad_key.SerializeAsString();
  bytes.replace(bytes.find("ok"), 2, "\xc3\x28");
  s = RawCall(f, "/ferry.v1.Broker/Produce", bytes);
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.error_message().find("messages[0].key is not valid UTF-8") != std::string::npos);

  v1::CreateTopicRequest topic;
  topic.mutable_topic()->set_name("zz");
  bytes = topic.SerializeAsString();
  bytes.replace(bytes.find("zz"), 2, "\xff\xfe");
  s = RawCall(f, "/ferry.v1.Admin/CreateTopic", bytes);
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.error_message().find("topic.name is not valid UTF-8") != std::string::npos);

  for (const char* m :
       {"/ferry.v1.Broker/Consume", "/ferry.v1.Broker/Commit", "/ferry.v1.Broker/EndTransaction",
        "/ferry.v1.Admin/ListTopics", "/ferry.v1.Admin/ResolveTransaction"}) {
    s = RawCall(f, m, "\x0a\xff");
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_FALSE(s.error_message().empty());
  }
  CHECK(f.Query("SELECT count(*) FROM messages")[0] == before);
  CHECK(f.Query("SELECT count(*) FROM topics")[0] == "1");
}

TEST_CASE(
    "issue 14: limits as the proto says - retry delay at most 12 h - ExtendLease needs a "
    "visibility timeout",
    "[integration][bad-input]") {
  BrokerFixture f;
  f.CreateTopic("orders", 1);
  f.Produce("orders", {"a", "b"});
  auto got = f.Consume("g", "orders", 2);
  REQUIRE(got.messages_size() == 2);

  v1::CommitRequest commit;
  commit.set_group("g");
  auto* e = commit.add_entries();
  e->set_receipt(got.messages(0).receipt());
  e->set_outcome(v1::RETRY);
  e->set_retry_delay_ms(43200001);
  auto r = f.client->Commit(commit);
  CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(r.status().message()) ==
        "entries[0].retry_delay_ms is 43200001; at most 43200000 (12 h)");
  e->set_retry_delay_ms(43200000);
  r = f.client->Commit(commit);
  REQUIRE(r.ok());
  CHECK(r->results(0).status() == v1::RETRY_SCHEDULED);

  v1::ExtendLeaseRequest ext;
  ext.set_group("g");
  ext.add_receipts(got.messages(1).receipt());
  auto x = f.client->ExtendLease(ext);  // visibility_timeout_ms 0
  CHECK(x.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(x.status().message()).find("visibility_timeout_ms is 0; allowed 1000 to") !=
        std::string::npos);
  ext.set_visibility_timeout_ms(1000);
  x = f.client->ExtendLease(ext);
  REQUIRE(x.ok());
  CHECK(x->results(0).status() == v1::LEASE_EXTENDED);
}

TEST_CASE(
    "issue 14: the transport refuses requests over 17 MiB before parsing them - 16 MiB of "
    "content still goes through",
    "[integration][bad-input]") {
  BrokerFixture f([](broker::BrokerOptions& o) { o.max_message_bytes = 4u << 20; });
  f.CreateTopic("orders", 1);
  // 16 MiB of payloads in 4 messages: the documented most.
  v1::ProduceRequest big;
  big.set_topic("orders");
  for (int i = 0; i < 4; ++i) big.add_messages()->set_payload(std::string(4u << 20, 'x'));
  grpc::Status s = RawCall(f, "/ferry.v1.Broker/Produce", big.SerializeAsString());
  INFO(s.error_message());
  CHECK(s.ok());
  // 18 MiB: refused by the transport, whatever the bytes.
  s = RawCall(f, "/ferry.v1.Broker/Produce", std::string(18u << 20, 'x'));
  CHECK(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(f.Query("SELECT count(*) FROM messages")[0] == "4");
}

TEST_CASE(
    "issue 14: Commit - ExtendLease - ACKs attached to a transaction classify receipts "
    "alike - another group's receipt is INVALID_RECEIPT - a deleted topic's is "
    "TOPIC_NOT_FOUND",
    "[integration][delivery]") {
  BrokerFixture f;
  f.CreateTopic("orders", 1);
  f.Produce("orders", {"a"});
  const std::string receipt = f.Consume("g1", "orders", 1).messages(0).receipt();
  v1::BeginTransactionRequest begin;
  begin.set_producer_group("p");
  v1::BeginTransactionResponse began;
  {
    grpc::ClientContext ctx;
    REQUIRE(f.client->broker().BeginTransaction(&ctx, begin, &began).ok());
  }
  // The three paths, each with one receipt for `group`; the status of that receipt.
  auto statuses = [&](const std::string& group) {
    std::vector<v1::CommitStatus> out;
    v1::CommitRequest commit;
    commit.set_group(group);
    commit.add_entries()->set_receipt(receipt);
    commit.mutable_entries(0)->set_outcome(v1::RETRY);  // not applied: the receipt is refused
    auto settled = f.client->Commit(commit);
    REQUIRE(settled.ok());
    out.push_back(settled->results(0).status());
    v1::ExtendLeaseRequest ext;
    ext.set_group(group);
    ext.add_receipts(receipt);
    ext.set_visibility_timeout_ms(5000);
    auto extended = f.client->ExtendLease(ext);
    REQUIRE(extended.ok());
    out.push_back(extended->results(0).status());
    commit.set_transaction_id(began.transaction_id());
    commit.mutable_entries(0)->set_outcome(v1::ACK);
    auto attached = f.client->Commit(commit);
    REQUIRE(attached.ok());
    out.push_back(attached->results(0).status());
    return out;
  };
  const std::vector<v1::CommitStatus> invalid(3, v1::INVALID_RECEIPT);
  CHECK(statuses("no-such-group") == invalid);  // g1 exists: the receipt is another group's
  f.Consume("g2", "orders", 1);                 // g2 exists and has its own position
  CHECK(statuses("g2") == invalid);
  REQUIRE(f.client->DeleteTopic("orders").ok());
  const std::vector<v1::CommitStatus> gone(3, v1::TOPIC_NOT_FOUND);
  CHECK(statuses("g1") == gone);
}

TEST_CASE(
    "with --auth the console's reads need their grants (cluster status - history - a "
    "transaction's contents - a reset preview) and lists show only what the caller holds a grant "
    "on",
    "[integration][security][console]") {
  broker::BrokerOptions opts;
  BrokerFixture f([&](broker::BrokerOptions& o) {
    o.auth = true;
    o.auth_cache_ms = 0;
    opts = o;
  });
  auto root_token = broker::CreateAdmin(opts, "root");
  REQUIRE(root_token.ok());
  auto root = WithToken(f, *root_token);
  for (const char* name : {"orders", "secret"}) {
    v1::TopicConfig t;
    t.set_name(name);
    t.set_queues(1);
    REQUIRE(root->CreateTopic(t).ok());
  }
  v1::ProduceRequest one;
  one.set_topic("orders");
  one.add_messages()->set_payload("x");
  REQUIRE(root->Produce(one).ok());
  v1::ConsumeRequest take;
  take.set_group("billing");
  take.set_topic("orders");
  take.set_max_messages(1);
  auto got = root->Consume(take);
  REQUIRE(got.ok());
  REQUIRE(root->Ack("billing", {got->messages(0).receipt()}).ok());
  const std::string txn = Transactional(*root, "orders", "shop", "held");
  auto viewer = WithToken(
      f, NewPrincipal(*root, "viewer",
                      {G("consume", "topic", "orders"), G("consume", "group", "billing")}));
  auto denied = [](const grpc::Status& s) {
    return s.error_code() == grpc::StatusCode::PERMISSION_DENIED;
  };
  auto call = [&](auto method, const auto& req, auto* resp) {
    grpc::ClientContext ctx;
    return (viewer->admin().*method)(&ctx, req, resp);
  };

  v1::WhoAmIResponse who;
  REQUIRE(call(&v1::Admin::Stub::WhoAmI, v1::WhoAmIRequest{}, &who).ok());
  CHECK(who.principal() == "viewer");
  CHECK(who.grants_size() == 2);
  v1::GetClusterStatusResponse cluster;
  CHECK(denied(call(&v1::Admin::Stub::GetClusterStatus, v1::GetClusterStatusRequest{}, &cluster)));
  v1::GetTransactionRequest get_txn;
  get_txn.set_transaction_id(txn);
  v1::GetTransactionResponse contents;
  CHECK(denied(call(&v1::Admin::Stub::GetTransaction, get_txn, &contents)));
  CHECK(contents.messages_size() == 0);
  v1::GetHistoryRequest history;
  history.set_topic("secret");
  v1::GetHistoryResponse points;
  CHECK(denied(call(&v1::Admin::Stub::GetHistory, history, &points)));
  history.set_topic("orders");
  CHECK(call(&v1::Admin::Stub::GetHistory, history, &points).ok());
  v1::ResetGroupRequest reset;
  reset.set_group("billing");
  reset.set_topic("orders");
  reset.set_position(v1::START_POSITION_EARLIEST);
  reset.set_dry_run(true);
  v1::ResetGroupResponse moved;
  CHECK(denied(call(&v1::Admin::Stub::ResetGroup, reset, &moved)));
  reset.set_dry_run(false);
  CHECK(denied(call(&v1::Admin::Stub::ResetGroup, reset, &moved)));
  auto lag = root->GetGroupLag("billing", "orders");
  REQUIRE(lag.ok());
  CHECK(lag->queues(0).delivered_offset() == 1);  // nothing moved
  v1::ListTopicsResponse topics;
  REQUIRE(call(&v1::Admin::Stub::ListTopics, v1::ListTopicsRequest{}, &topics).ok());
  REQUIRE(topics.topics_size() == 1);
  CHECK(topics.topics(0).name() == "orders");
  v1::ListGroupsResponse groups;
  REQUIRE(call(&v1::Admin::Stub::ListGroups, v1::ListGroupsRequest{}, &groups).ok());
  REQUIRE(groups.groups_size() == 1);
  CHECK(groups.groups(0).group().name() == "billing");

  // Granted: consume on the cluster shows the cluster; admin on shop shows its transaction.
  v1::GrantRequest grant;
  grant.set_principal("viewer");
  *grant.mutable_grant() = G("consume", "cluster", "*");
  grpc::ClientContext gctx;
  v1::GrantResponse granted;
  REQUIRE(root->admin().Grant(&gctx, grant, &granted).ok());
  *grant.mutable_grant() = G("admin", "group", "shop");
  grpc::ClientContext gctx2;
  REQUIRE(root->admin().Grant(&gctx2, grant, &granted).ok());
  REQUIRE(call(&v1::Admin::Stub::GetClusterStatus, v1::GetClusterStatusRequest{}, &cluster).ok());
  CHECK(cluster.database().server_version().rfind("15", 0) == 0);
  REQUIRE(call(&v1::Admin::Stub::GetTransaction, get_txn, &contents).ok());
  REQUIRE(contents.messages_size() == 1);
  CHECK(contents.messages(0).payload() == "held");
  CHECK(contents.transaction().state() == v1::TXN_PREPARED);
}
