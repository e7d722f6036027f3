// ferryctl: the Ferry command-line tool. `ferryctl --help` lists the commands.
// Broker address: --broker, else FERRY_BROKER, else 127.0.0.1:7420. Exit code 0 on success;
// otherwise 1 with a one-line reason on stderr (2 for usage errors).
#include <absl/strings/ascii.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_split.h>
#include <absl/time/time.h>

#include <CLI/CLI.hpp>
#include <iomanip>
#include <iostream>
#include <google/protobuf/util/time_util.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "client/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "client/transactions.h"

#include <atomic>
#include <mutex>
#include <thread>

namespace {

using nlohmann::json;

struct Failure {
  std::string message;
};

template <typename T>
T Check(absl::StatusOr<T> r, const std::string& what) {
  if (!r.ok()) {
    throw Failure{what + ": " + std::string(absl::StatusCodeToString(r.status().code())) + ": " +
                  std::string(r.status().message())};
  }
  return *std::move(r);
}

// "7d", "24h", "30m", "10s", "250ms" -> milliseconds.
uint64_t ParseDurationMs(const std::string& text, const std::string& flag) {
  absl::Duration d;
  bool ok;
  if (!text.empty() && text.back() == 'd') {
    int64_t days = 0;
    ok = absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) && days >= 0;
    d = absl::Hours(24 * days);
  } else {
    ok = absl::ParseDuration(text, &d);
  }
  if (!ok || d <= absl::ZeroDuration()) {
    throw Failure{flag + ": \"" + text + "\" is not a duration (e.g. 7d, 24h, 30m, 10s, 500ms)"};
  }
  return static_cast<uint64_t>(absl::ToInt64Milliseconds(d));
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Prints rows as an aligned table (header first).
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      std::cout << std::left << std::setw(static_cast<int>(width[i]) + (i + 1 < r.size() ? 2 : 0))
                << r[i];
    }
    std::cout << "\n";
  }
}

json TopicJson(const ferry::v1::TopicConfig& t) {
  return json{{"name", t.name()},
              {"queues", t.queues()},
              {"retention_ms", t.retention_ms()},
              {"dedup_window_ms", t.dedup_window_ms()}};
}

std::string Ms(uint64_t ms) {
  if (ms % (24ull * 3600 * 1000) == 0) return std::to_string(ms / (24ull * 3600 * 1000)) + "d";
  if (ms % (3600 * 1000) == 0) return std::to_string(ms / (3600 * 1000)) + "h";
  if (ms % (60 * 1000) == 0) return std::to_string(ms / (60 * 1000)) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// An age for people: "850ms", "12.4s", "3m12s", "2h05m".
std::string Age(uint64_t ms) {
  char buf[32];
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 60000) {
    std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3600000) {
    std::snprintf(buf, sizeof(buf), "%llum%02llus", static_cast<unsigned long long>(ms / 60000),
                  static_cast<unsigned long long>(ms / 1000 % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lluh%02llum", static_cast<unsigned long long>(ms / 3600000),
                  static_cast<unsigned long long>(ms / 60000 % 60));
  }
  return buf;
}

// "10s,30s,1m" -> milliseconds each.
std::vector<uint64_t> ParseDurationList(const std::string& text, const std::string& flag) {
  std::vector<uint64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    out.push_back(ParseDurationMs(std::string(absl::StripAsciiWhitespace(part)), flag));
  }
  if (out.empty()) throw Failure{flag + ": give at least one duration"};
  return out;
}

// RFC 3339 ("2026-11-21T10:00:00Z") -> unix ms.
int64_t ParseTimeMs(const std::string& text, const std::string& flag) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    throw Failure{flag + ": \"" + text + "\" is not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)"};
  }
  return absl::ToUnixMillis(t);
}

ferry::v1::StartPosition ParseStart(const std::string& text) {
  if (text == "earliest") return ferry::v1::START_POSITION_EARLIEST;
  if (text == "latest") return ferry::v1::START_POSITION_LATEST;
  throw Failure{"--start must be earliest or latest"};
}

std::string Join(const google::protobuf::RepeatedField<uint64_t>& ms) {
  std::string out;
  for (uint64_t v : ms) out += (out.empty() ? "" : ",") + Ms(v);
  return out;
}

json GroupJson(const ferry::v1::GroupConfig& g) {
  return json{{"name", g.name()},
              {"max_delivery_attempts", g.max_delivery_attempts()},
              {"backoff_ms", std::vector<uint64_t>(g.backoff_ms().begin(), g.backoff_ms().end())},
              {"backoff_min_ms", g.backoff_min_ms()},
              {"backoff_max_ms", g.backoff_max_ms()},
              {"ordered", g.ordered()},
              {"start", g.start_position() == ferry::v1::START_POSITION_LATEST ? "latest"
                                                                              : "earliest"}};
}

void PrintGroup(const ferry::v1::GroupConfig& g) {
  std::cout << "group " << g.name() << ": max delivery attempts " << g.max_delivery_attempts()
            << ", backoff ";
  if (g.backoff_min_ms() > 0) {
    std::cout << "exponential " << Ms(g.backoff_min_ms()) << " to " << Ms(g.backoff_max_ms());
  } else {
    std::cout << Join(g.backoff_ms());
  }
  std::cout << (g.ordered() ? ", ordered" : ", unordered") << ", new topics start at "
            << (g.start_position() == ferry::v1::START_POSITION_LATEST ? "latest" : "earliest")
            << "\n";
}

template <typename Req, typename Resp>
Resp AdminCall(ferry::Client& client,
               grpc::Status (ferry::v1::Admin::Stub::*method)(grpc::ClientContext*, const Req&,
                                                              Resp*),
               const Req& req, const std::string& what) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + client.timeout());
  Resp resp;
  grpc::Status s = (client.admin().*method)(&ctx, req, &resp);
  if (!s.ok()) {
    throw Failure{what + ": " +
                  std::string(absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()))) +
                  ": " + s.error_message()};
  }
  return resp;
}

