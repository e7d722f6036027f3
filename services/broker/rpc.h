// The gRPC edge shared by BrokerService, AdminService and TxnChecks. Requests arrive as raw
// bytes and are parsed here, so that one that does not parse gets INVALID_ARGUMENT naming the
// problem (gRPC's own parser answers UNIMPLEMENTED with no message). A unary call is then
// authenticated and run through its domain door on the executor, its reply serialized, and the
// reactor finished exactly once, with an access line and the RPC metrics.
#pragma once

#include <absl/status/status.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "broker/auth.h"
#include "common/executor.h"

namespace ferry::broker::rpc {

using Clock = std::chrono::steady_clock;

// Parses `in` as `msg`'s type. INVALID_ARGUMENT naming the first problem (truncated or
// malformed bytes, a string field that is not UTF-8, with the field's path).
absl::Status Parse(const grpc::ByteBuffer& in, google::protobuf::Message* msg);
// Why `bytes` do not parse as `type` ("" if nothing specific was found). For Parse and tests.
std::string DiagnoseBytes(const google::protobuf::Descriptor* type, std::string_view bytes);
// Serializes a reply into `out`.
absl::Status Serialize(const google::protobuf::Message& msg, grpc::ByteBuffer* out);

// Sends libprotobuf's own log lines (one per malformed request, naming the field) to the
// "protobuf" logger at debug level: the client is told with INVALID_ARGUMENT, and a peer that
// sends garbage must not fill the broker's log. Call once at start.
void RouteProtobufLogs();

// Counts the call, writes its access line and finishes the reactor with `status`.
void Finish(grpc::ServerUnaryReactor* reactor, const char* rpc, Clock::time_point start,
            const absl::Status& status);

inline absl::Status Busy() {
  return absl::ResourceExhaustedError("the broker is busy (work queue full); retry later");
}

class Edge {
 public:
  // `authenticator`: nullptr when --auth is off (every caller is Caller::Open()).
  // Creates the per-method call series (at 0) if no Edge did yet.
  Edge(Executor& executor, Authenticator* authenticator);

  Executor& executor() { return executor_; }

  // The call's caller. May read the database: on an executor worker only.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& ctx) {
    if (authenticator_ == nullptr) return Caller::Open();
    return authenticator_->Authenticate(ctx);
  }

  // A whole unary call: parse `in` as Req; on the executor, authenticate and run
  // door(caller, req, &resp); serialize resp into `out`; finish once.
  template <typename Req, typename Resp, typename Door>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                  grpc::ByteBuffer* out, const char* rpc, Door door) {
    auto* reactor = ctx->DefaultReactor();
    const auto start = Clock::now();
    auto call = std::make_shared<std::pair<Req, Resp>>();
    if (absl::Status parsed = Parse(*in, &call->first); !parsed.ok()) {
      Finish(reactor, rpc, start, parsed);
      return reactor;
    }
    if (!executor_.TrySubmit([this, ctx, reactor, out, rpc, start, call, door] {
          absl::StatusOr<Caller> caller = Authenticate(*ctx);
          absl::Status s =
              caller.ok() ? door(*caller, call->first, &call->second) : caller.status();
          if (s.ok()) s = Serialize(call->second, out);
          Finish(reactor, rpc, start, s);
        })) {
      Finish(reactor, rpc, start, Busy());
    }
    return reactor;
  }

 private:
  Executor& executor_;
  Authenticator* const authenticator_;
};

}  // namespace ferry::broker::rpc
