#include "relay/options.h"

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/log.h"

namespace ferry::relay {
using config::IsHostPort;

void AddFlags(CLI::App& app, RelayOptions& o) {
  // A misspelt key in a --config file is an error, not a silently ignored setting.
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("--database-url", o.database_url, "the application's PostgreSQL URL/conninfo")
      ->envname("FERRY_DATABASE_URL");
  app.add_option("--broker", o.broker, "broker HOST:PORT")
      ->envname("FERRY_BROKER")
      ->capture_default_str();
  app.add_option("--producer-group", o.producer_groups,
                 "answer back-checks of this producer group (repeatable)")
      ->envname("FERRY_PRODUCER_GROUPS")
      ->delimiter(',');
  app.add_option("--check-query", o.check_query,
                 "back-check SQL for check_refs that are not transaction ids: $1 = check_ref, "
                 "returns COMMIT, ROLLBACK or UNKNOWN")
      ->envname("FERRY_CHECK_QUERY");
  app.add_option("--relay-id", o.relay_id, "name in claimed_by (default host/pid)")
      ->envname("FERRY_RELAY_ID");
  app.add_option("--batch-size", o.batch_size, "rows per claim")
      ->envname("FERRY_BATCH_SIZE")
      ->capture_default_str();
  app.add_option("--poll-interval-ms", o.poll_interval_ms,
                 "after an empty claim, claim again after this long (ms)")
      ->envname("FERRY_POLL_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--lease-ms", o.lease_ms, "a claim expires after this")
      ->envname("FERRY_LEASE_MS")
      ->capture_default_str();
  app.add_option("--publish-timeout-ms", o.publish_timeout_ms, "deadline of one Produce")
      ->envname("FERRY_PUBLISH_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--max-attempts", o.max_attempts, "then the row is failed")
      ->envname("FERRY_MAX_ATTEMPTS")
      ->capture_default_str();
  app.add_option("--backoff-min-ms", o.backoff_min_ms, "first retry delay (x2 each, jittered)")
      ->envname("FERRY_BACKOFF_MIN_MS")
      ->capture_default_str();
  app.add_option("--backoff-max-ms", o.backoff_max_ms, "longest retry delay")
      ->envname("FERRY_BACKOFF_MAX_MS")
      ->capture_default_str();
  app.add_option("--sent-retention-ms", o.sent_retention_ms, "sent rows are deleted after this")
      ->envname("FERRY_SENT_RETENTION_MS")
      ->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace|debug|info|warn|error")
      ->envname("FERRY_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--log-format", o.log_format, "logfmt|json (one JSON object per line)")
      ->envname("FERRY_LOG_FORMAT")
      ->capture_default_str();
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Prometheus /metrics and /healthz address HOST:PORT (empty: off)")
      ->envname("FERRY_METRICS_LISTEN");
  app.add_option("--broker-token", o.broker_token, "bearer token for a broker run with --auth")
      ->envname("FERRY_BROKER_TOKEN");
  app.add_option("--broker-tls-ca", o.broker_tls_ca,
                 "PEM CA of the broker's certificate: connect with TLS")
      ->envname("FERRY_BROKER_TLS_CA");
  app.add_option("--broker-tls-cert", o.broker_tls_cert, "PEM client certificate")
      ->envname("FERRY_BROKER_TLS_CERT");
  app.add_option("--broker-tls-key", o.broker_tls_key, "PEM key of --broker-tls-cert")
      ->envname("FERRY_BROKER_TLS_KEY");
}

absl::Status Validate(const RelayOptions& o) {
  if (!IsHostPort(o.broker)) {
    return absl::InvalidArgumentError("--broker must be HOST:PORT");
  }
  if (o.batch_size < 1 || o.batch_size > 1000) {
    return absl::InvalidArgumentError("--batch-size must be between 1 and 1000");
  }
  if (o.poll_interval_ms < 1 || o.poll_interval_ms > 60000 || o.lease_ms < 1000 ||
      o.publish_timeout_ms < 100 || o.publish_timeout_ms >= o.lease_ms) {
    return absl::InvalidArgumentError(
        "--poll-interval-ms between 1 and 60000, --lease-ms >= 1000, and --publish-timeout-ms "
        "between 100 and "
        "--lease-ms (a publish must end before its claim does)");
  }
  if (o.max_attempts < 1 || o.backoff_min_ms < 1 || o.backoff_max_ms < o.backoff_min_ms) {
    return absl::InvalidArgumentError(
        "--max-attempts >= 1 and 1 <= --backoff-min-ms <= --backoff-max-ms");
  }
  if (!o.metrics_listen.empty() && !IsHostPort(o.metrics_listen)) {
    return absl::InvalidArgumentError("--metrics-listen must be HOST:PORT (or empty: off)");
  }
  if (o.broker_tls_cert.empty() != o.broker_tls_key.empty()) {
    return absl::InvalidArgumentError("--broker-tls-cert and --broker-tls-key go together");
  }
  if (!o.broker_tls_cert.empty() && o.broker_tls_ca.empty()) {
    return absl::InvalidArgumentError("--broker-tls-cert needs --broker-tls-ca");
  }
  if (!log::IsLevel(o.log_level)) {
    return absl::InvalidArgumentError("--log-level must be one of trace, debug, info, warn, error");
  }
  if (!log::IsFormat(o.log_format)) {
    return absl::InvalidArgumentError("--log-format must be logfmt or json");
  }
  for (const auto& g : o.producer_groups) {
    if (g.empty() || g.size() > 128) {
      return absl::InvalidArgumentError("--producer-group names are 1 to 128 characters");
    }
  }
  return absl::OkStatus();
}

std::string Describe(const RelayOptions& o) {
  return absl::StrCat(
      "database_url=\"", config::RedactConninfo(o.database_url), "\" broker=", o.broker,
      " producer_groups=", absl::StrJoin(o.producer_groups, ","), " check_query=\"", o.check_query,
      "\" relay_id=", o.relay_id, " batch_size=", o.batch_size,
      " poll_interval_ms=", o.poll_interval_ms, " lease_ms=", o.lease_ms,
      " publish_timeout_ms=", o.publish_timeout_ms, " max_attempts=", o.max_attempts,
      " backoff_min_ms=", o.backoff_min_ms, " backoff_max_ms=", o.backoff_max_ms,
      " sent_retention_ms=", o.sent_retention_ms, " metrics_listen=", o.metrics_listen,
      " broker_token=", o.broker_token.empty() ? "" : "***", " broker_tls_ca=", o.broker_tls_ca,
      " broker_tls_cert=", o.broker_tls_cert, " log_level=", o.log_level);
}

}  // namespace ferry::relay
