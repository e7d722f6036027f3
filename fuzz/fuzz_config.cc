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

namespace {

// Reads the file as `--config FILE` into options of one binary. False when CLI11 refuses it.
template <typename Options>
bool Read(Options& o, const std::string& path) {
  const char* argv[] = {"ferry", "--config", path.c_str()};
  CLI::App app;
  app.set_config("--config");
  AddFlags(app, o);  // ferry::broker::AddFlags or ferry::relay::AddFlags, by argument lookup
  try {
    app.parse(3, argv);
    return true;
  } catch (const CLI::Error&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/ferry-fuzz-config-" + std::to_string(getpid()) + ".toml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  ferry::broker::BrokerOptions broker;
  if (Read(broker, path) && ferry::broker::Validate(broker).ok()) {
    const std::string line = ferry::broker::Describe(broker);
    const auto at = broker.database_url.find("://u:topsecret@");
    if (at != std::string::npos && line.find("topsecret") != std::string::npos) std::abort();
  }
  ferry::relay::RelayOptions relay;
  if (Read(relay, path)) (void)ferry::relay::Validate(relay);
  return 0;
}
