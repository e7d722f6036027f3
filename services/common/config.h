// Helpers shared by the binaries' option checks and their start-up log lines.
#pragma once

#include <absl/status/statusor.h>

#include <string>

namespace ferry::config {

// "HOST:PORT" with a port of 0-65535 ("[::1]:7420" too).
bool IsHostPort(const std::string& address);

// A libpq URL or conninfo string with its password replaced by "***", for logs.
std::string RedactConninfo(const std::string& conninfo);

// The whole file (a PEM certificate, say); INVALID_ARGUMENT naming `what` when it cannot be read
// or is empty.
absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& what);

}  // namespace ferry::config
