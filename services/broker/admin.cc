// The administration doors (admin.h): validate, authorize once, work through the Store, reply.
#include "broker/admin.h"

#include <chrono>

#include "broker/convert.h"
#include "common/log.h"
#include "common/status.h"

namespace ferry::broker {

namespace {

// Every successful change is logged once, with who made it (issue 16): logger broker.admin,
// `event=<what> by=<principal> <fields>`, values logfmt-quoted.
void LogChange(const Caller& c, const std::string& event, const std::string& fields) {
  ferry::log::Get("broker.admin")->info("event={} by={} {}", event, log::Quote(c.name()), fields);
}

std::string Field(const std::string& key, const std::string& value) {
  return key + "=" + log::Quote(value);
}

// Whether a list shows `name` of `kind` to the caller: any grant on it, or consume on the
// cluster.
bool Sees(const Caller& c, const std::string& kind, const std::string& name) {
  if (c.open()) return true;
  const auto& grants = c.principal()->grants;
  return Allows(grants, Permission::kConsume, "cluster", "*") ||
         Allows(grants, Permission::kConsume, kind, name) ||
         Allows(grants, Permission::kProduce, kind, name);
}

}  // namespace

absl::Status Admin::CreateTopic(const Caller& c, const v1::CreateTopicRequest& req,
                                v1::CreateTopicResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateTopicConfig(req.topic(), limits_));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Topic(req.topic().name())));
  auto created = store_.CreateTopic(FromProto(req.topic()));
  if (!created.ok()) return created.status();
  ToProto(*created, resp->mutable_topic());
  LogChange(c, "topic_created",
            Field("topic", created->name) + " queues=" + std::to_string(created->queue_count));
  return absl::OkStatus();
}

absl::Status Admin::ListTopics(const Caller& c, const v1::ListTopicsRequest& /*req*/,
                               v1::ListTopicsResponse* resp) {
  auto topics = store_.ListTopics();
  if (!topics.ok()) return topics.status();
  for (const auto& t : *topics) {
    if (Sees(c, "topic", t.name)) ToProto(t, resp->add_topics());
  }
  return absl::OkStatus();
}

absl::Status Admin::DescribeTopic(const Caller& c, const v1::DescribeTopicRequest& req,
                                  v1::DescribeTopicResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateName("name", req.name()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kConsume, Topic(req.name())));
  auto d = store_.DescribeTopic(req.name());
  if (!d.ok()) return d.status();
  ToProto(*d, resp);
  return absl::OkStatus();
}

absl::Status Admin::DeleteTopic(const Caller& c, const v1::DeleteTopicRequest& req,
                                v1::DeleteTopicResponse* /*resp*/) {
  FERRY_RETURN_IF_ERROR(ValidateName("name", req.name()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Topic(req.name())));
  FERRY_RETURN_IF_ERROR(store_.DeleteTopic(req.name()));
  LogChange(c, "topic_deleted", Field("topic", req.name()));
  return absl::OkStatus();
}

absl::Status Admin::UpdateTopic(const Caller& c, const v1::UpdateTopicRequest& req,
                                v1::UpdateTopicResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateUpdateTopic(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Topic(req.name())));
  auto t = store_.UpdateTopic(
      req.name(),
      req.has_retention_ms() ? std::optional<int64_t>(req.retention_ms()) : std::nullopt,
      req.has_dedup_window_ms() ? std::optional<int64_t>(req.dedup_window_ms()) : std::nullopt);
  if (!t.ok()) return t.status();
  ToProto(*t, resp->mutable_topic());
  ferry::log::Get("broker.admin")
      ->info("event=topic_updated topic={} principal={} retention_ms={} dedup_window_ms={}",
             log::Quote(req.name()), log::Quote(c.name()), t->retention_ms, t->dedup_window_ms);
  return absl::OkStatus();
}

