// ferryctl: the Ferry command-line tool. `ferryctl --help` lists the commands.
// Broker address: --broker, else FERRY_BROKER, else 127.0.0.1:7420. Exit code 0 on success;
// otherwise 1 with a one-line reason on stderr (2 for usage errors).
#include <absl/time/time.h>

#include <CLI/CLI.hpp>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "client/client.h"

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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferryctl: command-line tool for the Ferry broker"};
  app.require_subcommand(1);
  std::string broker = "127.0.0.1:7420";
  bool as_json = false;
  app.add_option("--broker", broker, "broker address HOST:PORT")
      ->envname("FERRY_BROKER")->capture_default_str();
  app.add_flag("--json", as_json, "machine-readable output (one JSON document or JSON lines)");

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

  // lag
  auto* lag = app.add_subcommand("lag", "a group's progress per queue");
  lag->add_option("--group", group, "consumer group")->required();
  lag->add_option("--topic", name, "only this topic");

  CLI11_PARSE(app, argc, argv);

  try {
    ferry::Client client(broker);
    if (topic_create->parsed()) {
      ferry::v1::TopicConfig t;
      t.set_name(name);
      t.set_queues(queues);
      t.set_retention_ms(ParseDurationMs(retention, "--retention"));
      t.set_dedup_window_ms(ParseDurationMs(dedup_window, "--dedup-window"));
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
      auto send = [&](ferry::v1::ProduceRequest& req) {
        auto r = Check(client.Produce(req), "produce");
        for (const auto& res : r.results()) {
          if (as_json) {
            std::cout << Dump(json{{"queue", res.queue()},
                                   {"offset", res.offset()},
                                   {"duplicate", res.duplicate()}})
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
      auto r = Check(client.Ack(group, receipts), "commit");
      bool all_ok = true;
      for (int i = 0; i < r.results_size(); ++i) {
        const auto& res = r.results(i);
        const bool ok = res.status() == ferry::v1::COMMITTED ||
                        res.status() == ferry::v1::ALREADY_COMMITTED;
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
                             {"oldest_unacked_age_ms", q.oldest_unacked_age_ms()}});
        }
        std::cout << Dump(json{{"group", r.group()}, {"queues", out}}) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{
            {"TOPIC", "QUEUE", "END", "COMMITTED", "IN_FLIGHT", "LAG", "OLDEST_UNACKED"}};
        for (const auto& q : r.queues()) {
          rows.push_back({q.topic(), std::to_string(q.queue()), std::to_string(q.end_offset()),
                          std::to_string(q.committed_offset()), std::to_string(q.in_flight()),
                          std::to_string(q.lag()),
                          q.lag() == 0 ? "-" : Age(q.oldest_unacked_age_ms())});
        }
        PrintTable(rows);
      }
    }
  } catch (const Failure& f) {
    std::cerr << "ferryctl: " << f.message << "\n";
    return 1;
  }
  return 0;
}
