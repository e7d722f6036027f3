#include "common/pg/pool.h"

#include <poll.h>

#include <cstring>
#include <thread>

#include "common/log.h"
#include "common/metrics.h"

namespace ferry::pg {
namespace {

constexpr std::chrono::milliseconds kAcquireWaitOnRetry{5000};

bool IsRetryable(const std::string& sqlstate) {
  return sqlstate == "40001" || sqlstate == "40P01";  // serialization_failure, deadlock_detected
}

// An idle connection has nothing to read: the server speaks only when asked. Readable (the
// server's farewell error, end of file) or hung up means the database restarted or ended the
// backend. Such a connection is dropped before use, so a statement sent on a pooled connection
// and lost is lost to a failure during the call, not to a stale socket: a caller that cannot
// retry safely (an autocommit produce, whose outcome is unknown) is not failed for nothing.
bool ServerClosed(pqxx::connection& conn) {
  if (!conn.is_open()) return true;
  pollfd p{conn.sock(), POLLIN, 0};
  return p.fd < 0 || poll(&p, 1, 0) != 0;
}

}  // namespace

Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), conn_(std::move(other.conn_)), broken_(other.broken_) {
  other.pool_ = nullptr;
}

Lease::~Lease() {
  if (pool_ != nullptr && conn_ != nullptr) pool_->Return(std::move(conn_), broken_);
}

namespace {

struct PoolMetrics {
  metrics::Registry::CounterFamily& acquires = metrics::Default().Counters(
      "ferry_db_pool_acquires_total",
      "connection borrows by pool and result (ok, unavailable: cannot connect, exhausted: every "
      "connection stayed busy)",
      {"pool", "result"});
  metrics::Registry::HistogramFamily& wait = metrics::Default().Histograms(
      "ferry_db_pool_wait_seconds", "time spent waiting to borrow a connection", {"pool"},
      metrics::LatencyBuckets());
  metrics::Registry::CounterFamily& errors = metrics::Default().Counters(
      "ferry_db_errors_total",
      "database errors by the status they became (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED, "
      "INTERNAL)",
      {"code"});
};

PoolMetrics& Metrics() {
  static PoolMetrics* m = new PoolMetrics();
  return *m;
}

}  // namespace

ConnectionPool::ConnectionPool(std::string conninfo, int size, std::string application_name,
                               std::vector<Statement> statements, PlanMode plan_mode)
    : conninfo_(std::move(conninfo)),
      size_(size),
      application_name_(std::move(application_name)),
      statements_(std::move(statements)),
      plan_mode_(plan_mode),
      // Looked up once: Acquire() is on every call's path.
      wait_metric_(&Metrics().wait.With({application_name_})),
      acquired_ok_(&Metrics().acquires.With({application_name_, "ok"})),
      acquired_unavailable_(&Metrics().acquires.With({application_name_, "unavailable"})),
      acquired_exhausted_(&Metrics().acquires.With({application_name_, "exhausted"})) {}

ConnectionPool::~ConnectionPool() = default;

std::unique_ptr<pqxx::connection> ConnectionPool::Open() const {
  auto conn = OpenDedicated("pool");
  // kGeneric: prepared statements run their generic plan, planned once per connection. By
  // default PostgreSQL planned most of the broker's again on every execution (their array
  // parameters make the generic plan look costlier), a fifth of its CPU on W2 (issue 15):
  // 2,006 plans for 2,000 reads of messages, 1,713 for 1,707 range lookups.
  if (plan_mode_ == PlanMode::kGeneric) {
    pqxx::nontransaction tx(*conn);
    tx.exec("SET plan_cache_mode = force_generic_plan");
  }
  for (const Statement& s : statements_) {
    conn->prepare(s.name, s.sql);
    conn->prepare_now(s.name);  // parse now: a bad statement fails here, at start
  }
  return conn;
}

std::unique_ptr<pqxx::connection> ConnectionPool::OpenDedicated(const std::string& purpose) const {
  auto conn = std::make_unique<pqxx::connection>(conninfo_);
  pqxx::nontransaction tx(*conn);
  tx.exec("SET application_name = " + tx.quote(application_name_ + "/" + purpose));
  return conn;
}

ConnectionPool::Stats ConnectionPool::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return Stats{size_, open_, static_cast<int>(open_ - static_cast<int>(idle_.size()))};
}

absl::StatusOr<Lease> ConnectionPool::Acquire(std::chrono::milliseconds wait) {
  const auto start = std::chrono::steady_clock::now();
  auto result = AcquireUncounted(wait);
  wait_metric_->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  (result.ok()                                                ? acquired_ok_
   : result.status().code() == absl::StatusCode::kUnavailable ? acquired_unavailable_
                                                              : acquired_exhausted_)
      ->Add();
  return result;
}

absl::StatusOr<Lease> ConnectionPool::AcquireUncounted(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (!ServerClosed(*conn)) return Lease(this, std::move(conn));
      --open_;
      lock.unlock();
      ferry::log::Get("pg")->info("event=stale_connection_dropped pool={}", application_name_);
      conn.reset();  // closing may block briefly on the socket: outside the lock
      lock.lock();
      continue;
    }
    if (open_ < size_) {
      ++open_;
      lock.unlock();
      try {
        return Lease(this, Open());
      } catch (const std::exception& e) {
        lock.lock();
        --open_;
        cv_.notify_one();
        ferry::log::Get("pg")->warn("event=connect_failed error={}", ferry::log::Quote(e.what()));
        return absl::UnavailableError(
            "the broker cannot reach its database; retry later (details in the broker log)");
      }
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= size_) {
      return absl::ResourceExhaustedError(
          "every database connection stayed busy; retry later or raise --pool-size");
    }
  }
}

