#include "support/broker_fixture.h"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

namespace ferry::test {

namespace {
template <typename T>
T OrThrow(absl::StatusOr<T> r) {
  if (!r.ok()) throw std::runtime_error(std::string(r.status().message()));
  return *std::move(r);
}
}  // namespace

BrokerFixture::BrokerFixture(const std::function<void(broker::BrokerOptions&)>& tune) {
  broker::BrokerOptions o;
  o.listen = "127.0.0.1:0";
  o.database_url = db.conninfo();
  o.pool_size = 4;
  o.max_message_bytes = 1 << 20;
  if (tune) tune(o);
  server = std::make_unique<broker::BrokerServer>(o);
  absl::Status s = server->Start();
  if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  client = std::make_unique<Client>(MakeChannel(address()));
}

std::string BrokerFixture::address() const { return "127.0.0.1:" + std::to_string(server->port()); }

void BrokerFixture::CreateTopic(const std::string& name, uint32_t queues, uint64_t retention_ms,
                                bool ordered) {
  v1::TopicConfig t;
  t.set_name(name);
  t.set_queues(queues);
  t.set_retention_ms(retention_ms);
  t.set_ordered(ordered);
  OrThrow(client->CreateTopic(t));
}

v1::ProduceResponse BrokerFixture::Produce(const std::string& topic,
                                           const std::vector<std::string>& payloads,
                                           const std::string& key) {
  v1::ProduceRequest req;
  req.set_topic(topic);
  for (const auto& p : payloads) {
    auto* m = req.add_messages();
    m->set_payload(p);
    m->set_key(key);
  }
  return OrThrow(client->Produce(req));
}

v1::ConsumeResponse BrokerFixture::Consume(const std::string& group, const std::string& topic,
                                           uint32_t max, uint32_t wait_ms, uint32_t visibility_ms,
                                           v1::StartPosition start) {
  v1::ConsumeRequest req;
  req.set_group(group);
  req.set_topic(topic);
  req.set_max_messages(max);
  req.set_max_wait_ms(wait_ms);
  req.set_visibility_timeout_ms(visibility_ms);
  req.set_start_position(start);
  return OrThrow(client->Consume(req));
}

v1::CommitResult BrokerFixture::Settle(const std::string& group, const std::string& receipt,
                                       v1::CommitOutcome outcome,
                                       std::optional<uint32_t> retry_delay_ms,
                                       const std::string& reason) {
  v1::CommitRequest req;
  req.set_group(group);
  auto* e = req.add_entries();
  e->set_receipt(receipt);
  e->set_outcome(outcome);
  if (retry_delay_ms) e->set_retry_delay_ms(*retry_delay_ms);
  e->set_reason(reason);
  return OrThrow(client->Commit(req)).results(0);
}

std::vector<std::string> BrokerFixture::Query(const std::string& sql) {
  pqxx::connection c(db.conninfo());
  pqxx::read_transaction tx(c);
  std::vector<std::string> out;
  for (const auto& row : tx.exec(sql)) out.push_back(row[0].is_null() ? "NULL" : row[0].c_str());
  return out;
}

void BrokerFixture::Exec(const std::string& sql) {
  pqxx::connection c(db.conninfo());
  pqxx::work tx(c);
  tx.exec(sql);
  tx.commit();
}

void BrokerFixture::UseOneSecondSegments() {
  Exec("UPDATE broker_settings SET value = 1 WHERE key = 'segment_seconds'");
  Exec("SELECT ferry_ensure_segments(2)");
}

int64_t BrokerFixture::StoredMessages() {
  return std::stoll(Query("SELECT count(*) FROM messages").at(0));
}

std::vector<std::string> Receipts(const v1::ConsumeResponse& r) {
  std::vector<std::string> out;
  for (const auto& m : r.messages()) out.push_back(m.receipt());
  return out;
}

std::unique_ptr<Client> WithToken(BrokerFixture& f, const std::string& token) {
  ChannelOptions o;
  o.token = token;
  auto channel = MakeChannel(f.address(), o);
  REQUIRE(channel.ok());
  return std::make_unique<Client>(*channel);
}

v1::AccessGrant G(const std::string& permission, const std::string& type, const std::string& name) {
  v1::AccessGrant g;
  g.set_permission(permission);
  g.set_resource_type(type);
  g.set_resource_name(name);
  return g;
}

std::string NewPrincipal(Client& admin, const std::string& name,
                         const std::vector<v1::AccessGrant>& grants) {
  v1::CreatePrincipalRequest req;
  req.set_name(name);
  for (const auto& g : grants) *req.add_grants() = g;
  v1::CreatePrincipalResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status s = admin.admin().CreatePrincipal(&ctx, req, &resp);
  REQUIRE(s.ok());
  REQUIRE(resp.token().rfind("ferry_", 0) == 0);
  return resp.token();
}

}  // namespace ferry::test
