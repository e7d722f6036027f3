// The web console's HTTP side (console.h): static files and the JSON-to-gRPC door.
#include "broker/console.h"

#include <absl/status/status.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>

#include "broker/limits.h"
#include "common/log.h"

namespace ferry::broker {
namespace {

namespace pb = google::protobuf;

constexpr auto kCallDeadline = std::chrono::seconds(30);

int HttpStatus(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

void SendError(httplib::Response& res, grpc::StatusCode code, const std::string& message) {
  res.status = HttpStatus(code);
  const nlohmann::json body = {
      {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))},
      {"message", message}};
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

// Whether the console may call service/method: every Admin method, and Produce.
const pb::MethodDescriptor* OpenMethod(const std::string& service, const std::string& method) {
  const pb::ServiceDescriptor* s = pb::DescriptorPool::generated_pool()->FindServiceByName(service);
  if (s == nullptr) return nullptr;
  const pb::MethodDescriptor* m = s->FindMethodByName(method);
  if (m == nullptr || m->client_streaming() || m->server_streaming()) return nullptr;
  if (service == "ferry.v1.Admin") return m;
  if (service == "ferry.v1.Broker" && method == "Produce") return m;
  return nullptr;
}

void HandleApi(grpc::GenericStub& stub, const httplib::Request& req, httplib::Response& res) {
  const std::string service = req.matches[1];
  const std::string method = req.matches[2];
  const pb::MethodDescriptor* md = OpenMethod(service, method);
  if (md == nullptr) {
    SendError(res, grpc::StatusCode::NOT_FOUND,
              "the console API has no method " + service + "/" + method +
                  " (open: ferry.v1.Admin/*, ferry.v1.Broker/Produce)");
    return;
  }
  pb::MessageFactory* factory = pb::MessageFactory::generated_factory();
  std::unique_ptr<pb::Message> in(factory->GetPrototype(md->input_type())->New());
  pb::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = false;  // a misspelt field is an error, not ignored
  if (auto s = pb::util::JsonStringToMessage(req.body.empty() ? "{}" : req.body, in.get(), parse);
      !s.ok()) {
    SendError(res, grpc::StatusCode::INVALID_ARGUMENT,
              "the request body is not a " + md->input_type()->full_name() +
                  " in JSON: " + std::string(s.message()));
    return;
  }
  std::string bytes;
  in->SerializeToString(&bytes);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  if (req.has_header("Authorization")) {
    ctx.AddMetadata("authorization", req.get_header_value("Authorization"));
  }
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/" + service + "/" + method, grpc::StubOptions(), &request, &reply,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) {
    SendError(res, status.error_code(), status.error_message());
    return;
  }
  std::vector<grpc::Slice> slices;
  std::string out_bytes;
  if (reply.Dump(&slices).ok()) {
    for (const auto& s : slices)
      out_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  std::unique_ptr<pb::Message> out(factory->GetPrototype(md->output_type())->New());
  if (!out->ParseFromString(out_bytes)) {
    SendError(res, grpc::StatusCode::INTERNAL, "the broker's reply could not be parsed");
    return;
  }
  pb::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;  // a zero is shown as 0, not left out
  print.preserve_proto_field_names = true;     // the names of the .proto and of ferryctl --json
  std::string json;
  if (auto s = pb::util::MessageToJsonString(*out, &json, print); !s.ok()) {
    SendError(res, grpc::StatusCode::INTERNAL, std::string(s.message()));
    return;
  }
  res.set_content(json, "application/json");
}

bool HasIndex(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(dir / "index.html", ec);
}

}  // namespace

std::string ConsoleServer::DefaultStaticDir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const std::filesystem::path root = exe.parent_path().parent_path();
  for (const auto& candidate : {root / "share" / "ferry" / "console", root / "console"}) {
    if (HasIndex(candidate)) return candidate.string();
  }
  return "";
}

absl::StatusOr<std::unique_ptr<ConsoleServer>> ConsoleServer::Start(
    const ConsoleOptions& options, std::shared_ptr<grpc::Channel> channel) {
  if (options.static_dir.empty() || !HasIndex(options.static_dir)) {
    return absl::InvalidArgumentError(
        "the console's files were not found" +
        (options.static_dir.empty() ? std::string(" beside the binary")
                                    : " in \"" + options.static_dir + "\"") +
        " (no index.html): build them (make build) or point --console-dir at them");
  }
  const auto colon = options.listen.rfind(':');
  const std::string host = options.listen.substr(0, colon);
  const int port = std::stoi(options.listen.substr(colon + 1));
  std::unique_ptr<ConsoleServer> s(new ConsoleServer());
  s->channel_ = std::move(channel);
  if (options.tls_cert_file.empty()) {
    s->server_ = std::make_unique<httplib::Server>();
  } else {
    auto tls = std::make_unique<httplib::SSLServer>(
        options.tls_cert_file.c_str(), options.tls_key_file.c_str(),
        options.tls_client_ca_file.empty() ? nullptr : options.tls_client_ca_file.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError("the console cannot use --tls-cert/--tls-key (" +
                                        options.tls_cert_file + ")");
    }
    s->server_ = std::move(tls);
  }
  httplib::Server& server = *s->server_;
  server.set_payload_max_length(kMaxRequestBytes);
  server.set_default_headers({
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Frame-Options", "DENY"},
      {"Content-Security-Policy",
       "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "frame-ancestors 'none'"},
  });
  auto stub = std::make_shared<grpc::GenericStub>(s->channel_);
  server.Post(R"(/api/([A-Za-z0-9_.]+)/([A-Za-z0-9_]+))",
              [stub](const httplib::Request& req, httplib::Response& res) {
                HandleApi(*stub, req, res);
                res.set_header("Cache-Control", "no-store");
              });
  server.Get(R"(/api/.*)", [](const httplib::Request&, httplib::Response& res) {
    SendError(res, grpc::StatusCode::INVALID_ARGUMENT,
              "the console API takes POST with a JSON body");
    res.status = 405;
  });
  if (!server.set_mount_point("/", options.static_dir)) {
    return absl::InvalidArgumentError("--console-dir \"" + options.static_dir +
                                      "\" is not a readable directory");
  }
  s->port_ = port == 0 ? server.bind_to_any_port(host.c_str())
                       : (server.bind_to_port(host.c_str(), port) ? port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError("console: cannot listen on " + options.listen);
  }
  s->thread_ = std::thread([&server] { server.listen_after_bind(); });
  ferry::log::Get("broker.console")
      ->info("event=console_serving listen={} port={} tls={} dir={}", options.listen, s->port_,
             !options.tls_cert_file.empty(), log::Quote(options.static_dir));
  return s;
}

void ConsoleServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

ConsoleServer::~ConsoleServer() { Stop(); }

}  // namespace ferry::broker
