#include "broker/options.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

#include "common/config.h"
#include "relay/options.h"

using namespace ferry::broker;

namespace {

// Parses `args` the way ferry-broker's main does (with --config).
BrokerOptions ParseBroker(std::vector<std::string> args) {
  BrokerOptions o;
  CLI::App app;
  app.set_config("--config");
  AddFlags(app, o);
  std::vector<const char*> argv{"ferry-broker"};
  for (const auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return o;
}

ferry::relay::RelayOptions ParseRelay(std::vector<std::string> args) {
  ferry::relay::RelayOptions o;
  CLI::App app;
  app.set_config("--config");
  ferry::relay::AddFlags(app, o);
  std::vector<const char*> argv{"ferry-relay"};
  for (const auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return o;
}

struct TempConfig {
  std::string path = "/tmp/ferry-options-test-" + std::to_string(getpid()) + ".toml";
  explicit TempConfig(const std::string& text) { std::ofstream(path) << text; }
  ~TempConfig() { std::remove(path.c_str()); }
};

struct Env {
  std::string name;
  Env(const std::string& n, const std::string& v) : name(n) { setenv(n.c_str(), v.c_str(), 1); }
  ~Env() { unsetenv(name.c_str()); }
};

}  // namespace

TEST_CASE("passwords never reach the log", "[unit][options]") {
  using ferry::config::RedactConninfo;
  CHECK(RedactConninfo("postgresql://ferry:s3cret@db:5432/ferry") ==
        "postgresql://ferry:***@db:5432/ferry");
  CHECK(RedactConninfo("host=db user=ferry password=s3cret dbname=x") ==
        "host=db user=ferry password=*** dbname=x");
  CHECK(RedactConninfo("host=db password='a b' dbname=x") == "host=db password=*** dbname=x");
  CHECK(RedactConninfo("host=/tmp port=5 user=postgres") == "host=/tmp port=5 user=postgres");
  // Regression (fuzz_config): a scheme in other letters still has its password hidden.
  CHECK(RedactConninfo("Postgresql://ferry:s3cret@db/ferry") == "Postgresql://ferry:***@db/ferry");
  CHECK(RedactConninfo("postg\x05sql://u:s3cret@db").find("s3cret") == std::string::npos);
  // Regression (fuzz_config, fuzz/regressions/config): an '@' in the password, and a second
  // "user:password@" later in the URL.
  CHECK(RedactConninfo("postgresql://u:p@ss@db/ferry") == "postgresql://u:***@db/ferry");
  CHECK(RedactConninfo("potergsql://u:topsecret@db/ferry\xde\xf2auth :topsecret@db/x")
            .find("topsecret") == std::string::npos);
  BrokerOptions o;
  o.database_url = "postgresql://u:topsecret@h/d";
  o.tls_key_file = "/etc/ferry/key-topsecret.pem";
  CHECK(Describe(o).find("topsecret") == std::string::npos);
  ferry::relay::RelayOptions r;
  r.database_url = "host=h password=topsecret";
  r.broker_token = "ferry_topsecret";
  CHECK(ferry::relay::Describe(r).find("topsecret") == std::string::npos);
}

TEST_CASE("options are checked before start", "[unit][options]") {
  BrokerOptions o;
  CHECK(Validate(o).ok());
  o.pool_size = 0;
  CHECK(std::string(Validate(o).message()).find("--pool-size") != std::string::npos);
  o = BrokerOptions{};
  o.listen = "7420";
  CHECK(std::string(Validate(o).message()).find("--listen") != std::string::npos);
  o = BrokerOptions{};
  o.max_message_bytes = 0;
  CHECK(!Validate(o).ok());
  o = BrokerOptions{};
  o.metrics_listen = "127.0.0.1:99999";
  CHECK(std::string(Validate(o).message()).find("--metrics-listen") != std::string::npos);
  o = BrokerOptions{};
  o.tls_cert_file = "cert.pem";
  CHECK(std::string(Validate(o).message()).find("--tls-key") != std::string::npos);
  o = BrokerOptions{};
  o.log_level = "verbose";
  CHECK(std::string(Validate(o).message()).find("--log-level") != std::string::npos);

  ferry::relay::RelayOptions r;
  CHECK(ferry::relay::Validate(r).ok());
  r.broker = "broker";
  CHECK(std::string(ferry::relay::Validate(r).message()).find("--broker") != std::string::npos);
  r = {};
  r.broker_tls_cert = "c.pem";
  r.broker_tls_key = "k.pem";
  CHECK(std::string(ferry::relay::Validate(r).message()).find("--broker-tls-ca") !=
        std::string::npos);
}

TEST_CASE("one precedence: flag over config file over FERRY_ environment over default",
          "[unit][options]") {
  // Defaults, when nothing is set.
  BrokerOptions d = ParseBroker({});
  CHECK(d.pool_size == 8);
  CHECK(d.poll_interval_ms == 200);

  Env pool("FERRY_POOL_SIZE", "3");
  Env poll("FERRY_POLL_INTERVAL_MS", "300");
  Env level("FERRY_LOG_LEVEL", "warn");
  TempConfig file("pool-size = 5\npoll-interval-ms = 400\n");

  // The environment beats the default.
  BrokerOptions e = ParseBroker({});
  CHECK(e.pool_size == 3);
  CHECK(e.poll_interval_ms == 300);
  CHECK(e.log_level == "warn");

  // The config file beats the environment.
  BrokerOptions c = ParseBroker({"--config", file.path});
  CHECK(c.pool_size == 5);
  CHECK(c.poll_interval_ms == 400);
  CHECK(c.log_level == "warn");  // not in the file: the environment's

  // A flag beats the config file.
  BrokerOptions f = ParseBroker({"--config", file.path, "--pool-size", "7"});
  CHECK(f.pool_size == 7);
  CHECK(f.poll_interval_ms == 400);

  // The relay follows the same rule.
  Env broker("FERRY_BROKER", "10.0.0.1:7420");
  TempConfig relay_file("broker = \"10.0.0.2:7420\"\nbatch-size = 50\n");
  CHECK(ParseRelay({}).broker == "10.0.0.1:7420");
  CHECK(ParseRelay({"--config", relay_file.path}).broker == "10.0.0.2:7420");
  CHECK(ParseRelay({"--config", relay_file.path, "--broker", "10.0.0.3:7420"}).broker ==
        "10.0.0.3:7420");
  CHECK(ParseRelay({"--config", relay_file.path}).batch_size == 50);
}

TEST_CASE("an unknown option or a bad value is refused at parse time", "[unit][options]") {
  CHECK_THROWS_AS(ParseBroker({"--pool-sise", "3"}), CLI::ParseError);
  CHECK_THROWS_AS(ParseBroker({"--pool-size", "three"}), CLI::ParseError);
  TempConfig file("no-such-option = 1\n");
  CHECK_THROWS_AS(ParseBroker({"--config", file.path}), CLI::ParseError);
}
