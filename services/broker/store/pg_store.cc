// PgStore: construction, the statement list, and the helpers its files share
// (pg_store_internal.h).
#include "broker/store/pg_store.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <unordered_map>

#include "broker/store/pg_store_internal.h"
#include "common/log.h"
#include "common/pg/arrays.h"

namespace ferry::broker {

using namespace store_internal;  // NOLINT: the store's own internals

namespace {

constexpr pg::Statement kSelectGroupQueuesAt{
    "broker_select_group_queues_at",
    "SELECT gq.topic_id, gq.queue_id FROM group_queues gq"
    " JOIN unnest($2::bigint[], $3::int[]) AS r(t, q) ON gq.topic_id = r.t AND gq.queue_id = r.q"
    " WHERE gq.group_id = $1"};

constexpr pg::Statement kExistingGroups{
    "broker_existing_groups",
    "SELECT group_id FROM consumer_groups WHERE group_id = ANY($1::bigint[])"};

constexpr pg::Statement kNotifyTopics{
    "broker_notify_topics",
    "SELECT pg_notify('ferry_messages', t::text || COALESCE(':' || n, ''))"
    " FROM unnest($1::bigint[], $2::bigint[]) AS x(t, n)"};

}  // namespace

namespace store_internal {

Notifier::Notifier(pg::ConnectionPool& pool) : pool_(pool), thread_([this] { Run(); }) {}

Notifier::~Notifier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void Notifier::Add(const std::vector<int64_t>& topic_ids, const std::vector<int64_t>& counts) {
  if (topic_ids.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < topic_ids.size(); ++i) {
      auto [it, fresh] = pending_.try_emplace(topic_ids[i], std::nullopt);
      const std::optional<int64_t> n =
          i < counts.size() ? std::optional<int64_t>(counts[i]) : std::nullopt;
      if (fresh) {
        it->second = n;
      } else if (it->second.has_value()) {
        it->second = n.has_value() ? std::optional<int64_t>(*it->second + *n) : std::nullopt;
      }
    }
  }
  cv_.notify_one();
}

void Notifier::Run() {
  std::unique_ptr<pqxx::connection> conn;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping, nothing left
    std::map<int64_t, std::optional<int64_t>> batch;
    batch.swap(pending_);
    lock.unlock();
    std::vector<int64_t> topics;
    std::vector<std::optional<int64_t>> counts;
    for (const auto& [t, n] : batch) {
      topics.push_back(t);
      counts.push_back(n);
    }
    try {
      if (!conn || !conn->is_open()) {
        conn = pool_.OpenDedicated("notify");
        conn->prepare(kNotifyTopics.name, kNotifyTopics.sql);
      }
      pqxx::nontransaction n(*conn);
      n.exec_prepared(kNotifyTopics.name, IntArray(topics), IntArray(counts));
    } catch (const std::exception& e) {
      // The messages are committed; waiting consumers find them at their next poll.
      conn.reset();
      log::Get("broker")->debug("event=notify_failed error={}", ferry::log::Quote(e.what()));
    }
    lock.lock();
  }
}

TopicInfo TopicFromRow(const pqxx::row& row) {
  TopicInfo t;
  t.topic_id = row[0].as<int64_t>();
  t.name = row[1].as<std::string>();
  t.queue_count = row[2].as<uint32_t>();
  t.retention_ms = row[3].as<int64_t>();
  t.dedup_window_ms = row[4].as<int64_t>();
  t.created_at_ms = row[5].as<int64_t>();
  t.ordered = row[6].as<bool>();
  return t;
}

GroupPolicy GroupFromRow(const pqxx::row& row) {
  GroupPolicy g;
  g.group_id = row[0].as<int64_t>();
  g.name = row[1].as<std::string>();
  g.max_delivery_attempts = row[2].as<uint32_t>();
  for (absl::string_view part : absl::StrSplit(row[3].as<std::string>(), ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (absl::SimpleAtoi(part, &v)) g.backoff_ms.push_back(v);
  }
  g.backoff_min_ms = row[4].as<int64_t>();
  g.backoff_max_ms = row[5].as<int64_t>();
  g.ordered = row[6].as<bool>();
  g.start_latest = row[7].as<bool>();
  g.created_at_ms = row[8].as<int64_t>();
  return g;
}

absl::Status TopicNotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("topic \"", name,
                                          "\" does not exist; create it with "
                                          "`ferryctl topic create ",
                                          name, "`"));
}

