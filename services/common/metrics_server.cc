#include "common/metrics_server.h"

#include <absl/strings/numbers.h>
#include <httplib.h>

namespace ferry::metrics {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                                    Registry& registry,
                                                                    HealthCheck health) {
  const auto colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError("--metrics-listen must be HOST:PORT, got \"" + listen + "\"");
  }
  const std::string host = listen.substr(0, colon);
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->server_ = std::make_unique<httplib::Server>();
  s->server_->Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s->server_->Get("/healthz", [health](const httplib::Request&, httplib::Response& res) {
    const std::string why = health ? health() : "";
    res.status = why.empty() ? 200 : 503;
    res.set_content(why.empty() ? "ok\n" : why + "\n", "text/plain; charset=utf-8");
  });
  s->port_ = port == 0 ? s->server_->bind_to_any_port(host.c_str())
                       : (s->server_->bind_to_port(host.c_str(), port) ? port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError("metrics: cannot listen on " + listen);
  }
  httplib::Server* server = s->server_.get();
  s->thread_ = std::thread([server] { server->listen_after_bind(); });
  return s;
}

void MetricsServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

MetricsServer::~MetricsServer() { Stop(); }

}  // namespace ferry::metrics
