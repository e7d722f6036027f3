#include "chaos/history.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace ferry::chaos {

void History::AddSent(const Sent& s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (sent_.emplace(s.id, s).second) sent_order_.push_back(s.id);
}

void History::MarkAcked(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  sent_[id].acked = true;
  sent_[id].acked_at = Clock::now();
}

void History::MarkRejected(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  sent_[id].rejected = true;
}

void History::AddTxn(const std::string& txn_id, Txn txn) {
  std::lock_guard<std::mutex> lock(mu_);
  txns_[txn_id] = std::move(txn);
}

void History::AddDelivery(Delivery d) {
  std::lock_guard<std::mutex> lock(mu_);
  seen_[d.group].insert(d.id);
  deliveries_.push_back(std::move(d));
}

void History::AddFault(const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (faults_.empty()) first_fault_ = Clock::now();
  faults_.push_back(what);
}

void History::SetDoubleProcessed(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  double_processed_ = n;
}

std::vector<std::string> History::faults() {
  std::lock_guard<std::mutex> lock(mu_);
  return faults_;
}

namespace {

// Whether `s` must reach every group: acknowledged (for a half message: its Produce was
// acknowledged and its transaction decided COMMIT; a half message whose Produce failed may or
// may not exist, and the back-check commits it only if it does).
bool MustArrive(const Sent& s, const std::map<std::string, Txn>& txns) {
  if (!s.txn.empty()) {
    auto t = txns.find(s.txn);
    return s.acked && t != txns.end() && t->second.commit;
  }
  return s.acked && !s.rejected;
}

// Whether delivering `s` would be a phantom: rolled back, or of a transaction decided ROLLBACK.
bool MustNotArrive(const Sent& s, const std::map<std::string, Txn>& txns) {
  if (s.rejected) return true;
  if (!s.txn.empty()) {
    auto t = txns.find(s.txn);
    return t != txns.end() && !t->second.commit;
  }
  return false;
}

}  // namespace

int64_t History::Missing(const std::string& group) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  const auto& seen = seen_[group];
  for (const auto& [id, s] : sent_) {
    if (MustArrive(s, txns_) && seen.count(id) == 0) ++n;
  }
  return n;
}

