// BrokerServer: builds the broker from its options and runs it.
//
// Construction order (torn down in reverse): pool -> migrations -> store -> receipt key ->
// executor -> long poller -> notification listener -> services -> gRPC server.
// Threads: gRPC's callback threads (validation only), `pool_size` executor workers (all
// database work), the long-poll timer, the LISTEN connection, the delayed-message mover and
// one maintenance thread (retention, dedup expiry) and the database probe (health, on its own
// connection). Mover and maintenance use pool connections.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "broker/options.h"
#include "ferry/v1/broker.grpc.pb.h"

namespace ferry {
class Executor;
namespace metrics {
class MetricsServer;
}
namespace pg {
class ConnectionPool;
}
}  // namespace ferry

namespace ferry::broker {

class Admin;
class AdminService;
class Authenticator;
class Authorizer;
class Broker;
class BrokerService;
class ConsoleServer;
class LongPoller;
class NotificationListener;
class PgStore;
class TxnChecks;
namespace rpc {
class Edge;
}

// Applies the broker migrations to options.database_url and returns.
absl::Status MigrateDatabase(const BrokerOptions& options);

// Creates principal `name` with admin on the cluster, straight in the database (the first
// principal of a broker run with --auth); returns its token.
absl::StatusOr<std::string> CreateAdmin(const BrokerOptions& options, const std::string& name);

// Plaintext, TLS, or TLS requiring client certificates, from the --tls-* options.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const BrokerOptions& options);

class BrokerServer {
 public:
  explicit BrokerServer(BrokerOptions options);
  ~BrokerServer();

  // Migrates (unless disabled), connects, and starts serving. UNAVAILABLE when the database
  // cannot be reached, INVALID_ARGUMENT for bad options or an address that cannot be bound.
  absl::Status Start();

  // The bound port (useful with port 0). Valid after Start().
  int port() const { return port_; }
  int metrics_port() const;  // 0 when --metrics-listen is empty
  int console_port() const;  // 0 when --console-listen is empty

  // An in-process channel to this server (tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Stops: health NOT_SERVING, wakes long polls, lets in-flight calls finish for up to
  // shutdown_grace_ms, then stops workers and closes connections. Idempotent.
  void Shutdown();

 private:
  void Maintain();
  // Refreshes this broker's row in brokers every 5 s and records stats samples.
  void Report();
  void MoveDelayed();
  // Probes the database every health_interval_ms; the gRPC health status follows it.
  void WatchDatabase();
  // Sleeps up to `ms`; false once Shutdown() began.
  bool Sleep(int ms);

  const BrokerOptions options_;
  int port_ = 0;
  std::string broker_id_;
  std::unique_ptr<pg::ConnectionPool> pool_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Admin> admin_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<rpc::Edge> edge_;
  std::unique_ptr<LongPoller> poller_;
  std::unique_ptr<NotificationListener> listener_;
  std::unique_ptr<TxnChecks> checks_;
  std::unique_ptr<BrokerService> broker_service_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::unique_ptr<ConsoleServer> console_;
  std::thread reporter_;  // Report(): the brokers table and the stats samples
  int64_t started_at_ms_ = 0;
  int collector_ = 0;  // the database gauges' id in metrics::Default()
  std::mutex maintain_mu_;
  std::condition_variable maintain_cv_;
  bool stopping_ = false;
  std::thread maintenance_;
  std::thread delayed_mover_;
  std::thread database_watch_;
  std::atomic<bool> database_up_{true};
};

}  // namespace ferry::broker