absl::Status Admin::PeekMessages(const Caller& c, const v1::PeekMessagesRequest& req,
                                 v1::PeekMessagesResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidatePeekMessages(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kConsume, Topic(req.topic())));
  PeekFilter filter;
  if (req.has_key()) filter.key = req.key();
  filter.queue_from_key = req.has_key() && !req.has_queue();
  if (req.has_dedup_id()) filter.dedup_id = req.dedup_id();
  filter.produced_after_ms = static_cast<int64_t>(req.produced_after_unix_ms());
  filter.produced_before_ms = static_cast<int64_t>(req.produced_before_unix_ms());
  auto r = store_.PeekMessages(req.topic(), req.queue(), static_cast<int64_t>(req.from_offset()),
                               req.max_messages() == 0 ? 100 : req.max_messages(), filter);
  if (!r.ok()) return r.status();
  for (const auto& m : r->messages) ToProto(m, req.topic(), resp->add_messages());
  resp->set_next_offset(static_cast<uint64_t>(r->next_offset));
  resp->set_first_offset(static_cast<uint64_t>(r->first_offset));
  resp->set_end_offset(static_cast<uint64_t>(r->end_offset));
  resp->set_queues(r->queue_count);
  resp->set_queue(r->queue);
  return absl::OkStatus();
}

absl::Status Admin::GetMessage(const Caller& c, const v1::GetMessageRequest& req,
                               v1::GetMessageResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateGetMessage(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kConsume, Topic(req.topic())));
  auto r = store_.GetMessage(req.topic(), req.queue(), static_cast<int64_t>(req.offset()));
  if (!r.ok()) return r.status();
  ToProto(r->message, req.topic(), resp->mutable_message());
  for (const auto& g : r->groups) ToProto(g, resp->add_groups());
  return absl::OkStatus();
}

absl::Status Admin::ListGroups(const Caller& c, const v1::ListGroupsRequest& /*req*/,
                               v1::ListGroupsResponse* resp) {
  auto groups = store_.ListGroups();
  if (!groups.ok()) return groups.status();
  for (const auto& [policy, topics] : *groups) {
    if (!Sees(c, "group", policy.name)) continue;
    auto* g = resp->add_groups();
    ToProto(policy, g->mutable_group());
    for (const auto& t : topics) g->add_topics(t);
    g->set_created_at_unix_ms(static_cast<uint64_t>(policy.created_at_ms));
  }
  return absl::OkStatus();
}

absl::Status Admin::DeleteGroup(const Caller& c, const v1::DeleteGroupRequest& req,
                                v1::DeleteGroupResponse* /*resp*/) {
  FERRY_RETURN_IF_ERROR(ValidateName("name", req.name()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Group(req.name())));
  FERRY_RETURN_IF_ERROR(store_.DeleteGroup(req.name()));
  LogChange(c, "group_deleted", Field("group", req.name()));
  return absl::OkStatus();
}

absl::Status Admin::GetGroupLag(const Caller& c, const v1::GetGroupLagRequest& req,
                                v1::GetGroupLagResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateName("group", req.group()));
  if (!req.topic().empty()) FERRY_RETURN_IF_ERROR(ValidateName("topic", req.topic()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kConsume, Group(req.group())));
  auto lag = store_.GroupLag(req.group(), req.topic());
  if (!lag.ok()) return lag.status();
  resp->set_group(req.group());
  ToProto(*lag, resp);
  return absl::OkStatus();
}

absl::Status Admin::CreateGroup(const Caller& c, const v1::CreateGroupRequest& req,
                                v1::CreateGroupResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateCreateGroup(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Group(req.group().name())));
  auto g = store_.CreateGroup(req.group().name(), PolicyFrom(req.group()),
                              std::vector<std::string>(req.topics().begin(), req.topics().end()));
  if (!g.ok()) return g.status();
  ToProto(*g, resp->mutable_group());
  LogChange(c, "group_created", Field("group", req.group().name()));
  return absl::OkStatus();
}

absl::Status Admin::UpdateGroup(const Caller& c, const v1::UpdateGroupRequest& req,
                                v1::UpdateGroupResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateUpdateGroup(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Group(req.name())));
  auto g = store_.UpdateGroup(req.name(), UpdateFrom(req));
  if (!g.ok()) return g.status();
  ToProto(*g, resp->mutable_group());
  LogChange(c, "group_updated", Field("group", req.name()));
  return absl::OkStatus();
}

