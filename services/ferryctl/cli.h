// ferryctl's shared parts: the connection every command uses, failures, parsing of durations,
// times and grants, and the table / JSON output helpers. Each command group lives in its own
// file (topic.cc, messages.cc, groups.cc, txn.cc, auth.cc) and registers its subcommands with
// callbacks; main.cc holds the global options and health.
#pragma once

#include <absl/status/statusor.h>
#include <absl/strings/ascii.h>
#include <absl/strings/escaping.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_split.h>
#include <absl/time/time.h>
#include <google/protobuf/util/time_util.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "client/transactions.h"

namespace ferryctl {

using nlohmann::json;

// A command that cannot go on: main prints "ferryctl: <message>" on stderr and exits 1.
struct Failure {
  std::string message;
};

// What every command gets: the global options, the connection (made on first use, after
// parsing) and the exit code a command sets when it printed a partial failure.
class Context {
 public:
  std::string broker = "127.0.0.1:7420";
  ferry::ChannelOptions connect;
  bool as_json = false;
  int exit_code = 0;

  std::shared_ptr<grpc::Channel> channel();
  ferry::Client& client();

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ferry::Client> client_;
};

// The command groups (one file each).
void AddTopicCommands(CLI::App& app, Context& ctx);
void AddMessageCommands(CLI::App& app, Context& ctx);
void AddGroupCommands(CLI::App& app, Context& ctx);
void AddTxnCommands(CLI::App& app, Context& ctx);
void AddAuthCommands(CLI::App& app, Context& ctx);

template <typename T>
T Check(absl::StatusOr<T> r, const std::string& what) {
  if (!r.ok()) {
    throw Failure{what + ": " + std::string(absl::StatusCodeToString(r.status().code())) + ": " +
                  std::string(r.status().message())};
  }
  return *std::move(r);
}

// "7d", "24h", "30m", "10s", "250ms" -> milliseconds.
uint64_t ParseDurationMs(const std::string& text, const std::string& flag);
// "10s,30s,1m" -> milliseconds each.
std::vector<uint64_t> ParseDurationList(const std::string& text, const std::string& flag);
// RFC 3339 ("2026-11-21T10:00:00Z") -> unix ms.
int64_t ParseTimeMs(const std::string& text, const std::string& flag);
ferry::v1::StartPosition ParseStart(const std::string& text);
std::vector<uint64_t> ParseIds(const std::vector<std::string>& ids);
// "produce" and "topic:orders" (or "group:*", "cluster") as a grant.
ferry::v1::AccessGrant ParseGrant(const std::string& permission, const std::string& resource);

std::string Dump(const json& j);
// Sets "value" to the payload when it is UTF-8 text, else "value_base64" to its base64 (a
// binary payload printed as text would come out as U+FFFD replacement characters).
void AddPayload(json& line, const std::string& payload);
// A stored message (peek, message get) as one JSON object.
json StoredJson(const ferry::v1::StoredMessage& m);
// Prints rows as an aligned table (header first).
void PrintTable(const std::vector<std::vector<std::string>>& rows);
json TopicJson(const ferry::v1::TopicConfig& t);
json GroupJson(const ferry::v1::GroupConfig& g);
void PrintGroup(const ferry::v1::GroupConfig& g);
std::string Ms(uint64_t ms);
// An age for people: "850ms", "12.4s", "3m12s", "2h05m".
std::string Age(uint64_t ms);

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
    throw Failure{
        what + ": " +
        std::string(absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()))) +
        ": " + s.error_message()};
  }
  return resp;
}

}  // namespace ferryctl
