// A fixed-size pool of libpqxx connections. A pqxx::connection is not thread-safe, so each
// connection is used by one thread at a time, borrowed through a Lease.
//
// Every new connection prepares all of the pool's statements, so a typo in SQL fails when the
// first connection is made (at start), not on the first request that uses it.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "common/metrics.h"

namespace ferry::pg {

// A named prepared statement. Names follow <service>_<verb>_<noun>.
struct Statement {
  const char* name;
  const char* sql;
};

class ConnectionPool;

// How the pool's connections plan prepared statements. kGeneric: once per connection
// (`plan_cache_mode = force_generic_plan`), for statements written to have one good plan
// whatever the parameters (the broker's). kPostgresChooses: PostgreSQL's default, which plans
// again when parameters matter, e.g. a status parameter matched against a partial index (the
// relay's claim: its generic plan cannot use the index of open rows, W4 fell by half).
enum class PlanMode { kPostgresChooses, kGeneric };

// A borrowed connection; returns it to the pool when destroyed. Move-only.
class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&&) = delete;
  ~Lease();
  pqxx::connection& conn() { return *conn_; }
  // The connection broke: the pool closes it and makes a new one when next needed.
  void MarkBroken() { broken_ = true; }

 private:
  friend class ConnectionPool;
  Lease(ConnectionPool* pool, std::unique_ptr<pqxx::connection> conn)
      : pool_(pool), conn_(std::move(conn)) {}
  ConnectionPool* pool_;
  std::unique_ptr<pqxx::connection> conn_;
  bool broken_ = false;
};

class ConnectionPool {
 public:
  // `conninfo`: a libpq connection string or URL ("" uses the PG* environment variables).
  // `application_name` shows in pg_stat_activity. Connections are opened on demand.
  ConnectionPool(std::string conninfo, int size, std::string application_name,
                 std::vector<Statement> statements,
                 PlanMode plan_mode = PlanMode::kPostgresChooses);
  ~ConnectionPool();

  // Borrows a connection, opening one if fewer than `size` exist. Waits at most `wait` for one
  // to be returned. Errors: UNAVAILABLE when the database cannot be reached,
  // RESOURCE_EXHAUSTED when every connection stayed busy for `wait`. Thread-safe.
  absl::StatusOr<Lease> Acquire(std::chrono::milliseconds wait);

  // Opens a connection outside the pool with the same settings (for LISTEN, migrations).
  // Throws what pqxx throws.
  std::unique_ptr<pqxx::connection> OpenDedicated(const std::string& purpose) const;

  int size() const { return size_; }
  const std::string& application_name() const { return application_name_; }

  struct Stats {
    int size = 0;    // the most connections this pool opens
    int open = 0;    // connections open now (idle + lent out)
    int in_use = 0;  // lent out now
  };
  Stats stats();

 private:
  friend class Lease;
  absl::StatusOr<Lease> AcquireUncounted(std::chrono::milliseconds wait);
  void Return(std::unique_ptr<pqxx::connection> conn, bool broken);
  std::unique_ptr<pqxx::connection> Open() const;

  const std::string conninfo_;
  const int size_;
  const std::string application_name_;
  const std::vector<Statement> statements_;
  const PlanMode plan_mode_;
  metrics::Histogram* const wait_metric_;
  metrics::Counter* const acquired_ok_;
  metrics::Counter* const acquired_unavailable_;
  metrics::Counter* const acquired_exhausted_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  int open_ = 0;  // connections idle + lent out
};

// Maps an exception thrown by libpqxx (or anything else) to a status a client can act on,
// without SQL text or connection details (those are logged). `operation` names what failed.
//   connection loss / cannot connect  -> UNAVAILABLE (retryable)
//   serialization failure / deadlock  -> ABORTED (RunTransaction retries these first)
//   query canceled (statement_timeout) -> DEADLINE_EXCEEDED
//   commit outcome unknown (in_doubt)  -> UNAVAILABLE
//   anything else                      -> INTERNAL
// Each call counts one `ferry_db_errors_total{code}`.
absl::Status StatusFromException(const std::exception& e, const std::string& operation);

// PostgreSQL answers a COMMIT whose wait for a synchronous standby was cancelled
// (pg_cancel_backend by an operator or a tool; statement_timeout is switched off before that
// wait) with success and a WARNING: committed on this node, perhaps on no standby, so a
// failover may lose it. Ferry
// never cancels a statement itself; when someone else does, the call must not report success.
// Registered on a connection for the duration of one use (WithConnection, the health probe).
class SyncRepCancelWatch : public pqxx::errorhandler {
 public:
  using pqxx::errorhandler::errorhandler;
  bool operator()(const char msg[]) noexcept override;
  bool seen() const { return seen_; }

 private:
  bool seen_ = false;
};

// Borrows a connection and runs `body` with it; retries serialization failures and deadlocks
// up to three times. `body` returns a status; exceptions it throws are mapped with
// StatusFromException, and a broken connection is replaced. Thread-safe.
absl::Status WithConnection(ConnectionPool& pool, const std::string& operation,
                            const std::function<absl::Status(pqxx::connection&)>& body);

// `ferry_db_pool_connections{pool=<application name>,state=max|open|in_use}` for a collector.
std::vector<metrics::GaugeFamily> PoolGauges(ConnectionPool& pool);

}  // namespace ferry::pg
