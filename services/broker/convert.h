// Proto <-> model: every conversion between the wire types of ferry.v1 and the broker's domain
// model (model.h), in one place. Pure functions, no I/O.
#pragma once

#include <google/protobuf/map.h>

#include <optional>
#include <string>
#include <vector>

#include "broker/limits.h"
#include "broker/model.h"
#include "ferry/v1/admin.pb.h"
#include "ferry/v1/broker.pb.h"

namespace ferry::broker {

// Header maps as stored (a JSON object of strings) and back.
std::string HeadersToJson(const google::protobuf::Map<std::string, std::string>& headers);
void HeadersFromJson(const std::string& text, google::protobuf::Map<std::string, std::string>* out);

// A produced message as stored; `now_ms` turns delay_ms into a due time.
NewMessage FromProto(const v1::ProducedMessage& m, int64_t now_ms);
void ToProto(const NewMessage& m, v1::ProducedMessage* out);
void ToProto(const Appended& a, v1::ProduceResult* out);
// A leased message as delivered, with its receipt.
void ToProto(LeasedMessage&& m, const std::string& topic, std::string receipt,
             v1::DeliveredMessage* out);
TxnBegin FromProto(const v1::TransactionOptions& t);

Outcome FromProto(v1::CommitOutcome outcome);  // unspecified: ACK
void ToProto(const SettleResult& r, v1::CommitResult* out);

v1::TransactionState ToProto(TxnState state);
std::optional<TxnState> FromProto(v1::TransactionState state);  // unspecified: nullopt
TxnDecision FromProto(v1::TransactionDecision decision);        // anything else: kUnknown
void ToProto(const TxnRow& r, v1::TransactionInfo* out);
void ToProto(const TxnCheck& c, v1::TransactionCheck* out);

// A topic to create, with the defaults of unset fields applied.
TopicInfo FromProto(const v1::TopicConfig& t);
void ToProto(const TopicInfo& t, v1::TopicConfig* out);
void ToProto(const StoredMessageRow& m, const std::string& topic, v1::StoredMessage* out);
void ToProto(const MessageGroupStateRow& g, v1::MessageGroupState* out);
void ToProto(const TopicDescription& d, v1::DescribeTopicResponse* out);

GroupUpdate PolicyFrom(const v1::GroupConfig& g);
GroupUpdate UpdateFrom(const v1::UpdateGroupRequest& r);
void ToProto(const GroupPolicy& g, v1::GroupConfig* out);
ResetTarget FromProto(const v1::ResetGroupRequest& r);
void ToProto(const GroupLagReport& lag, v1::GetGroupLagResponse* out);
void ToProto(const DeadLetterRow& r, v1::DeadLetter* out);
void ToProto(const RedriveReport& r, v1::RedriveDeadLettersResponse* out);

GrantRecord FromProto(const v1::AccessGrant& g);
void ToProto(const GrantRecord& g, v1::AccessGrant* out);
void ToProto(const PrincipalRecord& p, v1::Principal* out);

// The console's reports.
void ToProto(const ClusterStatusRow& s, v1::GetClusterStatusResponse* out);
void ToProto(const HistorySample& p, v1::HistoryPoint* out);
void ToProto(const TxnDetail& d, v1::GetTransactionResponse* out);

}  // namespace ferry::broker