void ConnectionPool::Return(std::unique_ptr<pqxx::connection> conn, bool broken) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken || !conn->is_open()) {
      --open_;
    } else {
      idle_.push_back(std::move(conn));
    }
  }
  if (broken) {
    // Closing may block briefly on the socket: outside the lock.
    conn.reset();
  }
  cv_.notify_one();
}

namespace {

absl::Status StatusFromExceptionUncounted(const std::exception& e, const std::string& operation) {
  auto logger = ferry::log::Get("pg");
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    logger->error("op={} event=commit_in_doubt error={}", operation, ferry::log::Quote(e.what()));
    return absl::UnavailableError(
        operation +
        ": the database connection broke during commit; the outcome is "
        "unknown: retry with the same dedup ids (a message that was stored is "
        "answered as a duplicate, never stored twice)");
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    logger->warn("op={} event=connection_lost error={}", operation, ferry::log::Quote(e.what()));
    return absl::UnavailableError(operation + ": lost the database connection; retry later");
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    if (IsRetryable(state)) {
      return absl::AbortedError(operation + ": conflicting concurrent update; retry");
    }
    if (state == "57014") {
      return absl::DeadlineExceededError(operation + ": the database query timed out");
    }
    if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03") {
      logger->warn("op={} event=database_unavailable sqlstate={} error={}", operation, state,
                   ferry::log::Quote(e.what()));
      return absl::UnavailableError(operation + ": the database is unavailable; retry later");
    }
    logger->error("op={} event=sql_error sqlstate={} error={} query={}", operation, state,
                  ferry::log::Quote(e.what()), ferry::log::Quote(sql->query()));
    return absl::InternalError(operation + ": database error (SQLSTATE " + state +
                               "); see the broker log");
  }
  logger->error("op={} event=internal_error error={}", operation, ferry::log::Quote(e.what()));
  return absl::InternalError(operation + ": internal error; see the broker log");
}

}  // namespace

bool SyncRepCancelWatch::operator()(const char msg[]) noexcept {
  if (std::strstr(msg, "wait for synchronous replication") != nullptr) seen_ = true;
  return true;
}

absl::Status StatusFromException(const std::exception& e, const std::string& operation) {
  absl::Status s = StatusFromExceptionUncounted(e, operation);
  Metrics().errors.With({absl::StatusCodeToString(s.code())}).Add();
  return s;
}

absl::Status WithConnection(ConnectionPool& pool, const std::string& operation,
                            const std::function<absl::Status(pqxx::connection&)>& body) {
  // A transaction that failed before COMMIT changed nothing, so `body` may run again:
  //  - on a dead connection (the database restarted, or the backend was terminated), once per
  //    pooled connection, so that stale idle connections cost the caller nothing;
  //  - on a serialization failure or deadlock, up to three times.
  // A connection lost during COMMIT (in_doubt_error) is never retried: the outcome is unknown.
  constexpr int kConflictRetries = 3;
  int conflict_retries = 0, connection_retries = 0;
  for (;;) {
    auto lease = pool.Acquire(kAcquireWaitOnRetry);
    if (!lease.ok()) return lease.status();
    absl::Status failed;
    bool connection_lost = false, conflict = false;
    SyncRepCancelWatch watch(lease->conn());
    try {
      absl::Status status = body(lease->conn());
      if (status.ok() && watch.seen()) {
        ferry::log::Get("pg")->error("op={} event=sync_replication_wait_cancelled", operation);
        Metrics().errors.With({"UNAVAILABLE"}).Add();
        return absl::UnavailableError(
            operation +
            ": the commit's wait for the synchronous standby was cancelled "
            "(pg_cancel_backend); the outcome is unknown: retry with the same dedup ids (a "
            "message that was stored is answered as a duplicate, never stored twice)");
      }
      return status;
    } catch (const pqxx::in_doubt_error& e) {
      lease->MarkBroken();
      return StatusFromException(e, operation);
    } catch (const pqxx::broken_connection& e) {
      failed = StatusFromException(e, operation);
      connection_lost = true;
    } catch (const pqxx::sql_error& e) {
      failed = StatusFromException(e, operation);
      const std::string& state = e.sqlstate();
      connection_lost = !lease->conn().is_open() || state.rfind("08", 0) == 0 || state == "57P01" ||
                        state == "57P02" || state == "57P03";
      conflict = IsRetryable(state);
    } catch (const std::exception& e) {
      if (!lease->conn().is_open()) lease->MarkBroken();
      return StatusFromException(e, operation);
    }
    if (connection_lost) {
      lease->MarkBroken();
      if (connection_retries++ < pool.size()) continue;
      return failed;
    }
    if (conflict && conflict_retries++ < kConflictRetries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5 * conflict_retries));
      continue;
    }
    return failed;
  }
}

std::vector<metrics::GaugeFamily> PoolGauges(ConnectionPool& pool) {
  const ConnectionPool::Stats st = pool.stats();
  const std::string& name = pool.application_name();
  // The limit is a series of its own: as a state beside open and in_use, a sum over states
  // added the limit to the connections.
  return {{"ferry_db_pool_connections",
           "connections of the pool now, by state: open (in_use included), in_use",
           {"pool", "state"},
           {{{name, "open"}, static_cast<double>(st.open)},
            {{name, "in_use"}, static_cast<double>(st.in_use)}}},
          {"ferry_db_pool_max_connections",
           "the most connections the pool opens",
           {"pool"},
           {{{name}, static_cast<double>(st.size)}}}};
}

}  // namespace ferry::pg
