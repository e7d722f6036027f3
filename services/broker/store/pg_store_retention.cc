// PgStore, upkeep: receipt key, time segments, retention, dedup expiry.
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"
#include "common/log.h"
#include "common/pg/arrays.h"
#include "common/pg/session_lock.h"

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals

namespace {

// Retention works per queue, from the front: messages are appended in (nearly) time order, so
// the expired ones are a prefix of offsets; removing a range by primary key touches nothing else.
constexpr pg::Statement kRetentionQueues{
    "broker_retention_queues",
    "SELECT q.topic_id, q.queue_id, m.first, ferry_queue_end(q.topic_id, q.queue_id),"
    " t.retention_ms"
    " FROM queues q JOIN topics t USING (topic_id) CROSS JOIN LATERAL"
    " (SELECT min(msg_offset) AS first FROM messages WHERE topic_id = q.topic_id"
    "  AND queue_id = q.queue_id) m"
    " WHERE m.first IS NOT NULL AND EXISTS (SELECT 1 FROM messages x WHERE x.topic_id = q.topic_id"
    "  AND x.queue_id = q.queue_id AND x.msg_offset = m.first"
    "  AND x.produced_at < now() - t.retention_ms * interval '1 millisecond')"};

// Deletes the expired prefix of one queue within [first, first + batch): up to the first
// message that is still young. Leases and retries of what was removed end with it.
constexpr pg::Statement kExpireQueuePrefix{
    "broker_expire_queue_prefix",
    "WITH cut AS (SELECT COALESCE((SELECT m.msg_offset FROM messages m WHERE m.topic_id = $1"
    "  AND m.queue_id = $2 AND m.msg_offset >= $3 AND m.msg_offset < $3 + $5"
    "  AND m.produced_at >= now() - $4 * interval '1 millisecond' ORDER BY m.msg_offset LIMIT 1),"
    "  least($3 + $5, $6)) AS upto),"
    " gone AS (DELETE FROM messages m USING cut WHERE m.topic_id = $1 AND m.queue_id = $2"
    "  AND m.msg_offset >= $3 AND m.msg_offset < cut.upto RETURNING 1),"
    " released AS (DELETE FROM group_leases l USING cut WHERE l.topic_id = $1 AND l.queue_id = $2"
    "  AND l.msg_offset < cut.upto RETURNING 1),"
    " released_ranges AS (DELETE FROM group_ranges r USING cut WHERE r.topic_id = $1"
    "  AND r.queue_id = $2 AND r.end_offset <= cut.upto RETURNING 1),"
    " mark AS (UPDATE queues q SET first_offset = greatest(q.first_offset, cut.upto),"
    "  next_offset = greatest(q.next_offset, $6) FROM cut"
    "  WHERE q.topic_id = $1 AND q.queue_id = $2 RETURNING 1)"
    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM released),"
    " (SELECT count(*) FROM mark)"};

// Segments (partitions) that exist, the current one, and the segment length.
constexpr pg::Statement kListSegments{
    "broker_list_segments",
    "SELECT substring(c.relname FROM 11)::int, ferry_current_segment(),"
    " (SELECT value FROM broker_settings WHERE key = 'segment_seconds'),"
    " (extract(epoch FROM now()) * 1000)::bigint"
    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'messages'::regclass AND c.relname ~ '^messages_s[0-9]+$'"
    " ORDER BY 1"};

// -1: no topic wrote into the segment.
constexpr pg::Statement kSegmentRetention{
    "broker_segment_retention",
    "SELECT COALESCE(max(t.retention_ms), -1) FROM queue_segments qs JOIN topics t"
    " USING (topic_id) WHERE qs.segment = $1"};

