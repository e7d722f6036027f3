#include "relay/relay.h"

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_server.h"

namespace ferry::relay {
namespace {

struct RelayMetrics {
  metrics::Registry::CounterFamily& published =
      metrics::Default().Counters("ferry_relay_published_total",
                                  "outbox rows published to the broker and marked sent", {"topic"});
  metrics::Registry::CounterFamily& errors = metrics::Default().Counters(
      "ferry_relay_publish_errors_total",
      "rows not published by an attempt: unreachable (broker down, attempt refunded), retry "
      "(retryable error, backed off), failed (rejected for good: status failed)",
      {"topic", "kind"});
  metrics::Registry::HistogramFamily& latency = metrics::Default().Histograms(
      "ferry_relay_publish_latency_seconds",
      "from the row's insert (its transaction's start) to marked sent", {},
      metrics::LatencyBuckets());
  metrics::Registry::HistogramFamily& produce = metrics::Default().Histograms(
      "ferry_relay_produce_duration_seconds", "one Produce call to the broker, by topic", {"topic"},
      metrics::LatencyBuckets());
};

RelayMetrics& Metrics() {
  static RelayMetrics* m = new RelayMetrics();
  return *m;
}

}  // namespace

absl::Status MigrateOutbox(const std::string& database_url) {
  try {
    pqxx::connection conn(database_url);
    return pg::ApplyMigrations(conn, "ferry_outbox_migrations", OutboxMigrations());
  } catch (const std::exception& e) {
    std::string why = e.what();
    return absl::UnavailableError("cannot connect to the application database: " +
                                  why.substr(0, why.find('\n')));
  }
}

Relay::Relay(RelayOptions options) : options_(std::move(options)) {}

Relay::~Relay() { Stop(); }

absl::Status Relay::Start() {
  ferry::log::Get("relay")->info("event=starting {}", Describe(options_));
  std::string id = options_.relay_id;
  if (id.empty()) {
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    // host/pid and a random suffix: in containers every relay is pid 1, and replicas may share
    // a hostname.
    std::random_device rd;
    char suffix[16];
    std::snprintf(suffix, sizeof(suffix), "%06x", rd() & 0xffffff);
    id = std::string(host) + "/" + std::to_string(getpid()) + "/" + suffix;
  }
  pool_ = std::make_unique<pg::ConnectionPool>(options_.database_url, 2, "ferry-relay",
                                               PgOutboxStore::Statements());
  {
    auto lease = pool_->Acquire(std::chrono::seconds(10));
    if (!lease.ok()) return lease.status();
  }
  store_ = std::make_unique<PgOutboxStore>(*pool_, id, options_.max_attempts);
  ChannelOptions channel_options;
  channel_options.token = options_.broker_token;
  channel_options.tls_ca_file = options_.broker_tls_ca;
  channel_options.tls_cert_file = options_.broker_tls_cert;
  channel_options.tls_key_file = options_.broker_tls_key;
  auto channel = MakeChannel(options_.broker, channel_options);
  if (!channel.ok()) return channel.status();
  client_ = std::make_unique<Client>(*channel);
  client_->set_timeout(std::chrono::milliseconds(options_.publish_timeout_ms));
  if (!options_.producer_groups.empty()) {
    check_conn_ = pool_->OpenDedicated("checks");
    checker_ = std::make_unique<TransactionChecker>(
        *channel, options_.producer_groups, "ferry-relay " + id,
        [this](const v1::TransactionCheck& check) {
          std::lock_guard<std::mutex> lock(check_mu_);
          std::string why;
          try {
            if (!check_conn_->is_open()) check_conn_ = pool_->OpenDedicated("checks");
          } catch (const std::exception& e) {
            why = std::string("the application database is unreachable: ") + e.what();
          }
          if (why.empty()) {
            switch (LocalTransactionOutcome(*check_conn_, check.check_ref(), options_.check_query,
                                            &why)) {
              case LocalOutcome::kCommitted:
                return v1::TRANSACTION_COMMIT;
              case LocalOutcome::kRolledBack:
                return v1::TRANSACTION_ROLLBACK;
              case LocalOutcome::kUnknown:
                break;
            }
          }
          ferry::log::Get("relay.check")
              ->info("event=answered_unknown transaction_id={} check_ref={} reason={}",
                     check.transaction_id(), ferry::log::Quote(check.check_ref()),
                     ferry::log::Quote(why));
          return v1::TRANSACTION_UNKNOWN;
        });
    checker_->Start();
  }
  if (!options_.metrics_listen.empty()) {
    collector_ = metrics::Default().AddCollector([this] {
      std::vector<metrics::GaugeFamily> out = pg::PoolGauges(*pool_);
      auto st = store_->Stats();
      if (!st.ok()) throw std::runtime_error(std::string(st.status().message()));
      out.push_back({"ferry_relay_outbox_rows",
                     "outbox rows by status: pending (to publish), failed (a person looks)",
                     {"status"},
                     {{{"pending"}, static_cast<double>(st->pending)},
                      {{"failed"}, static_cast<double>(st->failed)}}});
      out.push_back({"ferry_relay_oldest_pending_age_seconds",
                     "age of the oldest pending outbox row",
                     {},
                     {{{}, st->oldest_pending_age_s}}});
      return out;
    });
    auto m = metrics::MetricsServer::Start(options_.metrics_listen, metrics::Default(),
                                           [this] { return Health(); });
    if (!m.ok()) return m.status();
    metrics_ = *std::move(m);
  }
  loop_ = std::thread([this] { Loop(); });
  ferry::log::Get("relay")->info("event=started relay_id={} broker={} groups={}", id,
                                 options_.broker, options_.producer_groups.size());
  return absl::OkStatus();
}

void Relay::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (metrics_) metrics_->Stop();
  if (collector_ != 0) metrics::Default().RemoveCollector(collector_);
  collector_ = 0;
  if (loop_.joinable()) loop_.join();
  if (checker_) checker_->Stop();
}

