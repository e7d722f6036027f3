// The operation history of a chaos run and the checker that holds it against the contract in
// DESIGN.md. Workload threads record what they did and what they saw; Check() runs once at the
// end and counts every kind of violation.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ferry::chaos {

using Clock = std::chrono::steady_clock;

// A message the workload tried to publish (by Produce, or as an outbox row).
struct Sent {
  std::string id;         // unique payload id ("m-17")
  std::string key;        // for the order check ("" = unkeyed)
  int64_t seq = 0;        // position in its key's sequence (sent one after another)
  bool acked = false;     // Produce returned OK / the application transaction committed
  bool rejected = false;  // definitely not stored (the application transaction rolled back)
  std::string txn;        // transaction id when it was a half message ("" = plain)
  Clock::time_point acked_at{};
};

struct Delivery {
  std::string id;
  std::string group;
  uint32_t queue = 0;
  uint64_t offset = 0;
  uint32_t attempt = 0;
  Clock::time_point at;
};

// The outcome of a transaction as its producer decided it (COMMIT or ROLLBACK); messages of a
// transaction whose EndTransaction failed are resolved by back-checks that answer the same.
struct Txn {
  std::vector<std::string> ids;
  bool commit = false;
};

struct Report {
  std::string scenario;
  int64_t sent = 0, acked = 0, unknown = 0, rejected = 0, deliveries = 0, faults = 0;
  int64_t lost = 0, phantom = 0, dup_expected = 0, dup_unexplained = 0, double_processed = -1;
  int64_t out_of_order = 0, partial_txns = 0, stuck = 0;
  double healed_after_s = 0;
  int64_t acked_after_first_fault = 0;  // the service went on working through the faults
  std::vector<std::string> examples;    // the first few violations, for a person to look at
  // Promises about the service rather than the data (high availability: a new primary came,
  // health went NOT_SERVING and back, writes went on while a standby was down); each one a
  // sentence, printed with the examples.
  std::vector<std::string> service_failures;
  bool ok() const {
    return lost == 0 && phantom == 0 && dup_unexplained == 0 && double_processed <= 0 &&
           out_of_order == 0 && partial_txns == 0 && stuck == 0 && service_failures.empty();
  }
};

class History {
 public:
  void AddSent(const Sent& s);
  void MarkAcked(const std::string& id);
  void MarkRejected(const std::string& id);
  void AddTxn(const std::string& txn_id, Txn txn);
  void AddDelivery(Delivery d);
  void AddFault(const std::string& what);
  // Inbox-style double processing, counted by the consumer itself (ProcessOnce said "ran" twice).
  void SetDoubleProcessed(int64_t n);

  // How many acked messages `group` has not seen yet.
  int64_t Missing(const std::string& group);
  // Each check, with `faults_stopped` as the start of healing and `bound` the time by which
  // everything acked must have been delivered. `ordered_groups`: groups whose per-key order is
  // checked.
  Report Check(const std::string& scenario, const std::vector<std::string>& groups,
               const std::set<std::string>& ordered_groups, Clock::time_point faults_stopped,
               std::chrono::seconds bound);
  std::vector<std::string> faults();

 private:
  std::mutex mu_;
  std::map<std::string, Sent> sent_;
  std::vector<std::string> sent_order_;
  std::map<std::string, Txn> txns_;
  std::vector<Delivery> deliveries_;
  std::map<std::string, std::set<std::string>> seen_;  // group -> ids
  std::vector<std::string> faults_;
  Clock::time_point first_fault_{};
  int64_t double_processed_ = -1;
};

// The report as the table the issue asks for (one line per property, with the counts).
std::string Table(const std::vector<Report>& reports);

}  // namespace ferry::chaos
