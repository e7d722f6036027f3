// The relay decodes each outbox row's `headers` (jsonb text written by the application) into the
// broker message (relay::OutboxMessage). Properties: any text is decoded or refused with
// INVALID_ARGUMENT, never a crash; a JSON object without ferry-outbox-id, nested at most
// kMaxHeaderDepth levels below the object, is always accepted;
// an accepted message carries every header of the object (strings as they are) plus
// ferry-outbox-id = the row id, and its dedup_id is the row id; the broker's own validation of
// the resulting Produce never crashes.
#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "broker/validation.h"
#include "relay/relay.h"

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

// The deepest bracket nesting of a JSON text (brackets inside strings do not count). The
// parser reads a NUL as the end of the text (PostgreSQL's jsonb text never holds one).
int BracketDepth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size() && text[i] != '\0'; ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ferry::relay::OutboxRow row;
  row.id = "6f1c7a3e-2b8d-4c61-9a0f-5d2e8b7c4a19";
  row.topic = "orders";
  row.key = "order-1";
  row.payload = "{}";
  row.headers_json.assign(reinterpret_cast<const char*>(data), size);
  row.attempts = 1;

  const auto json = nlohmann::json::parse(row.headers_json, nullptr, false);
  auto m = ferry::relay::OutboxMessage(row);
  const bool acceptable = json.is_object() && !json.contains("ferry-outbox-id") &&
                          BracketDepth(row.headers_json) <= ferry::relay::kMaxHeaderDepth + 1;
  Require(m.ok() == acceptable);
  if (!m.ok()) {
    Require(m.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  Require(m->dedup_id() == row.id && m->key() == *row.key && m->payload() == row.payload);
  Require(m->headers().at("ferry-outbox-id") == row.id);
  Require(static_cast<size_t>(m->headers_size()) == json.size() + 1);
  for (const auto& [k, v] : json.items()) {
    const auto it = m->headers().find(k);
    Require(it != m->headers().end());
    if (v.is_string()) Require(it->second == v.get<std::string>());
  }
  ferry::v1::ProduceRequest req;
  req.set_topic(row.topic);
  *req.add_messages() = *m;
  (void)ferry::broker::ValidateProduce(req, ferry::broker::Limits{});
  return 0;
}
