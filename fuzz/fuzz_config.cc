// ferry-broker and ferry-relay config files (--config FILE, TOML/INI) are read by CLI11.
// Properties: a fuzzed file is refused with CLI::Error or read; whatever is read is then
// validated without crashing; an accepted configuration's log line never shows the password
// of its database URL.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "broker/options.h"
#include "relay/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/ferry-fuzz-config-" + std::to_string(getpid()) + ".toml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  const char* argv[] = {"ferry", "--config", path.c_str()};
  {
    ferry::broker::BrokerOptions o;
    CLI::App app;
    app.set_config("--config");
    ferry::broker::AddFlags(app, o);
    try {
      app.parse(3, argv);
      if (ferry::broker::Validate(o).ok()) {
        const std::string line = ferry::broker::Describe(o);
        const auto at = o.database_url.find("://u:topsecret@");
        if (at != std::string::npos && line.find("topsecret") != std::string::npos) std::abort();
      }
    } catch (const CLI::Error&) {
    }
  }
  {
    ferry::relay::RelayOptions o;
    CLI::App app;
    app.set_config("--config");
    ferry::relay::AddFlags(app, o);
    try {
      app.parse(3, argv);
      (void)ferry::relay::Validate(o);
    } catch (const CLI::Error&) {
    }
  }
  return 0;
}