absl::Status Admin::DescribeGroup(const Caller& c, const v1::DescribeGroupRequest& req,
                                  v1::DescribeGroupResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateName("name", req.name()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kConsume, Group(req.name())));
  auto g = store_.DescribeGroup(req.name());
  if (!g.ok()) return g.status();
  ToProto(g->first, resp->mutable_group());
  for (const auto& t : g->second) resp->add_topics(t);
  resp->set_created_at_unix_ms(static_cast<uint64_t>(g->first.created_at_ms));
  return absl::OkStatus();
}

absl::Status Admin::ResetGroup(const Caller& c, const v1::ResetGroupRequest& req,
                               v1::ResetGroupResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateResetGroup(req, limits_));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Group(req.group())));
  auto positions = store_.ResetGroup(req.group(), req.topic(), FromProto(req));
  if (!positions.ok()) return positions.status();
  std::string moved;
  for (const auto& m : *positions) {
    auto* p = resp->add_positions();
    p->set_queue(m.queue);
    p->set_offset(static_cast<uint64_t>(m.position));
    auto* before = resp->add_previous();
    before->set_queue(m.queue);
    before->set_offset(static_cast<uint64_t>(m.previous));
    moved +=
        (moved.empty() ? "" : ",") + std::to_string(m.queue) + ":" + std::to_string(m.position);
  }
  if (req.dry_run()) return absl::OkStatus();  // a preview changes nothing and is not logged
  LogChange(c, "group_reset",
            Field("group", req.group()) + " " + Field("topic", req.topic()) + " " +
                Field("positions", moved));
  return absl::OkStatus();
}

absl::Status Admin::ListDeadLetters(const Caller& c, const v1::ListDeadLettersRequest& req,
                                    v1::ListDeadLettersResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateListDeadLetters(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Group(req.group())));
  const int64_t after = *ParsePageToken(req.page_token());
  const int64_t limit = req.page_size() == 0 ? 100 : req.page_size();
  auto rows = store_.ListDeadLetters(req.group(), req.topic(), after, limit);
  if (!rows.ok()) return rows.status();
  for (const DeadLetterRow& r : *rows) ToProto(r, resp->add_dead_letters());
  if (static_cast<int64_t>(rows->size()) == limit) {
    resp->set_next_page_token(std::to_string(rows->back().id));
  }
  return absl::OkStatus();
}

absl::Status Admin::RedriveDeadLetters(const Caller& c, const v1::RedriveDeadLettersRequest& req,
                                       v1::RedriveDeadLettersResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateRedrive(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Group(req.group())));
  if (!req.to_topic().empty()) {
    // Redriving to a topic is producing to it.
    FERRY_RETURN_IF_ERROR(Allow(c, Permission::kProduce, Topic(req.to_topic())));
  }
  const std::vector<int64_t> ids(req.ids().begin(), req.ids().end());
  auto report = store_.RedriveDeadLetters(req.group(), ids, req.all(), req.to_topic());
  if (!report.ok()) return report.status();
  ToProto(*report, resp);
  LogChange(c, "dead_letters_redriven",
            Field("group", req.group()) + " " + Field("to_topic", req.to_topic()) +
                " all=" + (req.all() ? "true" : "false") + " ids=" + std::to_string(ids.size()));
  return absl::OkStatus();
}

absl::Status Admin::PurgeDeadLetters(const Caller& c, const v1::PurgeDeadLettersRequest& req,
                                     v1::PurgeDeadLettersResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidatePurge(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Group(req.group())));
  const std::vector<int64_t> ids(req.ids().begin(), req.ids().end());
  auto purged = store_.PurgeDeadLetters(req.group(), ids, req.all());
  if (!purged.ok()) return purged.status();
  resp->set_purged(static_cast<uint64_t>(*purged));
  LogChange(c, "dead_letters_purged",
            Field("group", req.group()) + " purged=" + std::to_string(*purged));
  return absl::OkStatus();
}

