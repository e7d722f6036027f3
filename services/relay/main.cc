// ferry-relay: the transactional outbox relay. `ferry-relay --help` lists every option.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "common/log.h"
#include "common/signals.h"
#include "relay/relay.h"

int main(int argc, char** argv) {
  ferry::relay::RelayOptions o;
  CLI::App app{"ferry-relay: publishes ferry_outbox rows to the broker and answers back-checks"};
  app.set_config("--config", "", "read options from this INI/TOML file");
  app.fallthrough();  // `migrate --database-url X`: options after the subcommand apply too
  app.add_option("--database-url", o.database_url, "the application's PostgreSQL URL/conninfo")
      ->envname("FERRY_DATABASE_URL");
  app.add_option("--broker", o.broker, "broker HOST:PORT")
      ->envname("FERRY_BROKER")->capture_default_str();
  app.add_option("--producer-group", o.producer_groups,
                 "answer back-checks of this producer group (repeatable)")
      ->envname("FERRY_PRODUCER_GROUPS")->delimiter(',');
  app.add_option("--check-query", o.check_query,
                 "back-check SQL for check_refs that are not transaction ids: $1 = check_ref, "
                 "returns COMMIT, ROLLBACK or UNKNOWN")
      ->envname("FERRY_CHECK_QUERY");
  app.add_option("--relay-id", o.relay_id, "name in claimed_by (default host/pid)")
      ->envname("FERRY_RELAY_ID");
  app.add_option("--batch-size", o.batch_size, "rows per claim")
      ->envname("FERRY_BATCH_SIZE")->capture_default_str();
  app.add_option("--poll-interval-ms", o.poll_interval_ms, "after an empty claim, claim again after this long (ms)")
      ->envname("FERRY_POLL_INTERVAL_MS")->capture_default_str();
  app.add_option("--lease-ms", o.lease_ms, "a claim expires after this")
      ->envname("FERRY_LEASE_MS")->capture_default_str();
  app.add_option("--publish-timeout-ms", o.publish_timeout_ms, "deadline of one Produce")
      ->envname("FERRY_PUBLISH_TIMEOUT_MS")->capture_default_str();
  app.add_option("--max-attempts", o.max_attempts, "then the row is failed")
      ->envname("FERRY_MAX_ATTEMPTS")->capture_default_str();
  app.add_option("--backoff-min-ms", o.backoff_min_ms, "first retry delay (x2 each, jittered)")
      ->envname("FERRY_BACKOFF_MIN_MS")->capture_default_str();
  app.add_option("--backoff-max-ms", o.backoff_max_ms, "longest retry delay")
      ->envname("FERRY_BACKOFF_MAX_MS")->capture_default_str();
  app.add_option("--sent-retention-ms", o.sent_retention_ms, "sent rows are deleted after this")
      ->envname("FERRY_SENT_RETENTION_MS")->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace|debug|info|warn|error")
      ->envname("FERRY_LOG_LEVEL")->capture_default_str();
  auto* migrate = app.add_subcommand("migrate", "create ferry_outbox (and ferry_inbox) and exit");
  CLI11_PARSE(app, argc, argv);

  ferry::log::Init(o.log_level);
  if (migrate->parsed()) {
    absl::Status s = ferry::relay::MigrateOutbox(o.database_url);
    if (!s.ok()) {
      std::cerr << "ferry-relay migrate: " << s.message() << "\n";
      return 1;
    }
    return 0;
  }
  if (absl::Status s = ferry::relay::Validate(o); !s.ok()) {
    std::cerr << "ferry-relay: " << s.message() << "\n";
    return 2;
  }
  ferry::BlockStopSignals();  // before any thread starts

  ferry::relay::Relay relay(o);
  if (absl::Status s = relay.Start(); !s.ok()) {
    std::cerr << "ferry-relay: " << s.message() << "\n";
    return 1;
  }
  const std::string sig = ferry::WaitForStopSignal();
  ferry::log::Get("relay")->info("event=stopping signal={} published={}", sig, relay.published());
  relay.Stop();
  return 0;
}
