// PgStore, consumer groups: policy, positions, reset, lag.
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

// Empty text parameters keep the current value.
constexpr pg::Statement kUpdateGroup{
    "broker_update_group",
    "UPDATE consumer_groups SET"
    " max_delivery_attempts = COALESCE(NULLIF($2, '')::int, max_delivery_attempts),"
    " backoff_ms = COALESCE(NULLIF($3, '')::bigint[], backoff_ms),"
    " backoff_min_ms = COALESCE(NULLIF($4, '')::bigint, backoff_min_ms),"
    " backoff_max_ms = COALESCE(NULLIF($5, '')::bigint, backoff_max_ms),"
    " ordered = COALESCE(NULLIF($6, '')::boolean, ordered),"
    " start_latest = COALESCE(NULLIF($7, '')::boolean, start_latest)"
    " WHERE name = $1 RETURNING " FERRY_GROUP_COLUMNS};

constexpr pg::Statement kGroupTopics{
    "broker_group_topics",
    "SELECT DISTINCT t.name FROM group_queues gq JOIN topics t USING (topic_id)"
    " WHERE gq.group_id = $1 ORDER BY t.name"};

constexpr pg::Statement kListGroups{
    "broker_list_groups", "SELECT " FERRY_GROUP_COLUMNS " FROM consumer_groups ORDER BY name"};

constexpr pg::Statement kDeleteGroup{"broker_delete_group",
                                     "DELETE FROM consumer_groups WHERE name = $1 RETURNING 1"};

constexpr pg::Statement kGroupLag{
    "broker_group_lag",
    "SELECT topic, queue_id, end_offset, committed_offset, delivered_offset, in_flight,"
    " retrying, dead_letters, COALESCE((extract(epoch FROM oldest_unacked_age) * 1000)::bigint, 0)"
    " FROM group_lag WHERE group_name = $1 AND ($2 = '' OR topic = $2)"
    " ORDER BY topic, queue_id"};

constexpr pg::Statement kGroupDelayed{
    "broker_group_delayed",
    "SELECT t.name, count(d.*) FROM topics t JOIN delayed_messages d USING (topic_id)"
    " WHERE t.topic_id IN (SELECT topic_id FROM group_queues WHERE group_id = $1)"
    " AND ($2 = '' OR t.name = $2) GROUP BY t.name ORDER BY t.name"};

constexpr pg::Statement kLockGroupPositions{
    "broker_lock_group_positions",
    "SELECT gq.queue_id, ferry_group_delivered(gq.group_id, gq.topic_id, gq.queue_id),"
    " ferry_queue_end(q.topic_id, q.queue_id),"
    " COALESCE((SELECT min(m.msg_offset) FROM messages m WHERE m.topic_id = gq.topic_id"
    "   AND m.queue_id = gq.queue_id), ferry_queue_end(q.topic_id, q.queue_id))"
    " FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id"
    " WHERE gq.group_id = $1 AND gq.topic_id = $2 ORDER BY gq.queue_id FOR UPDATE OF gq"};

constexpr pg::Statement kFirstOffsetAt{
    "broker_first_offset_at",
    "SELECT q.queue_id, COALESCE((SELECT min(m.msg_offset) FROM messages m"
    "   WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id"
    "   AND m.produced_at >= to_timestamp($2 / 1000.0)), ferry_queue_end(q.topic_id, q.queue_id))"
    " FROM queues q WHERE q.topic_id = $1 ORDER BY q.queue_id"};

constexpr pg::Statement kReleaseGroupLeases{
    "broker_release_group_leases",
    "WITH r AS (DELETE FROM group_ranges WHERE group_id = $1 AND topic_id = $2)"
    " DELETE FROM group_leases WHERE group_id = $1 AND topic_id = $2"};

std::string OptText(const std::optional<bool>& v) { return v ? (*v ? "true" : "false") : ""; }
template <typename T>
std::string OptText(const std::optional<T>& v) {
  return v ? std::to_string(*v) : "";
}

