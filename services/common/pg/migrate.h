// Forward-only schema migrations, applied in version order under an advisory lock so that
// several processes starting at once apply each file exactly once.
#pragma once

#include <absl/status/status.h>

#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace ferry::pg {

struct Migration {
  int version;       // from the file name NNNN_name.sql; dense from 1
  std::string name;  // the rest of the file name
  std::string sql;   // run in one transaction
};

// Applies the migrations of `migrations` that `table` (created if missing) does not record,
// each in its own transaction, in order. Returns FAILED_PRECONDITION when the database holds a
// version this binary does not know (a newer binary migrated it): refuse to run rather than
// misread the schema. Other errors as StatusFromException. Blocks; not thread-safe per conn.
absl::Status ApplyMigrations(pqxx::connection& conn, const std::string& table,
                             const std::vector<Migration>& migrations);

}  // namespace ferry::pg
