// The gRPC bad-input suite: every malformed request gets its documented status code and a
// message naming the field, and afterwards the stored data is exactly what it was. Plus the
// abuse cases: forged and foreign receipts, unknown transactions, abandoned streams, checkers
// that never answer, and thousands of long polls while another client works normally.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <functional>
#include <pqxx/pqxx>
#include <thread>

#include "broker/server.h"
#include "client/client.h"
#include "common/metrics.h"
#include "common/status.h"
#include "support/broker_fixture.h"
#include "support/scrape.h"

using namespace ferry;
using test::BrokerFixture;

namespace {

// What is stored, as one string: any change shows.
std::string Snapshot(BrokerFixture& f) {
  return f.Query(
      "SELECT concat_ws(' ', (SELECT count(*) FROM messages), (SELECT count(*) FROM topics),"
      " (SELECT count(*) FROM consumer_groups), (SELECT count(*) FROM group_in_flight),"
      " (SELECT count(*) FROM transactions), (SELECT count(*) FROM dead_letters),"
      " (SELECT count(*) FROM delayed_messages), (SELECT count(*) FROM dedup),"
      " (SELECT string_agg(ferry_queue_end(topic_id, queue_id)::text, ','"
      "  ORDER BY topic_id, queue_id) FROM queues),"
      " (SELECT string_agg(ferry_group_delivered(group_id, topic_id, queue_id)::text, ','"
      "  ORDER BY group_id, topic_id, queue_id) FROM group_queues))")[0];
}

struct Case {
  std::string what;
  std::function<absl::Status()> call;
  absl::StatusCode code;
  std::string says;  // a part of the message
};

v1::ProduceRequest OneMessage(const std::string& topic, const std::string& payload = "x") {
  v1::ProduceRequest r;
  r.set_topic(topic);
  r.add_messages()->set_payload(payload);
  return r;
}

absl::Status EndTransaction(Client& c, const v1::EndTransactionRequest& end) {
  grpc::ClientContext ctx;
  v1::EndTransactionResponse resp;
  grpc::Status s = c.broker().EndTransaction(&ctx, end, &resp);
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

v1::ConsumeRequest ConsumeOf(const std::string& group, const std::string& topic) {
  v1::ConsumeRequest r;
  r.set_group(group);
  r.set_topic(topic);
  return r;
}

// A field of /proc/self/status as a number ("Threads:", "VmRSS:" in kB).
long ProcStatus(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
  }
  return -1L;
}

// A channel whose transport does not read ahead: without this, gRPC's client keeps taking data
// into its own buffers (its flow-control window grows), and the broker never sees a slow reader.
std::shared_ptr<grpc::Channel> NonReadingChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8192);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// One asynchronous Consume (30 s deadline), finished on `cq` with itself as the tag.
struct AsyncConsume {
  AsyncConsume(v1::Broker::Stub& stub, const v1::ConsumeRequest& req, grpc::CompletionQueue& cq) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    rpc = stub.AsyncConsume(&ctx, req, &cq);
    rpc->Finish(&resp, &status, this);
  }
  grpc::ClientContext ctx;
  v1::ConsumeResponse resp;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::ConsumeResponse>> rpc;
};

// A case's call: one Admin method (Req and Resp deduced from the stub's member) with `req`.
template <typename Req, typename Resp>
std::function<absl::Status()> AdminCall(
    Client& c, grpc::Status (v1::Admin::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
    const Req& req) {
  return [&c, method, req] {
    grpc::ClientContext ctx;
    Resp resp;
    return ferry::FromGrpcStatus((c.admin().*method)(&ctx, req, &resp));
  };
}

}  // namespace

