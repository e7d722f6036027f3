// BrokerOptions: every setting of ferry-broker, with its default and unit.
// Precedence: command-line flag > config file (--config FILE, TOML/INI, keys named like the flags
// without "--") > environment (FERRY_*) > default.
#pragma once

#include <absl/status/status.h>

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace ferry::broker {

struct BrokerOptions {
  std::string listen = "127.0.0.1:7420";  // FERRY_LISTEN: gRPC address (port 0: any free port)
  std::string metrics_listen;             // FERRY_METRICS_LISTEN: HOST:PORT for /metrics; "" = off
  std::string console_listen;             // FERRY_CONSOLE_LISTEN: HOST:PORT of the web console
  std::string console_dir;                // FERRY_CONSOLE_DIR: its files; "" = next to the binary
  int64_t stats_interval_ms = 60000;      // FERRY_STATS_INTERVAL_MS: lag/rate history samples
  int stats_retention_hours = 168;        // FERRY_STATS_RETENTION_HOURS: samples kept this long
  std::string database_url;               // FERRY_DATABASE_URL: libpq URL/conninfo; "" = PG* env
  int pool_size = 8;                      // FERRY_POOL_SIZE: connections = worker threads
  int max_queued_calls = 4096;            // FERRY_MAX_QUEUED_CALLS: beyond: RESOURCE_EXHAUSTED
  uint64_t max_message_bytes = 4u << 20;  // FERRY_MAX_MESSAGE_BYTES: one payload
  int poll_interval_ms = 200;             // FERRY_POLL_INTERVAL_MS: long-poll fallback re-check
  int shutdown_grace_ms = 5000;           // FERRY_SHUTDOWN_GRACE_MS: in-flight calls get this long
  int delayed_poll_ms = 100;              // FERRY_DELAYED_POLL_MS: due delayed messages moved
  int health_interval_ms = 1000;          // FERRY_HEALTH_INTERVAL_MS: database probe for health
  int maintenance_interval_ms = 10000;    // FERRY_MAINTENANCE_INTERVAL_MS: retention, dedup expiry
  int64_t txn_check_after_ms = 6000;      // FERRY_TXN_CHECK_AFTER_MS: first back-check
  int64_t txn_check_interval_ms = 30000;  // FERRY_TXN_CHECK_INTERVAL_MS: then every
  int txn_max_checks = 15;                // FERRY_TXN_MAX_CHECKS: then CHECK_EXHAUSTED
  bool group_commit = true;               // FERRY_GROUP_COMMIT: concurrent produces share a txn
  bool migrate = true;                    // FERRY_MIGRATE: apply migrations at start
  std::string log_level = "info";         // FERRY_LOG_LEVEL: trace|debug|info|warn|error
  std::string log_format = "logfmt";      // FERRY_LOG_FORMAT: logfmt|json
  // TLS for the gRPC listener: both files set = TLS only; neither = plaintext (loopback use).
  std::string tls_cert_file;       // FERRY_TLS_CERT: PEM certificate chain
  std::string tls_key_file;        // FERRY_TLS_KEY: PEM private key
  std::string tls_client_ca_file;  // FERRY_TLS_CLIENT_CA: set = clients must present a
                                   // certificate signed by one of these CAs
  // Token authentication: every call but health needs "authorization: Bearer <token>" of a
  // principal stored in PostgreSQL (ferryctl auth ...), and the permission it asks for.
  bool auth = false;         // FERRY_AUTH
  int auth_cache_ms = 2000;  // FERRY_AUTH_CACHE_MS: tokens and grants are re-read after
};

// Declares every option on `app` (flag, FERRY_* variable, default in --help), writing into `o`.
void AddFlags(CLI::App& app, BrokerOptions& o);

// Checks ranges before anything starts; the message names the flag.
absl::Status Validate(const BrokerOptions& options);

// The options as one log line, with the database password redacted.
std::string Describe(const BrokerOptions& options);

}  // namespace ferry::broker
