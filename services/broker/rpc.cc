#include "broker/rpc.h"

#include <absl/strings/str_cat.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/stubs/common.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <map>

#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"

namespace ferry::broker::rpc {
namespace {

struct RpcMetrics {
  // Every method of ferry.v1's services has its series from the start (code OK, at 0): a
  // rate() or an alert over a series that appears only with its first call sees nothing.
  RpcMetrics() {
    for (const char* service : {"ferry.v1.Broker", "ferry.v1.Admin"}) {
      const auto* s =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
      for (int i = 0; s != nullptr && i < s->method_count(); ++i) {
        calls.With({s->method(i)->name(), "OK"});
        latency.With({s->method(i)->name()});
      }
    }
  }
  metrics::Registry::CounterFamily& calls = metrics::Default().Counters(
      "ferry_rpc_requests_total", "gRPC calls by method and status code", {"method", "code"});
  metrics::Registry::HistogramFamily& latency = metrics::Default().Histograms(
      "ferry_rpc_duration_seconds", "gRPC call duration, long-poll waits included", {"method"},
      metrics::LatencyBuckets());
};

RpcMetrics& Metrics() {
  static RpcMetrics* m = new RpcMetrics();
  return *m;
}

using google::protobuf::FieldDescriptor;
using WireFormat = google::protobuf::internal::WireFormatLite;

constexpr int kMaxDiagnoseDepth = 32;

// Walks the fields of one message (up to the stream's current limit) without building it, and
// names the first that protobuf would refuse. Copies only string fields, one at a time.
std::string Diagnose(const google::protobuf::Descriptor* type,
                     google::protobuf::io::CodedInputStream& in, const std::string& path,
                     int depth) {
  std::map<int, int> seen;  // field number -> occurrences so far (for repeated fields' paths)
  const std::string at = path.empty() ? "" : path + ".";
  while (in.BytesUntilLimit() != 0 && !in.ExpectAtEnd()) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      return absl::StrCat("a malformed field tag after ", at.empty() ? "the start" : path);
    }
    const int number = WireFormat::GetTagFieldNumber(tag);
    const FieldDescriptor* f = type->FindFieldByNumber(number);
    std::string name = f ? at + f->name() : absl::StrCat(at, "field ", number);
    if (f != nullptr && f->is_repeated()) absl::StrAppend(&name, "[", seen[number]++, "]");
    if (WireFormat::GetTagWireType(tag) != WireFormat::WIRETYPE_LENGTH_DELIMITED) {
      if (!WireFormat::SkipField(&in, tag)) return name + " is truncated or malformed";
      continue;
    }
    uint32_t len;
    if (!in.ReadVarint32(&len)) return name + " has a malformed length";
    const int left = in.BytesUntilLimit();
    if (left >= 0 && len > static_cast<uint32_t>(left)) {
      return absl::StrCat(name, " says ", len, " bytes but only ", left, " remain (truncated)");
    }
    if (f != nullptr && f->type() == FieldDescriptor::TYPE_STRING) {
      std::string value;
      if (!in.ReadString(&value, static_cast<int>(len))) return name + " is truncated";
      if (!google::protobuf::internal::IsStructurallyValidUTF8(value.data(),
                                                               static_cast<int>(value.size()))) {
        return name +
               " is not valid UTF-8 (string fields must be UTF-8; binary data goes in bytes "
               "fields such as payload)";
      }
    } else if (f != nullptr && f->type() == FieldDescriptor::TYPE_MESSAGE &&
               depth < kMaxDiagnoseDepth) {
      const auto limit = in.PushLimit(static_cast<int>(len));
      std::string why = Diagnose(f->message_type(), in, name, depth + 1);
      if (!why.empty()) return why;
      if (in.BytesUntilLimit() > 0 && !in.Skip(in.BytesUntilLimit())) return name + " is truncated";
      in.PopLimit(limit);
    } else if (!in.Skip(static_cast<int>(len))) {
      return name + " is truncated";
    }
  }
  return "";
}

}  // namespace

Edge::Edge(Executor& executor, Authenticator* authenticator)
    : executor_(executor), authenticator_(authenticator) {
  Metrics();
}

std::string DiagnoseBytes(const google::protobuf::Descriptor* type, std::string_view bytes) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  return Diagnose(type, in, "", 0);
}

absl::Status Parse(const grpc::ByteBuffer& in, google::protobuf::Message* msg) {
  grpc::ByteBuffer shared(in);  // shares the slices; the readers need a mutable buffer
  {
    grpc::ProtoBufferReader reader(&shared);
    if (msg->ParseFromZeroCopyStream(&reader)) return absl::OkStatus();
  }
  std::string why;
  {
    grpc::ByteBuffer again(in);
    grpc::ProtoBufferReader reader(&again);
    google::protobuf::io::CodedInputStream coded(&reader);
    const auto limit = coded.PushLimit(static_cast<int>(in.Length()));
    why = Diagnose(msg->GetDescriptor(), coded, "", 0);
    coded.PopLimit(limit);
  }
  if (why.empty()) why = "the bytes are malformed";
  return absl::InvalidArgumentError(
      absl::StrCat("the request is not a valid ", msg->GetDescriptor()->full_name(), ": ", why));
}

absl::Status Serialize(const google::protobuf::Message& msg, grpc::ByteBuffer* out) {
  bool own = false;
  grpc::Status s = grpc::SerializationTraits<google::protobuf::Message>::Serialize(msg, out, &own);
  if (!s.ok())
    return absl::InternalError("the reply could not be serialized: " + s.error_message());
  return absl::OkStatus();
}

void RouteProtobufLogs() {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
        static const auto logger = ferry::log::Get("protobuf");
        if (level >= google::protobuf::LOGLEVEL_FATAL) {
          logger->critical("{}:{} {}", file, line, message);
        } else {
          logger->debug("{}:{} {}", file, line, message);
        }
      });
}

void Finish(grpc::ServerUnaryReactor* reactor, const char* rpc, Clock::time_point start,
            const absl::Status& status) {
  static const auto access = ferry::log::Get("access");
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  Metrics().calls.With({rpc, absl::StatusCodeToString(status.code())}).Add();
  Metrics().latency.With({rpc}).Observe(static_cast<double>(us) / 1e6);
  if (status.ok()) {
    access->debug("rpc={} code=OK dur_us={}", rpc, us);
  } else {
    access->info("rpc={} code={} dur_us={} msg={}", rpc, absl::StatusCodeToString(status.code()),
                 us, ferry::log::Quote(std::string(status.message())));
  }
  reactor->Finish(ToGrpcStatus(status));
}

}  // namespace ferry::broker::rpc
