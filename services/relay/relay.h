// ferry-relay: publishes the application's ferry_outbox rows to the broker and answers the
// broker's back-checks from the application's database.
//
// Threads: the relay loop (claim -> publish with a deadline, outside any transaction -> mark;
// after an empty claim it polls every poll_interval_ms), the back-check stream's thread
// (TransactionChecker), and with --metrics-listen the HTTP thread (/metrics, /healthz).
// Stop(): the loop finishes its batch, then the checker stops. kill -9 at any moment loses
// nothing: a claimed row whose relay died is claimed again when its lease ends, and the broker
// recognises the re-send by its dedup_id (the row id).
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "client/transactions.h"
#include "common/metrics_server.h"
#include "common/pg/pool.h"
#include "relay/options.h"
#include "relay/store/pg_outbox_store.h"

namespace ferry::relay {

// Applies migrations/outbox to the application database.
absl::Status MigrateOutbox(const std::string& database_url);

// The broker message for an outbox row: the row id is its dedup_id and its `ferry-outbox-id`
// header; `headers` must be a JSON object, string values are sent as they are and other values
// as their JSON text. INVALID_ARGUMENT (the row fails with this reason) when `headers` is not
// an object, sets ferry-outbox-id itself, or nests a value deeper than kMaxHeaderDepth.
inline constexpr int kMaxHeaderDepth = 32;
absl::StatusOr<v1::ProducedMessage> OutboxMessage(const OutboxRow& row);

class Relay {
 public:
  explicit Relay(RelayOptions options);
  ~Relay();

  // Connects and starts the threads. UNAVAILABLE if the application database is unreachable.
  absl::Status Start();
  void Stop();

  int64_t published() const { return published_.load(); }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  // "" when the last claim reached the database and the last publish reached the broker.
  std::string Health() const;

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
  std::atomic<bool> database_ok_{true};
  std::atomic<bool> broker_ok_{true};
  std::unique_ptr<metrics::MetricsServer> metrics_;
  int collector_ = 0;
  std::thread loop_;
};

}  // namespace ferry::relay
