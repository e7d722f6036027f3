// ferryctl against a real broker process: what a person at a terminal sees.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "support/broker_process.h"
#include "support/test_db.h"

#ifndef FERRYCTL_BIN
#error "FERRYCTL_BIN must name the ferryctl binary"
#endif

namespace {

struct Result {
  int exit_code;
  std::vector<std::string> lines;  // stdout, then stderr, line by line
  std::vector<std::string> out;    // stdout alone
  std::vector<std::string> err;    // stderr alone
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// `stdin_text` goes through /bin/sh's printf: octal escapes (\\377) make any byte.
Result Run(const std::string& broker, const std::string& args, const std::string& stdin_text = "") {
  char err_path[] = "/tmp/ferryctl-e2e-stderr.XXXXXX";
  const int fd = mkstemp(err_path);
  REQUIRE(fd >= 0);
  close(fd);
  std::string cmd = "printf '" + stdin_text + "' | FERRY_BROKER=" + broker + " " + FERRYCTL_BIN +
                    " " + args + " 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  std::ifstream err_file(err_path);
  std::string err((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
  std::remove(err_path);
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, {}, Lines(out), Lines(err)};
  r.lines = r.out;
  r.lines.insert(r.lines.end(), r.err.begin(), r.err.end());
  return r;
}

}  // namespace

TEST_CASE("ferryctl: create - produce from stdin - dedup - consume as JSON - lag - errors",
          "[e2e][ferryctl]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(),
                                    "/tmp/ferry-e2e-ferryctl.log");
  const std::string b = broker.address();

  REQUIRE(Run(b, "topic create cli --queues 2 --retention 1d").exit_code == 0);
  auto produced = Run(b, "produce cli", "a\\nb\\nc\\n");
  REQUIRE(produced.exit_code == 0);
  REQUIRE(produced.lines.size() == 3);  // "queue Q offset O" per message
  CHECK(produced.lines[0].rfind("queue ", 0) == 0);
  CHECK(produced.lines[0].find(" offset ") != std::string::npos);

  auto first = Run(b, "produce cli --value x --dedup-id d1 --header kind=test");
  auto again = Run(b, "produce cli --value x --dedup-id d1");
  REQUIRE(first.exit_code == 0);
  REQUIRE(again.lines.size() == 1);
  CHECK(again.lines[0] == first.lines[0] + " (duplicate: stored before)");

  auto consumed = Run(b, "consume cli --group g --max 10 --wait-ms 2000");
  REQUIRE(consumed.exit_code == 0);
  std::set<std::string> values;
  for (const auto& line : consumed.lines) {
    auto j = nlohmann::json::parse(line);
    values.insert(j.at("value").get<std::string>());
    CHECK(j.at("attempt") == 1);
    CHECK(j.at("topic") == "cli");
    CHECK_FALSE(j.at("receipt").get<std::string>().empty());
    if (j.at("value") == "x") CHECK(j.at("headers").at("kind") == "test");
  }
  CHECK(values == std::set<std::string>{"a", "b", "c", "x"});
  CHECK(Run(b, "consume cli --group g --wait-ms 0").lines.empty());  // ACKed by the first

  auto lag = Run(b, "--json lag --group g");
  REQUIRE(lag.exit_code == 0);
  uint64_t total = 0;
  const auto lag_json = nlohmann::json::parse(lag.lines.at(0));
  for (const auto& q : lag_json.at("queues")) {
    total += q.at("lag").get<uint64_t>();
  }
  CHECK(total == 0);

  auto missing = Run(b, "produce nosuch --value x");
  CHECK(missing.exit_code == 1);
  REQUIRE(missing.lines.size() == 1);
  CHECK(missing.lines[0].find("NOT_FOUND") != std::string::npos);
  CHECK(Run(b, "topic create 'bad name'").exit_code == 1);
  auto describe = Run(b, "--json topic describe cli");
  REQUIRE(describe.exit_code == 0);
  CHECK(nlohmann::json::parse(describe.lines.at(0)).at("queues") == 2);
}

TEST_CASE("ferryctl: group policy - retry - dead letters - redrive - delayed - reset",
          "[e2e][ferryctl]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(),
                                    "/tmp/ferry-e2e-ferryctl2.log");
  const std::string b = broker.address();
  auto receipt_of = [](const Result& r) {
    REQUIRE(r.lines.size() == 1);
    return nlohmann::json::parse(r.lines[0]).at("receipt").get<std::string>();
  };