TEST_CASE(
    "bad input suite: each malformed request gets its status and a precise message - "
    "stored data is unchanged",
    "[integration][bad-input]") {
  BrokerFixture f;
  f.CreateTopic("t", 2);
  f.Produce("t", {"a", "b"}, "k");
  auto got = f.Consume("g", "t", 1);  // a lease and a group exist too
  REQUIRE(got.messages_size() == 1);
  const std::string before = Snapshot(f);
  Client& c = *f.client;
  auto produce = [&](v1::ProduceRequest r) { return [&c, r] { return c.Produce(r).status(); }; };
  auto consume = [&](v1::ConsumeRequest r) { return [&c, r] { return c.Consume(r).status(); }; };
  auto commit = [&](v1::CommitRequest r) { return [&c, r] { return c.Commit(r).status(); }; };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;

  std::vector<Case> cases;
  cases.push_back({"empty topic", produce(OneMessage("")), kInvalid, "topic is required"});
  cases.push_back(
      {"129-character topic", produce(OneMessage(std::string(129, 'a'))), kInvalid, "at most 128"});
  cases.push_back({"SQL in a topic name", produce(OneMessage("t'; DROP TABLE messages; --")),
                   kInvalid, "may only contain"});
  cases.push_back(
      {"non-ASCII topic", produce(OneMessage("t\xc3\xb8pic")), kInvalid, "may only contain"});
  cases.push_back(
      {"unknown topic", produce(OneMessage("nope")), absl::StatusCode::kNotFound, "nope"});
  {
    v1::ProduceRequest r;
    r.set_topic("t");
    cases.push_back({"no messages", produce(r), kInvalid, "at least one message"});
    for (int i = 0; i < 1001; ++i) r.add_messages()->set_payload("x");
    cases.push_back({"1001 messages", produce(r), kInvalid, "1001 messages"});
  }
  cases.push_back({"payload over the limit",
                   produce(OneMessage("t", std::string((1 << 20) + 1, 'x'))),
                   absl::StatusCode::kResourceExhausted, "messages[0]"});
  {
    v1::ProduceRequest r = OneMessage("t");
    r.mutable_messages(0)->set_key(std::string("a\0b", 3));
    cases.push_back({"NUL in a key", produce(r), kInvalid, "NUL"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    r.mutable_messages(0)->set_key(std::string(2000, 'k'));
    cases.push_back({"2000-byte key", produce(r), kInvalid, ".key is 2000"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    (*r.mutable_messages(0)->mutable_headers())[""] = "v";
    cases.push_back({"empty header name", produce(r), kInvalid, "header name is empty"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    for (int i = 0; i < 65; ++i)
      (*r.mutable_messages(0)->mutable_headers())["h" + std::to_string(i)] = "v";
    cases.push_back({"65 headers", produce(r), kInvalid, ".headers: 65"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    r.mutable_messages(0)->set_delay_ms(UINT64_MAX);
    cases.push_back({"delay of 2^64-1 ms", produce(r), kInvalid, "ten years"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    r.mutable_messages(0)->set_delay_ms(10);
    r.mutable_messages(0)->mutable_deliver_at()->set_seconds(1);
    cases.push_back({"both delay_ms and deliver_at", produce(r), kInvalid, "delay"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    r.mutable_messages(0)->set_dedup_id(std::string(300, 'd'));
    cases.push_back({"300-byte dedup_id", produce(r), kInvalid, "dedup_id is 300"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    r.set_transaction_id("not-a-uuid");
    cases.push_back({"malformed transaction_id", produce(r), kInvalid, "transaction_id"});
  }
  {
    v1::ProduceRequest r = OneMessage("t");
    r.set_transaction_id("3f0c7a2e-1b2c-4d5e-8f90-123456789abc");
    cases.push_back(
        {"unknown transaction_id", produce(r), absl::StatusCode::kNotFound, "3f0c7a2e"});
  }
  {
    v1::ConsumeRequest r = ConsumeOf("g", "t");
    r.set_max_messages(100000);
    cases.push_back({"max_messages 100000", consume(r), kInvalid, "max_messages is 100000"});
    r = ConsumeOf("g", "t");
    r.set_max_wait_ms(1000000000);
    cases.push_back({"max_wait_ms 10^9", consume(r), kInvalid, "max_wait_ms is 1000000000"});
    r = ConsumeOf("g", "t");
    r.set_visibility_timeout_ms(UINT32_MAX);
    cases.push_back({"visibility of 2^32-1 ms", consume(r), kInvalid, "visibility_timeout_ms"});
    r = ConsumeOf("g", "t");
    r.set_start_position(static_cast<v1::StartPosition>(77));
    cases.push_back({"unknown start position", consume(r), kInvalid, "start_position"});
    cases.push_back(
        {"SQL in a group name", consume(ConsumeOf("g' OR '1'='1", "t")), kInvalid, "group"});
    cases.push_back({"empty group", consume(ConsumeOf("", "t")), kInvalid, "group is required"});
  }
  {
    v1::CommitRequest r;
    r.set_group("g");
    cases.push_back({"commit of nothing", commit(r), kInvalid, "at least one receipt"});
    auto* e = r.add_entries();
    e->set_receipt(got.messages(0).receipt());
    e->set_outcome(static_cast<v1::CommitOutcome>(99));
    cases.push_back({"unknown commit outcome", commit(r), kInvalid, "entries[0]"});
    e->set_outcome(v1::RETRY);
    e->set_retry_delay_ms(UINT32_MAX);
    cases.push_back({"retry delay of 2^32-1 ms", commit(r), kInvalid, "retry_delay_ms"});
    e->set_outcome(v1::DEAD_LETTER);
    e->clear_retry_delay_ms();
    e->set_reason(std::string(5000, 'r'));
    cases.push_back({"5000-byte dead-letter reason", commit(r), kInvalid, "reason"});
  }
  {
    v1::EndTransactionRequest end;
    end.set_transaction_id("3f0c7a2e-1b2c-4d5e-8f90-123456789abc");
    end.set_decision(v1::TRANSACTION_COMMIT);
    cases.push_back({"EndTransaction of an unknown id",
                     [&c, end] { return EndTransaction(c, end); }, absl::StatusCode::kNotFound,
                     "3f0c7a2e"});
    end.set_decision(v1::TRANSACTION_DECISION_UNSPECIFIED);
    cases.push_back({"EndTransaction without a decision",
                     [&c, end] { return EndTransaction(c, end); }, kInvalid, "decision"});
  }
  {
    v1::TopicConfig t;
    t.set_name("new");
    t.set_queues(100000);
    cases.push_back({"100000 queues", [&c, t] { return c.CreateTopic(t).status(); }, kInvalid,
                     "topic.queues is 100000"});
    t.set_queues(1);
    t.set_retention_ms(UINT64_MAX);
    cases.push_back({"retention of 2^64-1 ms", [&c, t] { return c.CreateTopic(t).status(); },
                     kInvalid, "retention_ms"});
  }
  {
    v1::UpdateTopicRequest u;
    u.set_name("t");
    cases.push_back({"UpdateTopic with nothing to change",
                     AdminCall(c, &v1::Admin::Stub::UpdateTopic, u), kInvalid,
                     "nothing to change"});
    u.set_retention_ms(0);
    cases.push_back({"UpdateTopic retention 0", AdminCall(c, &v1::Admin::Stub::UpdateTopic, u),
                     kInvalid, "retention_ms is 0"});
    u.set_name("nosuch");
    u.set_retention_ms(1000);
    cases.push_back({"UpdateTopic of an unknown topic",
                     AdminCall(c, &v1::Admin::Stub::UpdateTopic, u), absl::StatusCode::kNotFound,
                     "nosuch"});
    v1::PeekMessagesRequest p;
    p.set_topic("t");
    p.set_max_messages(5000);
    cases.push_back({"PeekMessages of 5000", AdminCall(c, &v1::Admin::Stub::PeekMessages, p),
                     kInvalid, "max_messages is 5000"});
    p.set_max_messages(10);
    p.set_from_offset(UINT64_MAX);
    cases.push_back({"PeekMessages from 2^64-1", AdminCall(c, &v1::Admin::Stub::PeekMessages, p),
                     kInvalid, "from_offset"});
    p.set_from_offset(0);
    p.set_queue(7);
    cases.push_back({"PeekMessages of queue 7 of 2",
                     AdminCall(c, &v1::Admin::Stub::PeekMessages, p), kInvalid, "no queue 7"});
    p.set_queue(0);
    p.set_key(std::string(2000, 'k'));
    cases.push_back({"PeekMessages by a 2000-byte key",
                     AdminCall(c, &v1::Admin::Stub::PeekMessages, p), kInvalid, "key is 2000"});
    p.clear_key();
    p.set_produced_after_unix_ms(2000);
    p.set_produced_before_unix_ms(1000);
    cases.push_back({"PeekMessages before < after", AdminCall(c, &v1::Admin::Stub::PeekMessages, p),
                     kInvalid, "must be after produced_after_unix_ms"});
    v1::GetHistoryRequest h;
    cases.push_back({"GetHistory of nothing", AdminCall(c, &v1::Admin::Stub::GetHistory, h),
                     kInvalid, "name a group, a topic, or both"});
    h.set_group("g");
    h.set_max_points(20000);
    cases.push_back({"GetHistory of 20000 points", AdminCall(c, &v1::Admin::Stub::GetHistory, h),
                     kInvalid, "max_points is 20000"});
    v1::ResetGroupRequest dry;
    dry.set_group("nobody");
    dry.set_topic("t");
    dry.set_position(v1::START_POSITION_EARLIEST);
    dry.set_dry_run(true);
    cases.push_back({"ResetGroup dry run of an unknown group",
                     AdminCall(c, &v1::Admin::Stub::ResetGroup, dry), absl::StatusCode::kNotFound,
                     "nobody"});
    v1::GetTransactionRequest gt;
    gt.set_transaction_id("00000000-0000-0000-0000-000000000009");
    cases.push_back({"GetTransaction of an unknown transaction",
                     AdminCall(c, &v1::Admin::Stub::GetTransaction, gt),
                     absl::StatusCode::kNotFound, "does not exist"});
    v1::GetMessageRequest g;
    g.set_topic("t'; DROP TABLE messages; --");
    cases.push_back({"GetMessage with SQL in the topic",
                     AdminCall(c, &v1::Admin::Stub::GetMessage, g), kInvalid, "topic"});
    v1::DeleteGroupRequest d;
    d.set_name("nobody");
    cases.push_back({"DeleteGroup of an unknown group",
                     AdminCall(c, &v1::Admin::Stub::DeleteGroup, d), absl::StatusCode::kNotFound,
                     "nobody"});
  }

  for (const Case& k : cases) {
    INFO(k.what);
    absl::Status s = k.call();
    CHECK(s.code() == k.code);
    CHECK(std::string(s.message()).find(k.says) != std::string::npos);
    CAPTURE(s.message());
  }
  CHECK(Snapshot(f) == before);
}

TEST_CASE("forged - foreign - tampered receipts are refused per entry and settle nothing",
          "[integration][bad-input]") {
  BrokerFixture f;
  f.CreateTopic("t", 1);
  f.Produce("t", {"a"});
  auto got = f.Consume("g", "t", 1, 0, 60000);
  REQUIRE(got.messages_size() == 1);
  const std::string receipt = got.messages(0).receipt();
  f.Consume("other", "t", 1, 0, 60000);  // a second group, with its own lease
  const std::string before = Snapshot(f);
  std::string tampered = receipt;
  tampered[5] = tampered[5] == 'A' ? 'B' : 'A';
  CHECK(f.Settle("g", tampered, v1::ACK).status() == v1::INVALID_RECEIPT);
  CHECK(f.Settle("g", "AAAA", v1::ACK).status() == v1::INVALID_RECEIPT);
  CHECK(f.Settle("g", std::string(120, 'Z'), v1::ACK).status() == v1::INVALID_RECEIPT);
  CHECK(f.Settle("other", receipt, v1::ACK).status() == v1::INVALID_RECEIPT);  // g's receipt
  v1::CommitRequest nobody;
  nobody.set_group("nobody");
  nobody.add_entries()->set_receipt(receipt);
  auto unknown_group = f.client->Commit(nobody);  // per entry, like any other receipt
  REQUIRE(unknown_group.ok());
  CHECK(unknown_group->results(0).status() == v1::INVALID_RECEIPT);
  CHECK(Snapshot(f) == before);  // the lease is still there; nothing was settled
  CHECK(f.Settle("g", receipt, v1::ACK).status() == v1::COMMITTED);
}

TEST_CASE("abandoned streams and a checker that never answers leave the broker serving others",
          "[integration][bad-input]") {
  BrokerFixture f([](broker::BrokerOptions& o) {
    o.txn_check_after_ms = 100;
    o.txn_check_interval_ms = 100;
    o.txn_max_checks = 5;
  });
  f.CreateTopic("t", 1);
  // 50 streams opened and dropped at once, 50 that subscribe and then vanish.
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext ctx;
    auto s = f.client->broker().CheckTransaction(&ctx);
    ctx.TryCancel();
    s->Finish();
  }
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<
      grpc::ClientReaderWriter<v1::CheckTransactionRequest, v1::CheckTransactionResponse>>>
      silent;
  for (int i = 0; i < 50; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    silent.push_back(f.client->broker().CheckTransaction(contexts.back().get()));
    v1::CheckTransactionRequest sub;
    sub.mutable_subscribe()->add_producer_groups("silent");
    silent.back()->Write(sub);  // ... and never reads or answers
  }
  // A transaction of the silent group: checks go to checkers that never answer; after
  // max_checks it is CHECK_EXHAUSTED (kept for a person), never committed by default.
  v1::ProduceRequest half = OneMessage("t", "half");
  half.mutable_transactional()->set_producer_group("silent");
  auto produced = f.client->Produce(half);
  REQUIRE(produced.ok());
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string state;
  while (std::chrono::steady_clock::now() < give_up) {
    state = f.Query("SELECT state FROM transactions")[0];
    if (state == "CHECK_EXHAUSTED") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(state == "CHECK_EXHAUSTED");
  // Meanwhile an ordinary client is served.
  f.Produce("t", {"ordinary"});
  auto got = f.Consume("g", "t", 10);
  REQUIRE(got.messages_size() == 1);
  CHECK(got.messages(0).payload() == "ordinary");
  for (auto& ctx : contexts) ctx->TryCancel();
  for (auto& s : silent) s->Finish();
}

TEST_CASE("2000 concurrent long polls: the broker answers another client and keeps its threads",
          "[integration][bad-input]") {
  BrokerFixture f;
  f.CreateTopic("idle", 1);
  f.CreateTopic("busy", 1);
  auto threads_now = [] { return ProcStatus("Threads:"); };
  const long threads_before = threads_now();
  const long rss_before_kb = ProcStatus("VmRSS:");
  // 2000 long polls on an empty topic, all parked at once (asynchronous calls: one client
  // thread), each waiting up to 5 s.
  grpc::CompletionQueue cq;
  auto stub = v1::Broker::NewStub(MakeChannel(f.address()));
  std::vector<std::unique_ptr<AsyncConsume>> polls;
  for (int i = 0; i < 2000; ++i) {
    v1::ConsumeRequest req = ConsumeOf("waiters-" + std::to_string(i % 20), "idle");
    req.set_max_wait_ms(5000);
    polls.push_back(std::make_unique<AsyncConsume>(*stub, req, cq));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  // Another client works normally while they wait.
  Client other(f.address());
  other.set_timeout(std::chrono::seconds(5));
  v1::ProduceRequest req = OneMessage("busy", "hello");
  REQUIRE(other.Produce(req).ok());
  auto got = other.Consume(ConsumeOf("readers", "busy"));
  REQUIRE(got.ok());
  REQUIRE(got->messages_size() == 1);
  CHECK(got->messages(0).payload() == "hello");
  // Parked polls hold no thread each: the process did not grow by anything like 2000 threads.
  const long threads_during = threads_now();
  CHECK(threads_during - threads_before < 100);
  // ... nor much memory: client and broker together grew by less than 200 MiB for 2000 calls.
  CHECK(ProcStatus("VmRSS:") - rss_before_kb < 200 * 1024);
  // Every poll ends by itself: empty (OK) or told the broker is busy (RESOURCE_EXHAUSTED).
  int ok = 0, busy = 0, other_code = 0;
  for (int i = 0; i < 2000; ++i) {
    void* tag = nullptr;
    bool fine = false;
    REQUIRE(cq.Next(&tag, &fine));
    auto* p = static_cast<AsyncConsume*>(tag);
    if (p->status.ok()) {
      ++ok;
    } else if (p->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++busy;
    } else {
      ++other_code;
    }
  }
  CHECK(other_code == 0);
  CHECK(ok + busy == 2000);
  cq.Shutdown();
}

TEST_CASE("clients that connect and never speak or read do not stop the broker serving others",
          "[integration][bad-input]") {
  BrokerFixture f;
  f.CreateTopic("t", 1);
  // 200 connections that send a few bytes of garbage (not HTTP/2) or nothing, and never read.
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(f.server->port()));
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    if (i % 2 == 0) {
      const char junk[] = "GET / HTTP/1.1\r\n\r\n\x00\x01garbage";
      (void)!write(fd, junk, sizeof(junk));
    }
    fds.push_back(fd);
  }
  // A backlog of 1 MiB (100 x 10 KiB) is there to be read while they hang on.
  std::vector<std::string> big(100, std::string(10 << 10, 'x'));
  f.Produce("t", big);
  Client other(f.address());
  other.set_timeout(std::chrono::seconds(5));
  v1::ProduceRequest req = OneMessage("t", "still served");
  CHECK(other.Produce(req).ok());
  auto got = other.Consume(ConsumeOf("g", "t"));
  REQUIRE(got.ok());
  CHECK(got->messages_size() >= 1);
  for (int fd : fds) close(fd);
}

TEST_CASE("a checker that never reads holds at most 1000 unread checks - the rest wait",
          "[integration][bad-input]") {
  BrokerFixture f([](broker::BrokerOptions& o) {
    o.txn_check_after_ms = 100;
    o.txn_check_interval_ms = 100;
    o.txn_max_checks = 1000;
    o.pool_size = 8;
  });
  f.CreateTopic("t", 1);
  auto stub = v1::Broker::NewStub(NonReadingChannel(f.address()));  // and it never reads
  grpc::ClientContext ctx;
  auto silent = stub->CheckTransaction(&ctx);
  v1::CheckTransactionRequest sub;
  sub.mutable_subscribe()->add_producer_groups("flood");
  REQUIRE(silent->Write(sub));  // and never reads
  for (int i = 0; i < 1100; ++i) {
    v1::ProduceRequest half = OneMessage("t", "half");
    half.mutable_transactional()->set_producer_group("flood");
    REQUIRE(f.client->Produce(half).ok());
  }
  auto count = [](const std::string& outcome) {
    return test::Sample(
        metrics::Default().Render(),
        "ferry_txn_checks_total{producer_group=\"flood\",outcome=\"" + outcome + "\"}");
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (count("no_checker") <= 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // gRPC's own buffers take a few before the broker's queue fills; after that, nothing more
  // goes to this stream however many checks are due.
  CHECK(count("no_checker") > 0);
  const double sent = count("sent");
  CHECK(sent >= 1000);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(count("sent") == sent);
  ctx.TryCancel();
  silent->Finish();
}

TEST_CASE(
    "slow consumers that never read their 1 MiB replies: others are served - memory stays "
    "bounded - their messages go to the next consumer when the lease ends",
    "[integration][bad-input]") {
  BrokerFixture f;
  f.CreateTopic("t", 1);
  std::vector<std::string> big(100, std::string(10 << 10, 'x'));
  f.Produce("t", big);
  const long rss_before_kb = ProcStatus("VmRSS:");
  // 20 consumers, each in its own group, each taking the 1 MiB backlog with a 2 s lease over a
  // transport that does not read ahead, and never reading.
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<v1::Broker::Stub>> stubs;
  std::vector<std::unique_ptr<AsyncConsume>> slow;
  for (int i = 0; i < 20; ++i) {
    stubs.push_back(v1::Broker::NewStub(NonReadingChannel(f.address())));
    v1::ConsumeRequest req = ConsumeOf("slow-" + std::to_string(i), "t");
    req.set_max_messages(100);
    req.set_visibility_timeout_ms(2000);
    slow.push_back(std::make_unique<AsyncConsume>(*stubs.back(), req, cq));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  // Another client is served meanwhile.
  Client other(f.address());
  other.set_timeout(std::chrono::seconds(5));
  v1::ProduceRequest req = OneMessage("t", "still served");
  CHECK(other.Produce(req).ok());
  v1::ConsumeRequest fast = ConsumeOf("fast", "t");
  fast.set_max_messages(200);
  auto got = other.Consume(fast);
  REQUIRE(got.ok());
  CHECK(got->messages_size() == 101);
  // 20 MiB of replies wait in buffers: the process grew by far less than 200 MiB.
  CHECK(ProcStatus("VmRSS:") - rss_before_kb < 200 * 1024);
  // The slow consumer's lease ends: the next consumer of its group gets every message again,
  // as attempt 2. Nothing a stalled reader held is lost.
  std::vector<v1::DeliveredMessage> again;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (again.size() < 100 && std::chrono::steady_clock::now() < give_up) {
    v1::ConsumeRequest next = ConsumeOf("slow-0", "t");
    next.set_max_messages(200);
    next.set_max_wait_ms(500);
    auto r = other.Consume(next);
    REQUIRE(r.ok());
    for (const auto& m : r->messages()) {
      if (m.payload() != "still served") again.push_back(m);
    }
  }
  REQUIRE(again.size() == 100);
  for (const auto& m : again) CHECK(m.delivery_attempt() == 2);
  for (auto& s : slow) s->ctx.TryCancel();
  for (size_t i = 0; i < slow.size(); ++i) {
    void* tag = nullptr;
    bool fine = false;
    REQUIRE(cq.Next(&tag, &fine));
  }
  cq.Shutdown();
}
