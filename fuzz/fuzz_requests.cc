// Every request the broker validates, decoded from fuzzed bytes the way gRPC would decode it.
// The first byte picks the message type. Properties: validation never crashes, and a request it
// accepts satisfies the documented limits (checked independently here for the fields that
// reach SQL: names, ids, sizes).
#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>

#include <cstdint>
#include <cstdlib>
#include <regex>
#include <string>

#include "broker/rpc.h"
#include "broker/validation.h"
#include "ferry/v1/admin.pb.h"
#include "ferry/v1/broker.pb.h"

using namespace ferry;
using namespace ferry::broker;

namespace {

bool IsName(const std::string& s) {
  static const std::regex kName("[A-Za-z0-9._-]{1,128}");
  return std::regex_match(s, kName);
}

void Require(bool ok) {
  if (!ok) std::abort();
}

// Parses as the broker's edge does; the diagnosis of why bytes do not parse must not crash,
// and must find nothing wrong in bytes that do.
template <typename Req>
bool Parse(Req& req, const uint8_t* data, size_t size) {
  const bool ok = req.ParseFromArray(data, static_cast<int>(size));
  const std::string why = broker::rpc::DiagnoseBytes(
      Req::descriptor(), std::string_view(reinterpret_cast<const char*>(data), size));
  if (ok) Require(why.empty());
  return ok;
}

}  // namespace

// Invalid UTF-8 in string fields is refused by the parser, which logs each time: keep it quiet.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 16;
  ++data;
  --size;
  Limits limits;
  limits.max_message_bytes = 4096;
  limits.max_produce_bytes = 65536;
  switch (kind) {
    case 0: {
      v1::ProduceRequest r;
      if (!Parse(r, data, size) || !ValidateProduce(r, limits).ok()) break;
      Require(IsName(r.topic()));
      Require(r.messages_size() >= 1 && r.messages_size() <= 1000);
      for (const auto& m : r.messages()) {
        Require(m.payload().size() <= limits.max_message_bytes);
        Require(m.key().find('\0') == std::string::npos);
        Require(m.dedup_id().size() <= limits.max_dedup_id_bytes);
      }
      if (r.has_transactional()) Require(IsName(r.transactional().producer_group()));
      break;
    }
    case 1: {
      v1::ConsumeRequest r;
      if (!Parse(r, data, size) || !ValidateConsume(r, limits).ok()) break;
      Require(IsName(r.group()) && IsName(r.topic()));
      Require(r.max_messages() <= limits.max_consume_messages);
      Require(r.max_wait_ms() <= limits.max_wait_ms);
      break;
    }
    case 2: {
      v1::CommitRequest r;
      if (!Parse(r, data, size) || !ValidateCommit(r, limits).ok()) break;
      Require(IsName(r.group()));
      Require(r.entries_size() >= 1 && r.entries_size() <= 1000);
      break;
    }
    case 3: {
      v1::ExtendLeaseRequest r;
      if (Parse(r, data, size) && ValidateExtendLease(r, limits).ok()) Require(IsName(r.group()));
      break;
    }
    case 4: {
      v1::TopicConfig r;
      if (Parse(r, data, size) && ValidateTopicConfig(r, limits).ok()) Require(IsName(r.name()));
      break;
    }
    case 5: {
      v1::CreateGroupRequest r;
      if (Parse(r, data, size)) (void)ValidateCreateGroup(r);
      break;
    }
    case 6: {
      v1::UpdateGroupRequest r;
      if (Parse(r, data, size)) (void)ValidateUpdateGroup(r);
      break;
    }
    case 7: {
      v1::ResetGroupRequest r;
      if (Parse(r, data, size)) (void)ValidateResetGroup(r, limits);
      break;
    }
    case 8: {
      v1::ListDeadLettersRequest r;
      if (Parse(r, data, size) && ValidateListDeadLetters(r).ok()) {
        Require(ParsePageToken(r.page_token()).ok());
      }
      break;
    }
    case 9: {
      v1::RedriveDeadLettersRequest r;
      if (Parse(r, data, size)) (void)ValidateRedrive(r);
      v1::PurgeDeadLettersRequest p;
      if (Parse(p, data, size)) (void)ValidatePurge(p);
      break;
    }
    case 10: {
      v1::EndTransactionRequest r;
      if (Parse(r, data, size) && ValidateEndTransaction(r).ok()) {
        // Either case: PostgreSQL's uuid type reads both as the same id.
        static const std::regex kUuid(
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}");
        Require(std::regex_match(r.transaction_id(), kUuid));
      }
      break;
    }
    case 11: {
      v1::CheckSubscribe r;
      if (Parse(r, data, size) && ValidateCheckSubscribe(r).ok()) {
        for (const auto& g : r.producer_groups()) Require(IsName(g));
      }
      break;
    }
    case 12: {
      v1::ListTransactionsRequest r;
      if (Parse(r, data, size)) (void)ValidateListTransactions(r);
      v1::ResolveTransactionRequest s;
      if (Parse(s, data, size)) (void)ValidateResolveTransaction(s);
      break;
    }
    case 13: {
      v1::AccessGrant r;
      if (Parse(r, data, size) && ValidateAccessGrant("grant", r).ok()) {
        Require(r.resource_type() == "cluster" || r.resource_name() == "*" ||
                IsName(r.resource_name()));
      }
      break;
    }
    case 14: {
      const std::string s(reinterpret_cast<const char*>(data), size);
      if (ValidatePrincipalName("name", s).ok()) {
        static const std::regex kPrincipal("[A-Za-z0-9._@-]{1,128}");
        Require(std::regex_match(s, kPrincipal));
      }
      (void)ParsePageToken(s);
      break;
    }
    default: {
      v1::CancelDelayedRequest r;
      if (Parse(r, data, size)) (void)ValidateCancelDelayed(r);
      break;
    }
  }
  return 0;
}
