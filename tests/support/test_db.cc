#include "support/test_db.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <pqxx/pqxx>
#include <stdexcept>

#include "broker/options.h"
#include "broker/server.h"

namespace ferry::test {

std::string AdminConninfo() {
  const char* admin = std::getenv("FERRY_TEST_PG");
  if (admin == nullptr || *admin == '\0') {
    throw std::runtime_error(
        "FERRY_TEST_PG is not set: run the tests with `make test` (or "
        "scripts/with-test-postgres.sh ctest --test-dir build)");
  }
  return admin;
}

TempDatabase::TempDatabase(bool broker_schema) : admin_(AdminConninfo()) {
  static std::atomic<int> counter{0};
  name_ = "ferry_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  {
    pqxx::connection c(admin_);
    pqxx::nontransaction tx(c);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_));
    tx.exec("CREATE DATABASE " + tx.quote_name(name_));
  }
  conninfo_ = admin_ + " dbname=" + name_;  // libpq: the last dbname wins
  if (!broker_schema) return;
  broker::BrokerOptions options;
  options.database_url = conninfo_;
  absl::Status s = broker::MigrateDatabase(options);
  if (!s.ok()) throw std::runtime_error("migrations failed: " + std::string(s.message()));
}

TempDatabase::~TempDatabase() {
  const char* keep = std::getenv("FERRY_KEEP_TEST_DB");
  if (keep != nullptr && std::string(keep) == "1") return;
  try {
    pqxx::connection c(admin_);
    pqxx::nontransaction tx(c);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (...) {
    // Best effort: the cluster is removed after the run anyway.
  }
}

}  // namespace ferry::test
