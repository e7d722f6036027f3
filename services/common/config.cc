#include "common/config.h"

#include <fstream>
#include <regex>
#include <sstream>

namespace ferry::config {

bool IsHostPort(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  const std::string port = s.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  return std::stoi(port) <= 65535;
}

std::string RedactConninfo(const std::string& url) {
  // Any scheme spelling ("Postgresql://", a typo): the password must not reach a log because
  // the URL is malformed (found by fuzz/fuzz_config.cc). Up to the *last* '@': a password with
  // an unescaped '@' in it, or a second "user:password@" later in the text, stays hidden too
  // (found by fuzz_config in issue 14's CI run; hiding some of the host is the lesser harm).
  static const std::regex kUrlPassword(R"((://[^:/@]*:).*@)");
  static const std::regex kKvPassword(R"((password\s*=\s*)('[^']*'|\S+))");
  std::string out = std::regex_replace(url, kUrlPassword, "$1***@");
  return std::regex_replace(out, kKvPassword, "$1***");
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  if (!in || buf.str().empty()) {
    return absl::InvalidArgumentError(what + ": cannot read " + path);
  }
  return buf.str();
}

}  // namespace ferry::config
