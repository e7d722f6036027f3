// TempDatabase: a fresh database with the real broker schema, in the PostgreSQL cluster that
// scripts/with-test-postgres.sh started (FERRY_TEST_PG: conninfo of its admin database).
// Dropped when the object goes away, unless FERRY_KEEP_TEST_DB=1.
#pragma once

#include <string>

namespace ferry::test {

class TempDatabase {
 public:
  // With the broker schema (default), or an empty database (an application's: the relay's
  // outbox migration is applied by the test). Throws when FERRY_TEST_PG is missing.
  explicit TempDatabase(bool broker_schema = true);
  ~TempDatabase();
  TempDatabase(const TempDatabase&) = delete;
  TempDatabase& operator=(const TempDatabase&) = delete;

  // libpq conninfo of the new database.
  const std::string& conninfo() const { return conninfo_; }
  const std::string& name() const { return name_; }

 private:
  std::string admin_;
  std::string name_;
  std::string conninfo_;
};

// The admin conninfo from FERRY_TEST_PG; throws with a how-to message if it is not set.
std::string AdminConninfo();

}  // namespace ferry::test
