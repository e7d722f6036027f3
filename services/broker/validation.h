// Request validation: every field of every request is checked here before any work is done.
// Each function returns OK or INVALID_ARGUMENT / RESOURCE_EXHAUSTED with a message that names
// the field and says what is allowed.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <cstdint>
#include <string>

#include "broker/limits.h"
#include "ferry/v1/admin.pb.h"
#include "ferry/v1/broker.pb.h"

namespace ferry::broker {

// Topic and group names: [A-Za-z0-9._-]{1,128}. `field` names the field in the message.
absl::Status ValidateName(const std::string& field, const std::string& value);
// A principal name: [A-Za-z0-9._@-]{1,128}.
absl::Status ValidatePrincipalName(const std::string& field, const std::string& value);
// permission produce|consume|admin; resource_type topic|group|cluster; resource_name a name or
// "*" ("*" or empty for cluster).
absl::Status ValidateAccessGrant(const std::string& field, const v1::AccessGrant& grant);

absl::Status ValidateProduce(const v1::ProduceRequest& req, const Limits& limits);
absl::Status ValidateConsume(const v1::ConsumeRequest& req, const Limits& limits);
absl::Status ValidateCommit(const v1::CommitRequest& req, const Limits& limits);
absl::Status ValidateTopicConfig(const v1::TopicConfig& topic, const Limits& limits);
absl::Status ValidateUpdateTopic(const v1::UpdateTopicRequest& req);
absl::Status ValidatePeekMessages(const v1::PeekMessagesRequest& req);
absl::Status ValidateRearmTransactionChecks(const v1::RearmTransactionChecksRequest& req);
absl::Status ValidateGetHistory(const v1::GetHistoryRequest& req);
absl::Status ValidateGetMessage(const v1::GetMessageRequest& req);
absl::Status ValidateExtendLease(const v1::ExtendLeaseRequest& req, const Limits& limits);
absl::Status ValidateCreateGroup(const v1::CreateGroupRequest& req);
absl::Status ValidateUpdateGroup(const v1::UpdateGroupRequest& req);
absl::Status ValidateResetGroup(const v1::ResetGroupRequest& req, const Limits& limits);
absl::Status ValidateListDeadLetters(const v1::ListDeadLettersRequest& req);
absl::Status ValidateRedrive(const v1::RedriveDeadLettersRequest& req);
absl::Status ValidatePurge(const v1::PurgeDeadLettersRequest& req);
absl::Status ValidateCancelDelayed(const v1::CancelDelayedRequest& req);
absl::Status ValidateTransactionId(const std::string& field, const std::string& id);
absl::Status ValidateBeginTransaction(const std::string& field_prefix, const std::string& group,
                                      const std::string& check_ref, uint64_t timeout_ms);
absl::Status ValidateEndTransaction(const v1::EndTransactionRequest& req);
absl::Status ValidateCheckSubscribe(const v1::CheckSubscribe& sub);
absl::Status ValidateListTransactions(const v1::ListTransactionsRequest& req);
absl::Status ValidateResolveTransaction(const v1::ResolveTransactionRequest& req);
absl::Status ValidateCreatePrincipal(const v1::CreatePrincipalRequest& req);
absl::Status ValidateGrantChange(const std::string& principal, const v1::AccessGrant& grant);

// "" -> 0; a decimal id -> that id; anything else INVALID_ARGUMENT naming page_token.
absl::StatusOr<int64_t> ParsePageToken(const std::string& token);

}  // namespace ferry::broker