  REQUIRE(Run(b, "topic create jobs --queues 1").exit_code == 0);
  auto created = Run(b, "--json group create workers --topic jobs --max-attempts 2 --backoff 1s");
  REQUIRE(created.exit_code == 0);
  CHECK(nlohmann::json::parse(created.lines.at(0)).at("max_delivery_attempts") == 2);
  REQUIRE(Run(b, "produce jobs --value job-1").exit_code == 0);

  const std::string r1 = receipt_of(Run(b, "consume jobs --group workers --no-commit"));
  auto retried = Run(b, "commit --group workers --retry " + r1);
  CHECK(retried.exit_code == 0);
  CHECK(retried.lines.at(0) == "RETRY_SCHEDULED");
  const std::string r2 =
      receipt_of(Run(b, "consume jobs --group workers --no-commit --wait-ms 3000"));
  auto dead = Run(b, "commit --group workers --dead-letter 'bad input' " + r2);
  CHECK(dead.lines.at(0) == "DEAD_LETTERED");

  auto listed = Run(b, "--json dlq list --group workers");
  REQUIRE(listed.lines.size() == 1);
  auto d = nlohmann::json::parse(listed.lines[0]);
  CHECK(d.at("reason") == "rejected: bad input");
  CHECK(d.at("attempts") == 2);
  CHECK(d.at("value") == "job-1");
  REQUIRE(Run(b, "dlq redrive --group workers " + std::to_string(d.at("id").get<uint64_t>()))
              .exit_code == 0);
  auto again = Run(b, "--json consume jobs --group workers --wait-ms 3000");
  REQUIRE(again.lines.size() == 1);
  CHECK(nlohmann::json::parse(again.lines[0]).at("attempt") == 1);

  auto delayed = Run(b, "produce jobs --value soon --delay-ms 60000");
  REQUIRE(delayed.lines.size() == 1);
  CHECK(delayed.lines[0].rfind("delayed_id ", 0) == 0);
  const std::string id = delayed.lines[0].substr(11);
  CHECK(Run(b, "delayed cancel jobs " + id).exit_code == 0);
  CHECK(Run(b, "delayed cancel jobs " + id).exit_code == 1);

  REQUIRE(Run(b, "group reset workers --topic jobs --to earliest").exit_code == 0);
  auto replay = Run(b, "--json consume jobs --group workers --wait-ms 2000");
  REQUIRE(replay.lines.size() == 1);
  CHECK(nlohmann::json::parse(replay.lines[0]).at("value") == "job-1");
  CHECK(Run(b, "group create bad --backoff nonsense").exit_code != 0);
}

TEST_CASE("ferryctl: half messages - txn list - end - resolve - conflicting decisions",
          "[e2e][ferryctl][txn]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(),
                                    "/tmp/ferry-e2e-ferryctl3.log");
  const std::string b = broker.address();
  REQUIRE(Run(b, "topic create orders --queues 1").exit_code == 0);
  auto half = Run(b, "--json produce orders --txn-group shop --check-ref order-1 --value o1");
  REQUIRE(half.exit_code == 0);
  const std::string id =
      nlohmann::json::parse(half.lines.at(0)).at("transaction_id").get<std::string>();
  CHECK(Run(b, "consume orders --group g --wait-ms 300").lines.empty());  // invisible

  auto listed = Run(b, "--json txn list --state PREPARED");
  REQUIRE(listed.lines.size() == 1);
  auto t = nlohmann::json::parse(listed.lines[0]);
  CHECK(t.at("transaction_id") == id);
  CHECK(t.at("check_ref") == "order-1");
  CHECK(t.at("messages") == 1);
  CHECK(t.at("checker_connected") == false);

  auto ended = Run(b, "txn end " + id + " --commit");
  REQUIRE(ended.exit_code == 0);
  CHECK(ended.lines.at(0) == id + " TXN_COMMITTED");
  auto got = Run(b, "--json consume orders --group g --wait-ms 2000");
  REQUIRE(got.lines.size() == 1);
  CHECK(nlohmann::json::parse(got.lines[0]).at("value") == "o1");
  auto conflicting = Run(b, "txn end " + id + " --rollback");
  CHECK(conflicting.exit_code == 1);
  CHECK(conflicting.lines.at(0).find("FAILED_PRECONDITION") != std::string::npos);

  auto second = Run(b, "--json produce orders --txn-group shop --value o2");
  const std::string id2 =
      nlohmann::json::parse(second.lines.at(0)).at("transaction_id").get<std::string>();
  CHECK(Run(b, "txn resolve " + id2 + " --rollback").exit_code != 0);  // --reason is required
  REQUIRE(Run(b, "txn resolve " + id2 + " --rollback --reason 'order 2 cancelled'").exit_code == 0);
  auto history = Run(b, "--json txn list --state ROLLED_BACK");
  REQUIRE(history.lines.size() == 1);
  const auto rolled_back = nlohmann::json::parse(history.lines[0]);
  bool audited = false;
  for (const auto& e : rolled_back.at("events")) {
    audited = audited ||
              (e.at("actor") == "admin" &&
               e.at("detail").get<std::string>().find("order 2 cancelled") != std::string::npos);
  }
  CHECK(audited);
  CHECK(Run(b, "consume orders --group g --wait-ms 300").lines.empty());
}

