// PgStore, dead letters: list, redrive, purge.
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <unordered_map>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"
#include "common/log.h"
#include "common/pg/arrays.h"

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals

namespace {

constexpr pg::Statement kListDeadLetters{
    "broker_list_dead_letters",
    "SELECT dead_letter_id, topic, queue_id, msg_offset, key, payload, headers::text, attempts,"
    " reason, COALESCE((extract(epoch FROM produced_at) * 1000)::bigint, 0),"
    " (extract(epoch FROM first_delivered_at) * 1000)::bigint,"
    " (extract(epoch FROM last_delivered_at) * 1000)::bigint,"
    " (extract(epoch FROM dead_at) * 1000)::bigint"
    " FROM dead_letters WHERE group_id = $1 AND ($2 = '' OR topic = $2)"
    " AND dead_letter_id > $3 ORDER BY dead_letter_id LIMIT $4"};

constexpr pg::Statement kTakeDeadLetters{
    "broker_take_dead_letters",
    "SELECT d.dead_letter_id, d.topic_id, d.queue_id, d.msg_offset, d.key, d.payload,"
    " d.headers::text, (t.topic_id IS NOT NULL), (m.msg_offset IS NOT NULL),"
    " (gq.group_id IS NOT NULL), (l.group_id IS NOT NULL)"
    " FROM dead_letters d"
    " LEFT JOIN topics t ON t.topic_id = d.topic_id"
    " LEFT JOIN messages m ON m.topic_id = d.topic_id AND m.queue_id = d.queue_id"
    "  AND m.msg_offset = d.msg_offset"
    " LEFT JOIN group_queues gq ON gq.group_id = d.group_id AND gq.topic_id = d.topic_id"
    "  AND gq.queue_id = d.queue_id"
    " LEFT JOIN group_leases l ON l.group_id = d.group_id AND l.topic_id = d.topic_id"
    "  AND l.queue_id = d.queue_id AND l.msg_offset = d.msg_offset"
    " WHERE d.group_id = $1 AND ($2 OR d.dead_letter_id = ANY($3::bigint[]))"
    " ORDER BY d.dead_letter_id FOR UPDATE OF d"};

constexpr pg::Statement kRedriveLeases{
    "broker_redrive_leases",
    "INSERT INTO group_leases (group_id, topic_id, queue_id, msg_offset, attempt, lease_token,"
    " deadline, first_delivered_at, last_delivered_at, state)"
    " SELECT $1, t, q, o, 0, nextval('lease_token_seq'), now(), now(), now(), 'redriven'"
    " FROM unnest($2::bigint[], $3::int[], $4::bigint[]) AS r(t, q, o)"};

constexpr pg::Statement kDeleteDeadLetters{
    "broker_delete_dead_letters",
    "DELETE FROM dead_letters WHERE group_id = $1 AND ($2 OR dead_letter_id = ANY($3::bigint[]))"};

}  // namespace

namespace store_internal {

std::vector<pg::Statement> DeadLettersStatements() {
  return {kListDeadLetters, kTakeDeadLetters, kRedriveLeases, kDeleteDeadLetters};
}

}  // namespace store_internal

