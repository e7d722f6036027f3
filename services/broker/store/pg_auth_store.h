// PgAuthStore: principals and grants (migrations/broker/0005_auth.sql). Reads are rare (the
// Authorizer caches them), so the SQL is not prepared. Thread-safe.
#pragma once

#include <absl/status/statusor.h>

#include <optional>
#include <string>
#include <vector>

#include "common/pg/pool.h"

namespace ferry::broker {

struct GrantRecord {
  std::string permission;     // produce | consume | admin
  std::string resource_type;  // topic | group | cluster
  std::string resource_name;  // a name or "*" ("*" for cluster)
};

struct PrincipalRecord {
  std::string name;
  std::vector<GrantRecord> grants;
  int64_t created_at_ms = 0;
};

class PgAuthStore {
 public:
  explicit PgAuthStore(pg::ConnectionPool& pool) : pool_(pool) {}

  // The principal holding the token with this SHA-256, or nullopt.
  absl::StatusOr<std::optional<PrincipalRecord>> FindByTokenHash(const std::string& sha256);
  // The producer group of a transaction, or nullopt when there is no such transaction.
  absl::StatusOr<std::optional<std::string>> TransactionProducerGroup(const std::string& txn_id);

  // ALREADY_EXISTS when the name is taken.
  absl::Status CreatePrincipal(const std::string& name, const std::string& token_sha256);
  // NOT_FOUND when there is none; its grants go with it.
  absl::Status DeletePrincipal(const std::string& name);
  // Replaces the token; NOT_FOUND when there is no such principal.
  absl::Status SetToken(const std::string& name, const std::string& token_sha256);
  absl::StatusOr<std::vector<PrincipalRecord>> ListPrincipals();
  // NOT_FOUND when the principal does not exist; granting twice is fine.
  absl::Status Grant(const std::string& principal, const GrantRecord& grant);
  // Returns false when there was no such grant.
  absl::StatusOr<bool> Revoke(const std::string& principal, const GrantRecord& grant);

 private:
  pg::ConnectionPool& pool_;
};

}  // namespace ferry::broker
