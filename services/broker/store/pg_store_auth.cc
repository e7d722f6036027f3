// PgStore, principals and grants (migrations/broker/0005_auth.sql). Read on an Authenticator
// cache miss and by the Admin RPCs that manage principals.
#include <pqxx/pqxx>

#include "broker/store/pg_store.h"
#include "broker/store/pg_store_internal.h"

namespace ferry::broker {
namespace {

constexpr pg::Statement kFindPrincipal{
    "broker_find_principal",
    "SELECT p.name, g.permission, g.resource_type, g.resource_name FROM principals p"
    " LEFT JOIN grants g ON g.principal = p.name WHERE p.token_sha256 = $1"};

constexpr pg::Statement kInsertPrincipal{
    "broker_insert_principal",
    "INSERT INTO principals (name, token_sha256) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"};

constexpr pg::Statement kDeletePrincipal{"broker_delete_principal",
                                         "DELETE FROM principals WHERE name = $1"};

constexpr pg::Statement kSetToken{"broker_set_token",
                                  "UPDATE principals SET token_sha256 = $2 WHERE name = $1"};

constexpr pg::Statement kListPrincipals{
    "broker_list_principals",
    "SELECT p.name, (extract(epoch FROM p.created_at) * 1000)::bigint, g.permission,"
    " g.resource_type, g.resource_name FROM principals p LEFT JOIN grants g"
    " ON g.principal = p.name ORDER BY p.name, g.resource_type, g.resource_name, g.permission"};

constexpr pg::Statement kLockPrincipal{"broker_lock_principal",
                                       "SELECT 1 FROM principals WHERE name = $1 FOR SHARE"};

constexpr pg::Statement kInsertGrant{
    "broker_insert_grant",
    "INSERT INTO grants (principal, permission, resource_type, resource_name)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"};

constexpr pg::Statement kDeleteGrant{
    "broker_delete_grant",
    "DELETE FROM grants WHERE principal = $1 AND permission = $2 AND resource_type = $3"
    " AND resource_name = $4"};

pqxx::binarystring Bytes(const std::string& s) { return pqxx::binarystring(s.data(), s.size()); }

absl::Status PrincipalNotFound(const std::string& name) {
  return absl::NotFoundError("principal '" + name + "' does not exist");
}

void InsertGrant(pqxx::work& tx, const std::string& principal, const GrantRecord& g) {
  tx.exec_prepared(kInsertGrant.name, principal, g.permission, g.resource_type, g.resource_name);
}

}  // namespace

namespace store_internal {

std::vector<pg::Statement> AuthStatements() {
  return {kFindPrincipal,  kInsertPrincipal, kDeletePrincipal, kSetToken,
          kListPrincipals, kLockPrincipal,   kInsertGrant,     kDeleteGrant};
}

}  // namespace store_internal

absl::StatusOr<std::optional<PrincipalRecord>> PgStore::FindPrincipalByTokenHash(
    const std::string& sha256) {
  std::optional<PrincipalRecord> out;
  absl::Status s = pg::WithConnection(pool_, "authenticate", [&](pqxx::connection& c) {
    out.reset();
    pqxx::read_transaction tx(c);
    for (const auto& r : tx.exec_prepared(kFindPrincipal.name, Bytes(sha256))) {
      if (!out) out = PrincipalRecord{r[0].as<std::string>(), {}, 0};
      if (!r[1].is_null()) {
        out->grants.push_back(
            {r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>()});
      }
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status PgStore::CreatePrincipal(const std::string& name, const std::string& token_sha256,
                                      const std::vector<GrantRecord>& grants) {
  return pg::WithConnection(pool_, "create principal", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_prepared(kInsertPrincipal.name, name, Bytes(token_sha256)).affected_rows() == 0) {
      return absl::AlreadyExistsError("principal '" + name + "' already exists");
    }
    for (const GrantRecord& g : grants) InsertGrant(tx, name, g);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status PgStore::DeletePrincipal(const std::string& name) {
  return pg::WithConnection(pool_, "delete principal", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_prepared(kDeletePrincipal.name, name).affected_rows() == 0) {
      return PrincipalNotFound(name);
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status PgStore::SetToken(const std::string& name, const std::string& token_sha256) {
  return pg::WithConnection(pool_, "rotate token", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_prepared(kSetToken.name, name, Bytes(token_sha256)).affected_rows() == 0) {
      return PrincipalNotFound(name);
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<PrincipalRecord>> PgStore::ListPrincipals() {
  std::vector<PrincipalRecord> out;
  absl::Status s = pg::WithConnection(pool_, "list principals", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    for (const auto& r : tx.exec_prepared(kListPrincipals.name)) {
      const std::string name = r[0].as<std::string>();
      if (out.empty() || out.back().name != name) {
        out.push_back(PrincipalRecord{name, {}, r[1].as<int64_t>()});
      }
      if (!r[2].is_null()) {
        out.back().grants.push_back(
            {r[2].as<std::string>(), r[3].as<std::string>(), r[4].as<std::string>()});
      }
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status PgStore::Grant(const std::string& principal, const GrantRecord& g) {
  return pg::WithConnection(pool_, "grant", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_prepared(kLockPrincipal.name, principal).empty()) {
      return PrincipalNotFound(principal);
    }
    InsertGrant(tx, principal, g);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<bool> PgStore::Revoke(const std::string& principal, const GrantRecord& g) {
  bool removed = false;
  absl::Status s = pg::WithConnection(pool_, "revoke", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    removed = tx.exec_prepared(kDeleteGrant.name, principal, g.permission, g.resource_type,
                               g.resource_name)
                  .affected_rows() > 0;
    tx.commit();
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return removed;
}

}  // namespace ferry::broker
