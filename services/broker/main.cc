// ferry-broker: the Ferry gRPC broker. `ferry-broker --help` lists every option.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "broker/options.h"
#include "broker/server.h"
#include "common/log.h"
#include "common/signals.h"

int main(int argc, char** argv) {
  ferry::broker::BrokerOptions o;
  CLI::App app{"ferry-broker: durable message broker on PostgreSQL (gRPC ferry.v1)"};
  app.set_config("--config", "", "read options from this INI/TOML file");
  app.fallthrough();  // `migrate --database-url X`: options after the subcommand apply too
  app.add_option("--listen", o.listen, "gRPC listen address HOST:PORT")
      ->envname("FERRY_LISTEN")->capture_default_str();
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Prometheus /metrics address HOST:PORT (empty: no metrics endpoint)")
      ->envname("FERRY_METRICS_LISTEN");
  app.add_option("--database-url", o.database_url,
                 "PostgreSQL URL or conninfo (empty: libpq's PG* environment variables)")
      ->envname("FERRY_DATABASE_URL");
  app.add_option("--pool-size", o.pool_size, "database connections = worker threads")
      ->envname("FERRY_POOL_SIZE")->capture_default_str();
  app.add_option("--max-queued-calls", o.max_queued_calls,
                 "calls waiting for a worker before RESOURCE_EXHAUSTED")
      ->envname("FERRY_MAX_QUEUED_CALLS")->capture_default_str();
  app.add_option("--max-message-bytes", o.max_message_bytes, "largest payload accepted, bytes")
      ->envname("FERRY_MAX_MESSAGE_BYTES")->capture_default_str();
  app.add_option("--poll-interval-ms", o.poll_interval_ms,
                 "long-poll re-check interval when no notification arrives, ms")
      ->envname("FERRY_POLL_INTERVAL_MS")->capture_default_str();
  app.add_option("--shutdown-grace-ms", o.shutdown_grace_ms,
                 "time in-flight calls get to finish on SIGTERM/SIGINT, ms")
      ->envname("FERRY_SHUTDOWN_GRACE_MS")->capture_default_str();
  app.add_option("--delayed-poll-ms", o.delayed_poll_ms,
                 "how often due delayed messages are moved into their queues, ms")
      ->envname("FERRY_DELAYED_POLL_MS")->capture_default_str();
  app.add_option("--maintenance-interval-ms", o.maintenance_interval_ms,
                 "how often retention and dedup expiry run, ms")
      ->envname("FERRY_MAINTENANCE_INTERVAL_MS")->capture_default_str();
  app.add_option("--txn-check-after-ms", o.txn_check_after_ms,
                 "first back-check of an undecided transaction after this long, ms")
      ->envname("FERRY_TXN_CHECK_AFTER_MS")->capture_default_str();
  app.add_option("--txn-check-interval-ms", o.txn_check_interval_ms,
                 "then a back-check this often, ms")
      ->envname("FERRY_TXN_CHECK_INTERVAL_MS")->capture_default_str();
  app.add_option("--txn-max-checks", o.txn_max_checks,
                 "UNKNOWN or unanswered checks before CHECK_EXHAUSTED")
      ->envname("FERRY_TXN_MAX_CHECKS")->capture_default_str();
  app.add_option("--group-commit", o.group_commit,
                 "concurrent produces to a topic share one transaction (true|false)")
      ->envname("FERRY_GROUP_COMMIT")->capture_default_str();
  app.add_option("--migrate", o.migrate, "apply database migrations at start (true|false)")
      ->envname("FERRY_MIGRATE")->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace|debug|info|warn|error")
      ->envname("FERRY_LOG_LEVEL")->capture_default_str();
  auto* migrate = app.add_subcommand("migrate", "apply the broker migrations and exit");
  CLI11_PARSE(app, argc, argv);

  ferry::log::Init(o.log_level);
  auto logger = ferry::log::Get("broker");
  if (absl::Status s = ferry::broker::Validate(o); !s.ok()) {
    std::cerr << "ferry-broker: " << s.message() << "\n";
    return 2;
  }
  if (migrate->parsed()) {
    absl::Status s = ferry::broker::MigrateDatabase(o);
    if (!s.ok()) {
      std::cerr << "ferry-broker migrate: " << s.message() << "\n";
      return 1;
    }
    logger->info("event=migrated");
    return 0;
  }

  ferry::BlockStopSignals();  // before any thread starts

  ferry::broker::BrokerServer server(o);
  if (absl::Status s = server.Start(); !s.ok()) {
    std::cerr << "ferry-broker: " << s.message() << "\n";
    return 1;
  }
  logger->info("event=signal signal={}", ferry::WaitForStopSignal());
  server.Shutdown();
  return 0;
}
