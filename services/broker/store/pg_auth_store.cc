#include "broker/store/pg_auth_store.h"

#include <map>

namespace ferry::broker {
namespace {

pqxx::binarystring Bytes(const std::string& s) { return pqxx::binarystring(s.data(), s.size()); }

absl::Status PrincipalNotFound(const std::string& name) {
  return absl::NotFoundError("principal '" + name + "' does not exist");
}

}  // namespace

absl::StatusOr<std::optional<PrincipalRecord>> PgAuthStore::FindByTokenHash(
    const std::string& sha256) {
  std::optional<PrincipalRecord> out;
  absl::Status s = pg::WithConnection(pool_, "authenticate", [&](pqxx::connection& c) {
    out.reset();
    pqxx::read_transaction tx(c);
    for (const auto& r : tx.exec_params(
             "SELECT p.name, g.permission, g.resource_type, g.resource_name FROM principals p"
             " LEFT JOIN grants g ON g.principal = p.name WHERE p.token_sha256 = $1",
             Bytes(sha256))) {
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

absl::StatusOr<std::optional<std::string>> PgAuthStore::TransactionProducerGroup(
    const std::string& txn_id) {
  std::optional<std::string> out;
  absl::Status s = pg::WithConnection(pool_, "authorize transaction", [&](pqxx::connection& c) {
    out.reset();
    pqxx::read_transaction tx(c);
    auto r = tx.exec_params("SELECT producer_group FROM transactions WHERE txn_id = $1::text::uuid",
                            txn_id);
    if (!r.empty()) out = r[0][0].as<std::string>();
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status PgAuthStore::CreatePrincipal(const std::string& name,
                                          const std::string& token_sha256) {
  return pg::WithConnection(pool_, "create principal", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = tx.exec_params(
        "INSERT INTO principals (name, token_sha256) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name, Bytes(token_sha256));
    if (r.affected_rows() == 0) {
      return absl::AlreadyExistsError("principal '" + name + "' already exists");
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status PgAuthStore::DeletePrincipal(const std::string& name) {
  return pg::WithConnection(pool_, "delete principal", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_params("DELETE FROM principals WHERE name = $1", name).affected_rows() == 0) {
      return PrincipalNotFound(name);
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::Status PgAuthStore::SetToken(const std::string& name, const std::string& token_sha256) {
  return pg::WithConnection(pool_, "rotate token", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_params("UPDATE principals SET token_sha256 = $2 WHERE name = $1", name,
                       Bytes(token_sha256))
            .affected_rows() == 0) {
      return PrincipalNotFound(name);
    }
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<PrincipalRecord>> PgAuthStore::ListPrincipals() {
  std::vector<PrincipalRecord> out;
  absl::Status s = pg::WithConnection(pool_, "list principals", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction tx(c);
    for (const auto& r :
         tx.exec("SELECT p.name, (extract(epoch FROM p.created_at) * 1000)::bigint, g.permission,"
                 " g.resource_type, g.resource_name FROM principals p LEFT JOIN grants g"
                 " ON g.principal = p.name ORDER BY p.name, g.resource_type, g.resource_name,"
                 " g.permission")) {
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

absl::Status PgAuthStore::Grant(const std::string& principal, const GrantRecord& g) {
  return pg::WithConnection(pool_, "grant", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (tx.exec_params("SELECT 1 FROM principals WHERE name = $1", principal).empty()) {
      return PrincipalNotFound(principal);
    }
    tx.exec_params(
        "INSERT INTO grants (principal, permission, resource_type, resource_name)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        principal, g.permission, g.resource_type, g.resource_name);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<bool> PgAuthStore::Revoke(const std::string& principal, const GrantRecord& g) {
  bool removed = false;
  absl::Status s = pg::WithConnection(pool_, "revoke", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    removed = tx.exec_params(
                    "DELETE FROM grants WHERE principal = $1 AND permission = $2"
                    " AND resource_type = $3 AND resource_name = $4",
                    principal, g.permission, g.resource_type, g.resource_name)
                  .affected_rows() > 0;
    tx.commit();
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return removed;
}

}  // namespace ferry::broker
