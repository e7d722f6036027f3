// What a request that does not parse is told: the first problem, with the field's path.
#include "broker/rpc.h"

#include <catch2/catch.hpp>

#include "ferry/v1/broker.pb.h"

using namespace ferry;
using ferry::broker::rpc::DiagnoseBytes;

TEST_CASE("bytes that do not parse are diagnosed with the field's path", "[unit][rpc]") {
  const auto* type = v1::ProduceRequest::descriptor();
  CHECK(DiagnoseBytes(type, "\xff\xff\xff").find("malformed") != std::string::npos);

  v1::ProduceRequest r;
  r.set_topic("orders");
  auto* m = r.add_messages();
  m->set_payload("p");
  (*m->mutable_headers())["h"] = "vv";
  std::string bytes = r.SerializeAsString();
  CHECK(DiagnoseBytes(type, bytes).empty());  // nothing wrong
  CHECK(DiagnoseBytes(type, bytes.substr(0, bytes.size() - 1)).find("truncated") !=
        std::string::npos);

  std::string bad = bytes;
  bad.replace(bad.find("vv"), 2, "\xc0\xaf");  // an overlong encoding of '/'
  CHECK(DiagnoseBytes(type, bad) ==
        "messages[0].headers[0].value is not valid UTF-8 (string "
        "fields must be UTF-8; binary data goes in bytes fields "
        "such as payload)");
  std::string bad_topic = bytes;
  bad_topic.replace(bad_topic.find("orders"), 1, "\x80");
  CHECK(DiagnoseBytes(type, bad_topic).rfind("topic is not valid UTF-8", 0) == 0);
  // Binary payloads are fine: payload is bytes.
  m->set_payload(std::string("\xff\x00\xfe", 3));
  CHECK(DiagnoseBytes(type, r.SerializeAsString()).empty());
}
