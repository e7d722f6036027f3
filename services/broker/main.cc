// ferry-broker: the Ferry gRPC broker. `ferry-broker --help` lists every option.
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "broker/options.h"
#include "broker/server.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/version.h"

int main(int argc, char** argv) {
  ferry::broker::BrokerOptions o;
  CLI::App app{"ferry-broker: durable message broker on PostgreSQL (gRPC ferry.v1)"};
  app.set_config("--config", "", "read options from this INI/TOML file");
  app.set_version_flag("--version", ferry::VersionLine("ferry-broker"));
  app.fallthrough();  // `migrate --database-url X`: options after the subcommand apply too
  ferry::broker::AddFlags(app, o);
  auto* migrate = app.add_subcommand("migrate", "apply the broker migrations and exit");
  std::string admin_name;
  auto* create_admin = app.add_subcommand(
      "create-admin", "create a principal with admin on the cluster (for --auth); print its token");
  create_admin->add_option("name", admin_name, "the principal's name")->required();
  CLI11_PARSE(app, argc, argv);

  ferry::log::Init(o.log_level, o.log_format);
  ferry::RegisterBuildInfo("ferry-broker");
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

  if (create_admin->parsed()) {
    auto token = ferry::broker::CreateAdmin(o, admin_name);
    if (!token.ok()) {
      std::cerr << "ferry-broker create-admin: " << token.status().message() << "\n";
      return 1;
    }
    std::cout << *token << "\n";  // shown once; only its SHA-256 is stored
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