TEST_CASE("ferryctl txn checker answers a back-check and the transaction commits",
          "[e2e][ferryctl][txn]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(
      db.conninfo(), ferry::test::FreePort(), "/tmp/ferry-e2e-ferryctl4.log",
      {"--txn-check-after-ms", "200", "--txn-check-interval-ms", "1000"});
  const std::string b = broker.address();
  REQUIRE(Run(b, "topic create orders --queues 1").exit_code == 0);
  REQUIRE(Run(b, "produce orders --txn-group shop --check-ref order-7 --value o7").exit_code == 0);
  // As in the README walkthrough, with the answer given up front instead of typed.
  auto checked = Run(b, "txn checker --group shop --answer commit --count 1");
  REQUIRE(checked.exit_code == 0);
  bool saw_check = false;
  for (const auto& line : checked.lines) {
    if (line.rfind("{", 0) == 0) {
      const auto check = nlohmann::json::parse(line);
      saw_check = check.at("check_ref") == "order-7" && check.at("check_number") == 1;
    }
  }
  CHECK(saw_check);
  auto got = Run(b, "--json consume orders --group cart --wait-ms 3000");
  REQUIRE(got.lines.size() == 1);
  CHECK(nlohmann::json::parse(got.lines[0]).at("value") == "o7");
  auto listed = Run(b, "--json txn list --state COMMITTED");
  CHECK(listed.lines.size() == 1);
}