absl::Status Admin::CancelDelayed(const Caller& c, const v1::CancelDelayedRequest& req,
                                  v1::CancelDelayedResponse* /*resp*/) {
  FERRY_RETURN_IF_ERROR(ValidateCancelDelayed(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Topic(req.topic())));
  FERRY_RETURN_IF_ERROR(store_.CancelDelayed(req.topic(), static_cast<int64_t>(req.delayed_id())));
  LogChange(c, "delayed_cancelled",
            Field("topic", req.topic()) + " delayed_id=" + std::to_string(req.delayed_id()));
  return absl::OkStatus();
}

absl::Status Admin::ListTransactions(const Caller& c, const v1::ListTransactionsRequest& req,
                                     v1::ListTransactionsResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateListTransactions(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Cluster()));
  auto rows = store_.ListTransactions(FromProto(req.state()), req.producer_group(),
                                      req.limit() == 0 ? 100 : req.limit());
  if (!rows.ok()) return rows.status();
  for (const TxnRow& r : *rows) ToProto(r, resp->add_transactions());
  return absl::OkStatus();
}

absl::Status Admin::GetTransaction(const Caller& c, const v1::GetTransactionRequest& req,
                                   v1::GetTransactionResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateTransactionId("transaction_id", req.transaction_id()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, TransactionGroup(req.transaction_id())));
  auto d = store_.GetTransaction(req.transaction_id());
  if (!d.ok()) return d.status();
  ToProto(*d, resp);
  return absl::OkStatus();
}

absl::Status Admin::ResolveTransaction(const Caller& c, const v1::ResolveTransactionRequest& req,
                                       v1::ResolveTransactionResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateResolveTransaction(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, TransactionGroup(req.transaction_id())));
  auto ended = store_.EndTransaction(req.transaction_id(), FromProto(req.decision()), c.As("admin"),
                                     req.reason(), /*by_admin=*/true);
  if (!ended.ok()) return ended.status();
  resp->set_state(ToProto(ended->state));
  LogChange(c, "transaction_resolved",
            Field("transaction_id", req.transaction_id()) + " " +
                Field("decision", v1::TransactionDecision_Name(req.decision())) + " " +
                Field("reason", req.reason()));
  return absl::OkStatus();
}

absl::Status Admin::RearmTransactionChecks(const Caller& c,
                                           const v1::RearmTransactionChecksRequest& req,
                                           v1::RearmTransactionChecksResponse* /*resp*/) {
  FERRY_RETURN_IF_ERROR(ValidateRearmTransactionChecks(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, TransactionGroup(req.transaction_id())));
  FERRY_RETURN_IF_ERROR(store_.RearmChecks(req.transaction_id(), c.As("admin"), req.reason()));
  LogChange(c, "transaction_checks_rearmed",
            Field("transaction_id", req.transaction_id()) + " " + Field("reason", req.reason()));
  return absl::OkStatus();
}

absl::Status Admin::CreatePrincipal(const Caller& c, const v1::CreatePrincipalRequest& req,
                                    v1::CreatePrincipalResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateCreatePrincipal(req));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Cluster()));
  const NewToken t = GenerateToken();
  std::vector<GrantRecord> grants;
  for (const auto& g : req.grants()) grants.push_back(FromProto(g));
  FERRY_RETURN_IF_ERROR(store_.CreatePrincipal(req.name(), t.sha256, grants));
  ferry::log::Get("auth")->info("event=principal_created principal={} by={}", req.name(), c.name());
  resp->set_token(t.token);
  return absl::OkStatus();
}

absl::Status Admin::RotateToken(const Caller& c, const v1::RotateTokenRequest& req,
                                v1::RotateTokenResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidatePrincipalName("name", req.name()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Cluster()));
  const NewToken t = GenerateToken();
  FERRY_RETURN_IF_ERROR(store_.SetToken(req.name(), t.sha256));
  ferry::log::Get("auth")->info("event=token_rotated principal={} by={}", req.name(), c.name());
  resp->set_token(t.token);
  return absl::OkStatus();
}

absl::Status Admin::DeletePrincipal(const Caller& c, const v1::DeletePrincipalRequest& req,
                                    v1::DeletePrincipalResponse* /*resp*/) {
  FERRY_RETURN_IF_ERROR(ValidatePrincipalName("name", req.name()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Cluster()));
  FERRY_RETURN_IF_ERROR(store_.DeletePrincipal(req.name()));
  ferry::log::Get("auth")->info("event=principal_deleted principal={} by={}", req.name(), c.name());
  return absl::OkStatus();
}

