// Serves a Registry at GET /metrics (Prometheus text format) on its own address, with
// cpp-httplib (Debian's libcpp-httplib-dev). Off unless an address is given.
#pragma once

#include <absl/status/statusor.h>

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
  // `listen`: HOST:PORT (port 0: any free port). Fails when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                              Registry& registry);
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