TEST_CASE("ferryctl auth: create-admin - principals with grants - denials - revoke - health",
          "[e2e][ferryctl]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(),
                                    "/tmp/ferry-e2e-ferryctl-auth.log",
                                    {"--auth", "true", "--auth-cache-ms", "0"});
  const std::string b = broker.address();
  // The process is up (BrokerProcess waits for an answer): health needs no token.
  auto health = Run(b, "health");
  CHECK(health.exit_code == 0);
  CHECK(health.lines == std::vector<std::string>{"SERVING"});

  // No token: UNAUTHENTICATED, exit 1 with a one-line reason.
  auto anonymous = Run(b, "topic list");
  CHECK(anonymous.exit_code == 1);
  REQUIRE(anonymous.lines.size() == 1);
  CHECK(anonymous.lines[0].find("UNAUTHENTICATED") != std::string::npos);

  // The first principal is made in the database by ferry-broker create-admin.
  FILE* p = popen((std::string(FERRY_BROKER_BIN) +
                   " create-admin ops --log-level warn "
                   "--database-url '" +
                   db.conninfo() + "'")
                      .c_str(),
                  "r");
  REQUIRE(p != nullptr);
  char buf[256] = {};
  REQUIRE(fgets(buf, sizeof(buf), p) != nullptr);
  REQUIRE(pclose(p) == 0);
  std::string admin_token(buf);
  admin_token.erase(admin_token.find_last_not_of('\n') + 1);
  REQUIRE(admin_token.rfind("ferry_", 0) == 0);
  const std::string as_admin = "--token " + admin_token + " ";

  REQUIRE(Run(b, as_admin + "topic create orders --queues 1").exit_code == 0);
  auto created = Run(b, as_admin + "auth create shop --grant produce:topic:orders");
  REQUIRE(created.exit_code == 0);
  REQUIRE(created.lines.size() == 1);
  const std::string shop = "--token " + created.lines[0] + " ";

  CHECK(Run(b, shop + "produce orders --value hello").exit_code == 0);
  auto denied = Run(b, shop + "consume orders --group shop --wait-ms 0");
  CHECK(denied.exit_code == 1);
  REQUIRE(denied.lines.size() == 1);
  CHECK(denied.lines[0].find("PERMISSION_DENIED") != std::string::npos);
  CHECK(denied.lines[0].find("lacks permission consume on topic 'orders'") != std::string::npos);

  // Without consume on the topic, reading it without a lease is refused too.
  auto no_peek = Run(b, shop + "peek orders");
  CHECK(no_peek.exit_code == 1);
  CHECK(no_peek.err.at(0).find("PERMISSION_DENIED") != std::string::npos);
  CHECK(Run(b, shop + "message get orders 0:0").exit_code == 1);

  REQUIRE(Run(b, as_admin + "auth grant shop consume topic:orders").exit_code == 0);
  REQUIRE(Run(b, as_admin + "auth grant shop consume 'group:*'").exit_code == 0);
  auto got = Run(b, shop + "consume orders --group shop --wait-ms 2000");
  REQUIRE(got.exit_code == 0);
  REQUIRE(got.lines.size() == 1);
  CHECK(nlohmann::json::parse(got.lines[0]).at("value") == "hello");

  // Reading without a lease needs consume on the topic; changing the topic or a group needs
  // admin, and the refusal changes nothing.
  auto peeked = Run(b, shop + "peek orders");
  REQUIRE(peeked.exit_code == 0);
  CHECK(peeked.out.size() == 1);
  CHECK(Run(b, shop + "message get orders 0:0").exit_code == 0);
  auto update = Run(b, shop + "topic update orders --retention 1h");
  CHECK(update.exit_code == 1);
  CHECK(update.err.at(0).find("PERMISSION_DENIED") != std::string::npos);
  CHECK(nlohmann::json::parse(Run(b, as_admin + "topic describe orders --json").out.at(0))
            .at("retention_ms") == 7LL * 86400000);
  CHECK(Run(b, shop + "group delete shop").exit_code == 1);
  // Lists show what the caller holds a grant on (the console's read-only view): shop, with
  // consume on every group, sees the group; the topics it may read or write.
  CHECK(Run(b, shop + "group list --json").out.size() == 1);
  CHECK(Run(b, as_admin + "group list --json").out.size() == 1);
  CHECK(Run(b, as_admin + "topic create private --queues 1").exit_code == 0);
  auto shop_topics = Run(b, shop + "topic list --json");
  REQUIRE(shop_topics.exit_code == 0);
  const auto seen = nlohmann::json::parse(shop_topics.out.at(0));
  REQUIRE(seen.size() == 1);  // orders, not private
  CHECK(seen[0].at("name") == "orders");

  auto list = Run(b, as_admin + "--json auth list");
  REQUIRE(list.exit_code == 0);
  const auto principals = nlohmann::json::parse(list.lines.at(0));
  REQUIRE(principals.size() == 2);
  CHECK(principals[1].at("principal") == "shop");
  CHECK(principals[1].at("grants").size() == 3);

  REQUIRE(Run(b, as_admin + "auth revoke shop produce topic:orders").exit_code == 0);
  CHECK(Run(b, shop + "produce orders --value again").exit_code == 1);
  CHECK(Run(b, as_admin + "auth grant shop write topic:orders").exit_code == 1);
  REQUIRE(Run(b, as_admin + "auth delete shop").exit_code == 0);
  auto gone = Run(b, shop + "topic list");
  REQUIRE(gone.lines.size() == 1);
  CHECK(gone.lines[0].find("UNAUTHENTICATED") != std::string::npos);
}