absl::Status GroupNotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("group \"", name, "\" does not exist"));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<std::pair<GroupPolicy, RefColumns>> ReceiptsOfGroup(
    pqxx::work& tx, const std::string& group_name, const std::vector<DeliveryRef>& refs,
    std::vector<SettleResult>& out) {
  pqxx::result g = tx.exec_prepared(kSelectGroup.name, group_name);
  std::optional<std::pair<GroupPolicy, RefColumns>> found;
  if (!g.empty()) found.emplace(GroupFromRow(g[0]), RefColumns{});
  std::vector<int64_t> others;  // groups the other receipts were issued to
  for (size_t i = 0; i < refs.size(); ++i) {
    if (found && refs[i].group_id == found->first.group_id) {
      RefColumns& c = found->second;
      c.index.push_back(i);
      c.topics.push_back(refs[i].topic_id);
      c.queues.push_back(refs[i].queue);
      c.offsets.push_back(refs[i].offset);
      c.tokens.push_back(refs[i].lease_token);
    } else {
      others.push_back(refs[i].group_id);
    }
  }
  if (others.empty()) return found;
  std::set<int64_t> existing;
  for (const auto& row : tx.exec_prepared(kExistingGroups.name, IntArray(others))) {
    existing.insert(row[0].as<int64_t>());
  }
  for (size_t i = 0; i < refs.size(); ++i) {
    if (found && refs[i].group_id == found->first.group_id) continue;
    out[i].status = existing.count(refs[i].group_id) != 0 ? SettleStatus::kWrongGroup
                                                          : SettleStatus::kTopicGone;
  }
  return found;
}

void ClassifyUnapplied(pqxx::work& tx, int64_t group_id, const std::vector<DeliveryRef>& refs,
                       const std::vector<size_t>& which, std::vector<SettleResult>& out) {
  if (which.empty()) return;
  std::vector<int64_t> t, o;
  std::vector<uint32_t> q;
  for (size_t i : which) {
    t.push_back(refs[i].topic_id);
    q.push_back(refs[i].queue);
    o.push_back(refs[i].offset);
  }
  std::set<Position> leased;
  for (const auto& row :
       tx.exec_prepared(kSelectLeasesAt.name, group_id, IntArray(t), IntArray(q), IntArray(o))) {
    leased.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>(), row[2].as<int64_t>());
  }
  for (const Position& p : RangeMembersAt(tx, group_id, t, q, o)) leased.insert(p);
  std::set<std::pair<int64_t, uint32_t>> positions;
  for (const auto& row :
       tx.exec_prepared(kSelectGroupQueuesAt.name, group_id, IntArray(t), IntArray(q))) {
    positions.emplace(row[0].as<int64_t>(), row[1].as<uint32_t>());
  }
  for (size_t i : which) {
    if (leased.count(Position{refs[i].topic_id, refs[i].queue, refs[i].offset}) != 0) {
      out[i].status = SettleStatus::kStale;
      out[i].detail = "not a current delivery (redelivered, retrying, or in a transaction)";
    } else if (positions.count({refs[i].topic_id, refs[i].queue}) != 0) {
      out[i].status = SettleStatus::kAlreadyCommitted;
    } else {
      out[i].status = SettleStatus::kTopicGone;
    }
  }
}

}  // namespace store_internal

int64_t RetryDelayMs(const GroupPolicy& policy, bool ordered, int32_t attempt) {
  if (ordered) return kOrderedRetryMs;
  const int32_t n = std::max(attempt, 1);
  if (policy.backoff_min_ms > 0) {
    const int64_t cap = policy.backoff_max_ms > 0 ? policy.backoff_max_ms : policy.backoff_min_ms;
    int64_t d = policy.backoff_min_ms;
    for (int32_t i = 1; i < n && d < cap; ++i) d *= 2;
    return std::min(d, cap);
  }
  if (policy.backoff_ms.empty()) return 10000;
  return policy
      .backoff_ms[std::min<size_t>(static_cast<size_t>(n - 1), policy.backoff_ms.size() - 1)];
}

PgStore::PgStore(pg::ConnectionPool& pool, QueueChooser choose_queue, TxnTiming timing)
    : pool_(pool),
      choose_queue_(std::move(choose_queue)),
      timing_(timing),
      notifier_(std::make_unique<Notifier>(pool)) {}

PgStore::~PgStore() = default;

std::vector<pg::Statement> PgStore::AllStatements() {
  std::vector<pg::Statement> all = {kDeadLetterLeases, kSelectGroupQueuesAt, kExistingGroups,
                                    kEnsureSegments,   kInsertGroup,         kInsertGroupQueues,
                                    kAdvanceDelivered, kSelectTopic,         kSelectTopicById,
                                    kSelectGroup,      kSelectLeasesAt};
  for (const auto& part :
       {TopicsStatements(), ProduceStatements(), DeliveryStatements(), SettleStatements(),
        GroupsStatements(), DeadLettersStatements(), TxnStatements(), AuthStatements(),
        RetentionStatements(), MetricsStatements(), RangeStatements(), ConsoleStatements()}) {
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

}  // namespace ferry::broker
