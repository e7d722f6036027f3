// relay::OutboxMessage: an outbox row's headers text into the broker message.
#include <catch2/catch.hpp>
#include <string>

#include "relay/relay.h"

using namespace ferry;

namespace {

relay::OutboxRow Row(const std::string& headers) {
  relay::OutboxRow r;
  r.id = "6f1c7a3e-2b8d-4c61-9a0f-5d2e8b7c4a19";
  r.topic = "orders";
  r.payload = "p";
  r.headers_json = headers;
  return r;
}

// {"h": [[...]]} with `levels` brackets in all, the object's included.
std::string Nested(int levels) {
  return "{\"h\": " + std::string(levels - 1, '[') + std::string(levels - 1, ']') + "}";
}

}  // namespace

TEST_CASE(
    "outbox message: headers are a JSON object - strings as they are - other values as "
    "JSON text - the row id as dedup_id and ferry-outbox-id",
    "[unit][relay]") {
  auto r = Row(R"({"type": "created", "n": 1.5, "ok": false, "none": null, "o": {"a": [1]}})");
  r.key = "order-1";
  auto m = relay::OutboxMessage(r);
  REQUIRE(m.ok());
  CHECK(m->key() == "order-1");
  CHECK(m->payload() == "p");
  CHECK(m->dedup_id() == r.id);
  CHECK(m->headers().at("type") == "created");
  CHECK(m->headers().at("n") == "1.5");
  CHECK(m->headers().at("ok") == "false");
  CHECK(m->headers().at("none") == "null");
  CHECK(m->headers().at("o") == R"({"a":[1]})");
  CHECK(m->headers().at("ferry-outbox-id") == r.id);
  CHECK(m->headers_size() == 6);
  CHECK(relay::OutboxMessage(Row("{}"))->key().empty());
}

TEST_CASE(
    "outbox message: headers that are not an object - set ferry-outbox-id - or nest too "
    "deep are refused with the reason",
    "[unit][relay]") {
  auto refused = [](const std::string& headers) {
    auto m = relay::OutboxMessage(Row(headers));
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(m.status().message());
  };
  CHECK(refused("[1]") == "headers: must be a JSON object of header names to values, got array");
  CHECK(refused("7") == "headers: must be a JSON object of header names to values, got number");
  CHECK(refused("{") ==
        "headers: must be a JSON object of header names to values, got unparsable text");
  CHECK(refused(R"({"ferry-outbox-id": "x"})") ==
        "headers: \"ferry-outbox-id\" is set by the relay (the row id)");
  CHECK(relay::OutboxMessage(Row(Nested(relay::kMaxHeaderDepth + 1))).ok());
  CHECK(refused(Nested(relay::kMaxHeaderDepth + 2)) ==
        "headers: a value is nested deeper than 32 levels");
  // Far deeper than any stack: refused, not a crash.
  CHECK(refused(Nested(500000)) == "headers: a value is nested deeper than 32 levels");
}
