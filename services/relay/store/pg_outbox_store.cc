#include "relay/store/pg_outbox_store.h"

#include <absl/strings/ascii.h>

#include <algorithm>
#include <tuple>

#include "common/log.h"
#include "common/pg/arrays.h"

// The advisory lock class of a claim's key locks (pg_try_advisory_xact_lock(class, hash)):
// ASCII "FeRy". An application using two-key advisory locks avoids this first key.
#define FERRY_OUTBOX_LOCK_CLASS "1181045369"

namespace ferry::relay {
namespace {

using pg::IntArray;
using pg::TextArray;

// A claim is two statements in one transaction (see Claim). The first looks at a window of the
// oldest due rows (so its cost does not grow with the backlog) and returns the first unkeyed row
// ids and keys among them, oldest first, each key locked for this transaction with an advisory lock
// (a key another relay is claiming now is skipped).
constexpr pg::Statement kClaimKeys{
    "relay_claim_keys",
    "WITH w AS (SELECT id, key, next_attempt_at FROM ferry_outbox"
    "  WHERE status = 'pending' AND next_attempt_at <= now()"
    "  AND (claimed_until IS NULL OR claimed_until < now())"
    "  ORDER BY next_attempt_at LIMIT $2),"
    " k AS (SELECT key, min(next_attempt_at) AS due FROM w WHERE key IS NOT NULL"
    "  GROUP BY key ORDER BY due LIMIT $1)"
    " SELECT key, NULL::text, due FROM k"
    "  WHERE pg_try_advisory_xact_lock(" FERRY_OUTBOX_LOCK_CLASS
    ", hashtext(key))"
    " UNION ALL (SELECT NULL, id::text, next_attempt_at FROM w WHERE key IS NULL"
    "  ORDER BY next_attempt_at LIMIT $1)"};

// The second, with a snapshot taken after the key locks: per key, the run of its first open rows
// (key_seq order) as long as each is pending, due, unclaimed and of the first one's topic (a
// failed, backing-off or held row ends the run: later rows wait behind it); plus the unkeyed
// rows nobody else is claiming. Oldest first, at most $3 in all. The last column counts the keyed
// rows picked: if fewer were claimed (a row changed under us), the claim is rolled back.
constexpr pg::Statement kClaimRuns{
    "relay_claim_runs",
    "WITH runs AS (SELECT r.id, k.due, k.ord, r.key_seq FROM unnest($1::text[], $2::timestamptz[])"
    "  WITH ORDINALITY AS k(key, due, ord) CROSS JOIN LATERAL ("
    "   SELECT n.id, n.key_seq, bool_and(n.ok) OVER (ORDER BY n.key_seq) AS claimable FROM ("
    "    SELECT id, key_seq, status = 'pending' AND next_attempt_at <= now()"
    "     AND (claimed_until IS NULL OR claimed_until < now())"
    "     AND topic = first_value(topic) OVER (ORDER BY key_seq) AS ok"
    "    FROM (SELECT id, key_seq, topic, status, next_attempt_at, claimed_until FROM ferry_outbox"
    "     WHERE key = k.key AND status IN ('pending', 'failed') ORDER BY key_seq LIMIT $4) x) n) r"
    "  WHERE r.claimable),"
    " unkeyed AS (SELECT id, next_attempt_at AS due FROM ferry_outbox WHERE id = ANY($3::uuid[])"
    "  AND status = 'pending' AND next_attempt_at <= now()"
    "  AND (claimed_until IS NULL OR claimed_until < now()) FOR UPDATE SKIP LOCKED),"
    " picked AS (SELECT id, keyed FROM ("
    "  SELECT id, due, ord, key_seq, true AS keyed FROM runs"
    "  UNION ALL SELECT id, due, 0, 0, false FROM unkeyed) a ORDER BY due, ord, key_seq LIMIT $4)"
    " UPDATE ferry_outbox o SET attempts = o.attempts + 1, claimed_by = $5,"
    " claimed_until = now() + $6 * interval '1 millisecond'"
    " FROM picked p WHERE o.id = p.id AND o.status = 'pending' AND o.next_attempt_at <= now()"
    " AND (o.claimed_until IS NULL OR o.claimed_until < now())"
    " RETURNING o.id::text, o.topic, o.key, o.payload, o.headers::text, o.attempts, o.key_seq,"
    " (SELECT count(*) FROM picked WHERE keyed)"};

constexpr pg::Statement kMarkSent{
    "relay_mark_sent",
    "UPDATE ferry_outbox o SET status = 'sent', sent_at = now(), broker_queue = r.q,"
    " broker_offset = r.off, claimed_by = NULL, claimed_until = NULL, last_error = NULL"
    " FROM unnest($1::uuid[], $2::int[], $3::int[], $4::bigint[]) AS r(id, a, q, off)"
    " WHERE o.id = r.id AND o.claimed_by = $5 AND o.attempts = r.a AND o.status = 'pending'"
    " RETURNING extract(epoch FROM clock_timestamp() - o.created_at)::float8"};

constexpr pg::Statement kRetry{
    "relay_retry_outbox",
    "UPDATE ferry_outbox o SET claimed_by = NULL, claimed_until = NULL, last_error = $4,"
    " attempts = o.attempts - CASE WHEN $5 THEN 1 ELSE 0 END,"
    " next_attempt_at = now() + r.d * interval '1 millisecond',"
    " status = CASE WHEN NOT $5 AND o.attempts >= $6 THEN 'failed' ELSE 'pending' END"
    " FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS r(id, a, d)"
    " WHERE o.id = r.id AND o.claimed_by = $7 AND o.attempts = r.a AND o.status = 'pending'"};

constexpr pg::Statement kMarkFailed{
    "relay_mark_failed",
    "UPDATE ferry_outbox o SET status = 'failed', claimed_by = NULL, claimed_until = NULL,"
    " last_error = $3 FROM unnest($1::uuid[], $2::int[]) AS r(id, a)"
    " WHERE o.id = r.id AND o.claimed_by = $4 AND o.attempts = r.a AND o.status = 'pending'"};

constexpr pg::Statement kDeleteSent{
    "relay_delete_sent",
    "DELETE FROM ferry_outbox WHERE id IN (SELECT id FROM ferry_outbox WHERE status = 'sent'"
    " AND sent_at < now() - $1 * interval '1 millisecond' LIMIT $2)"};

// Each count reads one partial index (pending: ferry_outbox_due, failed: ferry_outbox_failed).
constexpr pg::Statement kStats{
    "relay_outbox_stats",
    "SELECT (SELECT count(*) FROM ferry_outbox WHERE status = 'pending'),"
    " (SELECT count(*) FROM ferry_outbox WHERE status = 'failed'),"
    " (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8"
    "  FROM ferry_outbox WHERE status = 'pending')"};

}  // namespace

std::vector<pg::Statement> PgOutboxStore::Statements() {
  return {kClaimKeys, kClaimRuns, kMarkSent, kRetry, kMarkFailed, kDeleteSent, kStats};
}

absl::StatusOr<OutboxStats> PgOutboxStore::Stats() {
  OutboxStats out;
  absl::Status status = pg::WithConnection(pool_, "outbox stats", [&](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    const auto row = tx.exec_prepared1(kStats.name);
    out.pending = row[0].as<int64_t>();
    out.failed = row[1].as<int64_t>();
    out.oldest_pending_age_s = row[2].as<double>();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<OutboxRow>> PgOutboxStore::Claim(int32_t limit, int64_t lease_ms) {
  std::vector<OutboxRow> out;
  absl::Status status = pg::WithConnection(pool_, "claim", [&](pqxx::connection& c) {
    out.clear();
    pqxx::work tx(c);
    std::vector<std::string> keys, dues, unkeyed;
    for (const auto& row : tx.exec_prepared(kClaimKeys.name, limit, int64_t{2} * limit)) {
      if (!row[0].is_null()) {
        keys.push_back(row[0].as<std::string>());
        dues.push_back(row[2].as<std::string>());
      } else {
        unkeyed.push_back(row[1].as<std::string>());
      }
    }
    if (keys.empty() && unkeyed.empty()) return absl::OkStatus();
    int64_t keyed_picked = 0, keyed_claimed = 0;
    for (const auto& row : tx.exec_prepared(kClaimRuns.name, TextArray(keys), TextArray(dues),
                                            TextArray(unkeyed), limit, relay_id_, lease_ms)) {
      OutboxRow r;
      r.id = row[0].as<std::string>();
      r.topic = row[1].as<std::string>();
      if (!row[2].is_null()) {
        r.key = row[2].as<std::string>();
        r.key_seq = row[6].as<int64_t>();
        ++keyed_claimed;
      }
      r.payload = pqxx::binarystring(row[3]).str();
      r.headers_json = row[4].as<std::string>();
      r.attempts = row[5].as<int32_t>();
      keyed_picked = row[7].as<int64_t>();
      out.push_back(std::move(r));
    }
    if (keyed_claimed != keyed_picked) {
      // A row of a run changed between the snapshot and the update (its holder marked it after
      // its claim expired, or a person skipped it): claiming the rest could pass it. Nothing is
      // claimed; the next claim sees the change.
      tx.abort();
      out.clear();
      return absl::OkStatus();
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  // Each key's rows in key_seq order: the order they must reach the broker.
  std::sort(out.begin(), out.end(), [](const OutboxRow& a, const OutboxRow& b) {
    return std::make_tuple(a.key.has_value(), a.key.value_or(""), a.key_seq) <
           std::make_tuple(b.key.has_value(), b.key.value_or(""), b.key_seq);
  });
  return out;
}

absl::StatusOr<std::vector<double>> PgOutboxStore::MarkSent(const std::vector<SentRow>& rows) {
  std::vector<double> ages;
  if (rows.empty()) return ages;
  std::vector<std::string> ids;
  std::vector<int32_t> attempts;
  std::vector<uint32_t> queues;
  std::vector<int64_t> offsets;
  for (const auto& r : rows) {
    ids.push_back(r.id);
    attempts.push_back(r.attempts);
    queues.push_back(r.queue);
    offsets.push_back(r.offset);
  }
  absl::Status status = pg::WithConnection(pool_, "mark sent", [&](pqxx::connection& c) {
    ages.clear();
    pqxx::work tx(c);
    for (const auto& row : tx.exec_prepared(kMarkSent.name, TextArray(ids), IntArray(attempts),
                                            IntArray(queues), IntArray(offsets), relay_id_)) {
      ages.push_back(row[0].as<double>());
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return ages;
}

absl::Status PgOutboxStore::Retry(const std::vector<RetryRow>& rows, bool refund,
                                  const std::string& error) {
  if (rows.empty()) return absl::OkStatus();
  std::vector<std::string> ids;
  std::vector<int32_t> attempts;
  std::vector<int64_t> delays;
  for (const auto& r : rows) {
    ids.push_back(r.id);
    attempts.push_back(r.attempts);
    delays.push_back(r.delay_ms);
  }
  return pg::WithConnection(pool_, "retry", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec_prepared(kRetry.name, TextArray(ids), IntArray(attempts), IntArray(delays), error,
                     refund, max_attempts_, relay_id_);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status PgOutboxStore::MarkFailed(const std::vector<RetryRow>& rows,
                                       const std::string& error) {
  if (rows.empty()) return absl::OkStatus();
  std::vector<std::string> ids;
  std::vector<int32_t> attempts;
  for (const auto& r : rows) {
    ids.push_back(r.id);
    attempts.push_back(r.attempts);
  }
  return pg::WithConnection(pool_, "mark failed", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec_prepared(kMarkFailed.name, TextArray(ids), IntArray(attempts), error, relay_id_);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> PgOutboxStore::DeleteSent(int64_t retention_ms, int64_t limit) {
  int64_t deleted = 0;
  absl::Status status = pg::WithConnection(pool_, "delete sent", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    deleted = tx.exec_prepared(kDeleteSent.name, retention_ms, limit).affected_rows();
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return deleted;
}

LocalOutcome LocalTransactionOutcome(pqxx::connection& conn, const std::string& check_ref,
                                     const std::string& check_query, std::string* why) {
  std::string ignored;
  std::string& reason = why != nullptr ? *why : ignored;
  try {
    const bool is_xid = !check_ref.empty() && check_ref.size() <= 20 &&
                        check_ref.find_first_not_of("0123456789") == std::string::npos;
    pqxx::nontransaction tx(conn);
    if (is_xid) {
      pqxx::result r = tx.exec_params("SELECT pg_xact_status($1::xid8)", check_ref);
      if (r.empty() || r[0][0].is_null()) {
        reason = "transaction " + check_ref + " is too old for pg_xact_status (or never existed)";
        return LocalOutcome::kUnknown;
      }
      const std::string s = r[0][0].as<std::string>();
      if (s == "committed") return LocalOutcome::kCommitted;
      if (s == "aborted") return LocalOutcome::kRolledBack;
      reason = "transaction " + check_ref + " is still in progress";
      return LocalOutcome::kUnknown;  // in progress: ask again later
    }
    if (check_query.empty()) {
      reason = "check_ref is not a transaction id and no --check-query is set";
      return LocalOutcome::kUnknown;
    }
    pqxx::result r = tx.exec_params(check_query, check_ref);
    if (r.empty() || r[0][0].is_null()) {
      reason = "--check-query returned no row";
      return LocalOutcome::kUnknown;
    }
    const std::string s = absl::AsciiStrToUpper(r[0][0].as<std::string>());
    if (s == "COMMIT") return LocalOutcome::kCommitted;
    if (s == "ROLLBACK") return LocalOutcome::kRolledBack;
    reason = "--check-query returned " + s + ", not COMMIT or ROLLBACK";
  } catch (const std::exception& e) {
    reason = std::string("the check failed: ") + e.what();
    ferry::log::Get("relay.check")
        ->warn("event=check_failed ref={} error={}", ferry::log::Quote(check_ref),
               ferry::log::Quote(e.what()));
  }
  return LocalOutcome::kUnknown;
}

}  // namespace ferry::relay
