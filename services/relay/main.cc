// ferry-relay: the transactional outbox relay. `ferry-relay --help` lists every option.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "common/log.h"
#include "common/signals.h"
#include "common/version.h"
#include "relay/relay.h"

int main(int argc, char** argv) {
  ferry::relay::RelayOptions o;
  CLI::App app{"ferry-relay: publishes ferry_outbox rows to the broker and answers back-checks"};
  app.set_config("--config", "", "read options from this INI/TOML file");
  app.set_version_flag("--version", ferry::VersionLine("ferry-relay"));
  app.fallthrough();  // `migrate --database-url X`: options after the subcommand apply too
  ferry::relay::AddFlags(app, o);
  auto* migrate = app.add_subcommand("migrate", "create ferry_outbox (and ferry_inbox) and exit");
  auto* probe = app.add_subcommand(
      "probe", "exit 0 if the relay on --metrics-listen answers /healthz with 200 (health checks)");
  CLI11_PARSE(app, argc, argv);

  ferry::log::Init(o.log_level, o.log_format);
  ferry::RegisterBuildInfo("ferry-relay");
  if (absl::Status s = ferry::relay::Validate(o); !s.ok()) {
    std::cerr << "ferry-relay: " << s.message() << "\n";
    return 2;
  }
  if (probe->parsed()) {
    const auto colon = o.metrics_listen.rfind(':');
    if (colon == std::string::npos) {
      std::cerr << "ferry-relay probe: --metrics-listen HOST:PORT is required\n";
      return 2;
    }
    std::string host = o.metrics_listen.substr(0, colon);
    if (host == "0.0.0.0") host = "127.0.0.1";
    httplib::Client http(host, std::stoi(o.metrics_listen.substr(colon + 1)));
    http.set_connection_timeout(2);
    http.set_read_timeout(3);
    auto res = http.Get("/healthz");
    if (!res) {
      std::cerr << "ferry-relay probe: no answer from " << o.metrics_listen << "\n";
      return 1;
    }
    std::cout << res->body;
    return res->status == 200 ? 0 : 1;
  }
  if (migrate->parsed()) {
    absl::Status s = ferry::relay::MigrateOutbox(o.database_url);
    if (!s.ok()) {
      std::cerr << "ferry-relay migrate: " << s.message() << "\n";
      return 1;
    }
    return 0;
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