// Before a segment is dropped: forget it, move each affected queue's low watermark to where
// its remaining messages start, and end the deliveries of what goes with it.
constexpr pg::Statement kRetireSegment{
    "broker_retire_segment",
    "WITH gone AS (DELETE FROM queue_segments WHERE segment = $1 RETURNING topic_id, queue_id),"
    " marked AS (UPDATE queues q SET first_offset = greatest(q.first_offset, COALESCE("
    "   (SELECT min(s.first_offset) FROM queue_segments s WHERE s.topic_id = q.topic_id"
    "    AND s.queue_id = q.queue_id AND s.segment <> $1),"
    "   ferry_queue_end(q.topic_id, q.queue_id))),"
    "  next_offset = greatest(q.next_offset, ferry_queue_end(q.topic_id, q.queue_id))"
    "  FROM (SELECT DISTINCT topic_id, queue_id FROM gone) g"
    "  WHERE q.topic_id = g.topic_id AND q.queue_id = g.queue_id"
    "  RETURNING q.topic_id, q.queue_id, q.first_offset),"
    " ranges AS (DELETE FROM group_ranges r USING marked m WHERE r.topic_id = m.topic_id"
    "  AND r.queue_id = m.queue_id AND r.end_offset <= m.first_offset)"
    " DELETE FROM group_leases l USING marked m WHERE l.topic_id = m.topic_id"
    " AND l.queue_id = m.queue_id AND l.msg_offset < m.first_offset"};

constexpr pg::Statement kReceiptKey{"broker_select_receipt_key",
                                    "SELECT value FROM broker_meta WHERE key = 'receipt_hmac_key'"};

constexpr pg::Statement kDeleteExpiredDedup{
    "broker_delete_expired_dedup",
    "DELETE FROM dedup WHERE ctid = ANY(ARRAY(SELECT ctid FROM dedup WHERE expires_at <= now()"
    " LIMIT $1))"};

// One broker at a time drops segments (session advisory lock on the connection it runs on).
constexpr int64_t kRetentionLockKey = 0x6665727279 + 1;

// Drops every segment whose messages are all past their topics' retention. Runs DDL outside
// any transaction (DETACH PARTITION CONCURRENTLY does not block producers or consumers).
int64_t DropExpiredSegments(pqxx::connection& c) {
  int64_t dropped = 0;
  const std::optional<pg::SessionLock> lock = pg::SessionLock::TryAcquire(c, kRetentionLockKey);
  if (!lock) return 0;  // another broker is at it
  std::vector<int32_t> segments;
  int32_t current = 0;
  int64_t segment_ms = 0, now_ms = 0;
  {
    pqxx::read_transaction tx(c);
    for (const auto& row : tx.exec_prepared(kListSegments.name)) {
      segments.push_back(row[0].as<int32_t>());
      current = row[1].as<int32_t>();
      segment_ms = row[2].as<int64_t>() * 1000;
      now_ms = row[3].as<int64_t>();
    }
  }
  for (int32_t s : segments) {
    if (s >= current) break;
    {
      pqxx::work tx(c);
      const int64_t retention = tx.exec_prepared(kSegmentRetention.name, s)[0][0].as<int64_t>();
      const int64_t end_ms = (static_cast<int64_t>(s) + 1) * segment_ms;
      if (end_ms + std::max<int64_t>(retention, 0) > now_ms) continue;  // still needed
      tx.exec_prepared(kRetireSegment.name, s);
      tx.commit();
    }
    // One statement per nontransaction: libpqxx allows one open transaction per connection.
    const std::string partition = c.quote_name("messages_s" + std::to_string(s));
    auto run = [&c](const std::string& sql) {
      pqxx::nontransaction nt(c);
      nt.exec(sql);
    };
    try {
      run("ALTER TABLE messages DETACH PARTITION " + partition + " CONCURRENTLY");
    } catch (const pqxx::sql_error&) {
      run("ALTER TABLE messages DETACH PARTITION " + partition + " FINALIZE");  // was pending
    }
    run("DROP TABLE IF EXISTS " + partition);
    ++dropped;
  }
  return dropped;
}

}  // namespace

namespace store_internal {

std::vector<pg::Statement> RetentionStatements() {
  return {kRetentionQueues, kExpireQueuePrefix, kListSegments,      kSegmentRetention,
          kRetireSegment,   kReceiptKey,        kDeleteExpiredDedup};
}

}  // namespace store_internal

