// ferryctl: the Ferry command-line tool. `ferryctl --help` lists the commands.
// Broker address: --broker, else FERRY_BROKER, else 127.0.0.1:7420. Exit code 0 on success;
// otherwise 1 with a one-line reason on stderr (2 for usage errors). The commands are in
// topic.cc, messages.cc, groups.cc, txn.cc and auth.cc; this file has the global options and
// health.
#include "common/version.h"
#include "ferryctl/cli.h"
#include "grpc/health/v1/health.grpc.pb.h"

using namespace ferryctl;

int main(int argc, char** argv) {
  CLI::App app{"ferryctl: command-line tool for the Ferry broker"};
  app.require_subcommand(1);
  // Global options are accepted after the subcommand too (`ferryctl topic list --json`): the
  // setting is inherited by every subcommand added below.
  app.fallthrough();
  app.set_version_flag("--version", ferry::VersionLine("ferryctl"));
  Context ctx;
  app.add_option("--broker", ctx.broker, "broker address HOST:PORT")
      ->envname("FERRY_BROKER")
      ->capture_default_str();
  app.add_flag("--json", ctx.as_json, "machine-readable output (one JSON document or JSON lines)");
  app.add_option("--token", ctx.connect.token, "bearer token, for a broker run with --auth")
      ->envname("FERRY_TOKEN");
  app.add_option("--tls-ca", ctx.connect.tls_ca_file, "PEM CA of the broker's certificate: use TLS")
      ->envname("FERRY_TLS_CA");
  // FERRY_TLS_CLIENT_*, not FERRY_TLS_CERT/KEY: those are the broker's own certificate, and one
  // shell often sets both.
  app.add_option("--tls-cert", ctx.connect.tls_cert_file, "PEM client certificate")
      ->envname("FERRY_TLS_CLIENT_CERT");
  app.add_option("--tls-key", ctx.connect.tls_key_file, "PEM key of --tls-cert")
      ->envname("FERRY_TLS_CLIENT_KEY");
  app.add_option("--tls-server-name", ctx.connect.tls_server_name,
                 "name expected in the broker's certificate (default: the --broker host)")
      ->envname("FERRY_TLS_SERVER_NAME");

  AddTopicCommands(app, ctx);
  AddMessageCommands(app, ctx);
  AddGroupCommands(app, ctx);
  AddTxnCommands(app, ctx);
  AddAuthCommands(app, ctx);

  // health: for container health checks and scripts.
  auto* health = app.add_subcommand(
      "health", "exit 0 if the broker reports SERVING (gRPC health; NOT_SERVING: database away)");
  health->callback([&ctx] {
    auto stub = grpc::health::v1::Health::NewStub(ctx.channel());
    grpc::ClientContext call;
    call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = stub->Check(&call, grpc::health::v1::HealthCheckRequest(), &resp);
    if (!s.ok()) throw Failure{"health: " + s.error_message()};
    const std::string state =
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
    if (ctx.as_json) {
      std::cout << Dump(json{{"status", state}}) << "\n";
    } else {
      std::cout << state << "\n";
    }
    if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      ctx.exit_code = 1;
      return;
    }
  });

  try {
    app.parse(argc, argv);  // runs the chosen command's callback
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const Failure& f) {
    std::cerr << "ferryctl: " << f.message << "\n";
    return 1;
  }
  return ctx.exit_code;
}
