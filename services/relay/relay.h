// ferry-relay: publishes the application's ferry_outbox rows to the broker and answers the
// broker's back-checks from the application's database.
//
// Threads: the relay loop (claim -> publish with a deadline, outside any transaction -> mark),
// the LISTEN connection (ferry_outbox notifications wake the loop; polling is the fallback),
// and the back-check stream's thread (TransactionChecker). Stop(): the loop finishes its batch,
// then the checker and the listener stop. kill -9 at any moment loses nothing: a claimed row
// whose relay died is claimed again when its lease ends, and the broker recognises the re-send
// by its dedup_id (the row id).
#pragma once

#include <absl/status/status.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "client/transactions.h"
#include "common/pg/pool.h"
#include "relay/store/pg_outbox_store.h"

namespace ferry::relay {

struct RelayOptions {
  std::string database_url;                  // FERRY_DATABASE_URL: the application database
  std::string broker = "127.0.0.1:7420";     // FERRY_BROKER
  std::vector<std::string> producer_groups;  // FERRY_PRODUCER_GROUPS: answer their back-checks
  std::string check_query;  // FERRY_CHECK_QUERY: SQL with $1 = check_ref, returning COMMIT,
                            // ROLLBACK or UNKNOWN (when check_ref is not a transaction id)
  std::string relay_id;     // FERRY_RELAY_ID: name in claimed_by (default host/pid)
  int batch_size = 100;                 // FERRY_BATCH_SIZE: rows per claim (1-1000)
  int poll_interval_ms = 10;            // FERRY_POLL_INTERVAL_MS: claim again after an empty claim
  int lease_ms = 30000;                 // FERRY_LEASE_MS: a claim expires after this
  int publish_timeout_ms = 10000;       // FERRY_PUBLISH_TIMEOUT_MS: deadline of a Produce
  int max_attempts = 16;                // FERRY_MAX_ATTEMPTS: then status failed
  int backoff_min_ms = 1000;            // FERRY_BACKOFF_MIN_MS: first retry delay
  int backoff_max_ms = 300000;          // FERRY_BACKOFF_MAX_MS: longest retry delay
  int64_t sent_retention_ms = 86400000; // FERRY_SENT_RETENTION_MS: sent rows kept this long
  std::string log_level = "info";       // FERRY_LOG_LEVEL
};

absl::Status Validate(const RelayOptions& options);

// Applies migrations/outbox to the application database.
absl::Status MigrateOutbox(const std::string& database_url);

// The answer to a back-check, from the application's database (in store/pg_outbox_store.cc,
// with the relay's other SQL): check_ref as a PostgreSQL
// transaction id -> pg_xact_status (committed: COMMIT, aborted: ROLLBACK, in progress or
// unknown: UNKNOWN); otherwise `check_query` ($1 = check_ref) returning COMMIT / ROLLBACK /
// UNKNOWN. Any error is UNKNOWN, never COMMIT.
v1::TransactionDecision AnswerCheck(pqxx::connection& conn, const std::string& check_ref,
                                    const std::string& check_query);

class Relay {
 public:
  explicit Relay(RelayOptions options);
  ~Relay();

  // Connects and starts the threads. UNAVAILABLE if the application database is unreachable.
  absl::Status Start();
  void Stop();

  int64_t published() const { return published_.load(); }

 private:
  void Loop();
  // Publishes one claimed batch; returns false when the broker is unreachable.
  bool Publish(std::vector<OutboxRow> rows);
  int64_t Backoff(int32_t attempts);
  bool Wait(std::chrono::milliseconds ms);  // false once stopping

  const RelayOptions options_;
  std::unique_ptr<pg::ConnectionPool> pool_;
  std::unique_ptr<PgOutboxStore> store_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<TransactionChecker> checker_;
  std::unique_ptr<pqxx::connection> check_conn_;
  std::mutex check_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<int64_t> published_{0};
  std::thread loop_;
};

}  // namespace ferry::relay
