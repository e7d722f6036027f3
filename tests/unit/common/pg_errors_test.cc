// The SQLSTATE map: which database failures a client may retry, and what it is told.
#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "common/pg/pool.h"

using ferry::pg::StatusFromException;

TEST_CASE("database errors map to status codes by SQLSTATE - no SQL in the message", "[unit][pg]") {
  struct Row {
    const char* sqlstate;
    absl::StatusCode code;
    const char* says;
  };
  const std::vector<Row> table = {
      {"40001", absl::StatusCode::kAborted, "conflicting concurrent update; retry"},
      {"40P01", absl::StatusCode::kAborted, "conflicting concurrent update; retry"},
      {"57014", absl::StatusCode::kDeadlineExceeded, "timed out"},
      {"08006", absl::StatusCode::kUnavailable, "unavailable; retry later"},
      {"57P01", absl::StatusCode::kUnavailable, "unavailable; retry later"},
      {"57P03", absl::StatusCode::kUnavailable, "unavailable; retry later"},
      {"23505", absl::StatusCode::kInternal, "SQLSTATE 23505"},
      {"42P01", absl::StatusCode::kInternal, "SQLSTATE 42P01"},
  };
  for (const Row& r : table) {
    INFO(r.sqlstate);
    pqxx::sql_error e("secret detail", "SELECT secret FROM t", r.sqlstate);
    absl::Status s = StatusFromException(e, "produce");
    CHECK(s.code() == r.code);
    CHECK(std::string(s.message()).rfind("produce: ", 0) == 0);
    CHECK(std::string(s.message()).find(r.says) != std::string::npos);
    CHECK(std::string(s.message()).find("secret") == std::string::npos);
  }
}

TEST_CASE("a lost connection is UNAVAILABLE - a commit in doubt says the outcome is unknown",
          "[unit][pg]") {
  absl::Status lost = StatusFromException(pqxx::broken_connection("gone"), "consume");
  CHECK(lost.code() == absl::StatusCode::kUnavailable);
  absl::Status doubt = StatusFromException(pqxx::in_doubt_error("?"), "produce");
  CHECK(doubt.code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(doubt.message()).find("outcome is unknown") != std::string::npos);
  CHECK(std::string(doubt.message()).find("retry with the same dedup ids") != std::string::npos);
  absl::Status other = StatusFromException(std::runtime_error("boom"), "commit");
  CHECK(other.code() == absl::StatusCode::kInternal);
  CHECK(std::string(other.message()).find("boom") == std::string::npos);
}
