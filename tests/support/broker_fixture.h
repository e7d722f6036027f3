// BrokerFixture: a temporary database, an in-process BrokerServer on 127.0.0.1 and a client,
// with small helpers that throw on failure (tests assert on what they return).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "broker/server.h"
#include "client/client.h"
#include "support/test_db.h"

namespace ferry::test {

class BrokerFixture {
 public:
  // `tune` may change the broker options before start (database and address are set).
  explicit BrokerFixture(const std::function<void(broker::BrokerOptions&)>& tune = nullptr);

  TempDatabase db;
  std::unique_ptr<broker::BrokerServer> server;
  std::unique_ptr<Client> client;

  std::string address() const;
  void CreateTopic(const std::string& name, uint32_t queues = 2, uint64_t retention_ms = 0,
                   bool ordered = false);
  v1::ProduceResponse Produce(const std::string& topic, const std::vector<std::string>& payloads,
                              const std::string& key = "");
  v1::ConsumeResponse Consume(const std::string& group, const std::string& topic, uint32_t max,
                              uint32_t wait_ms = 0, uint32_t visibility_ms = 0,
                              v1::StartPosition start = v1::START_POSITION_EARLIEST);
  // One Commit entry; returns its result.
  v1::CommitResult Settle(const std::string& group, const std::string& receipt,
                          v1::CommitOutcome outcome,
                          std::optional<uint32_t> retry_delay_ms = std::nullopt,
                          const std::string& reason = "");
  // Rows of `sql` (one column, as text), on the test database.
  std::vector<std::string> Query(const std::string& sql);
  // Runs `sql` in its own transaction on the test database.
  void Exec(const std::string& sql);
  // Makes time segments one second long (retention and partition tests).
  void UseOneSecondSegments();
  int64_t StoredMessages();
};

std::vector<std::string> Receipts(const v1::ConsumeResponse& r);

// --auth helpers: a client of the fixture's broker that sends `token`; a grant; a new principal
// with grants, made through `admin` (REQUIREs success), returning its token.
std::unique_ptr<Client> WithToken(BrokerFixture& f, const std::string& token);
v1::AccessGrant G(const std::string& permission, const std::string& type, const std::string& name);
std::string NewPrincipal(Client& admin, const std::string& name,
                         const std::vector<v1::AccessGrant>& grants);

}  // namespace ferry::test