TEST_CASE(
    "ferryctl rough edges: labelled output - --json after the subcommand - errors on stderr - "
    "binary payloads in base64 - RETRY now - delayed count - reset past the end - --version",
    "[e2e][ferryctl]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(),
                                    "/tmp/ferry-e2e-ferryctl-edges.log");
  const std::string b = broker.address();
  REQUIRE(Run(b, "topic create edges --queues 1").exit_code == 0);

  // --json is accepted after the subcommand, as before it.
  auto listed = Run(b, "topic list --json");
  REQUIRE(listed.exit_code == 0);
  CHECK(nlohmann::json::parse(listed.out.at(0)).dump().find("edges") != std::string::npos);

  // A payload that is not UTF-8 comes out as base64, not as replacement characters.
  auto bin = Run(b, "produce edges", "\\377\\376\\000A\\n");
  REQUIRE(bin.exit_code == 0);
  CHECK(bin.out.at(0) == "queue 0 offset 0");
  REQUIRE(Run(b, "produce edges --value text").exit_code == 0);
  auto got = Run(b, "consume edges --group g --max 10 --wait-ms 2000 --no-commit");
  REQUIRE(got.out.size() == 2);
  const auto m0 = nlohmann::json::parse(got.out[0]);
  CHECK(m0.at("value_base64") == "//4AQQ==");
  CHECK_FALSE(m0.contains("value"));
  const auto m1 = nlohmann::json::parse(got.out[1]);
  CHECK(m1.at("value") == "text");

  // A failed commit is an error like any other: on stderr with the prefix, exit 1.
  auto bad = Run(b, "commit --group g not-a-receipt");
  CHECK(bad.exit_code == 1);
  CHECK(bad.out.empty());
  REQUIRE(bad.err.size() == 1);
  CHECK(bad.err[0].rfind("ferryctl: commit: ", 0) == 0);

  // RETRY --delay-ms 0 means now, not the group's backoff (an hour here).
  REQUIRE(Run(b, "group update g --backoff 1h").exit_code == 0);
  auto retried =
      Run(b, "commit --group g --retry --delay-ms 0 " + m1.at("receipt").get<std::string>());
  REQUIRE(retried.exit_code == 0);
  CHECK(retried.out.at(0) == "RETRY_SCHEDULED");
  auto again = Run(b, "consume edges --group g --wait-ms 3000");
  REQUIRE(again.out.size() == 1);
  CHECK(nlohmann::json::parse(again.out[0]).at("attempt") == 2);

  // Waiting delayed messages show in topic describe.
  REQUIRE(Run(b, "produce edges --value later --delay-ms 3600000").exit_code == 0);
  auto described = Run(b, "topic describe edges");
  REQUIRE(described.exit_code == 0);
  CHECK(described.out.back() == "1 delayed messages waiting (not yet due)");
  CHECK(nlohmann::json::parse(Run(b, "topic describe edges --json").out.at(0))
            .at("delayed_messages") == 1);

  // A reset past the end says where the position went.
  auto reset = Run(b, "group reset g --topic edges --to 0:999");
  REQUIRE(reset.exit_code == 0);
  REQUIRE(reset.err.size() == 1);
  CHECK(reset.err[0] ==
        "ferryctl: group reset: queue 0: offset 999 is past the queue's end; the position is 2");

  auto version = Run(b, "--version");
  CHECK(version.exit_code == 0);
  REQUIRE(version.out.size() == 1);
  CHECK(version.out[0].rfind("ferryctl ", 0) == 0);
}