Report History::Check(const std::string& scenario, const std::vector<std::string>& groups,
                      const std::set<std::string>& ordered_groups, Clock::time_point faults_stopped,
                      std::chrono::seconds bound) {
  std::lock_guard<std::mutex> lock(mu_);
  Report r;
  r.scenario = scenario;
  r.faults = static_cast<int64_t>(faults_.size());
  r.deliveries = static_cast<int64_t>(deliveries_.size());
  r.double_processed = double_processed_;
  auto example = [&](const std::string& what) {
    if (r.examples.size() < 10) r.examples.push_back(what);
  };
  for (const auto& [id, s] : sent_) {
    ++r.sent;
    if (s.acked && !faults_.empty() && s.acked_at > first_fault_) ++r.acked_after_first_fault;
    if (MustArrive(s, txns_)) {
      ++r.acked;
    } else if (s.rejected || MustNotArrive(s, txns_)) {
      ++r.rejected;
    } else {
      ++r.unknown;  // the producer never heard back: either outcome is allowed
    }
  }
  std::vector<Delivery> ordered = deliveries_;
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const Delivery& a, const Delivery& b) { return a.at < b.at; });
  for (const std::string& group : groups) {
    std::map<std::string, std::vector<const Delivery*>> by_id;
    for (const Delivery& d : ordered) {
      if (d.group == group) by_id[d.id].push_back(&d);
    }
    for (const auto& [id, ds] : by_id) {
      auto s = sent_.find(id);
      if (s == sent_.end() || MustNotArrive(s->second, txns_)) {
        ++r.phantom;
        example(group + ": phantom " + id);
      }
      std::set<std::pair<uint32_t, uint64_t>> places;
      for (size_t k = 0; k < ds.size(); ++k) {
        places.insert({ds[k]->queue, ds[k]->offset});
        if (k == 0) continue;
        if (ds[k]->attempt > 1) {
          ++r.dup_expected;  // a redelivery the broker counted (lease expired, ACK lost)
        } else {
          ++r.dup_unexplained;
          example(group + ": " + id + " delivered again with attempt 1");
        }
      }
      if (places.size() > 1) {
        example(group + ": " + id + " stored at " + std::to_string(places.size()) + " offsets");
      }
    }
    for (const auto& [id, s] : sent_) {
      if (!MustArrive(s, txns_)) continue;
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        ++r.lost;
        example(group + ": lost " + id + (s.txn.empty() ? "" : " (transaction " + s.txn + ")"));
      } else if (it->second.front()->at > faults_stopped + bound) {
        ++r.stuck;
        example(group + ": " + id + " arrived later than the healing bound");
      }
    }
    for (const auto& [txn_id, t] : txns_) {
      if (!t.commit) continue;
      size_t got = 0;
      for (const auto& id : t.ids) got += by_id.count(id);
      if (got != 0 && got != t.ids.size()) {
        ++r.partial_txns;
        example(group + ": transaction " + txn_id + " seen partially");
      }
    }
    if (ordered_groups.count(group)) {
      std::map<std::string, int64_t> last;  // key -> highest seq processed
      std::set<std::string> processed;
      for (const Delivery& d : ordered) {
        if (d.group != group || !processed.insert(d.id).second) continue;
        auto s = sent_.find(d.id);
        if (s == sent_.end() || s->second.key.empty()) continue;
        auto l = last.find(s->second.key);
        if (l != last.end() && s->second.seq < l->second) {
          ++r.out_of_order;
          example(group + ": key " + s->second.key + " seq " + std::to_string(s->second.seq) +
                  " after " + std::to_string(l->second));
        }
        last[s->second.key] = std::max(l == last.end() ? -1 : l->second, s->second.seq);
      }
    }
  }
  Clock::time_point last_first = faults_stopped;
  for (const Delivery& d : ordered) last_first = std::max(last_first, d.at);
  r.healed_after_s = std::chrono::duration<double>(last_first - faults_stopped).count();
  return r;
}

std::string Table(const std::vector<Report>& reports) {
  std::ostringstream out;
  char line[512];
  std::snprintf(
      line, sizeof(line), "%-22s %7s %7s %6s %6s %8s %6s | %5s %7s %9s %11s %7s %8s %8s %6s  %s\n",
      "scenario", "sent", "acked", "unkn", "rolled", "deliver", "faults", "lost", "phantom",
      "dup(exp)", "dup(unexpl)", "double", "order", "partial", "stuck", "result");
  out << line;
  for (const Report& r : reports) {
    const std::string dbl = r.double_processed < 0 ? "n/a" : std::to_string(r.double_processed);
    std::snprintf(line, sizeof(line),
                  "%-22s %7lld %7lld %6lld %6lld %8lld %6lld | %5lld %7lld %9lld %11lld %7s "
                  "%8lld %8lld %6lld  %s\n",
                  r.scenario.c_str(), static_cast<long long>(r.sent),
                  static_cast<long long>(r.acked), static_cast<long long>(r.unknown),
                  static_cast<long long>(r.rejected), static_cast<long long>(r.deliveries),
                  static_cast<long long>(r.faults), static_cast<long long>(r.lost),
                  static_cast<long long>(r.phantom), static_cast<long long>(r.dup_expected),
                  static_cast<long long>(r.dup_unexplained), dbl.c_str(),
                  static_cast<long long>(r.out_of_order), static_cast<long long>(r.partial_txns),
                  static_cast<long long>(r.stuck), r.ok() ? "ok" : "FAILED");
    out << line;
  }
  return out.str();
}

}  // namespace ferry::chaos
