#include "ferryctl/cli.h"

#include <cstdio>

namespace ferryctl {

std::shared_ptr<grpc::Channel> Context::channel() {
  if (!channel_) {
    auto made = ferry::MakeChannel(broker, connect);
    if (!made.ok()) throw Failure{std::string(made.status().message())};
    channel_ = *std::move(made);
  }
  return channel_;
}

ferry::Client& Context::client() {
  if (!client_) client_ = std::make_unique<ferry::Client>(channel());
  return *client_;
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

json StoredJson(const ferry::v1::StoredMessage& m) {
  json headers = json::object();
  for (const auto& [k, v] : m.headers()) headers[k] = v;
  json j{{"topic", m.topic()}, {"queue", m.queue()}, {"offset", m.offset()}, {"key", m.key()}};
  AddPayload(j, m.payload());
  j["headers"] = headers;
  j["dedup_id"] = m.dedup_id();
  j["produced_at"] = absl::FormatTime(
      "%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(static_cast<int64_t>(m.produced_at_unix_ms())),
      absl::UTCTimeZone());
  return j;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void AddPayload(json& line, const std::string& payload) {
  try {
    (void)json(payload).dump();  // strict: throws on bytes that are not UTF-8
    line["value"] = payload;
  } catch (const json::type_error&) {
    line["value_base64"] = absl::Base64Escape(payload);
  }
}

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
  return json{
      {"name", g.name()},
      {"max_delivery_attempts", g.max_delivery_attempts()},
      {"backoff_ms", std::vector<uint64_t>(g.backoff_ms().begin(), g.backoff_ms().end())},
      {"backoff_min_ms", g.backoff_min_ms()},
      {"backoff_max_ms", g.backoff_max_ms()},
      {"ordered", g.ordered()},
      {"start", g.start_position() == ferry::v1::START_POSITION_LATEST ? "latest" : "earliest"}};
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

}  // namespace ferryctl