TEST_CASE(
    "ferryctl everyday commands: topic update - group list and delete - peek without consuming - "
    "message get with the state of every group",
    "[e2e][ferryctl]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(),
                                    "/tmp/ferry-e2e-ferryctl-everyday.log");
  const std::string b = broker.address();
  REQUIRE(Run(b, "topic create st --queues 1").exit_code == 0);

  auto updated = Run(b, "topic update st --retention 14d --dedup-window 1h");
  REQUIRE(updated.exit_code == 0);
  CHECK(updated.out.at(0) == "topic st: retention 14d, dedup window 1h");
  const auto described = nlohmann::json::parse(Run(b, "topic describe st --json").out.at(0));
  CHECK(described.at("retention_ms") == 14LL * 86400000);
  CHECK(described.at("dedup_window_ms") == 3600000);
  auto nothing = Run(b, "topic update st");
  CHECK(nothing.exit_code == 1);
  CHECK(nothing.err.at(0).find("INVALID_ARGUMENT") != std::string::npos);

  REQUIRE(Run(b, "produce st", "m0\\nm1\\nm2\\n").exit_code == 0);
  auto receipt = [](const Result& r) {
    REQUIRE(r.out.size() == 1);
    return nlohmann::json::parse(r.out[0]).at("receipt").get<std::string>();
  };
  // a: offset 0 leased; b: everything ACKed; c: offset 0 dead-lettered; d: offset 0 retrying.
  REQUIRE(Run(b, "consume st --group a --max 1 --no-commit").out.size() == 1);
  REQUIRE(Run(b, "consume st --group b --max 10").out.size() == 3);
  REQUIRE(Run(b, "commit --group c --dead-letter 'bad amount' " +
                     receipt(Run(b, "consume st --group c --max 1 --no-commit")))
              .exit_code == 0);
  REQUIRE(Run(b, "commit --group d --retry --delay-ms 600000 " +
                     receipt(Run(b, "consume st --group d --max 1 --no-commit")))
              .exit_code == 0);

  // Lag tells the never delivered (backlog) from the delivered and unsettled.
  const auto lag_a = nlohmann::json::parse(Run(b, "lag --group a --json").out.at(0));
  CHECK(lag_a.at("queues").at(0).at("backlog") == 2);
  CHECK(lag_a.at("queues").at(0).at("unsettled") == 1);
  CHECK(lag_a.at("queues").at(0).at("lag") == 3);
  const auto lag_d = nlohmann::json::parse(Run(b, "lag --group d --json").out.at(0));
  CHECK(lag_d.at("queues").at(0).at("unsettled") == 1);
  CHECK(lag_d.at("queues").at(0).at("retrying") == 1);

  // Peek reads without a lease: three messages, and nothing about any group changes.
  auto peeked = Run(b, "peek st --json");
  REQUIRE(peeked.exit_code == 0);
  REQUIRE(peeked.out.size() == 3);
  CHECK(nlohmann::json::parse(peeked.out[2]).at("value") == "m2");
  CHECK(Run(b, "peek st --from 2").out.size() == 1);
  // Without --queue, every queue of the topic.
  REQUIRE(Run(b, "topic create multi --queues 3").exit_code == 0);
  REQUIRE(Run(b, "produce multi", "a\\nb\\nc\\nd\\ne\\nf\\n").exit_code == 0);
  std::set<std::string> seen;
  for (const auto& line : Run(b, "peek multi").out) {
    seen.insert(nlohmann::json::parse(line).at("value").get<std::string>());
  }
  CHECK(seen == std::set<std::string>{"a", "b", "c", "d", "e", "f"});
  // Filters: a key finds its own queue; a dedup id (the relay's outbox id) any queue; a time.
  REQUIRE(Run(b, "produce multi --key order-7 --dedup-id outbox-7 --value seven").exit_code == 0);
  auto by_key = Run(b, "peek multi --key order-7");
  REQUIRE(by_key.out.size() == 1);
  CHECK(nlohmann::json::parse(by_key.out[0]).at("value") == "seven");
  auto by_dedup = Run(b, "peek multi --dedup-id outbox-7");
  REQUIRE(by_dedup.out.size() == 1);
  CHECK(nlohmann::json::parse(by_dedup.out[0]).at("key") == "order-7");
  CHECK(Run(b, "peek multi --after 2999-01-01T00:00:00Z").out.empty());
  CHECK(Run(b, "peek multi --before 2999-01-01T00:00:00Z").out.size() == 7);
  CHECK(Run(b, "peek multi --after yesterday").exit_code != 0);

  auto got = Run(b, "message get st 0:0 --json");
  REQUIRE(got.exit_code == 0);
  const auto m = nlohmann::json::parse(got.out.at(0));
  CHECK(m.at("value") == "m0");
  std::map<std::string, nlohmann::json> by_group;
  for (const auto& g : m.at("groups")) by_group[g.at("group")] = g;
  REQUIRE(by_group.size() == 4);
  CHECK(by_group["a"].at("state") == "in_flight");
  CHECK(by_group["a"].at("attempt") == 1);
  CHECK(by_group["a"].at("deadline_ms").get<uint64_t>() > 0);
  CHECK(by_group["b"].at("state") == "acked");
  CHECK(by_group["c"].at("state") == "dead_lettered");
  CHECK(by_group["c"].at("dead_letter_reason") == "rejected: bad amount");
  CHECK(by_group["d"].at("state") == "retrying");
  const auto later = nlohmann::json::parse(Run(b, "message get st 0:2 --json").out.at(0));
  for (const auto& g : later.at("groups")) {
    if (g.at("group") == "a") CHECK(g.at("state") == "pending");
  }
  // Still leased to a (the peek and the gets consumed nothing): a's next Consume gets 1 and 2.
  CHECK(Run(b, "consume st --group a --max 10").out.size() == 2);

  auto missing = Run(b, "message get st 0:99");
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.at(0).find("NOT_FOUND") != std::string::npos);
  auto bad_queue = Run(b, "peek st --queue 5");
  CHECK(bad_queue.exit_code == 1);
  CHECK(bad_queue.err.at(0).find("no queue 5") != std::string::npos);

  auto listed = Run(b, "group list --json");
  REQUIRE(listed.out.size() == 4);
  CHECK(nlohmann::json::parse(listed.out[0]).at("name") == "a");
  CHECK(nlohmann::json::parse(listed.out[0]).at("topics") == nlohmann::json::array({"st"}));
  REQUIRE(Run(b, "group delete c").exit_code == 0);
  CHECK(Run(b, "group list --json").out.size() == 3);
  CHECK(Run(b, "group delete c").exit_code == 1);
  CHECK(Run(b, "dlq list --group c").exit_code == 1);  // its dead letters went with it
}

