// SessionLock: a PostgreSQL session-level advisory lock held for the life of this object, on
// one connection (one broker at a time runs retention's DDL; one process at a time migrates).
// Released by the destructor; if the connection broke, the lock went with the session.
// Not thread-safe (neither is the connection).
#pragma once

#include <cstdint>
#include <optional>
#include <pqxx/pqxx>

namespace ferry::pg {

class SessionLock {
 public:
  // Waits until the lock is free. Throws what libpqxx throws.
  static SessionLock Acquire(pqxx::connection& conn, int64_t key);
  // nullopt at once when another session holds it. Throws what libpqxx throws.
  static std::optional<SessionLock> TryAcquire(pqxx::connection& conn, int64_t key);

  SessionLock(SessionLock&& other) noexcept : conn_(other.conn_), key_(other.key_) {
    other.conn_ = nullptr;
  }
  SessionLock(const SessionLock&) = delete;
  SessionLock& operator=(const SessionLock&) = delete;
  SessionLock& operator=(SessionLock&&) = delete;
  ~SessionLock();

 private:
  SessionLock(pqxx::connection& conn, int64_t key) : conn_(&conn), key_(key) {}
  pqxx::connection* conn_;
  int64_t key_;
};

}  // namespace ferry::pg
