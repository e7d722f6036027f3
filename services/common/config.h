// Helpers shared by the binaries' option checks and their start-up log lines.
#pragma once

#include <string>

namespace ferry::config {

// "HOST:PORT" with a port of 0-65535 ("[::1]:7420" too).
bool IsHostPort(const std::string& address);

// A libpq URL or conninfo string with its password replaced by "***", for logs.
std::string RedactConninfo(const std::string& conninfo);

}  // namespace ferry::config
