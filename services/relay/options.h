// RelayOptions: every setting of ferry-relay, with its default and unit.
// Precedence: command-line flag > config file (--config FILE, TOML/INI, keys named like the flags
// without "--") > environment (FERRY_*) > default.
#pragma once

#include <absl/status/status.h>

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace ferry::relay {

struct RelayOptions {
  std::string database_url;                  // FERRY_DATABASE_URL: the application database
  std::string broker = "127.0.0.1:7420";     // FERRY_BROKER
  std::vector<std::string> producer_groups;  // FERRY_PRODUCER_GROUPS: answer their back-checks
  std::string check_query;         // FERRY_CHECK_QUERY: SQL with $1 = check_ref, returning COMMIT,
                                   // ROLLBACK or UNKNOWN (when check_ref is not a transaction id)
  std::string relay_id;            // FERRY_RELAY_ID: name in claimed_by (default host/pid)
  int batch_size = 100;            // FERRY_BATCH_SIZE: rows per claim (1-1000)
  int poll_interval_ms = 10;       // FERRY_POLL_INTERVAL_MS: claim again after an empty claim
  int lease_ms = 30000;            // FERRY_LEASE_MS: a claim expires after this
  int publish_timeout_ms = 10000;  // FERRY_PUBLISH_TIMEOUT_MS: deadline of a Produce
  int max_attempts = 16;           // FERRY_MAX_ATTEMPTS: then status failed
  int backoff_min_ms = 1000;       // FERRY_BACKOFF_MIN_MS: first retry delay
  int backoff_max_ms = 300000;     // FERRY_BACKOFF_MAX_MS: longest retry delay
  int64_t sent_retention_ms = 86400000;  // FERRY_SENT_RETENTION_MS: sent rows kept this long
  std::string metrics_listen;            // FERRY_METRICS_LISTEN: HOST:PORT for /metrics, /healthz
  std::string broker_token;              // FERRY_BROKER_TOKEN: bearer token (broker --auth)
  std::string broker_tls_ca;             // FERRY_BROKER_TLS_CA: set = TLS to the broker
  std::string broker_tls_cert;           // FERRY_BROKER_TLS_CERT: client certificate
  std::string broker_tls_key;            // FERRY_BROKER_TLS_KEY: its key
  std::string log_level = "info";        // FERRY_LOG_LEVEL
  std::string log_format = "logfmt";     // FERRY_LOG_FORMAT: logfmt|json
};

// Declares every option on `app` (flag, FERRY_* variable, default in --help), writing into `o`.
void AddFlags(CLI::App& app, RelayOptions& o);

absl::Status Validate(const RelayOptions& options);

// The options as one log line: the database password and the token redacted.
std::string Describe(const RelayOptions& options);

}  // namespace ferry::relay
