#include "broker/options.h"

#include <absl/strings/str_cat.h>

#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/log.h"

namespace ferry::broker {

using config::IsHostPort;

void AddFlags(CLI::App& app, BrokerOptions& o) {
  // A misspelt key in a --config file is an error, not a silently ignored setting.
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("--listen", o.listen, "gRPC listen address HOST:PORT")
      ->envname("FERRY_LISTEN")
      ->capture_default_str();
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Prometheus /metrics address HOST:PORT (empty: no metrics endpoint)")
      ->envname("FERRY_METRICS_LISTEN");
  app.add_option("--console-listen", o.console_listen,
                 "web console address HOST:PORT, over TLS with --tls-cert (empty: no console)")
      ->envname("FERRY_CONSOLE_LISTEN");
  app.add_option("--console-dir", o.console_dir,
                 "the console's built files (empty: share/ferry/console or console/ beside bin/)")
      ->envname("FERRY_CONSOLE_DIR");
  app.add_option("--stats-interval-ms", o.stats_interval_ms,
                 "how often lag, rates and ends are sampled into stats_samples (the console's "
                 "charts; one broker samples)")
      ->envname("FERRY_STATS_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--stats-retention-hours", o.stats_retention_hours,
                 "how long stats samples are kept")
      ->envname("FERRY_STATS_RETENTION_HOURS")
      ->capture_default_str();
  app.add_option("--database-url", o.database_url,
                 "PostgreSQL URL or conninfo (empty: libpq's PG* environment variables)")
      ->envname("FERRY_DATABASE_URL");
  app.add_option("--pool-size", o.pool_size, "database connections = worker threads")
      ->envname("FERRY_POOL_SIZE")
      ->capture_default_str();
  app.add_option("--max-queued-calls", o.max_queued_calls,
                 "calls waiting for a worker before RESOURCE_EXHAUSTED")
      ->envname("FERRY_MAX_QUEUED_CALLS")
      ->capture_default_str();
  app.add_option("--max-message-bytes", o.max_message_bytes, "largest payload accepted, bytes")
      ->envname("FERRY_MAX_MESSAGE_BYTES")
      ->capture_default_str();
  app.add_option("--poll-interval-ms", o.poll_interval_ms,
                 "long-poll re-check interval when no notification arrives, ms")
      ->envname("FERRY_POLL_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--shutdown-grace-ms", o.shutdown_grace_ms,
                 "time in-flight calls get to finish on SIGTERM/SIGINT, ms")
      ->envname("FERRY_SHUTDOWN_GRACE_MS")
      ->capture_default_str();
  app.add_option("--delayed-poll-ms", o.delayed_poll_ms,
                 "how often due delayed messages are moved into their queues, ms")
      ->envname("FERRY_DELAYED_POLL_MS")
      ->capture_default_str();
  app.add_option("--health-interval-ms", o.health_interval_ms,
                 "how often the database is probed; gRPC health is NOT_SERVING while it fails, ms")
      ->envname("FERRY_HEALTH_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--maintenance-interval-ms", o.maintenance_interval_ms,
                 "how often retention and dedup expiry run, ms")
      ->envname("FERRY_MAINTENANCE_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--txn-check-after-ms", o.txn_check_after_ms,
                 "first back-check of an undecided transaction after this long, ms")
      ->envname("FERRY_TXN_CHECK_AFTER_MS")
      ->capture_default_str();
  app.add_option("--txn-check-interval-ms", o.txn_check_interval_ms,
                 "then a back-check this often, ms")
      ->envname("FERRY_TXN_CHECK_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--txn-max-checks", o.txn_max_checks,
                 "UNKNOWN or unanswered checks before CHECK_EXHAUSTED")
      ->envname("FERRY_TXN_MAX_CHECKS")
      ->capture_default_str();
  app.add_option("--group-commit", o.group_commit,
                 "concurrent produces to a topic share one transaction (true|false)")
      ->envname("FERRY_GROUP_COMMIT")
      ->capture_default_str();
  app.add_option("--migrate", o.migrate, "apply database migrations at start (true|false)")
      ->envname("FERRY_MIGRATE")
      ->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace|debug|info|warn|error")
      ->envname("FERRY_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--log-format", o.log_format, "logfmt|json (one JSON object per line)")
      ->envname("FERRY_LOG_FORMAT")
      ->capture_default_str();
  app.add_option("--tls-cert", o.tls_cert_file, "PEM certificate chain: serve gRPC over TLS")
      ->envname("FERRY_TLS_CERT");
  app.add_option("--tls-key", o.tls_key_file, "PEM private key of --tls-cert")
      ->envname("FERRY_TLS_KEY");
  app.add_option("--tls-client-ca", o.tls_client_ca_file,
                 "PEM CA bundle: require client certificates signed by it")
      ->envname("FERRY_TLS_CLIENT_CA");
  app.add_option("--auth", o.auth,
                 "require a bearer token and a permission on every call but health (true|false)")
      ->envname("FERRY_AUTH")
      ->capture_default_str();
  app.add_option("--auth-cache-ms", o.auth_cache_ms,
                 "tokens and grants are cached this long; a revoke takes effect within it, ms")
      ->envname("FERRY_AUTH_CACHE_MS")
      ->capture_default_str();
}

absl::Status Validate(const BrokerOptions& o) {
  if (!IsHostPort(o.listen)) {
    return absl::InvalidArgumentError("--listen must be HOST:PORT, e.g. 127.0.0.1:7420");
  }
  if (!o.metrics_listen.empty() && !IsHostPort(o.metrics_listen)) {
    return absl::InvalidArgumentError(
        "--metrics-listen must be HOST:PORT, e.g. 127.0.0.1:9420 (or empty: off)");
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together: set both or neither");
  }
  if (!o.tls_client_ca_file.empty() && o.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if (o.auth_cache_ms < 0 || o.auth_cache_ms > 600000) {
    return absl::InvalidArgumentError("--auth-cache-ms must be between 0 and 600000");
  }
  if (!log::IsLevel(o.log_level)) {
    return absl::InvalidArgumentError("--log-level must be one of trace, debug, info, warn, error");
  }
  if (!log::IsFormat(o.log_format)) {
    return absl::InvalidArgumentError("--log-format must be logfmt or json");
  }
  if (o.pool_size < 1 || o.pool_size > 256) {
    return absl::InvalidArgumentError("--pool-size must be between 1 and 256");
  }
  if (o.max_queued_calls < 1) {
    return absl::InvalidArgumentError("--max-queued-calls must be at least 1");
  }
  if (o.max_message_bytes < 1 || o.max_message_bytes > (16u << 20)) {
    return absl::InvalidArgumentError("--max-message-bytes must be between 1 and 16777216");
  }
  if (o.poll_interval_ms < 10 || o.poll_interval_ms > 10000) {
    return absl::InvalidArgumentError("--poll-interval-ms must be between 10 and 10000");
  }
  if (o.shutdown_grace_ms < 0 || o.shutdown_grace_ms > 600000) {
    return absl::InvalidArgumentError("--shutdown-grace-ms must be between 0 and 600000");
  }
  if (o.txn_check_after_ms < 10 || o.txn_check_after_ms > 86400000) {
    return absl::InvalidArgumentError("--txn-check-after-ms must be between 10 and 86400000");
  }
  if (o.txn_check_interval_ms < 10 || o.txn_check_interval_ms > 86400000) {
    return absl::InvalidArgumentError("--txn-check-interval-ms must be between 10 and 86400000");
  }
  if (o.txn_max_checks < 1 || o.txn_max_checks > 1000) {
    return absl::InvalidArgumentError("--txn-max-checks must be between 1 and 1000");
  }
  if (o.delayed_poll_ms < 10 || o.delayed_poll_ms > 10000) {
    return absl::InvalidArgumentError("--delayed-poll-ms must be between 10 and 10000");
  }
  if (!o.console_listen.empty() && !IsHostPort(o.console_listen)) {
    return absl::InvalidArgumentError(
        "--console-listen must be HOST:PORT, e.g. 127.0.0.1:7480 (or empty: off)");
  }
  if (o.stats_interval_ms < 1000 || o.stats_interval_ms > 3600000) {
    return absl::InvalidArgumentError("--stats-interval-ms must be between 1000 and 3600000");
  }
  if (o.stats_retention_hours < 1 || o.stats_retention_hours > 8760) {
    return absl::InvalidArgumentError("--stats-retention-hours must be between 1 and 8760");
  }
  if (o.health_interval_ms < 100 || o.health_interval_ms > 60000) {
    return absl::InvalidArgumentError("--health-interval-ms must be between 100 and 60000");
  }
  if (o.maintenance_interval_ms < 100 || o.maintenance_interval_ms > 3600000) {
    return absl::InvalidArgumentError("--maintenance-interval-ms must be between 100 and 3600000");
  }
  return absl::OkStatus();
}

std::string Describe(const BrokerOptions& o) {
  return absl::StrCat(
      "listen=", o.listen, " metrics_listen=", o.metrics_listen,
      " console_listen=", o.console_listen, " stats_interval_ms=", o.stats_interval_ms,
      " stats_retention_hours=", o.stats_retention_hours, " database_url=\"",
      config::RedactConninfo(o.database_url), "\" pool_size=", o.pool_size,
      " max_queued_calls=", o.max_queued_calls, " max_message_bytes=", o.max_message_bytes,
      " poll_interval_ms=", o.poll_interval_ms, " shutdown_grace_ms=", o.shutdown_grace_ms,
      " delayed_poll_ms=", o.delayed_poll_ms, " health_interval_ms=", o.health_interval_ms,
      " maintenance_interval_ms=", o.maintenance_interval_ms,
      " txn_check_after_ms=", o.txn_check_after_ms,
      " txn_check_interval_ms=", o.txn_check_interval_ms, " txn_max_checks=", o.txn_max_checks,
      " group_commit=", o.group_commit, " migrate=", o.migrate, " log_level=", o.log_level,
      " tls_cert=", o.tls_cert_file, " tls_key=", o.tls_key_file.empty() ? "" : "(set)",
      " tls_client_ca=", o.tls_client_ca_file, " auth=", o.auth,
      " auth_cache_ms=", o.auth_cache_ms);
}

}  // namespace ferry::broker
