// Who may do what (ferry-broker --auth), in two steps:
//
// * Authenticator (the edge, once per call): a call carries "authorization: Bearer <token>";
//   the token's SHA-256 names a principal in PostgreSQL (table principals) with its grants
//   (table grants). Both are cached for --auth-cache-ms, so a revoke or a deleted principal
//   takes effect within that time on every broker. No or malformed token, unknown token ->
//   UNAUTHENTICATED. The result is a Caller.
// * Authorizer (the domain layer, once per operation, inside its door): whether the Caller's
//   grants allow each Need; PERMISSION_DENIED naming the principal, the permission and the
//   resource otherwise. A transaction resource is resolved to its producer group.
//
// With --auth off every Caller is Caller::Open() and every Need is met. Tokens are never
// logged; principals' names are.
#pragma once

#include <absl/status/statusor.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "broker/model.h"
#include "broker/store/store.h"

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

// Whether `grants` allow `permission` on the (resolved) resource `kind`/`name`. Pure.
bool Allows(const std::vector<GrantRecord>& grants, Permission permission, const std::string& kind,
            const std::string& name);

// The authenticated caller of one operation. Cheap to copy.
class Caller {
 public:
  // --auth is off: everything is allowed.
  static Caller Open() { return Caller(nullptr); }
  static Caller Of(std::shared_ptr<const PrincipalRecord> principal) {
    return Caller(std::move(principal));
  }
  bool open() const { return principal_ == nullptr; }
  const PrincipalRecord* principal() const { return principal_.get(); }
  // For the audit trail: the principal's name, or "anonymous" when auth is off.
  std::string name() const { return principal_ ? principal_->name : "anonymous"; }
  // An audit actor: `role`, followed by the principal's name when auth is on ("admin alice").
  std::string As(const std::string& role) const {
    return principal_ ? role + " " + principal_->name : role;
  }

 private:
  explicit Caller(std::shared_ptr<const PrincipalRecord> p) : principal_(std::move(p)) {}
  std::shared_ptr<const PrincipalRecord> principal_;
};

// A new random token ("ferry_" and 64 hex digits) and the SHA-256 stored for it.
struct NewToken {
  std::string token;
  std::string sha256;
};
NewToken GenerateToken();
std::string TokenSha256(const std::string& token);

class Authenticator {
 public:
  Authenticator(Store& store, std::chrono::milliseconds cache_ttl)
      : store_(store), ttl_(cache_ttl) {}

  // The principal of the call's bearer token: UNAUTHENTICATED without a known token,
  // UNAVAILABLE if the database cannot be asked. May read the database: call it on an
  // executor worker. Thread-safe.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContextBase& ctx);

 private:
  struct Entry {
    std::shared_ptr<const PrincipalRecord> principal;  // null: unknown token (cached too)
    std::chrono::steady_clock::time_point expires;
  };

  Store& store_;
  const std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::map<std::string, Entry> cache_;  // by token SHA-256
};

class Authorizer {
 public:
  explicit Authorizer(Store& store) : store_(store) {}

  // OK when `caller` may do all of `needs`, else PERMISSION_DENIED for the first that is not
  // met. A transaction that does not exist meets its need (the operation itself answers
  // NOT_FOUND); the other needs are still checked. May read the database (a transaction's
  // producer group). Thread-safe.
  absl::Status Check(const Caller& caller, const std::vector<Need>& needs);

 private:
  Store& store_;
};

}  // namespace ferry::broker
