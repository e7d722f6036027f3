#include "broker/options.h"

#include <absl/strings/str_cat.h>

#include <regex>

namespace ferry::broker {

absl::Status Validate(const BrokerOptions& o) {
  if (o.listen.find(':') == std::string::npos) {
    return absl::InvalidArgumentError("--listen must be HOST:PORT, e.g. 127.0.0.1:7420");
  }
  if (o.pool_size < 1 || o.pool_size > 256) {
    return absl::InvalidArgumentError("--pool-size must be between 1 and 256");
  }
  if (o.max_queued_calls < 1) {
    return absl::InvalidArgumentError("--max-queued-calls must be at least 1");
  }
  if (o.max_message_bytes < 1 || o.max_message_bytes > (16u << 20)) {
    return absl::InvalidArgumentError("--max-message-bytes must be between 1 and 16777216");
  }
  if (o.poll_interval_ms < 10 || o.poll_interval_ms > 10000) {
    return absl::InvalidArgumentError("--poll-interval-ms must be between 10 and 10000");
  }
  if (o.shutdown_grace_ms < 0 || o.shutdown_grace_ms > 600000) {
    return absl::InvalidArgumentError("--shutdown-grace-ms must be between 0 and 600000");
  }
  if (o.txn_check_after_ms < 10 || o.txn_check_after_ms > 86400000) {
    return absl::InvalidArgumentError("--txn-check-after-ms must be between 10 and 86400000");
  }
  if (o.txn_check_interval_ms < 10 || o.txn_check_interval_ms > 86400000) {
    return absl::InvalidArgumentError("--txn-check-interval-ms must be between 10 and 86400000");
  }
  if (o.txn_max_checks < 1 || o.txn_max_checks > 1000) {
    return absl::InvalidArgumentError("--txn-max-checks must be between 1 and 1000");
  }
  if (o.delayed_poll_ms < 10 || o.delayed_poll_ms > 10000) {
    return absl::InvalidArgumentError("--delayed-poll-ms must be between 10 and 10000");
  }
  if (o.maintenance_interval_ms < 100 || o.maintenance_interval_ms > 3600000) {
    return absl::InvalidArgumentError("--maintenance-interval-ms must be between 100 and 3600000");
  }
  return absl::OkStatus();
}

std::string RedactDatabaseUrl(const std::string& url) {
  static const std::regex kUrlPassword(R"(^([a-z]+://[^:/@]*:)[^@]*@)");
  static const std::regex kKvPassword(R"((password\s*=\s*)('[^']*'|\S+))");
  std::string out = std::regex_replace(url, kUrlPassword, "$1***@");
  return std::regex_replace(out, kKvPassword, "$1***");
}

std::string Describe(const BrokerOptions& o) {
  return absl::StrCat("listen=", o.listen, " metrics_listen=", o.metrics_listen,
                      " database_url=\"", RedactDatabaseUrl(o.database_url),
                      "\" pool_size=", o.pool_size, " max_queued_calls=", o.max_queued_calls,
                      " max_message_bytes=", o.max_message_bytes,
                      " poll_interval_ms=", o.poll_interval_ms,
                      " shutdown_grace_ms=", o.shutdown_grace_ms,
                      " delayed_poll_ms=", o.delayed_poll_ms,
                      " maintenance_interval_ms=", o.maintenance_interval_ms,
                      " txn_check_after_ms=", o.txn_check_after_ms,
                      " txn_check_interval_ms=", o.txn_check_interval_ms,
                      " txn_max_checks=", o.txn_max_checks, " group_commit=", o.group_commit,
                      " migrate=", o.migrate,
                      " log_level=", o.log_level);
}

}  // namespace ferry::broker
