// ConsoleServer: the web console (issue 16) on its own HTTP(S) address (--console-listen).
//
// Two kinds of path:
// * /api/<service>/<method>, POST, JSON in and out: the console's only door into Ferry. The
//   JSON is the request message's protobuf JSON mapping; it is parsed here and sent as a gRPC
//   call over the broker's in-process channel, with the browser's "Authorization: Bearer"
//   header as the call's authorization metadata. So every console action is the same call a
//   gRPC client makes: the same validation, authentication, authorization, audit log and
//   metrics (nothing in this file decides what a caller may do). Open: every Admin method and
//   Broker.Produce (the console's "produce a test message"); not Consume, Commit or the
//   transaction calls (the console never takes a lease). Errors: the gRPC status mapped to an
//   HTTP status, body {"code": "NOT_FOUND", "message": "..."}.
// * Anything else: the built console (index.html, assets) from --console-dir.
//
// The token lives in the browser tab's sessionStorage and travels in a header, never a cookie,
// so another site cannot make a signed-in browser call the API (no CSRF surface). With
// --tls-cert the console is served over TLS with the gRPC listener's certificate.
#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace ferry::broker {

struct ConsoleOptions {
  std::string listen;      // HOST:PORT
  std::string static_dir;  // the built console; must hold index.html
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;  // empty: plain HTTP
};

class ConsoleServer {
 public:
  // Binds and starts serving on a thread of its own. INVALID_ARGUMENT: no index.html in
  // static_dir, or bad TLS files; UNAVAILABLE: the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<ConsoleServer>> Start(
      const ConsoleOptions& options, std::shared_ptr<grpc::Channel> channel);
  ~ConsoleServer();

  int port() const { return port_; }
  void Stop();

  // Where the built console is when --console-dir is empty: share/ferry/console or console/
  // beside the directory of the running binary ("" if neither holds an index.html).
  static std::string DefaultStaticDir();

 private:
  ConsoleServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace ferry::broker
