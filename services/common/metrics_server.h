// Serves a Registry at GET /metrics (Prometheus text format) on its own address, with
// cpp-httplib (Debian's libcpp-httplib-dev). Off unless an address is given.
#pragma once

#include <absl/status/statusor.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.h"

namespace httplib {
class Server;
}

namespace ferry::metrics {

class MetricsServer {
 public:
  // Empty when healthy, else the reason (GET /healthz answers 503 with it).
  using HealthCheck = std::function<std::string()>;

  // `listen`: HOST:PORT (port 0: any free port). Fails when the address cannot be bound.
  // GET /metrics renders `registry`; GET /healthz answers 200 "ok" or 503 and the reason.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                              Registry& registry,
                                                              HealthCheck health = nullptr);
  ~MetricsServer();
  int port() const { return port_; }
  void Stop();

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace ferry::metrics
