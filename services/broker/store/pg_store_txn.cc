// PgStore, transactions: half messages, attached ACKs, EndTransaction, back-checks, audit.
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <map>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"
#include "common/log.h"
#include "common/pg/arrays.h"

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals

namespace {

#define FERRY_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

constexpr pg::Statement kBeginTxn{
    "broker_begin_txn",
    "INSERT INTO transactions (producer_group, check_ref, next_check_at)"
    " VALUES ($1, NULLIF($2, ''), now() + $3 * interval '1 millisecond') RETURNING txn_id::text"};

constexpr pg::Statement kTxnEvent{
    "broker_txn_event",
    "INSERT INTO transaction_events (txn_id, kind, actor, detail) VALUES ($1::uuid, $2, $3, $4)"};

constexpr pg::Statement kLockTxn{
    "broker_lock_txn",
    "SELECT state, producer_group, checks_sent FROM transactions WHERE txn_id = $1::uuid"
    " FOR UPDATE"};

constexpr pg::Statement kNextHalfSeq{
    "broker_next_half_seq",
    "SELECT COALESCE(max(seq) + 1, 0) FROM half_messages WHERE txn_id = $1::uuid"};

constexpr pg::Statement kInsertHalf{
    "broker_insert_half",
    "INSERT INTO half_messages (txn_id, seq, topic_id, key, payload, headers, dedup_id,"
    " deliver_at_ms)"
    " SELECT $1::uuid, $2 + n - 1, $3, k, p, h, d, at FROM unnest($4::text[], $5::bytea[],"
    " $6::jsonb[], $7::text[], $8::bigint[]) WITH ORDINALITY AS m(k, p, h, d, at, n)"};

constexpr pg::Statement kTakeHalf{
    "broker_take_half",
    "SELECT topic_id, key, payload, headers::text, dedup_id, deliver_at_ms FROM half_messages"
    " WHERE txn_id = $1::uuid ORDER BY seq"};

constexpr pg::Statement kDeleteHalf{"broker_delete_half",
                                    "DELETE FROM half_messages WHERE txn_id = $1::uuid"};

constexpr pg::Statement kPinLeases{
    "broker_pin_leases",
    "UPDATE group_leases l SET state = 'in_txn', deadline = 'infinity'"
    " FROM unnest($2::bigint[], $3::int[], $4::bigint[], $5::bigint[]) AS r(t, q, o, k)"
    " WHERE l.group_id = $1 AND l.topic_id = r.t AND l.queue_id = r.q AND l.msg_offset = r.o"
    " AND l.lease_token = r.k AND l.state = 'delivered'"
    " RETURNING l.topic_id, l.queue_id, l.msg_offset"};

constexpr pg::Statement kInsertTxnAcks{
    "broker_insert_txn_acks",
    "INSERT INTO txn_acks (txn_id, group_id, topic_id, queue_id, msg_offset, lease_token)"
    " SELECT $1::uuid, $2, t, q, o, k FROM unnest($3::bigint[], $4::int[], $5::bigint[],"
    " $6::bigint[]) AS r(t, q, o, k) ON CONFLICT DO NOTHING"};

constexpr pg::Statement kApplyTxnAcks{
    "broker_apply_txn_acks",
    "DELETE FROM group_leases l USING txn_acks a WHERE a.txn_id = $1::uuid"
    " AND l.group_id = a.group_id AND l.topic_id = a.topic_id AND l.queue_id = a.queue_id"
    " AND l.msg_offset = a.msg_offset AND l.lease_token = a.lease_token AND l.state = 'in_txn'"};

// Rolled back: the consumed messages are due again (the attempt failed).
constexpr pg::Statement kReleaseTxnAcks{
    "broker_release_txn_acks",
    "WITH released AS (UPDATE group_leases l SET state = 'delivered', deadline = now()"
    " FROM txn_acks a WHERE a.txn_id = $1::uuid AND l.group_id = a.group_id"
    " AND l.topic_id = a.topic_id AND l.queue_id = a.queue_id AND l.msg_offset = a.msg_offset"
    " AND l.lease_token = a.lease_token AND l.state = 'in_txn' RETURNING l.topic_id)"
    " SELECT count(pg_notify('ferry_messages', topic_id::text))"
    " FROM (SELECT DISTINCT topic_id FROM released) x"};

constexpr pg::Statement kDeleteTxnAcks{"broker_delete_txn_acks",
                                       "DELETE FROM txn_acks WHERE txn_id = $1::uuid"};

constexpr pg::Statement kFinishTxn{
    "broker_finish_txn",
    "UPDATE transactions SET state = $2, ended_at = now() WHERE txn_id = $1::uuid"};

// Claims due transactions (row locks + next_check_at moved ahead: no other broker takes them);
// those whose checks are spent become CHECK_EXHAUSTED instead. Every check is an audit event;
// its event_id is the check_id.
constexpr pg::Statement kClaimChecks{
    "broker_claim_checks",
    "WITH due AS (SELECT txn_id FROM transactions WHERE state = 'PREPARED'"
    "  AND producer_group = ANY($1::text[]) AND next_check_at <= now()"
    "  ORDER BY next_check_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " exhausted AS (UPDATE transactions t SET state = 'CHECK_EXHAUSTED', ended_at = now()"
    "  FROM due WHERE t.txn_id = due.txn_id AND t.checks_sent >= $3"
    "  RETURNING t.txn_id, t.producer_group, t.checks_sent, t.created_at),"
    " claimed AS (UPDATE transactions t SET checks_sent = t.checks_sent + 1,"
    "  last_check_at = now(), next_check_at = now() + $4 * interval '1 millisecond'"
    "  FROM due WHERE t.txn_id = due.txn_id AND t.checks_sent < $3"
    "  RETURNING t.txn_id, t.check_ref, t.producer_group, t.checks_sent, t.created_at),"
    " events AS (INSERT INTO transaction_events (txn_id, kind, actor, detail)"
    "  SELECT txn_id, 'exhausted', 'broker ' || $5, 'no COMMIT or ROLLBACK after '"
    "   || $3 || ' checks' FROM exhausted"
    "  UNION ALL SELECT txn_id, 'check', 'broker ' || $5, 'check ' || checks_sent FROM claimed"
    "  RETURNING event_id, txn_id, kind)"
    " SELECT c.txn_id::text, e.event_id, COALESCE(c.check_ref, ''), c.producer_group,"
    " c.checks_sent, " FERRY_MS(
        "c.created_at") " FROM claimed c JOIN events e ON e.txn_id = c.txn_id AND e.kind = "
                        "'check'"
    // The exhausted ones too, with event_id -1: logged, not checked.
    " UNION ALL SELECT x.txn_id::text, -1, '', x.producer_group, x.checks_sent, " FERRY_MS(
        "x.created_at") " FROM exhausted x"};

constexpr pg::Statement kCheckSummary{
    "broker_check_summary",
    "SELECT h.txn_id::text, array_to_string(array_agg(DISTINCT t.name), ','), count(*)"
    " FROM half_messages h JOIN topics t USING (topic_id) WHERE h.txn_id = ANY($1::uuid[])"
    " GROUP BY h.txn_id"};

constexpr pg::Statement kCheckSample{
    "broker_check_sample",
    "SELECT h.txn_id::text, t.name, h.key, h.payload, h.headers::text, h.dedup_id"
    " FROM half_messages h JOIN topics t USING (topic_id)"
    " WHERE h.txn_id = ANY($1::uuid[]) AND h.seq < 10 ORDER BY h.txn_id, h.seq"};

constexpr pg::Statement kUnclaimCheck{
    "broker_unclaim_check",
    "UPDATE transactions SET checks_sent = checks_sent - 1, next_check_at = now()"
    " WHERE txn_id = $1::uuid AND state = 'PREPARED' AND checks_sent > 0 RETURNING 1"};

constexpr pg::Statement kExhaustIfSpent{
    "broker_exhaust_if_spent",
    "UPDATE transactions SET state = 'CHECK_EXHAUSTED', ended_at = now()"
    " WHERE txn_id = $1::uuid AND state = 'PREPARED' AND checks_sent >= $2 RETURNING 1"};

constexpr pg::Statement kTouchCheckers{
    "broker_touch_checkers",
    "INSERT INTO txn_checkers (producer_group, broker_id, checkers, seen_at)"
    " SELECT g, $1, c, now() FROM unnest($2::text[], $3::int[]) AS x(g, c)"
    " ON CONFLICT (producer_group, broker_id) DO UPDATE SET checkers = EXCLUDED.checkers,"
    " seen_at = now()"};

constexpr pg::Statement kForgetCheckers{
    "broker_forget_checkers",
    "DELETE FROM txn_checkers WHERE (broker_id = $1 AND NOT (producer_group = ANY($2::text[])))"
    " OR seen_at < now() - interval '30 seconds'"};

constexpr pg::Statement kListTxns{
    "broker_list_txns",
    "SELECT t.txn_id::text, t.producer_group, COALESCE(t.check_ref, ''), t.state,"
    " " FERRY_MS("t.created_at") ", COALESCE(" FERRY_MS("t.ended_at") ", 0), t.checks_sent,"
    " " FERRY_MS("t.next_check_at") ","
    " (SELECT count(*) FROM half_messages h WHERE h.txn_id = t.txn_id),"
    " (SELECT count(*) FROM txn_acks a WHERE a.txn_id = t.txn_id),"
    " (SELECT COALESCE(array_to_string(array_agg(DISTINCT tp.name), ','), '')"
    "   FROM half_messages h JOIN topics tp USING (topic_id) WHERE h.txn_id = t.txn_id),"
    " EXISTS (SELECT 1 FROM txn_checkers c WHERE c.producer_group = t.producer_group"
    "   AND c.checkers > 0 AND c.seen_at > now() - interval '15 seconds')"
    " FROM transactions t WHERE ($1 = '' OR t.state = $1)"
    " AND ($2 = '' OR t.producer_group = $2) AND ($4 = '' OR t.txn_id::text = $4)"
    " ORDER BY t.created_at DESC LIMIT $3"};

constexpr pg::Statement kHalfMessages{
    "broker_half_messages",
    "SELECT tp.name, h.key, h.payload, h.headers::text, COALESCE(h.dedup_id, '')"
    " FROM half_messages h JOIN topics tp USING (topic_id) WHERE h.txn_id = $1::uuid"
    " ORDER BY h.seq"};

constexpr pg::Statement kTxnAcks{
    "broker_txn_acks",
    "SELECT g.name, tp.name, a.queue_id, a.msg_offset FROM txn_acks a"
    " JOIN consumer_groups g USING (group_id) JOIN topics tp ON tp.topic_id = a.topic_id"
    " WHERE a.txn_id = $1::uuid ORDER BY 1, 2, 3, 4"};

constexpr pg::Statement kTxnEvents{
    "broker_txn_events",
    "SELECT txn_id::text, " FERRY_MS("at") ", kind, actor, detail FROM transaction_events"
    " WHERE txn_id = ANY($1::uuid[]) ORDER BY event_id"};

constexpr pg::Statement kTxnGroup{
    "broker_txn_group", "SELECT producer_group FROM transactions WHERE txn_id = $1::uuid"};

// A check this store sent for the transaction (its audit event id is the check id).
constexpr pg::Statement kCheckWasSent{
    "broker_check_was_sent",
    "SELECT 1 FROM transaction_events WHERE event_id = $2 AND txn_id = $1::uuid"
    " AND kind = 'check' AND detail LIKE 'check %'"};

constexpr pg::Statement kRearmTxn{
    "broker_rearm_txn",
    "UPDATE transactions SET state = 'PREPARED', checks_sent = 0, next_check_at = now(),"
    " ended_at = NULL WHERE txn_id = $1::uuid AND state = 'CHECK_EXHAUSTED' RETURNING 1"};

const char* StateName(TxnState s) {
  switch (s) {
    case TxnState::kPrepared:
      return "PREPARED";
    case TxnState::kCommitted:
      return "COMMITTED";
    case TxnState::kRolledBack:
      return "ROLLED_BACK";
    case TxnState::kCheckExhausted:
      return "CHECK_EXHAUSTED";
  }
  return "PREPARED";
}

TxnState StateFrom(const std::string& s) {
  if (s == "COMMITTED") return TxnState::kCommitted;
  if (s == "ROLLED_BACK") return TxnState::kRolledBack;
  if (s == "CHECK_EXHAUSTED") return TxnState::kCheckExhausted;
  return TxnState::kPrepared;
}

absl::Status TxnNotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("transaction ", id, " does not exist"));
}