absl::StatusOr<std::vector<DeadLetterRow>> PgStore::ListDeadLetters(const std::string& group,
                                                                    const std::string& topic,
                                                                    int64_t after_id,
                                                                    int64_t limit) {
  std::vector<DeadLetterRow> out;
  absl::Status status = pg::WithConnection(pool_, "list dead letters", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    for (const auto& row :
         tx.exec_prepared(kListDeadLetters.name, g[0][0].as<int64_t>(), topic, after_id, limit)) {
      DeadLetterRow d;
      d.id = row[0].as<int64_t>();
      d.topic = row[1].as<std::string>();
      d.queue = row[2].as<uint32_t>();
      d.offset = row[3].as<int64_t>();
      if (!row[4].is_null()) d.key = row[4].as<std::string>();
      if (!row[5].is_null()) d.payload = pqxx::binarystring(row[5]).str();
      d.headers_json = row[6].as<std::string>();
      d.attempts = row[7].as<int32_t>();
      d.reason = row[8].as<std::string>();
      d.produced_at_ms = row[9].as<int64_t>();
      d.first_delivered_at_ms = row[10].as<int64_t>();
      d.last_delivered_at_ms = row[11].as<int64_t>();
      d.dead_at_ms = row[12].as<int64_t>();
      out.push_back(std::move(d));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<RedriveReport> PgStore::RedriveDeadLetters(const std::string& group,
                                                          const std::vector<int64_t>& ids, bool all,
                                                          const std::string& to_topic) {
  RedriveReport report;
  absl::Status status = pg::WithConnection(pool_, "redrive", [&](pqxx::connection& c) {
    report = RedriveReport{};
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    const int64_t group_id = g[0][0].as<int64_t>();
    std::optional<TopicInfo> target;
    if (!to_topic.empty()) {
      pqxx::result t = tx.exec_prepared(kSelectTopic.name, to_topic);
      if (t.empty()) return TopicNotFound(to_topic);
      target = TopicFromRow(t[0]);
    }
    std::vector<int64_t> done, lt, lo;
    std::vector<uint32_t> lq;
    std::vector<NewMessage> produce;
    std::set<int64_t> seen, notify;
    for (const auto& row : tx.exec_prepared(kTakeDeadLetters.name, group_id, all, IntArray(ids))) {
      const int64_t id = row[0].as<int64_t>();
      seen.insert(id);
      const bool payload_kept = !row[5].is_null();
      if (target) {
        if (!payload_kept) {
          report.failures.emplace_back(id, "the message was removed by retention before it died");
          continue;
        }
        NewMessage m;
        if (!row[4].is_null()) m.key = row[4].as<std::string>();
        m.payload = pqxx::binarystring(row[5]).str();
        m.headers_json = row[6].as<std::string>();
        produce.push_back(std::move(m));
        done.push_back(id);
        continue;
      }
      const bool topic_exists = row[7].as<bool>(), stored = row[8].as<bool>(),
                 position = row[9].as<bool>(), leased = row[10].as<bool>();
      if (!topic_exists || !position) {
        report.failures.emplace_back(id, "its topic was deleted; use --to-topic");
      } else if (!stored) {
        report.failures.emplace_back(id, "retention removed the message; use --to-topic");
      } else if (leased) {
        report.failures.emplace_back(id, "the message is being delivered to the group already");
      } else {
        lt.push_back(row[1].as<int64_t>());
        lq.push_back(row[2].as<uint32_t>());
        lo.push_back(row[3].as<int64_t>());
        notify.insert(lt.back());
        done.push_back(id);
      }
    }
    for (int64_t id : ids) {
      if (!all && seen.count(id) == 0) {
        report.failures.emplace_back(id, "no such dead letter in this group");
      }
    }
    if (!lt.empty()) {
      tx.exec_prepared(kRedriveLeases.name, group_id, IntArray(lt), IntArray(lq), IntArray(lo));
    }
    if (!produce.empty()) {
      std::vector<const NewMessage*> rows;
      for (const NewMessage& m : produce) rows.push_back(&m);
      bool gone = false;
      AppendRows(tx, *target, rows, choose_queue_, &gone);
      if (gone) return TopicNotFound(to_topic);
      notify.insert(target->topic_id);
    }
    if (!done.empty()) {
      tx.exec_prepared(kDeleteDeadLetters.name, group_id, false, IntArray(done));
    }
    report.redriven = static_cast<int64_t>(done.size());
    tx.commit();
    notifier_->Add(std::vector<int64_t>(notify.begin(), notify.end()));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return report;
}

absl::StatusOr<int64_t> PgStore::PurgeDeadLetters(const std::string& group,
                                                  const std::vector<int64_t>& ids, bool all) {
  int64_t purged = 0;
  absl::Status status = pg::WithConnection(pool_, "purge dead letters", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    purged = tx.exec_prepared(kDeleteDeadLetters.name, g[0][0].as<int64_t>(), all, IntArray(ids))
                 .affected_rows();
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return purged;
}

}  // namespace ferry::broker