std::vector<uint64_t> ParseIds(const std::vector<std::string>& ids) {
  std::vector<uint64_t> out;
  for (const auto& id : ids) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(id, &v)) throw Failure{"\"" + id + "\" is not a dead letter id"};
    out.push_back(v);
  }
  return out;
}

// "produce" and "topic:orders" (or "group:*", "cluster") as a grant.
ferry::v1::AccessGrant ParseGrant(const std::string& permission, const std::string& resource) {
  ferry::v1::AccessGrant g;
  g.set_permission(permission);
  if (resource == "cluster") {
    g.set_resource_type("cluster");
    g.set_resource_name("*");
    return g;
  }
  const auto colon = resource.find(':');
  if (colon == std::string::npos) {
    throw Failure{"resource \"" + resource + "\" must be topic:NAME, group:NAME or cluster"};
  }
  g.set_resource_type(resource.substr(0, colon));
  g.set_resource_name(resource.substr(colon + 1));
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferryctl: command-line tool for the Ferry broker"};
  app.require_subcommand(1);
  std::string broker = "127.0.0.1:7420";
  bool as_json = false;
  app.add_option("--broker", broker, "broker address HOST:PORT")
      ->envname("FERRY_BROKER")->capture_default_str();
  app.add_flag("--json", as_json, "machine-readable output (one JSON document or JSON lines)");
  ferry::ChannelOptions connect;
  app.add_option("--token", connect.token, "bearer token, for a broker run with --auth")
      ->envname("FERRY_TOKEN");
  app.add_option("--tls-ca", connect.tls_ca_file, "PEM CA of the broker's certificate: use TLS")
      ->envname("FERRY_TLS_CA");
  app.add_option("--tls-cert", connect.tls_cert_file, "PEM client certificate")
      ->envname("FERRY_TLS_CERT");
  app.add_option("--tls-key", connect.tls_key_file, "PEM key of --tls-cert")
      ->envname("FERRY_TLS_KEY");
  app.add_option("--tls-server-name", connect.tls_server_name,
                 "name expected in the broker's certificate (default: the --broker host)")
      ->envname("FERRY_TLS_SERVER_NAME");

  // topic ...
  auto* topic = app.add_subcommand("topic", "create, list, describe, delete topics");
  topic->require_subcommand(1);
  std::string name, retention = "7d", dedup_window = "24h";
  uint32_t queues = 4;
  auto* topic_create = topic->add_subcommand("create", "create a topic");
  topic_create->add_option("NAME", name, "topic name")->required();
  topic_create->add_option("--queues", queues, "number of queues (1-256)")->capture_default_str();
  topic_create->add_option("--retention", retention, "how long messages are kept")
      ->capture_default_str();
  topic_create->add_option("--dedup-window", dedup_window, "how long dedup_ids are remembered")
      ->capture_default_str();
  bool topic_ordered = false;
  topic_create->add_flag("--ordered", topic_ordered,
                         "every group reads each queue in order, one consumer at a time");
  auto* topic_list = topic->add_subcommand("list", "list topics");
  auto* topic_describe = topic->add_subcommand("describe", "per queue offsets of a topic");
  topic_describe->add_option("NAME", name, "topic name")->required();
  auto* topic_delete = topic->add_subcommand("delete", "delete a topic and its messages");
  topic_delete->add_option("NAME", name, "topic name")->required();

  // produce
  auto* produce = app.add_subcommand(
      "produce", "send --value, or one message per line of standard input (sent in batches)");
  std::string key, dedup_id, value;
  std::vector<std::string> headers;
  size_t batch = 100;
  produce->add_option("TOPIC", name, "topic")->required();
  produce->add_option("--key", key, "message key (same key: same queue, in order)");
  produce->add_option("--dedup-id", dedup_id, "dedup id (only with --value)");
  produce->add_option("--header", headers, "header k=v (repeatable)");
  auto* value_opt = produce->add_option("--value", value, "the payload");
  produce->add_option("--batch", batch, "messages per Produce call from stdin (1-1000)")
      ->capture_default_str();
  uint64_t delay_ms = 0;
  std::string deliver_at;
  auto* delay_opt = produce->add_option("--delay-ms", delay_ms, "deliver no earlier than this");
  produce->add_option("--deliver-at", deliver_at, "deliver no earlier than this RFC 3339 time")
      ->excludes(delay_opt);
  std::string txn_group, check_ref, txn_id;
  auto* txn_group_opt = produce->add_option(
      "--txn-group", txn_group,
      "begin a transaction for this producer group and store the messages as half messages "
      "(prints the transaction id; end it with `ferryctl txn end`)");
  produce->add_option("--check-ref", check_ref, "with --txn-group: handed back in back-checks")
      ->needs(txn_group_opt);
  produce->add_option("--txn", txn_id, "add the messages to this open transaction")
      ->excludes(txn_group_opt);

  // consume
  auto* consume = app.add_subcommand(
      "consume", "receive messages as JSON lines; ACK them unless --no-commit");
  std::string group;
  uint32_t max = 10, wait_ms = 1000, visibility_ms = 30000;
  bool no_commit = false, latest = false;
  consume->add_option("TOPIC", name, "topic")->required();
  consume->add_option("--group", group, "consumer group")->required();
  consume->add_option("--max", max, "at most this many messages (1-1000)")->capture_default_str();
  consume->add_option("--wait-ms", wait_ms, "long poll up to this long (0-30000)")
      ->capture_default_str();
  consume->add_option("--visibility-ms", visibility_ms, "lease length (1000-43200000)")
      ->capture_default_str();
  consume->add_flag("--no-commit", no_commit, "do not ACK: the messages come back after the lease");
  consume->add_flag("--latest", latest, "a new group starts at the end instead of the beginning");

  // commit
  auto* commit = app.add_subcommand("commit", "ACK receipts");
  std::vector<std::string> receipts;
  commit->add_option("--group", group, "consumer group")->required();
  commit->add_option("RECEIPT", receipts, "receipts from consume")->required();
  bool retry = false;
  uint32_t retry_delay_ms = 0;
  std::string dead_letter;
  auto* retry_opt = commit->add_flag("--retry", retry, "deliver again after a backoff");
  commit->add_option("--delay-ms", retry_delay_ms, "with --retry: the delay (default: the group's backoff)")
      ->needs(retry_opt);
  commit->add_option("--dead-letter", dead_letter, "move to the group's dead letters, with this reason")
      ->excludes(retry_opt);

  // lag
  auto* lag = app.add_subcommand("lag", "a group's progress per queue");
  lag->add_option("--group", group, "consumer group")->required();
  lag->add_option("--topic", name, "only this topic");

  // group ...
  auto* grp = app.add_subcommand("group", "consumer groups: policy, position");
  grp->require_subcommand(1);
  uint32_t max_attempts = 0;
  std::string backoff, backoff_exp, start, ordered_text, reset_to;
  std::vector<std::string> group_topics;
  bool group_ordered = false;
  auto* group_create = grp->add_subcommand("create", "create a group with its delivery policy");
  group_create->add_option("NAME", group, "group name")->required();
  group_create->add_option("--topic", group_topics, "fix the start position on this topic now");
  group_create->add_option("--max-attempts", max_attempts, "deliveries before dead letters (16)");
  auto* backoff_opt =
      group_create->add_option("--backoff", backoff, "retry delays by attempt, e.g. 10s,30s,1m");
  group_create->add_option("--backoff-exp", backoff_exp, "exponential retry delays MIN,MAX")
      ->excludes(backoff_opt);
  group_create->add_flag("--ordered", group_ordered, "read each queue in order");
  group_create->add_option("--start", start, "earliest|latest (default earliest)");
  auto* group_describe = grp->add_subcommand("describe", "policy and topics of a group");
  group_describe->add_option("NAME", group, "group name")->required();
  auto* group_update = grp->add_subcommand("update", "change a group's policy");
  group_update->add_option("NAME", group, "group name")->required();
  group_update->add_option("--max-attempts", max_attempts, "deliveries before dead letters");
  auto* backoff_opt2 = group_update->add_option("--backoff", backoff, "e.g. 10s,30s,1m");
  group_update->add_option("--backoff-exp", backoff_exp, "MIN,MAX")->excludes(backoff_opt2);
  group_update->add_option("--ordered", ordered_text, "true|false");
  group_update->add_option("--start", start, "earliest|latest");
  auto* group_reset = grp->add_subcommand("reset", "move a group's position on a topic");
  group_reset->add_option("NAME", group, "group name")->required();
  group_reset->add_option("--topic", name, "topic")->required();
  group_reset->add_option("--to", reset_to,
                          "earliest | latest | RFC 3339 time | QUEUE:OFFSET[,QUEUE:OFFSET...]")
      ->required();

  // dlq ...
  auto* dlq = app.add_subcommand("dlq", "dead letters of a group: list, redrive, purge");
  dlq->require_subcommand(1);
  std::vector<std::string> ids;
  bool all = false;
  uint32_t limit = 100;
  std::string to_topic;
  auto* dlq_list = dlq->add_subcommand("list", "list dead letters, oldest first");
  dlq_list->add_option("--group", group, "consumer group")->required();
  dlq_list->add_option("--topic", name, "only this topic");
  dlq_list->add_option("--limit", limit, "at most this many (1-1000)")->capture_default_str();
  auto* dlq_redrive = dlq->add_subcommand("redrive", "deliver dead letters again");
  dlq_redrive->add_option("--group", group, "consumer group")->required();
  auto* all_opt = dlq_redrive->add_flag("--all", all, "every dead letter of the group");
  dlq_redrive->add_option("ID", ids, "dead letter ids")->excludes(all_opt);
  dlq_redrive->add_option("--to-topic", to_topic,
                          "produce them to this topic instead of back to the group");
  auto* dlq_purge = dlq->add_subcommand("purge", "delete dead letters");
  dlq_purge->add_option("--group", group, "consumer group")->required();
  auto* all_opt2 = dlq_purge->add_flag("--all", all, "every dead letter of the group");
  dlq_purge->add_option("ID", ids, "dead letter ids")->excludes(all_opt2);

  // delayed ...
  auto* delayed = app.add_subcommand("delayed", "delayed messages");
  delayed->require_subcommand(1);
  uint64_t delayed_id = 0;
  auto* delayed_cancel = delayed->add_subcommand("cancel", "cancel one that is not due yet");
  delayed_cancel->add_option("TOPIC", name, "topic")->required();
  delayed_cancel->add_option("ID", delayed_id, "the id produce printed")->required();

  // txn ...
  auto* txn = app.add_subcommand("txn", "transactions: end, list, resolve, rearm");
  txn->require_subcommand(1);
  bool commit_flag = false, rollback_flag = false;
  std::string txn_state, reason;
  uint32_t txn_limit = 20;
  auto* txn_end = txn->add_subcommand("end", "decide a transaction as its producer");
  txn_end->add_option("ID", txn_id, "transaction id")->required();
  auto* c1 = txn_end->add_flag("--commit", commit_flag, "make its messages visible");
  txn_end->add_flag("--rollback", rollback_flag, "discard its messages")->excludes(c1);
  auto* txn_list = txn->add_subcommand("list", "transactions, newest first, with check history");
  txn_list->add_option("--state", txn_state, "PREPARED|COMMITTED|ROLLED_BACK|CHECK_EXHAUSTED");
  txn_list->add_option("--group", txn_group, "producer group");
  txn_list->add_option("--limit", txn_limit, "at most this many")->capture_default_str();
  auto* txn_resolve = txn->add_subcommand("resolve", "an administrator's decision, with a reason");
  txn_resolve->add_option("ID", txn_id, "transaction id")->required();
  auto* c2 = txn_resolve->add_flag("--commit", commit_flag, "make its messages visible");
  txn_resolve->add_flag("--rollback", rollback_flag, "discard its messages")->excludes(c2);
  txn_resolve->add_option("--reason", reason, "kept in the audit trail")->required();
  auto* txn_rearm = txn->add_subcommand("rearm", "CHECK_EXHAUSTED: start back-checks again");
  txn_rearm->add_option("ID", txn_id, "transaction id")->required();
  auto* txn_checker = txn->add_subcommand(
      "checker", "answer back-checks for producer groups (asks on stdin unless --answer)");
  std::vector<std::string> checker_groups;
  std::string answer;
  uint32_t answer_count = 0;
  txn_checker->add_option("--group", checker_groups, "producer group (repeatable)")->required();
  txn_checker->add_option("--answer", answer, "commit|rollback|unknown for every check");
  txn_checker->add_option("--count", answer_count, "stop after this many answers (0: never)");

  // health: for container health checks and scripts.
  auto* health = app.add_subcommand(
      "health", "exit 0 if the broker reports SERVING (gRPC health; NOT_SERVING: database away)");

  // auth ...
  auto* auth = app.add_subcommand("auth", "principals, tokens and grants (broker --auth)");
  auth->require_subcommand(1);
  std::string principal, permission, resource;
  std::vector<std::string> grant_specs;
  auto* auth_create = auth->add_subcommand("create", "create a principal; prints its token once");
  auth_create->add_option("NAME", principal, "principal name")->required();
  auth_create->add_option("--grant", grant_specs,
                          "PERMISSION:RESOURCE, e.g. produce:topic:orders (repeatable)");
  auto* auth_rotate = auth->add_subcommand("rotate", "a new token; the old one stops working");
  auth_rotate->add_option("NAME", principal, "principal name")->required();
  auto* auth_delete = auth->add_subcommand("delete", "delete a principal and its grants");
  auth_delete->add_option("NAME", principal, "principal name")->required();
  auto* auth_list = auth->add_subcommand("list", "principals and their grants");
  auto* auth_grant = auth->add_subcommand("grant", "allow a principal something");
  auto* auth_revoke = auth->add_subcommand("revoke", "take a grant away");
  for (auto* sub : {auth_grant, auth_revoke}) {
    sub->add_option("NAME", principal, "principal name")->required();
    sub->add_option("PERMISSION", permission, "produce|consume|admin")->required();
    sub->add_option("RESOURCE", resource, "topic:NAME, group:NAME (NAME may be *) or cluster")
        ->required();
  }

  CLI11_PARSE(app, argc, argv);

  try {
    auto channel = ferry::MakeChannel(broker, connect);
    if (!channel.ok()) throw Failure{std::string(channel.status().message())};
    ferry::Client client(*channel);
    if (topic_create->parsed()) {
      ferry::v1::TopicConfig t;
      t.set_name(name);
      t.set_queues(queues);
      t.set_retention_ms(ParseDurationMs(retention, "--retention"));
      t.set_dedup_window_ms(ParseDurationMs(dedup_window, "--dedup-window"));
      t.set_ordered(topic_ordered);
      auto r = Check(client.CreateTopic(t), "topic create");
      if (as_json) {
        std::cout << Dump(TopicJson(r.topic())) << "\n";
      } else {
        std::cout << "created topic " << r.topic().name() << " with " << r.topic().queues()
                  << " queues\n";
      }
    } else if (topic_list->parsed()) {
      auto r = Check(client.ListTopics(), "topic list");
      if (as_json) {
        json out = json::array();
        for (const auto& t : r.topics()) out.push_back(TopicJson(t));
        std::cout << Dump(out) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{{"NAME", "QUEUES", "RETENTION", "DEDUP_WINDOW"}};
        for (const auto& t : r.topics()) {
          rows.push_back({t.name(), std::to_string(t.queues()), Ms(t.retention_ms()),
                          Ms(t.dedup_window_ms())});
        }
        PrintTable(rows);
      }
    } else if (topic_describe->parsed()) {
      auto r = Check(client.DescribeTopic(name), "topic describe");
      if (as_json) {
        json out = TopicJson(r.topic());
        out["queue_states"] = json::array();
        for (const auto& q : r.queues()) {
          out["queue_states"].push_back(json{{"queue", q.queue()},
                                             {"first_offset", q.first_offset()},
                                             {"end_offset", q.end_offset()},
                                             {"message_count", q.message_count()}});
        }
        std::cout << Dump(out) << "\n";
      } else {
        std::cout << "topic " << r.topic().name() << ": " << r.topic().queues()
                  << " queues, retention " << Ms(r.topic().retention_ms()) << ", dedup window "
                  << Ms(r.topic().dedup_window_ms()) << "\n";
        std::vector<std::vector<std::string>> rows{{"QUEUE", "FIRST_OFFSET", "END_OFFSET", "MESSAGES"}};
        for (const auto& q : r.queues()) {
          rows.push_back({std::to_string(q.queue()), std::to_string(q.first_offset()),
                          std::to_string(q.end_offset()), std::to_string(q.message_count())});
        }
        PrintTable(rows);
      }
    } else if (topic_delete->parsed()) {
      absl::Status s = client.DeleteTopic(name);
      if (!s.ok()) Check(absl::StatusOr<int>(s), "topic delete");
      if (!as_json) std::cout << "deleted topic " << name << "\n";
    } else if (produce->parsed()) {
      if (batch < 1 || batch > 1000) throw Failure{"--batch must be between 1 and 1000"};
      ferry::v1::ProducedMessage base;
      base.set_key(key);
      for (const auto& h : headers) {
        const auto eq = h.find('=');
        if (eq == std::string::npos || eq == 0) {
          throw Failure{"--header \"" + h + "\" must be NAME=VALUE"};
        }
        (*base.mutable_headers())[h.substr(0, eq)] = h.substr(eq + 1);
      }
      if (!dedup_id.empty() && value_opt->count() == 0) {
        throw Failure{"--dedup-id needs --value (each stdin line would share one dedup id)"};
      }
      base.set_delay_ms(delay_ms);
      if (!deliver_at.empty()) {
        *base.mutable_deliver_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(
            ParseTimeMs(deliver_at, "--deliver-at"));
      }
      auto send = [&](ferry::v1::ProduceRequest& req) {
        auto r = Check(client.Produce(req), "produce");
        if (!r.transaction_id().empty()) {
          // Half messages: one line with the transaction; later batches join it.
          if (req.has_transactional()) {
            if (as_json) {
              std::cout << Dump(json{{"transaction_id", r.transaction_id()},
                                     {"half_messages", r.results_size()}})
                        << "\n";
            } else {
              std::cout << "transaction " << r.transaction_id() << " (" << r.results_size()
                        << " half messages; end it with: ferryctl txn end "
                        << r.transaction_id() << " --commit | --rollback)\n";
            }
            req.clear_transactional();
            req.set_transaction_id(r.transaction_id());
          } else if (!as_json) {
            std::cout << r.results_size() << " more half messages in " << r.transaction_id()
                      << "\n";
          }
          req.clear_messages();
          return;
        }
        for (const auto& res : r.results()) {
          if (as_json) {
            json j{{"duplicate", res.duplicate()}};
            if (res.delayed()) {
              j["delayed_id"] = res.delayed_id();
            } else {
              j["queue"] = res.queue();
              j["offset"] = res.offset();
            }
            std::cout << Dump(j) << "\n";
          } else if (res.delayed()) {
            std::cout << "delayed " << res.delayed_id() << (res.duplicate() ? " duplicate" : "")
                      << "\n";
          } else {
            std::cout << res.queue() << " " << res.offset() << (res.duplicate() ? " duplicate" : "")
                      << "\n";
          }
        }
        req.clear_messages();
      };
      ferry::v1::ProduceRequest req;
      req.set_topic(name);
      req.set_transaction_id(txn_id);
      if (!txn_group.empty()) {
        req.mutable_transactional()->set_producer_group(txn_group);
        req.mutable_transactional()->set_check_ref(check_ref);
      }
      if (value_opt->count() > 0) {
        auto* m = req.add_messages();
        *m = base;
        m->set_payload(value);
        m->set_dedup_id(dedup_id);
        send(req);
      } else {
        std::string line;
        while (std::getline(std::cin, line)) {
          auto* m = req.add_messages();
          *m = base;
          m->set_payload(line);
          if (static_cast<size_t>(req.messages_size()) >= batch) send(req);
        }
        if (req.messages_size() > 0) send(req);
      }
    } else if (consume->parsed()) {
      ferry::v1::ConsumeRequest req;
      req.set_group(group);
      req.set_topic(name);
      req.set_max_messages(max);
      req.set_max_wait_ms(wait_ms);
      req.set_visibility_timeout_ms(visibility_ms);
      req.set_start_position(latest ? ferry::v1::START_POSITION_LATEST
                                    : ferry::v1::START_POSITION_EARLIEST);
      auto r = Check(client.Consume(req), "consume");
      std::vector<std::string> to_ack;
      for (const auto& m : r.messages()) {
        json headers_json = json::object();
        for (const auto& [k, v] : m.headers()) headers_json[k] = v;
        std::cout << Dump(json{{"topic", m.topic()},
                               {"queue", m.queue()},
                               {"offset", m.offset()},
                               {"key", m.key()},
                               {"value", m.payload()},
                               {"headers", headers_json},
                               {"attempt", m.delivery_attempt()},
                               {"receipt", m.receipt()}})
                  << "\n";
        to_ack.push_back(m.receipt());
      }
      std::cout.flush();
      if (!no_commit && !to_ack.empty()) {
        auto c = Check(client.Ack(group, to_ack), "commit");
        for (const auto& res : c.results()) {
          if (res.status() != ferry::v1::COMMITTED) {
            std::cerr << "ferryctl: commit: " << ferry::v1::CommitStatus_Name(res.status()) << ": "
                      << res.detail() << "\n";
          }
        }
      }
    } else if (commit->parsed()) {
      ferry::v1::CommitRequest req;
      req.set_group(group);
      for (const auto& receipt : receipts) {
        auto* e = req.add_entries();
        e->set_receipt(receipt);
        if (retry) {
          e->set_outcome(ferry::v1::RETRY);
          e->set_retry_delay_ms(retry_delay_ms);
        } else if (!dead_letter.empty()) {
          e->set_outcome(ferry::v1::DEAD_LETTER);
          e->set_reason(dead_letter);
        } else {
          e->set_outcome(ferry::v1::ACK);
        }
      }
      auto r = Check(client.Commit(req), "commit");
      bool all_ok = true;
      for (int i = 0; i < r.results_size(); ++i) {
        const auto& res = r.results(i);
        const bool ok = res.status() == ferry::v1::COMMITTED ||
                        res.status() == ferry::v1::ALREADY_COMMITTED ||
                        res.status() == ferry::v1::RETRY_SCHEDULED ||
                        res.status() == ferry::v1::DEAD_LETTERED;
        all_ok = all_ok && ok;
        if (as_json) {
          std::cout << Dump(json{{"receipt", receipts[i]},
                                 {"status", ferry::v1::CommitStatus_Name(res.status())},
                                 {"detail", res.detail()}})
                    << "\n";
        } else {
          std::cout << ferry::v1::CommitStatus_Name(res.status())
                    << (res.detail().empty() ? "" : ": " + res.detail()) << "\n";
        }
      }
      if (!all_ok) return 1;
    } else if (lag->parsed()) {
      auto r = Check(client.GetGroupLag(group, name), "lag");
      if (as_json) {
        json out = json::array();
        for (const auto& q : r.queues()) {
          out.push_back(json{{"topic", q.topic()},
                             {"queue", q.queue()},
                             {"end_offset", q.end_offset()},
                             {"committed_offset", q.committed_offset()},
                             {"delivered_offset", q.delivered_offset()},
                             {"in_flight", q.in_flight()},
                             {"lag", q.lag()},
                             {"retrying", q.retrying()},
                             {"dead_letters", q.dead_letters()},
                             {"oldest_unacked_age_ms", q.oldest_unacked_age_ms()}});
        }
        json delayed = json::object();
        for (const auto& d : r.delayed()) delayed[d.topic()] = d.delayed();
        std::cout << Dump(json{{"group", r.group()}, {"queues", out}, {"delayed", delayed}})
                  << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{{"TOPIC", "QUEUE", "END", "COMMITTED",
                                                    "IN_FLIGHT", "RETRYING", "DEAD", "LAG",
                                                    "OLDEST_UNACKED"}};
        for (const auto& q : r.queues()) {
          rows.push_back({q.topic(), std::to_string(q.queue()), std::to_string(q.end_offset()),
                          std::to_string(q.committed_offset()), std::to_string(q.in_flight()),
                          std::to_string(q.retrying()), std::to_string(q.dead_letters()),
                          std::to_string(q.lag()),
                          q.lag() == 0 ? "-" : Age(q.oldest_unacked_age_ms())});
        }
        PrintTable(rows);
        for (const auto& d : r.delayed()) {
          std::cout << d.topic() << ": " << d.delayed() << " delayed messages not yet due\n";
        }
      }
    }
    if (group_create->parsed()) {
      ferry::v1::CreateGroupRequest req;
      auto* g = req.mutable_group();
      g->set_name(group);
      g->set_max_delivery_attempts(max_attempts);
      if (!backoff.empty()) {
        for (uint64_t b : ParseDurationList(backoff, "--backoff")) g->add_backoff_ms(b);
      }
      if (!backoff_exp.empty()) {
        auto mm = ParseDurationList(backoff_exp, "--backoff-exp");
        if (mm.size() != 2) throw Failure{"--backoff-exp takes MIN,MAX"};
        g->set_backoff_min_ms(mm[0]);
        g->set_backoff_max_ms(mm[1]);
      }
      g->set_ordered(group_ordered);
      if (!start.empty()) g->set_start_position(ParseStart(start));
      for (const auto& t : group_topics) req.add_topics(t);
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::CreateGroup, req, "group create");
      if (as_json) {
        std::cout << Dump(GroupJson(r.group())) << "\n";
      } else {
        PrintGroup(r.group());
      }
    } else if (group_describe->parsed()) {
      ferry::v1::DescribeGroupRequest req;
      req.set_name(group);
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::DescribeGroup, req, "group describe");
      if (as_json) {
        json j = GroupJson(r.group());
        j["topics"] = std::vector<std::string>(r.topics().begin(), r.topics().end());
        std::cout << Dump(j) << "\n";
      } else {
        PrintGroup(r.group());
        std::cout << "topics:";
        for (const auto& t : r.topics()) std::cout << " " << t;
        std::cout << "\n";
      }
    } else if (group_update->parsed()) {
      ferry::v1::UpdateGroupRequest req;
      req.set_name(group);
      if (max_attempts > 0) req.set_max_delivery_attempts(max_attempts);
      if (!backoff.empty()) {
        req.set_set_backoff(true);
        for (uint64_t b : ParseDurationList(backoff, "--backoff")) req.add_backoff_ms(b);
        req.set_backoff_min_ms(0);  // a list replaces an exponential schedule
        req.set_backoff_max_ms(0);
      }
      if (!backoff_exp.empty()) {
        auto mm = ParseDurationList(backoff_exp, "--backoff-exp");
        if (mm.size() != 2) throw Failure{"--backoff-exp takes MIN,MAX"};
        req.set_backoff_min_ms(mm[0]);
        req.set_backoff_max_ms(mm[1]);
      }
      if (!ordered_text.empty()) {
        if (ordered_text != "true" && ordered_text != "false") {
          throw Failure{"--ordered takes true or false"};
        }
        req.set_ordered(ordered_text == "true");
      }
      if (!start.empty()) req.set_start_position(ParseStart(start));
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::UpdateGroup, req, "group update");
      if (as_json) {
        std::cout << Dump(GroupJson(r.group())) << "\n";
      } else {
        PrintGroup(r.group());
      }
    } else if (group_reset->parsed()) {
      ferry::v1::ResetGroupRequest req;
      req.set_group(group);
      req.set_topic(name);
      if (reset_to == "earliest" || reset_to == "latest") {
        req.set_position(ParseStart(reset_to));
      } else if (reset_to.find(':') != std::string::npos && reset_to.find('T') == std::string::npos) {
        for (absl::string_view part : absl::StrSplit(reset_to, ',', absl::SkipEmpty())) {
          std::vector<std::string> qo = absl::StrSplit(part, ':');
          uint32_t q = 0;
          uint64_t o = 0;
          if (qo.size() != 2 || !absl::SimpleAtoi(qo[0], &q) || !absl::SimpleAtoi(qo[1], &o)) {
            throw Failure{"--to: \"" + std::string(part) + "\" is not QUEUE:OFFSET"};
          }
          auto* e = req.mutable_offsets()->add_offsets();
          e->set_queue(q);
          e->set_offset(o);
        }
      } else {
        req.set_timestamp_ms(static_cast<uint64_t>(ParseTimeMs(reset_to, "--to")));
      }
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::ResetGroup, req, "group reset");
      std::vector<std::vector<std::string>> rows{{"QUEUE", "POSITION"}};
      json out = json::array();
      for (const auto& p : r.positions()) {
        rows.push_back({std::to_string(p.queue()), std::to_string(p.offset())});
        out.push_back(json{{"queue", p.queue()}, {"offset", p.offset()}});
      }
      if (as_json) {
        std::cout << Dump(out) << "\n";
      } else {
        PrintTable(rows);
      }
    } else if (dlq_list->parsed()) {
      ferry::v1::ListDeadLettersRequest req;
      req.set_group(group);
      req.set_topic(name);
      req.set_page_size(limit);
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::ListDeadLetters, req, "dlq list");
      std::vector<std::vector<std::string>> rows{
          {"ID", "TOPIC", "QUEUE", "OFFSET", "KEY", "ATTEMPTS", "DIED", "REASON"}};
      for (const auto& d : r.dead_letters()) {
        if (as_json) {
          json headers_json = json::object();
          for (const auto& [k, v] : d.headers()) headers_json[k] = v;
          std::cout << Dump(json{{"id", d.id()},
                                 {"topic", d.topic()},
                                 {"queue", d.queue()},
                                 {"offset", d.offset()},
                                 {"key", d.key()},
                                 {"value", d.payload()},
                                 {"headers", headers_json},
                                 {"attempts", d.attempts()},
                                 {"reason", d.reason()},
                                 {"produced_at_ms", d.produced_at_unix_ms()},
                                 {"first_delivered_at_ms", d.first_delivered_at_unix_ms()},
                                 {"last_delivered_at_ms", d.last_delivered_at_unix_ms()},
                                 {"dead_at_ms", d.dead_at_unix_ms()}})
                    << "\n";
        } else {
          rows.push_back({std::to_string(d.id()), d.topic(), std::to_string(d.queue()),
                          std::to_string(d.offset()), d.key(), std::to_string(d.attempts()),
                          absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                           absl::FromUnixMillis(
                                               static_cast<int64_t>(d.dead_at_unix_ms())),
                                           absl::UTCTimeZone()),
                          d.reason()});
        }
      }
      if (!as_json) {
        PrintTable(rows);
        if (!r.next_page_token().empty()) std::cout << "(more: raise --limit)\n";
      }
    } else if (dlq_redrive->parsed()) {
      ferry::v1::RedriveDeadLettersRequest req;
      req.set_group(group);
      req.set_all(all);
      for (uint64_t id : ParseIds(ids)) req.add_ids(id);
      req.set_to_topic(to_topic);
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::RedriveDeadLetters, req, "dlq redrive");
      if (as_json) {
        json failures = json::array();
        for (const auto& f : r.failures()) {
          failures.push_back(json{{"id", f.id()}, {"reason", f.reason()}});
        }
        std::cout << Dump(json{{"redriven", r.redriven()}, {"failures", failures}}) << "\n";
      } else {
        std::cout << "redriven " << r.redriven() << "\n";
        for (const auto& f : r.failures()) {
          std::cout << "kept " << f.id() << ": " << f.reason() << "\n";
        }
      }
      if (r.failures_size() > 0) return 1;
    } else if (dlq_purge->parsed()) {
      ferry::v1::PurgeDeadLettersRequest req;
      req.set_group(group);
      req.set_all(all);
      for (uint64_t id : ParseIds(ids)) req.add_ids(id);
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::PurgeDeadLetters, req, "dlq purge");
      if (as_json) {
        std::cout << Dump(json{{"purged", r.purged()}}) << "\n";
      } else {
        std::cout << "purged " << r.purged() << "\n";
      }
    } else if (delayed_cancel->parsed()) {
      ferry::v1::CancelDelayedRequest req;
      req.set_topic(name);
      req.set_delayed_id(delayed_id);
      AdminCall(client, &ferry::v1::Admin::Stub::CancelDelayed, req, "delayed cancel");
      if (!as_json) std::cout << "cancelled " << delayed_id << "\n";
    }
    if (txn_end->parsed() || txn_resolve->parsed()) {
      if (!commit_flag && !rollback_flag) throw Failure{"give --commit or --rollback"};
      const auto decision =
          commit_flag ? ferry::v1::TRANSACTION_COMMIT : ferry::v1::TRANSACTION_ROLLBACK;
      ferry::v1::TransactionState state;
      if (txn_end->parsed()) {
        ferry::v1::EndTransactionRequest req;
        req.set_transaction_id(txn_id);
        req.set_decision(decision);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + client.timeout());
        ferry::v1::EndTransactionResponse resp;
        grpc::Status st = client.broker().EndTransaction(&ctx, req, &resp);
        if (!st.ok()) {
          throw Failure{"txn end: " +
                        std::string(absl::StatusCodeToString(
                            static_cast<absl::StatusCode>(st.error_code()))) +
                        ": " + st.error_message()};
        }
        state = resp.state();
      } else {
        ferry::v1::ResolveTransactionRequest req;
        req.set_transaction_id(txn_id);
        req.set_decision(decision);
        req.set_reason(reason);
        state = AdminCall(client, &ferry::v1::Admin::Stub::ResolveTransaction, req, "txn resolve")
                    .state();
      }
      std::cout << (as_json ? Dump(json{{"transaction_id", txn_id},
                                        {"state", ferry::v1::TransactionState_Name(state)}})
                            : txn_id + " " + ferry::v1::TransactionState_Name(state))
                << "\n";
    } else if (txn_list->parsed()) {
      ferry::v1::ListTransactionsRequest req;
      if (!txn_state.empty()) {
        ferry::v1::TransactionState st;
        if (!ferry::v1::TransactionState_Parse("TXN_" + txn_state, &st)) {
          throw Failure{"--state must be PREPARED, COMMITTED, ROLLED_BACK or CHECK_EXHAUSTED"};
        }
        req.set_state(st);
      }
      req.set_producer_group(txn_group);
      req.set_limit(txn_limit);
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::ListTransactions, req, "txn list");
      std::vector<std::vector<std::string>> rows{
          {"ID", "GROUP", "STATE", "MESSAGES", "ACKS", "CHECKS", "CHECKER", "CHECK_REF"}};
      for (const auto& t : r.transactions()) {
        if (as_json) {
          json events = json::array();
          for (const auto& e : t.events()) {
            events.push_back(json{{"at_ms", e.at_unix_ms()},
                                  {"kind", e.kind()},
                                  {"actor", e.actor()},
                                  {"detail", e.detail()}});
          }
          std::cout << Dump(json{{"transaction_id", t.transaction_id()},
                                 {"producer_group", t.producer_group()},
                                 {"state", ferry::v1::TransactionState_Name(t.state())},
                                 {"check_ref", t.check_ref()},
                                 {"messages", t.messages()},
                                 {"attached_acks", t.attached_acks()},
                                 {"topics", std::vector<std::string>(t.topics().begin(),
                                                                     t.topics().end())},
                                 {"checks_sent", t.checks_sent()},
                                 {"checker_connected", t.checker_connected()},
                                 {"began_at_ms", t.began_at_unix_ms()},
                                 {"ended_at_ms", t.ended_at_unix_ms()},
                                 {"events", events}})
                    << "\n";
        } else {
          rows.push_back({t.transaction_id(), t.producer_group(),
                          ferry::v1::TransactionState_Name(t.state()).substr(4),
                          std::to_string(t.messages()), std::to_string(t.attached_acks()),
                          std::to_string(t.checks_sent()),
                          t.state() == ferry::v1::TXN_PREPARED
                              ? (t.checker_connected() ? "connected" : "no checker")
                              : "-",
                          t.check_ref()});
        }
      }
      if (!as_json) PrintTable(rows);
    } else if (txn_checker->parsed()) {
      if (!answer.empty() && answer != "commit" && answer != "rollback" && answer != "unknown") {
        throw Failure{"--answer must be commit, rollback or unknown"};
      }
      std::mutex io;
      std::atomic<bool> input_closed{false};
      auto decide = [&](const ferry::v1::TransactionCheck& check) {
        std::lock_guard<std::mutex> lock(io);
        std::cout << Dump(json{{"transaction_id", check.transaction_id()},
                               {"producer_group", check.producer_group()},
                               {"check_ref", check.check_ref()},
                               {"check_number", check.check_number()},
                               {"topics", std::vector<std::string>(check.topics().begin(),
                                                                   check.topics().end())},
                               {"messages", check.message_count()}})
                  << std::endl;
        std::string said = answer;
        if (said.empty()) {
          std::cout << "commit, rollback or unknown? " << std::flush;
          if (!std::getline(std::cin, said)) {
            input_closed = true;
            said = "unknown";
          }
        }
        std::cout << "answered " << said << std::endl;
        return said == "commit"     ? ferry::v1::TRANSACTION_COMMIT
               : said == "rollback" ? ferry::v1::TRANSACTION_ROLLBACK
                                    : ferry::v1::TRANSACTION_UNKNOWN;
      };
      ferry::TransactionChecker checker(*channel, checker_groups, "ferryctl", decide);
      checker.Start();
      while (!input_closed && (answer_count == 0 || checker.answered() < answer_count)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      checker.Stop();
    } else if (txn_rearm->parsed()) {
      ferry::v1::RearmTransactionChecksRequest req;
      req.set_transaction_id(txn_id);
      AdminCall(client, &ferry::v1::Admin::Stub::RearmTransactionChecks, req, "txn rearm");
      if (!as_json) std::cout << txn_id << " PREPARED: back-checks start again\n";
    } else if (health->parsed()) {
      auto stub = grpc::health::v1::Health::NewStub(*channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      grpc::health::v1::HealthCheckResponse resp;
      grpc::Status s = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp);
      if (!s.ok()) throw Failure{"health: " + s.error_message()};
      const std::string state =
          grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
      if (as_json) {
        std::cout << Dump(json{{"status", state}}) << "\n";
      } else {
        std::cout << state << "\n";
      }
      if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) return 1;
    } else if (auth_create->parsed()) {
      ferry::v1::CreatePrincipalRequest req;
      req.set_name(principal);
      for (const auto& spec : grant_specs) {
        const auto colon = spec.find(':');
        if (colon == std::string::npos) throw Failure{"--grant " + spec + ": PERMISSION:RESOURCE"};
        *req.add_grants() = ParseGrant(spec.substr(0, colon), spec.substr(colon + 1));
      }
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::CreatePrincipal, req, "auth create");
      if (as_json) {
        std::cout << Dump(json{{"principal", principal}, {"token", r.token()}}) << "\n";
      } else {
        std::cout << r.token() << "\n";
      }
    } else if (auth_rotate->parsed()) {
      ferry::v1::RotateTokenRequest req;
      req.set_name(principal);
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::RotateToken, req, "auth rotate");
      std::cout << r.token() << "\n";
    } else if (auth_delete->parsed()) {
      ferry::v1::DeletePrincipalRequest req;
      req.set_name(principal);
      AdminCall(client, &ferry::v1::Admin::Stub::DeletePrincipal, req, "auth delete");
      if (!as_json) std::cout << "deleted principal " << principal << "\n";
    } else if (auth_grant->parsed() || auth_revoke->parsed()) {
      const bool grant = auth_grant->parsed();
      ferry::v1::GrantRequest g;
      g.set_principal(principal);
      *g.mutable_grant() = ParseGrant(permission, resource);
      if (grant) {
        AdminCall(client, &ferry::v1::Admin::Stub::Grant, g, "auth grant");
      } else {
        ferry::v1::RevokeRequest r;
        r.set_principal(principal);
        *r.mutable_grant() = g.grant();
        AdminCall(client, &ferry::v1::Admin::Stub::Revoke, r, "auth revoke");
      }
      if (!as_json) {
        std::cout << (grant ? "granted " : "revoked ") << permission << " on " << resource
                  << (grant ? " to " : " from ") << principal << "\n";
      }
    } else if (auth_list->parsed()) {
      auto r = AdminCall(client, &ferry::v1::Admin::Stub::ListPrincipals,
                         ferry::v1::ListPrincipalsRequest(), "auth list");
      std::vector<std::vector<std::string>> rows{{"PRINCIPAL", "PERMISSION", "RESOURCE"}};
      json out = json::array();
      for (const auto& p : r.principals()) {
        json grants = json::array();
        if (p.grants().empty()) rows.push_back({p.name(), "-", "-"});
        for (const auto& g : p.grants()) {
          const std::string res = g.resource_type() == "cluster"
                                      ? "cluster"
                                      : g.resource_type() + ":" + g.resource_name();
          rows.push_back({p.name(), g.permission(), res});
          grants.push_back(json{{"permission", g.permission()}, {"resource", res}});
        }
        out.push_back(json{{"principal", p.name()}, {"grants", grants}});
      }
      if (as_json) {
        std::cout << Dump(out) << "\n";
      } else {
        PrintTable(rows);
      }
    }
  } catch (const Failure& f) {
    std::cerr << "ferryctl: " << f.message << "\n";
    return 1;
  }
  return 0;
}