std::string Relay::Health() const {
  if (!database_ok_.load()) return "the application database is unreachable";
  if (!broker_ok_.load()) return "the broker is unreachable";
  return "";
}

bool Relay::Wait(std::chrono::milliseconds ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, ms, [this] { return stopping_; });
  return !stopping_;
}

int64_t Relay::Backoff(int32_t attempts) {
  thread_local std::mt19937 rng{std::random_device{}()};
  double d = options_.backoff_min_ms;
  for (int i = 1; i < attempts && d < options_.backoff_max_ms; ++i) d *= 2;
  d = std::min<double>(d, options_.backoff_max_ms);
  return static_cast<int64_t>(d * std::uniform_real_distribution<double>(0.5, 1.0)(rng));
}

void Relay::Loop() {
  auto logger = ferry::log::Get("relay");
  int64_t breaker_ms = 0;  // > 0 while the broker is unreachable
  auto last_cleanup = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    // Sent rows past retention go in batches, every half retention (100 ms to 10 s).
    const auto cleanup_every =
        std::chrono::milliseconds(std::clamp<int64_t>(options_.sent_retention_ms / 2, 100, 10000));
    if (std::chrono::steady_clock::now() - last_cleanup > cleanup_every) {
      last_cleanup = std::chrono::steady_clock::now();
      auto deleted = store_->DeleteSent(options_.sent_retention_ms, 10000);
      if (deleted.ok() && *deleted > 0)
        logger->info("event=cleanup sent_rows_deleted={}", *deleted);
    }
    auto rows = store_->Claim(options_.batch_size, options_.lease_ms);
    database_ok_ = rows.ok();
    if (!rows.ok()) {
      logger->warn("event=claim_failed error={}",
                   ferry::log::Quote(std::string(rows.status().message())));
      if (!Wait(std::chrono::milliseconds(1000))) return;
      continue;
    }
    if (rows->empty()) {
      if (!Wait(std::chrono::milliseconds(options_.poll_interval_ms))) return;
      continue;
    }
    logger->debug("event=claimed rows={}", rows->size());
    const bool reachable = Publish(std::move(*rows));
    broker_ok_ = reachable;
    if (!reachable) {
      // Circuit open: the broker is unreachable. Nothing was spent; wait, growing to 5 s.
      breaker_ms = breaker_ms == 0 ? 100 : std::min<int64_t>(breaker_ms * 2, 5000);
      logger->warn("event=broker_unavailable pause_ms={}", breaker_ms);
      if (!Wait(std::chrono::milliseconds(breaker_ms))) return;
      continue;
    }
    breaker_ms = 0;
    // After a batch, claim again at once; only an empty claim waits (the poll interval).
  }
}

