#include "broker/auth.h"

#include <absl/strings/escaping.h>
#include <absl/strings/match.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "common/log.h"

namespace ferry::broker {
namespace {

constexpr size_t kMaxCachedTokens = 10000;  // beyond: the cache starts over

}  // namespace

const char* PermissionName(Permission p) {
  switch (p) {
    case Permission::kProduce:
      return "produce";
    case Permission::kConsume:
      return "consume";
    case Permission::kAdmin:
      return "admin";
  }
  return "?";
}

std::string TokenSha256(const std::string& token) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(token.data(), token.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  return std::string(reinterpret_cast<const char*>(md), len);
}

NewToken GenerateToken() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) throw std::runtime_error("no randomness for a token");
  NewToken t;
  t.token = "ferry_" + absl::BytesToHexString(
                           absl::string_view(reinterpret_cast<const char*>(raw), sizeof(raw)));
  t.sha256 = TokenSha256(t.token);
  return t;
}

bool Allows(const std::vector<GrantRecord>& grants, Permission permission, const std::string& kind,
            const std::string& name) {
  const std::string wanted = PermissionName(permission);
  for (const auto& g : grants) {
    if (g.permission != wanted && g.permission != "admin") continue;  // admin implies the rest
    if (g.resource_type == "cluster") {
      if (g.permission == "admin" || kind == "cluster") return true;
      continue;
    }
    if (g.resource_type == kind && (g.resource_name == name || g.resource_name == "*")) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<Caller> Authenticator::Authenticate(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError(
        "this broker requires a token: send metadata \"authorization: Bearer <token>\"");
  }
  const std::string value(it->second.data(), it->second.size());
  if (!absl::StartsWithIgnoreCase(value, "Bearer ") || value.size() <= 7) {
    return absl::UnauthenticatedError("the authorization metadata must be \"Bearer <token>\"");
  }
  const std::string hash = TokenSha256(value.substr(7));
  const auto now = std::chrono::steady_clock::now();
  std::shared_ptr<const PrincipalRecord> principal;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = cache_.find(hash);
    if (c != cache_.end() && c->second.expires > now) {
      principal = c->second.principal;
      cached = true;
    }
  }
  if (!cached) {
    auto found = store_.FindPrincipalByTokenHash(hash);
    if (!found.ok()) return found.status();
    if (*found) principal = std::make_shared<const PrincipalRecord>(**found);
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.size() >= kMaxCachedTokens) cache_.clear();
    cache_[hash] = Entry{principal, now + ttl_};
  }
  if (principal == nullptr) return absl::UnauthenticatedError("unknown or revoked token");
  return Caller::Of(std::move(principal));
}

absl::Status Authorizer::Check(const Caller& caller, const std::vector<Need>& needs) {
  if (caller.open()) return absl::OkStatus();
  const PrincipalRecord& p = *caller.principal();
  for (const Need& need : needs) {
    std::string kind, name = need.resource.name;
    switch (need.resource.kind) {
      case Resource::Kind::kTopic:
        kind = "topic";
        break;
      case Resource::Kind::kGroup:
        kind = "group";
        break;
      case Resource::Kind::kCluster:
        kind = "cluster";
        break;
      case Resource::Kind::kTransaction: {
        auto group = store_.TransactionProducerGroup(name);
        if (!group.ok()) return group.status();
        if (!*group) continue;  // the operation itself answers NOT_FOUND
        kind = "group";
        name = **group;
        break;
      }
    }
    if (!Allows(p.grants, need.permission, kind, name)) {
      ferry::log::Get("auth")->info("event=denied principal={} permission={} resource={}:{}",
                                    p.name, PermissionName(need.permission), kind, name);
      return absl::PermissionDeniedError(
          "principal '" + p.name + "' lacks permission " + PermissionName(need.permission) +
          " on " + (kind == "cluster" ? std::string("the cluster") : kind + " '" + name + "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ferry::broker