TEST_CASE(
    "json logs: with --log-format json every line of the broker's log is a JSON object - admin "
    "changes "
    "are logged with who made them",
    "[e2e][ferryctl][logs]") {
  ferry::test::TempDatabase db;
  const std::string log_path = "/tmp/ferry-e2e-json-log.log";
  std::remove(log_path.c_str());
  {
    ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(), log_path,
                                      {"--log-format", "json"});
    const std::string b = broker.address();
    REQUIRE(Run(b, "topic create jsonlog --queues 1").exit_code == 0);
    REQUIRE(Run(b, "topic delete jsonlog").exit_code == 0);
    CHECK(Run(b, "topic delete jsonlog").exit_code == 1);  // NOT_FOUND: no change, no line
  }
  std::ifstream in(log_path);
  int lines = 0, deleted = 0;
  for (std::string line; std::getline(in, line);) {
    ++lines;
    INFO(line);
    nlohmann::json j;
    REQUIRE_NOTHROW(j = nlohmann::json::parse(line));
    CHECK(j.contains("ts"));
    CHECK(j.contains("level"));
    CHECK(j.contains("logger"));
    const std::string msg = j.at("msg").get<std::string>();
    if (msg.rfind("event=topic_deleted ", 0) == 0) {
      ++deleted;
      CHECK(j.at("logger") == "broker.admin");
      CHECK(msg.find(" by=") != std::string::npos);
      CHECK(msg.find("topic=jsonlog") != std::string::npos);
    }
  }
  CHECK(lines > 3);
  CHECK(deleted == 1);
}

TEST_CASE("ferryctl produce rides out a broker SIGKILL and restart: every line stored once",
          "[e2e][ferryctl]") {
  ferry::test::TempDatabase db;
  ferry::test::BrokerProcess broker(db.conninfo(), ferry::test::FreePort(),
                                    "/tmp/ferry-e2e-ferryctl-restart.log");
  const std::string b = broker.address();
  REQUIRE(Run(b, "topic create steady --queues 2").exit_code == 0);
  // 2,000 lines over ~2 s, in batches of 10: the broker dies in the middle of the stream.
  char out_path[] = "/tmp/ferryctl-e2e-restart.XXXXXX";
  const int fd = mkstemp(out_path);
  REQUIRE(fd >= 0);
  close(fd);
  const std::string cmd =
      "for i in $(seq 1 2000); do echo $i; [ $((i % 100)) = 0 ] && sleep 0.1; done | "
      "FERRY_BROKER=" +
      b + " " + FERRYCTL_BIN + " --json produce steady --batch 10 > " + out_path + " 2>&1";
  std::atomic<int> exit_code{-1};
  std::thread producer([&] { exit_code = std::system(cmd.c_str()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  broker.Kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  broker.Start();
  producer.join();
  std::ifstream in(out_path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::remove(out_path);
  CHECK(exit_code == 0);
  REQUIRE(lines.size() == 2000);
  for (const auto& line : lines) CHECK(nlohmann::json::parse(line).at("duplicate") == false);
  // Stored exactly once each: 2,000 messages, every value once.
  std::multiset<std::string> values;
  for (int q = 0; q < 2; ++q) {
    for (int from = 0; from < 3000; from += 1000) {
      for (const auto& line : Run(b, "peek steady --queue " + std::to_string(q) + " --from " +
                                         std::to_string(from) + " --max 1000")
                                  .out) {
        values.insert(nlohmann::json::parse(line).at("value").get<std::string>());
      }
    }
  }
  CHECK(values.size() == 2000);
  std::set<std::string> distinct(values.begin(), values.end());
  CHECK(distinct.size() == 2000);
}
