#include "common/pg/migrate.h"

#include <set>

#include "common/log.h"
#include "common/pg/pool.h"
#include "common/pg/session_lock.h"

namespace ferry::pg {
namespace {

// pg_advisory_lock key: "ferry" in ASCII, the same for every Ferry schema.
constexpr long long kMigrationLockKey = 0x6665727279;

}  // namespace

absl::Status ApplyMigrations(pqxx::connection& conn, const std::string& table,
                             const std::vector<Migration>& migrations) {
  auto logger = ferry::log::Get("migrate");
  try {
    const SessionLock lock = SessionLock::Acquire(conn, kMigrationLockKey);

    std::set<int> applied;
    {
      pqxx::work tx(conn);
      tx.exec("CREATE TABLE IF NOT EXISTS " + tx.quote_name(table) +
              " (version int PRIMARY KEY, name text NOT NULL,"
              " applied_at timestamptz NOT NULL DEFAULT now())");
      for (const auto& row : tx.exec("SELECT version FROM " + tx.quote_name(table))) {
        applied.insert(row[0].as<int>());
      }
      tx.commit();
    }
    std::set<int> known;
    for (const auto& m : migrations) known.insert(m.version);
    for (int v : applied) {
      if (known.count(v) == 0) {
        return absl::FailedPreconditionError(
            "the database schema has migration " + std::to_string(v) +
            ", which this binary does not know: it was migrated by a newer Ferry; run that "
            "version");
      }
    }
    for (const auto& m : migrations) {
      if (applied.count(m.version) != 0) continue;
      pqxx::work tx(conn);
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO " + tx.quote_name(table) + " (version, name) VALUES ($1, $2)",
                     m.version, m.name);
      tx.commit();
      logger->info("event=migration_applied table={} version={} name={}", table, m.version, m.name);
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return StatusFromException(e, "migrate");
  }
}

}  // namespace ferry::pg