pqxx::result ApplyGroupUpdate(pqxx::work& tx, const std::string& name, const GroupUpdate& u) {
  return tx.exec_prepared(kUpdateGroup.name, name, OptText(u.max_delivery_attempts),
                          u.backoff_ms ? IntArray(*u.backoff_ms) : std::string(),
                          OptText(u.backoff_min_ms), OptText(u.backoff_max_ms), OptText(u.ordered),
                          OptText(u.start_latest));
}

}  // namespace

namespace store_internal {

std::vector<pg::Statement> GroupsStatements() {
  return {kUpdateGroup, kGroupTopics,        kGroupLag,      kGroupDelayed,      kListGroups,
          kDeleteGroup, kLockGroupPositions, kFirstOffsetAt, kReleaseGroupLeases};
}

}  // namespace store_internal

absl::StatusOr<GroupPolicy> PgStore::CreateGroup(const std::string& name, const GroupUpdate& policy,
                                                 const std::vector<std::string>& topics) {
  GroupPolicy out;
  absl::Status status = pg::WithConnection(pool_, "create group", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_prepared(kInsertGroup.name, name, policy.start_latest.value_or(false)).empty()) {
      return absl::AlreadyExistsError(absl::StrCat("group \"", name, "\" already exists"));
    }
    pqxx::result g = ApplyGroupUpdate(tx, name, policy);
    out = GroupFromRow(g[0]);
    for (const std::string& topic : topics) {
      pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
      if (t.empty()) return TopicNotFound(topic);
      tx.exec_prepared(kInsertGroupQueues.name, out.group_id, t[0][0].as<int64_t>(),
                       out.start_latest);
    }
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<GroupPolicy> PgStore::UpdateGroup(const std::string& name,
                                                 const GroupUpdate& update) {
  GroupPolicy out;
  absl::Status status = pg::WithConnection(pool_, "update group", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    pqxx::result g = ApplyGroupUpdate(tx, name, update);
    if (g.empty()) return GroupNotFound(name);
    out = GroupFromRow(g[0]);
    tx.commit();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::pair<GroupPolicy, std::vector<std::string>>> PgStore::DescribeGroup(
    const std::string& name) {
  std::pair<GroupPolicy, std::vector<std::string>> out;
  absl::Status status = pg::WithConnection(pool_, "describe group", [&](pqxx::connection& c) {
    out.second.clear();
    pqxx::read_transaction tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, name);
    if (g.empty()) return GroupNotFound(name);
    out.first = GroupFromRow(g[0]);
    for (const auto& row : tx.exec_prepared(kGroupTopics.name, out.first.group_id)) {
      out.second.push_back(row[0].as<std::string>());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<std::pair<GroupPolicy, std::vector<std::string>>>>
PgStore::ListGroups() {
  std::vector<std::pair<GroupPolicy, std::vector<std::string>>> out;
  absl::Status status = pg::WithConnection(pool_, "list groups", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    for (const auto& row : tx.exec_prepared(kListGroups.name)) {
      out.emplace_back(GroupFromRow(row), std::vector<std::string>{});
      for (const auto& t : tx.exec_prepared(kGroupTopics.name, out.back().first.group_id)) {
        out.back().second.push_back(t[0].as<std::string>());
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::Status PgStore::DeleteGroup(const std::string& name) {
  return pg::WithConnection(pool_, "delete group", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    // Cascades to its positions (whose trigger removes leases and ranges) and dead letters.
    if (tx.exec_prepared(kDeleteGroup.name, name).empty()) return GroupNotFound(name);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<QueueMove>> PgStore::ResetGroup(const std::string& group_name,
                                                           const std::string& topic,
                                                           const ResetTarget& target) {
  std::vector<QueueMove> out;
  absl::Status status = pg::WithConnection(pool_, "reset group", [&](pqxx::connection& c) {
    out.clear();
    pqxx::work tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group_name);
    if (g.empty()) return GroupNotFound(group_name);
    pqxx::result t = tx.exec_prepared(kSelectTopic.name, topic);
    if (t.empty()) return TopicNotFound(topic);
    const GroupPolicy group = GroupFromRow(g[0]);
    const TopicInfo info = TopicFromRow(t[0]);
    tx.exec_prepared(kInsertGroupQueues.name, group.group_id, info.topic_id, group.start_latest);
    struct Pos {
      int64_t delivered, end, first;
    };
    std::map<uint32_t, Pos> queues;  // waits for consumers reading these queues right now
    for (const auto& row :
         tx.exec_prepared(kLockGroupPositions.name, group.group_id, info.topic_id)) {
      queues[row[0].as<uint32_t>()] =
          Pos{row[1].as<int64_t>(), row[2].as<int64_t>(), row[3].as<int64_t>()};
    }
    std::map<uint32_t, int64_t> to;
    switch (target.kind) {
      case ResetTarget::Kind::kEarliest:
        for (const auto& [q, p] : queues) to[q] = p.first;
        break;
      case ResetTarget::Kind::kLatest:
        for (const auto& [q, p] : queues) to[q] = p.end;
        break;
      case ResetTarget::Kind::kTimestamp:
        for (const auto& row :
             tx.exec_prepared(kFirstOffsetAt.name, info.topic_id, target.timestamp_ms)) {
          to[row[0].as<uint32_t>()] = row[1].as<int64_t>();
        }
        break;
      case ResetTarget::Kind::kOffsets:
        for (const auto& [q, p] : queues) to[q] = p.delivered;
        for (const auto& [q, offset] : target.offsets) {
          auto it = queues.find(q);
          if (it == queues.end()) {
            return absl::InvalidArgumentError(absl::StrCat("offsets: topic \"", topic,
                                                           "\" has no queue ", q, " (it has ",
                                                           queues.size(), ")"));
          }
          to[q] = std::clamp(offset, it->second.first, it->second.end);
        }
        break;
    }
    for (const auto& [q, d] : to) {
      auto it = queues.find(q);
      out.push_back(QueueMove{q, it == queues.end() ? d : it->second.delivered, d});
    }
    if (target.dry_run) return absl::OkStatus();  // rolled back: nothing changes
    // Everything leased or waiting for a retry is released: delivered again if still ahead of
    // the new position, otherwise skipped like the rest of what lies behind it.
    tx.exec_prepared(kReleaseGroupLeases.name, group.group_id, info.topic_id);
    std::vector<uint32_t> qs;
    std::vector<int64_t> ds;
    for (const auto& [q, d] : to) {
      qs.push_back(q);
      ds.push_back(d);
    }
    tx.exec_prepared(kAdvanceDelivered.name, group.group_id, info.topic_id, IntArray(qs),
                     IntArray(ds));
    tx.commit();
    notifier_->Add({info.topic_id});
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<GroupLagReport> PgStore::GroupLag(const std::string& group,
                                                 const std::string& topic) {
  GroupLagReport out;
  absl::Status status = pg::WithConnection(pool_, "group lag", [&](pqxx::connection& c) {
    out = GroupLagReport{};
    pqxx::read_transaction tx(c);
    pqxx::result g = tx.exec_prepared(kSelectGroup.name, group);
    if (g.empty()) return GroupNotFound(group);
    if (!topic.empty() && tx.exec_prepared(kSelectTopic.name, topic).empty()) {
      return TopicNotFound(topic);
    }
    for (const auto& row : tx.exec_prepared(kGroupLag.name, group, topic)) {
      QueueLag l;
      l.topic = row[0].as<std::string>();
      l.queue = row[1].as<uint32_t>();
      l.end_offset = row[2].as<int64_t>();
      l.committed_offset = row[3].as<int64_t>();
      l.delivered_offset = row[4].as<int64_t>();
      l.in_flight = row[5].as<int64_t>();
      l.retrying = row[6].as<int64_t>();
      l.dead_letters = row[7].as<int64_t>();
      l.oldest_unacked_age_ms = row[8].as<int64_t>();
      out.queues.push_back(std::move(l));
    }
    for (const auto& row : tx.exec_prepared(kGroupDelayed.name, g[0][0].as<int64_t>(), topic)) {
      out.delayed.emplace_back(row[0].as<std::string>(), row[1].as<int64_t>());
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace ferry::broker
