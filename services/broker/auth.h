// Token authentication and per-resource permissions (ferry-broker --auth).
//
// A call carries "authorization: Bearer <token>". The token's SHA-256 names a principal in
// PostgreSQL (table principals); its grants (table grants) say what it may do. Both are cached
// for --auth-cache-ms, so a revoke or a deleted principal takes effect within that time on every
// broker. Errors: no or malformed token, unknown token -> UNAUTHENTICATED; a permission missing
// -> PERMISSION_DENIED naming the principal, the permission and the resource. Tokens are never
// logged; the principal's name is.
#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "broker/store/pg_auth_store.h"

namespace ferry::broker {

enum class Permission { kProduce, kConsume, kAdmin };

struct Resource {
  enum class Kind { kTopic, kGroup, kCluster, kTransaction } kind;
  std::string name;  // topic or group name, or transaction id (resolved to its producer group)
};

inline Resource Topic(std::string name) { return {Resource::Kind::kTopic, std::move(name)}; }
inline Resource Group(std::string name) { return {Resource::Kind::kGroup, std::move(name)}; }
inline Resource Cluster() { return {Resource::Kind::kCluster, "*"}; }
inline Resource TransactionGroup(std::string id) {
  return {Resource::Kind::kTransaction, std::move(id)};
}

struct Need {
  Permission permission;
  Resource resource;
};

const char* PermissionName(Permission p);

// A new random token ("ferry_" and 64 hex digits) and the SHA-256 stored for it.
struct NewToken {
  std::string token;
  std::string sha256;
};
NewToken GenerateToken();
std::string TokenSha256(const std::string& token);

// Whether `grants` allow `permission` on the (resolved) resource `kind`/`name`.
bool Allows(const std::vector<GrantRecord>& grants, Permission permission, const std::string& kind,
            const std::string& name);

class Authorizer {
 public:
  Authorizer(PgAuthStore& store, std::chrono::milliseconds cache_ttl)
      : store_(store), ttl_(cache_ttl) {}

  // OK, UNAUTHENTICATED or PERMISSION_DENIED (UNAVAILABLE if the database cannot be asked).
  // May read the database: call it on an executor worker. Thread-safe.
  absl::Status Authorize(const grpc::ServerContextBase& ctx, const std::vector<Need>& needs);

 private:
  struct Entry {
    std::optional<PrincipalRecord> principal;  // nullopt: unknown token (cached too)
    std::chrono::steady_clock::time_point expires;
  };
  absl::StatusOr<std::shared_ptr<const Entry>> Lookup(const grpc::ServerContextBase& ctx);

  PgAuthStore& store_;
  const std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Entry>> cache_;  // by token SHA-256
};

}  // namespace ferry::broker
