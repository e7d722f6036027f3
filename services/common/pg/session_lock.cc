#include "common/pg/session_lock.h"

namespace ferry::pg {

SessionLock SessionLock::Acquire(pqxx::connection& conn, int64_t key) {
  pqxx::nontransaction tx(conn);
  tx.exec_params("SELECT pg_advisory_lock($1)", key);
  return SessionLock(conn, key);
}

std::optional<SessionLock> SessionLock::TryAcquire(pqxx::connection& conn, int64_t key) {
  pqxx::nontransaction tx(conn);
  if (!tx.exec_params("SELECT pg_try_advisory_lock($1)", key)[0][0].as<bool>()) {
    return std::nullopt;
  }
  return SessionLock(conn, key);
}

SessionLock::~SessionLock() {
  if (conn_ == nullptr) return;
  try {
    pqxx::nontransaction tx(*conn_);
    tx.exec_params("SELECT pg_advisory_unlock($1)", key_);
  } catch (...) {
    // The connection broke: the lock went with the session.
  }
}

}  // namespace ferry::pg