absl::Status Admin::ListPrincipals(const Caller& c, const v1::ListPrincipalsRequest& /*req*/,
                                   v1::ListPrincipalsResponse* resp) {
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Cluster()));
  auto all = store_.ListPrincipals();
  if (!all.ok()) return all.status();
  for (const auto& p : *all) ToProto(p, resp->add_principals());
  return absl::OkStatus();
}

absl::Status Admin::Grant(const Caller& c, const v1::GrantRequest& req,
                          v1::GrantResponse* /*resp*/) {
  FERRY_RETURN_IF_ERROR(ValidateGrantChange(req.principal(), req.grant()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Cluster()));
  FERRY_RETURN_IF_ERROR(store_.Grant(req.principal(), FromProto(req.grant())));
  ferry::log::Get("auth")->info("event=granted principal={} permission={} resource={}:{} by={}",
                                req.principal(), req.grant().permission(),
                                req.grant().resource_type(), req.grant().resource_name(), c.name());
  return absl::OkStatus();
}

absl::Status Admin::Revoke(const Caller& c, const v1::RevokeRequest& req,
                           v1::RevokeResponse* /*resp*/) {
  FERRY_RETURN_IF_ERROR(ValidateGrantChange(req.principal(), req.grant()));
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kAdmin, Cluster()));
  auto removed = store_.Revoke(req.principal(), FromProto(req.grant()));
  if (!removed.ok()) return removed.status();
  if (!*removed) {
    return absl::NotFoundError("principal '" + req.principal() + "' has no such grant");
  }
  ferry::log::Get("auth")->info("event=revoked principal={} permission={} resource={}:{} by={}",
                                req.principal(), req.grant().permission(),
                                req.grant().resource_type(), req.grant().resource_name(), c.name());
  return absl::OkStatus();
}

absl::Status Admin::WhoAmI(const Caller& c, const v1::WhoAmIRequest& /*req*/,
                           v1::WhoAmIResponse* resp) {
  resp->set_auth_enabled(!c.open());
  resp->set_principal(c.name());
  if (c.open()) return absl::OkStatus();
  for (const auto& g : c.principal()->grants) ToProto(g, resp->add_grants());
  return absl::OkStatus();
}

absl::Status Admin::GetClusterStatus(const Caller& c, const v1::GetClusterStatusRequest& /*req*/,
                                     v1::GetClusterStatusResponse* resp) {
  FERRY_RETURN_IF_ERROR(Allow(c, Permission::kConsume, Cluster()));
  auto s = store_.ClusterStatus();
  if (!s.ok()) return s.status();
  ToProto(*s, resp);
  return absl::OkStatus();
}

absl::Status Admin::GetHistory(const Caller& c, const v1::GetHistoryRequest& req,
                               v1::GetHistoryResponse* resp) {
  FERRY_RETURN_IF_ERROR(ValidateGetHistory(req));
  std::vector<Need> needs;
  if (!req.group().empty()) needs.push_back({Permission::kConsume, Group(req.group())});
  if (!req.topic().empty()) needs.push_back({Permission::kConsume, Topic(req.topic())});
  FERRY_RETURN_IF_ERROR(authorizer_.Check(c, needs));
  constexpr int64_t kDay = 24 * 3600 * 1000;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t until =
      req.until_unix_ms() == 0 ? now + 60000 : static_cast<int64_t>(req.until_unix_ms());
  const int64_t since =
      req.since_unix_ms() == 0 ? until - kDay : static_cast<int64_t>(req.since_unix_ms());
  auto points = store_.History(req.group(), req.topic(), since, until,
                               req.max_points() == 0 ? 1440 : req.max_points());
  if (!points.ok()) return points.status();
  for (const auto& p : *points) ToProto(p, resp->add_points());
  resp->set_interval_ms(static_cast<uint64_t>(stats_interval_ms_));
  return absl::OkStatus();
}

}  // namespace ferry::broker