namespace {

bool BrokerUnreachable(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kAborted:
      return true;
    case absl::StatusCode::kResourceExhausted:
      return absl::StrContains(s.message(), "busy");
    default:
      return false;
  }
}

bool Permanent(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kOutOfRange:
      return true;
    case absl::StatusCode::kResourceExhausted:
      return !absl::StrContains(s.message(), "busy");  // too large
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<v1::ProducedMessage> OutboxMessage(const OutboxRow& r) {
  constexpr const char* kOutboxId = "ferry-outbox-id";
  // A value nested deeper than kMaxHeaderDepth is refused: the parser is iterative, but
  // dump() (the header's text) recurses once per level and would overflow the stack.
  bool too_deep = false;
  const auto headers = nlohmann::json::parse(
      r.headers_json,
      [&too_deep](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
        if (depth > kMaxHeaderDepth) too_deep = true;
        return !too_deep;
      },
      /*allow_exceptions=*/false);
  if (too_deep) {
    return absl::InvalidArgumentError(
        absl::StrCat("headers: a value is nested deeper than ", kMaxHeaderDepth, " levels"));
  }
  if (!headers.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("headers: must be a JSON object of header names to values, got ",
                     headers.is_discarded() ? "unparsable text" : headers.type_name()));
  }
  v1::ProducedMessage m;
  if (r.key) m.set_key(*r.key);
  m.set_payload(r.payload);
  m.set_dedup_id(r.id);  // a re-send after a crash is recognised, not stored twice
  for (const auto& [k, v] : headers.items()) {
    if (k == kOutboxId) {
      return absl::InvalidArgumentError(
          absl::StrCat("headers: \"", kOutboxId, "\" is set by the relay (the row id)"));
    }
    (*m.mutable_headers())[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  (*m.mutable_headers())[kOutboxId] = r.id;  // the consumer's inbox key
  return m;
}

bool Relay::Publish(std::vector<OutboxRow> rows) {
  auto logger = ferry::log::Get("relay");
  // Rows keep the claim's order (each key's rows in key_seq order; a key's run is one topic).
  std::map<std::string, std::vector<OutboxRow>> by_topic;
  for (auto& r : rows) by_topic[r.topic].push_back(std::move(r));
  bool reachable = true;
  // Keys with a row that was not published in this batch (failed, retrying, malformed): their
  // later rows are given back unspent, to wait behind it as the ordering promise says.
  std::set<std::string> held;
  auto holding = [&held](const OutboxRow& r) { return r.key && held.count(*r.key) > 0; };
  auto hold = [&held](const OutboxRow& r) {
    if (r.key) held.insert(*r.key);
  };
  auto give_back = [this](const std::vector<const OutboxRow*>& back, const std::string& why) {
    std::vector<RetryRow> retry;
    for (const OutboxRow* r : back) retry.push_back(RetryRow{r->id, r->attempts, 0});
    (void)store_->Retry(retry, /*refund=*/true, why);
  };
  const std::string kBehind = "held back: an earlier row of its key was not published";
  for (auto& [topic, batch] : by_topic) {
    if (!reachable) {  // give the rest back without spending attempts
      std::vector<const OutboxRow*> back;
      for (const auto& r : batch) back.push_back(&r);
      give_back(back, "broker unavailable");
      continue;
    }
    // A permanent rejection of a batch is narrowed down row by row, so one bad row does not
    // fail its neighbours.
    std::vector<std::vector<const OutboxRow*>> calls(1);
    std::map<const OutboxRow*, v1::ProducedMessage> messages;
    std::vector<const OutboxRow*> behind;
    for (const auto& r : batch) {
      if (holding(r)) {
        behind.push_back(&r);
        continue;
      }
      auto m = OutboxMessage(r);
      if (!m.ok()) {  // the row itself is malformed: it fails with the reason, alone
        const std::string error = std::string(m.status().message());
        logger->warn("event=row_failed id={} error={}", r.id, ferry::log::Quote(error));
        (void)store_->MarkFailed({RetryRow{r.id, r.attempts, 0}}, error);
        Metrics().errors.With({topic, "failed"}).Add(1);
        hold(r);
        continue;
      }
      messages.emplace(&r, *std::move(m));
      calls[0].push_back(&r);
    }
    give_back(behind, kBehind);
    if (calls[0].empty()) continue;
    for (size_t c = 0; c < calls.size(); ++c) {
      std::vector<const OutboxRow*> call;
      behind.clear();
      for (const OutboxRow* r : calls[c]) (holding(*r) ? behind : call).push_back(r);
      give_back(behind, kBehind);
      if (call.empty()) continue;
      v1::ProduceRequest req;
      req.set_topic(topic);
      for (const OutboxRow* r : call) *req.add_messages() = messages.at(r);
      const auto call_start = std::chrono::steady_clock::now();
      auto resp = client_->Produce(req);
      Metrics().produce.With({topic}).Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - call_start).count());
      if (resp.ok()) {
        std::vector<SentRow> sent;
        for (int i = 0; i < resp->results_size(); ++i) {
          sent.push_back(SentRow{call[i]->id, call[i]->attempts, resp->results(i).queue(),
                                 static_cast<int64_t>(resp->results(i).offset())});
        }
        auto marked = store_->MarkSent(sent);
        if (!marked.ok()) {
          // Published but not marked: the claim expires and the re-send is a duplicate the
          // broker recognises (dedup_id).
          logger->warn("event=mark_failed rows={} error={}", sent.size(),
                       ferry::log::Quote(std::string(marked.status().message())));
        } else {
          Metrics().published.With({topic}).Add(static_cast<double>(marked->size()));
          for (double age : *marked) Metrics().latency.With({}).Observe(age);
        }
        published_ += static_cast<int64_t>(sent.size());
        continue;
      }
      const absl::Status& err = resp.status();
      const std::string error =
          std::string(absl::StatusCodeToString(err.code())) + ": " + std::string(err.message());
      if (BrokerUnreachable(err)) {
        std::vector<const OutboxRow*> back = call;
        for (size_t k = c + 1; k < calls.size(); ++k) {
          back.insert(back.end(), calls[k].begin(), calls[k].end());
        }
        give_back(back, error);
        Metrics().errors.With({topic, "unreachable"}).Add(static_cast<double>(back.size()));
        reachable = false;
        break;
      }
      if (Permanent(err) && call.size() > 1) {
        for (const OutboxRow* r : call) calls.push_back({r});
        continue;
      }
      std::vector<RetryRow> rows_of_call;
      for (const OutboxRow* r : call) {
        rows_of_call.push_back(RetryRow{r->id, r->attempts, Backoff(r->attempts)});
        hold(*r);
      }
      if (Permanent(err)) {
        logger->warn("event=row_failed id={} error={}", call[0]->id, ferry::log::Quote(error));
        (void)store_->MarkFailed(rows_of_call, error);
        Metrics().errors.With({topic, "failed"}).Add(static_cast<double>(rows_of_call.size()));
      } else {
        (void)store_->Retry(rows_of_call, /*refund=*/false, error);
        Metrics().errors.With({topic, "retry"}).Add(static_cast<double>(rows_of_call.size()));
      }
    }
  }
  return reachable;
}

}  // namespace ferry::relay