absl::StatusOr<std::string> PgStore::ReceiptKey() {
  std::string key;
  absl::Status status = pg::WithConnection(pool_, "read receipt key", [&](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    pqxx::result r = tx.exec_prepared(kReceiptKey.name);
    if (r.empty()) return absl::FailedPreconditionError("broker_meta has no receipt_hmac_key");
    key = pqxx::binarystring(r[0][0]).str();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return key;
}

absl::StatusOr<int64_t> PgStore::DeleteExpiredDedup(int64_t limit) {
  int64_t deleted = 0;
  absl::Status status = pg::WithConnection(pool_, "expire dedup", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    deleted = tx.exec_prepared(kDeleteExpiredDedup.name, limit).affected_rows();
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return deleted;
}

absl::Status PgStore::EnsureSegments(int ahead) {
  return pg::WithConnection(pool_, "create segments", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec_prepared(kEnsureSegments.name, ahead);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<RetentionReport> PgStore::ApplyRetention(int64_t batch) {
  RetentionReport report;
  absl::Status status = pg::WithConnection(pool_, "retention", [&](pqxx::connection& c) {
    report = RetentionReport{};
    {
      pqxx::work tx(c);
      tx.exec_prepared(kEnsureSegments.name, 2);
      tx.commit();
    }
    // 1. Whole segments past retention: dropped, no row by row work, no dead tuples.
    report.segments = DropExpiredSegments(c);

    // 2. Topics with a shorter retention than others in the same segment: their expired prefix
    //    is deleted by offset range (index range, one short transaction per queue).
    struct Expiring {
      int64_t topic_id;
      uint32_t queue;
      int64_t first, end, retention_ms;
    };
    std::vector<Expiring> queues;
    {
      pqxx::read_transaction tx(c);
      for (const auto& row : tx.exec_prepared(kRetentionQueues.name)) {
        queues.push_back(Expiring{row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>(),
                                  row[3].as<int64_t>(), row[4].as<int64_t>()});
      }
    }
    for (const Expiring& q : queues) {
      pqxx::work tx(c);
      pqxx::result r = tx.exec_prepared(kExpireQueuePrefix.name, q.topic_id, q.queue, q.first,
                                        q.retention_ms, batch, q.end);
      report.messages += r[0][0].as<int64_t>();
      report.leases += r[0][1].as<int64_t>();
      tx.commit();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return report;
}

absl::Status PgStore::Probe(int64_t timeout_ms) {
  // Healthy means "can commit", not "answers SELECT 1": a primary cut off from its synchronous
  // standbys (a partition, before its keeper demotes it) answers reads but every commit waits.
  // So the probe commits a transaction that writes one WAL record (a logical message, no row:
  // a transaction that writes no WAL does not wait for standbys) and so waits for the
  // standby like a Produce would. statement_timeout does not reach that wait
  // (PostgreSQL switches it off before committing), so a watchdog cancels the probe after
  // `timeout_ms`; a cancelled wait is reported as a WARNING beside success.
  std::lock_guard<std::mutex> lock(probe_mu_);
  try {
    if (!probe_conn_ || !probe_conn_->is_open()) probe_conn_ = pool_.OpenDedicated("health");
    pqxx::connection& conn = *probe_conn_;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false, cancelled = false;
    std::thread watchdog([&] {
      std::unique_lock<std::mutex> l(mu);
      if (cv.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return done; })) return;
      cancelled = true;
      try {
        conn.cancel_query();  // PQcancel: a separate connection, safe beside a running query
      } catch (const std::exception&) {
      }
    });
    auto finish = [&] {
      {
        std::lock_guard<std::mutex> l(mu);
        done = true;
      }
      cv.notify_one();
      watchdog.join();
    };
    try {
      pg::SyncRepCancelWatch watch(conn);
      pqxx::nontransaction tx(conn);
      tx.exec("SELECT pg_logical_emit_message(true, 'ferry.health', '')");
      finish();
      if (watch.seen() || cancelled) {
        return absl::UnavailableError(
            "database cannot commit: no synchronous standby confirmed "
            "within " +
            std::to_string(timeout_ms) + " ms");
      }
    } catch (...) {
      if (watchdog.joinable()) finish();
      throw;
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    probe_conn_.reset();
    const std::string why = e.what();
    return absl::UnavailableError("database unreachable: " + why.substr(0, why.find('\n')));
  }
}

}  // namespace ferry::broker