// Locks the transaction row; NOT_FOUND if absent. Returns (state, producer group, checks).
absl::StatusOr<std::tuple<TxnState, std::string, int32_t>> LockTxn(pqxx::work& tx,
                                                                   const std::string& id) {
  pqxx::result r = tx.exec_prepared(kLockTxn.name, id);
  if (r.empty()) return TxnNotFound(id);
  return std::make_tuple(StateFrom(r[0][0].as<std::string>()), r[0][1].as<std::string>(),
                         r[0][2].as<int32_t>());
}

absl::Status NotPrepared(const std::string& id, TxnState state) {
  return absl::FailedPreconditionError(absl::StrCat(
      "transaction ", id, " is ", StateName(state),
      state == TxnState::kCheckExhausted ? "; an administrator decides it (ferryctl txn resolve)"
                                         : "; it cannot change any more"));
}

// The end of a transaction, inside `tx` (the row is locked by the caller).
absl::StatusOr<TxnOutcome> EndInTx(pqxx::work& tx, const std::string& id, TxnState state,
                                   TxnDecision decision, const std::string& actor,
                                   const std::string& reason, bool by_admin,
                                   const QueueChooser& choose_queue) {
  const TxnState target =
      decision == TxnDecision::kCommit ? TxnState::kCommitted : TxnState::kRolledBack;
  if (state == target) return TxnOutcome{state, 0, {}};  // the same decision again: harmless
  if (!(state == TxnState::kPrepared || (by_admin && state == TxnState::kCheckExhausted))) {
    return NotPrepared(id, state);
  }
  int64_t messages = 0;
  std::vector<int64_t> appended_to;
  if (target == TxnState::kCommitted) {
    // Topic by topic in topic_id order (one lock order for every multi-topic commit), each
    // through the same path as Produce: dedup, delayed, dense offsets.
    std::map<int64_t, std::vector<NewMessage>> by_topic;
    for (const auto& row : tx.exec_prepared(kTakeHalf.name, id)) {
      NewMessage m;
      if (!row[1].is_null()) m.key = row[1].as<std::string>();
      m.payload = pqxx::binarystring(row[2]).str();
      m.headers_json = row[3].as<std::string>();
      if (!row[4].is_null()) m.dedup_id = row[4].as<std::string>();
      m.deliver_at_ms = row[5].as<int64_t>();
      by_topic[row[0].as<int64_t>()].push_back(std::move(m));
    }
    const int64_t now_ms = NowMs();
    for (const auto& [topic_id, batch] : by_topic) {
      pqxx::result t = tx.exec_prepared(kSelectTopicById.name, topic_id);
      if (t.empty()) continue;  // deleted with its messages (half ones too, by cascade)
      auto appended = AppendToTopic(tx, TopicFromRow(t[0]), batch, choose_queue, now_ms);
      if (!appended.ok()) return appended.status();
      messages += static_cast<int64_t>(batch.size());
      appended_to.push_back(topic_id);
    }
    tx.exec_prepared(kApplyTxnAcks.name, id);
  } else {
    for (const auto& row : tx.exec_prepared(kTakeHalf.name, id)) {
      (void)row;
      ++messages;
    }
    tx.exec_prepared(kReleaseTxnAcks.name, id);
  }
  tx.exec_prepared(kDeleteHalf.name, id);
  tx.exec_prepared(kDeleteTxnAcks.name, id);
  tx.exec_prepared(kFinishTxn.name, id, StateName(target));
  const std::string kind = by_admin                         ? "resolve"
                           : target == TxnState::kCommitted ? "commit"
                                                            : "rollback";
  std::string detail = absl::StrCat(StateName(target), ": ", messages, " messages ",
                                    target == TxnState::kCommitted ? "visible" : "discarded");
  if (!reason.empty()) absl::StrAppend(&detail, "; ", reason);
  tx.exec_prepared(kTxnEvent.name, id, kind, actor, detail);
  return TxnOutcome{target, messages, std::move(appended_to)};
}

}  // namespace

