// PgOutboxStore: ferry-relay's only SQL, against the application's database (ferry_outbox).
// Every method is one short transaction on a pooled connection; none is held while the broker
// is called. Thread-safe.
#pragma once

#include <absl/status/statusor.h>

#include <optional>
#include <string>
#include <vector>

#include "common/pg/migrate.h"
#include "common/pg/pool.h"

namespace ferry::relay {

const std::vector<pg::Migration>& OutboxMigrations();  // generated from migrations/outbox

struct OutboxRow {
  std::string id;  // uuid: the broker dedup_id and the consumer's inbox key
  std::string topic;
  std::optional<std::string> key;
  std::string payload;
  std::string headers_json;
  int32_t attempts = 0;  // including this one
  int64_t key_seq = 0;   // with a key: its place among the key's rows (commit order)
};

struct SentRow {
  std::string id;
  int32_t attempts;
  uint32_t queue;
  int64_t offset;
};

struct RetryRow {
  std::string id;
  int32_t attempts;
  int64_t delay_ms;
};

struct OutboxStats {
  int64_t pending = 0;              // waiting to be published (or for a retry)
  int64_t failed = 0;               // given up on: a person looks (ferry_outbox_requeue)
  double oldest_pending_age_s = 0;  // since the oldest pending row was inserted
};

class PgOutboxStore {
 public:
  PgOutboxStore(pg::ConnectionPool& pool, std::string relay_id, int32_t max_attempts)
      : pool_(pool), relay_id_(std::move(relay_id)), max_attempts_(max_attempts) {}

  static std::vector<pg::Statement> Statements();

  // Claims up to `limit` due pending rows for `lease_ms` (attempts + 1): rows nobody else holds;
  // for a key, a run of its first open rows in key_seq (commit) order, all of one topic and none
  // failed, backing off or held by another relay, so a key is claimed by one relay at a time and
  // its rows go in order. Returned with each key's rows in key_seq order. The cost depends on
  // `limit`, not on the backlog: only the 2 x limit oldest due rows are looked at for keys.
  absl::StatusOr<std::vector<OutboxRow>> Claim(int32_t limit, int64_t lease_ms);

  // Published: status sent, with the broker position. Only rows this relay still holds with the
  // same attempt are changed (a claim that expired and was taken over is left alone).
  // Returns, per row changed, the seconds from its insert to now (the publish latency).
  absl::StatusOr<std::vector<double>> MarkSent(const std::vector<SentRow>& rows);

  // Not published, try again after each row's delay. `refund`: the broker was unreachable, so
  // the attempt does not count. Rows whose attempts reached the maximum become failed instead.
  absl::Status Retry(const std::vector<RetryRow>& rows, bool refund, const std::string& error);

  // Permanently failed (the broker rejected it): status failed with `error`.
  absl::Status MarkFailed(const std::vector<RetryRow>& rows, const std::string& error);

  // Counts for the relay's metrics.
  absl::StatusOr<OutboxStats> Stats();

  // Deletes up to `limit` sent rows older than `retention_ms`. Returns how many.
  absl::StatusOr<int64_t> DeleteSent(int64_t retention_ms, int64_t limit);

 private:
  pg::ConnectionPool& pool_;
  const std::string relay_id_;
  const int32_t max_attempts_;
};

// What the application's database says of a transaction, for a back-check: check_ref as a
// PostgreSQL transaction id -> pg_xact_status (committed, aborted; in progress or too old to
// know: unknown); otherwise `check_query` ($1 = check_ref) returning COMMIT / ROLLBACK /
// anything else. Any error is kUnknown, never kCommitted. `conn` is the caller's own. For
// kUnknown, `why` (if given) says why, for the log.
enum class LocalOutcome { kCommitted, kRolledBack, kUnknown };
LocalOutcome LocalTransactionOutcome(pqxx::connection& conn, const std::string& check_ref,
                                     const std::string& check_query, std::string* why = nullptr);

}  // namespace ferry::relay