namespace store_internal {

std::vector<pg::Statement> TxnStatements() {
  return {kBeginTxn,       kTxnEvent,      kLockTxn,        kNextHalfSeq,   kInsertHalf,
          kTakeHalf,       kDeleteHalf,    kPinLeases,      kInsertTxnAcks, kApplyTxnAcks,
          kReleaseTxnAcks, kDeleteTxnAcks, kFinishTxn,      kClaimChecks,   kCheckSummary,
          kCheckSample,    kUnclaimCheck,  kExhaustIfSpent, kTouchCheckers, kForgetCheckers,
          kListTxns,       kTxnEvents,     kRearmTxn,       kTxnGroup,      kCheckWasSent,
          kHalfMessages,   kTxnAcks};
}

}  // namespace store_internal

absl::StatusOr<std::string> PgStore::BeginTransaction(const TxnBegin& begin) {
  std::string id;
  absl::Status status = pg::WithConnection(pool_, "begin transaction", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    id = tx.exec_prepared(kBeginTxn.name, begin.producer_group, begin.check_ref,
                          begin.timeout_ms > 0 ? begin.timeout_ms : timing_.check_after_ms)[0][0]
             .as<std::string>();
    tx.exec_prepared(kTxnEvent.name, id, "begin", "producer", "");
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return id;
}

absl::StatusOr<std::string> PgStore::AppendHalf(const std::string& txn_id, const TxnBegin* begin,
                                                const std::string& topic,
                                                const std::vector<NewMessage>& messages) {
  std::string id = txn_id;
  absl::Status status =
      pg::WithConnection(pool_, "produce (transaction)", [&](pqxx::connection& c) {
        pqxx::work tx(c);
        pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
        if (t.empty()) return TopicNotFound(topic);
        const int64_t topic_id = t[0][0].as<int64_t>();
        if (begin != nullptr) {
          id = tx.exec_prepared(
                     kBeginTxn.name, begin->producer_group, begin->check_ref,
                     begin->timeout_ms > 0 ? begin->timeout_ms : timing_.check_after_ms)[0][0]
                   .as<std::string>();
          tx.exec_prepared(kTxnEvent.name, id, "begin", "producer", "");
        } else {
          auto locked = LockTxn(tx, id);  // serializes half produces into one transaction
          if (!locked.ok()) return locked.status();
          if (std::get<0>(*locked) != TxnState::kPrepared) {
            return NotPrepared(id, std::get<0>(*locked));
          }
        }
        const int64_t seq = tx.exec_prepared(kNextHalfSeq.name, id)[0][0].as<int64_t>();
        std::vector<std::optional<std::string>> keys, headers, dedups;
        std::vector<const std::string*> payloads;
        std::vector<int64_t> at;
        for (const NewMessage& m : messages) {
          keys.push_back(m.key);
          payloads.push_back(&m.payload);
          headers.push_back(m.headers_json);
          dedups.push_back(m.dedup_id.empty() ? std::nullopt
                                              : std::optional<std::string>(m.dedup_id));
          at.push_back(m.deliver_at_ms);
        }
        tx.exec_prepared(kInsertHalf.name, id, seq, topic_id, TextArray(keys), ByteaArray(payloads),
                         TextArray(headers), TextArray(dedups), IntArray(at));
        tx.commit();
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return id;
}

absl::StatusOr<std::vector<SettleResult>> PgStore::AttachAcks(
    const std::string& txn_id, const std::string& group_name,
    const std::vector<DeliveryRef>& refs) {
  std::vector<SettleResult> out;
  absl::Status status = pg::WithConnection(pool_, "commit (transaction)", [&](pqxx::connection& c) {
    out.assign(refs.size(), SettleResult{});
    pqxx::work tx(c);
    auto locked = LockTxn(tx, txn_id);
    if (!locked.ok()) return locked.status();
    if (std::get<0>(*locked) != TxnState::kPrepared) {
      return NotPrepared(txn_id, std::get<0>(*locked));
    }
    auto group = ReceiptsOfGroup(tx, group_name, refs, out);
    if (!group || group->second.index.empty()) return absl::OkStatus();
    const int64_t group_id = group->first.group_id;
    const auto& [mine, t, o, k, q] = group->second;
    TakeOutOfRanges(tx, group_id, refs, mine);  // pinned one by one below
    std::set<Position> pinned;
    for (const auto& row : tx.exec_prepared(kPinLeases.name, group_id, IntArray(t), IntArray(q),
                                            IntArray(o), IntArray(k))) {
      pinned.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
    }
    std::vector<int64_t> at, ao, ak;
    std::vector<uint32_t> aq;
    std::vector<size_t> unapplied;
    for (size_t i : mine) {
      if (pinned.count(Position{refs[i].topic_id, refs[i].queue, refs[i].offset}) == 0) {
        unapplied.push_back(i);
        continue;
      }
      out[i].status = SettleStatus::kAttached;
      at.push_back(refs[i].topic_id);
      aq.push_back(refs[i].queue);
      ao.push_back(refs[i].offset);
      ak.push_back(refs[i].lease_token);
    }
    if (!at.empty()) {
      tx.exec_prepared(kInsertTxnAcks.name, txn_id, group_id, IntArray(at), IntArray(aq),
                       IntArray(ao), IntArray(ak));
    }
    ClassifyUnapplied(tx, group_id, refs, unapplied, out);
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::optional<std::string>> PgStore::TransactionProducerGroup(
    const std::string& txn_id) {
  std::optional<std::string> out;
  absl::Status s = pg::WithConnection(pool_, "transaction group", [&](pqxx::connection& c) {
    out.reset();
    pqxx::read_transaction tx(c);
    pqxx::result r = tx.exec_prepared(kTxnGroup.name, txn_id);
    if (!r.empty()) out = r[0][0].as<std::string>();
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<TxnOutcome> PgStore::EndTransaction(const std::string& txn_id, TxnDecision decision,
                                                   const std::string& actor,
                                                   const std::string& reason, bool by_admin) {
  TxnOutcome out;
  absl::Status status = pg::WithConnection(pool_, "end transaction", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto locked = LockTxn(tx, txn_id);
    if (!locked.ok()) return locked.status();
    auto ended =
        EndInTx(tx, txn_id, std::get<0>(*locked), decision, actor, reason, by_admin, choose_queue_);
    if (!ended.ok()) return ended.status();
    out = *ended;
    tx.commit();
    notifier_->Add(out.topics_appended);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<TxnCheck>> PgStore::ClaimDueChecks(
    const std::vector<std::string>& groups, const std::string& broker_id, int64_t limit) {
  std::vector<TxnCheck> out;
  absl::Status status = pg::WithConnection(pool_, "claim checks", [&](pqxx::connection& c) {
    out.clear();
    pqxx::work tx(c);
    std::map<std::string, size_t> index;
    for (const auto& row :
         tx.exec_prepared(kClaimChecks.name, TextArray(groups), limit, timing_.max_checks,
                          timing_.check_interval_ms, broker_id)) {
      if (row[1].as<int64_t>() < 0) {
        ferry::log::Get("broker.txn")
            ->warn(
                "event=check_exhausted transaction_id={} producer_group={} checks={} "
                "detail={}",
                row[0].as<std::string>(), ferry::log::Quote(row[3].as<std::string>()),
                row[4].as<int32_t>(),
                ferry::log::Quote("no COMMIT or ROLLBACK: decide it with ferryctl txn resolve"));
        continue;
      }
      TxnCheck ch;
      ch.txn_id = row[0].as<std::string>();
      ch.check_id = row[1].as<int64_t>();
      ch.check_ref = row[2].as<std::string>();
      ch.producer_group = row[3].as<std::string>();
      ch.check_number = row[4].as<int32_t>();
      ch.began_at_ms = row[5].as<int64_t>();
      index[ch.txn_id] = out.size();
      out.push_back(std::move(ch));
    }
    if (!out.empty()) {
      std::vector<std::string> ids;
      for (const auto& ch : out) ids.push_back(ch.txn_id);
      const std::string id_array = TextArray(ids);
      for (const auto& row : tx.exec_prepared(kCheckSummary.name, id_array)) {
        TxnCheck& ch = out[index[row[0].as<std::string>()]];
        for (absl::string_view t :
             absl::StrSplit(row[1].as<std::string>(), ',', absl::SkipEmpty())) {
          ch.topics.emplace_back(t);
        }
        ch.message_count = row[2].as<int64_t>();
      }
      for (const auto& row : tx.exec_prepared(kCheckSample.name, id_array)) {
        NewMessage m;
        if (!row[2].is_null()) m.key = row[2].as<std::string>();
        m.payload = pqxx::binarystring(row[3]).str();
        m.headers_json = row[4].as<std::string>();
        if (!row[5].is_null()) m.dedup_id = row[5].as<std::string>();
        out[index[row[0].as<std::string>()]].sample.emplace_back(row[1].as<std::string>(),
                                                                 std::move(m));
      }
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::Status PgStore::UnclaimCheck(const std::string& txn_id, const std::string& broker_id) {
  return pg::WithConnection(pool_, "unclaim check", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (!tx.exec_prepared(kUnclaimCheck.name, txn_id).empty()) {
      tx.exec_prepared(kTxnEvent.name, txn_id, "check", "broker " + broker_id,
                       "not sent: the checker went away; not counted");
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status PgStore::AnswerCheck(const CheckAnswer& a) {
  return pg::WithConnection(pool_, "check answer", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    std::vector<int64_t> appended_to;
    auto locked = LockTxn(tx, a.txn_id);
    if (!locked.ok()) return locked.status();
    const auto& [state, group, checks] = *locked;
    // Bound to a check that was sent, for the producer group it was sent for: an answer is
    // never a way to decide somebody else's transaction.
    if (group != a.producer_group ||
        tx.exec_prepared(kCheckWasSent.name, a.txn_id, a.check_id).empty()) {
      return absl::FailedPreconditionError(absl::StrCat("check ", a.check_id,
                                                        " was not sent for transaction ", a.txn_id,
                                                        " of producer group ", a.producer_group));
    }
    const char* said = a.decision == TxnDecision::kCommit     ? "COMMIT"
                       : a.decision == TxnDecision::kRollback ? "ROLLBACK"
                                                              : "UNKNOWN";
    tx.exec_prepared(kTxnEvent.name, a.txn_id, "answer", a.actor,
                     absl::StrCat(said, " (check ", a.check_id, ")"));
    if (state == TxnState::kPrepared) {
      if (a.decision == TxnDecision::kUnknown) {
        if (!tx.exec_prepared(kExhaustIfSpent.name, a.txn_id, timing_.max_checks).empty()) {
          ferry::log::Get("broker.txn")
              ->warn(
                  "event=check_exhausted transaction_id={} producer_group={} checks={} "
                  "detail={}",
                  a.txn_id, ferry::log::Quote(a.producer_group), timing_.max_checks,
                  ferry::log::Quote("the last check was answered UNKNOWN: decide it with ferryctl "
                                    "txn resolve"));
          tx.exec_prepared(
              kTxnEvent.name, a.txn_id, "exhausted", a.actor,
              absl::StrCat("no COMMIT or ROLLBACK after ", timing_.max_checks, " checks"));
        }
      } else {
        auto ended = EndInTx(tx, a.txn_id, state, a.decision, a.actor, "", false, choose_queue_);
        if (!ended.ok()) return ended.status();
        appended_to = ended->topics_appended;
      }
    }
    tx.commit();
    notifier_->Add(appended_to);
    return absl::OkStatus();
  });
}

absl::Status PgStore::TouchCheckers(const std::string& broker_id,
                                    const std::vector<std::pair<std::string, int>>& checkers) {
  return pg::WithConnection(pool_, "touch checkers", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    std::vector<std::string> groups;
    std::vector<int> counts;
    for (const auto& [g, n] : checkers) {
      groups.push_back(g);
      counts.push_back(n);
    }
    if (!groups.empty()) {
      tx.exec_prepared(kTouchCheckers.name, broker_id, TextArray(groups), IntArray(counts));
    }
    tx.exec_prepared(kForgetCheckers.name, broker_id, TextArray(groups));
    tx.commit();
    return absl::OkStatus();
  });
}

namespace {

// Transactions by state / producer group / id, newest first, with their audit trails.
std::vector<TxnRow> ReadTransactions(pqxx::transaction_base& tx, const std::string& state,
                                     const std::string& group, int64_t limit,
                                     const std::string& txn_id) {
  std::vector<TxnRow> out;
  std::map<std::string, size_t> index;
  for (const auto& row : tx.exec_prepared(kListTxns.name, state, group, limit, txn_id)) {
    TxnRow r;
    r.txn_id = row[0].as<std::string>();
    r.producer_group = row[1].as<std::string>();
    r.check_ref = row[2].as<std::string>();
    r.state = StateFrom(row[3].as<std::string>());
    r.began_at_ms = row[4].as<int64_t>();
    r.ended_at_ms = row[5].as<int64_t>();
    r.checks_sent = row[6].as<int32_t>();
    r.next_check_at_ms = row[7].as<int64_t>();
    r.messages = row[8].as<int64_t>();
    r.attached_acks = row[9].as<int64_t>();
    for (absl::string_view t : absl::StrSplit(row[10].as<std::string>(), ',', absl::SkipEmpty())) {
      r.topics.emplace_back(t);
    }
    r.checker_connected = row[11].as<bool>();
    index[r.txn_id] = out.size();
    out.push_back(std::move(r));
  }
  if (!out.empty()) {
    std::vector<std::string> ids;
    for (const auto& r : out) ids.push_back(r.txn_id);
    for (const auto& row : tx.exec_prepared(kTxnEvents.name, TextArray(ids))) {
      out[index[row[0].as<std::string>()]].events.push_back(
          TxnEventRow{row[1].as<int64_t>(), row[2].as<std::string>(), row[3].as<std::string>(),
                      row[4].as<std::string>()});
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<TxnRow>> PgStore::ListTransactions(std::optional<TxnState> state,
                                                              const std::string& group,
                                                              int64_t limit) {
  std::vector<TxnRow> out;
  absl::Status status = pg::WithConnection(pool_, "list transactions", [&](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    out = ReadTransactions(tx, state ? StateName(*state) : "", group, limit, "");
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<TxnDetail> PgStore::GetTransaction(const std::string& txn_id) {
  TxnDetail out;
  absl::Status status = pg::WithConnection(pool_, "get transaction", [&](pqxx::connection& c) {
    out = TxnDetail{};
    pqxx::read_transaction tx(c);
    std::vector<TxnRow> rows = ReadTransactions(tx, "", "", 1, txn_id);
    if (rows.empty()) return absl::NotFoundError("transaction " + txn_id + " does not exist");
    out.txn = std::move(rows[0]);
    for (const auto& row : tx.exec_prepared(kHalfMessages.name, txn_id)) {
      StoredMessageRow m;
      if (!row[1].is_null()) m.key = row[1].as<std::string>();
      m.payload = pqxx::binarystring(row[2]).str();
      m.headers_json = row[3].as<std::string>();
      m.dedup_id = row[4].as<std::string>();
      out.messages.emplace_back(row[0].as<std::string>(), std::move(m));
    }
    for (const auto& row : tx.exec_prepared(kTxnAcks.name, txn_id)) {
      out.acks.push_back(AttachedAckRow{row[0].as<std::string>(), row[1].as<std::string>(),
                                        row[2].as<uint32_t>(), row[3].as<int64_t>()});
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::Status PgStore::RearmChecks(const std::string& txn_id, const std::string& actor,
                                  const std::string& reason) {
  return pg::WithConnection(pool_, "rearm checks", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto locked = LockTxn(tx, txn_id);
    if (!locked.ok()) return locked.status();
    if (tx.exec_prepared(kRearmTxn.name, txn_id).empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("transaction ", txn_id, " is ", StateName(std::get<0>(*locked)),
                       "; only a CHECK_EXHAUSTED transaction can be re-armed"));
    }
    tx.exec_prepared(kTxnEvent.name, txn_id, "rearm", actor,
                     reason.empty() ? std::string("back-checks start again")
                                    : "back-checks start again: " + reason);
    tx.commit();
    return absl::OkStatus();
  });
}

}  // namespace ferry::broker
