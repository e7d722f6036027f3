#include "client/inbox.h"

namespace ferry {

bool ProcessOnce(pqxx::work& tx, const std::string& consumer_group, const std::string& message_id,
                 const std::function<void(pqxx::work&)>& handler) {
  pqxx::result r = tx.exec_params(
      "INSERT INTO ferry_inbox (consumer_group, message_id) VALUES ($1, $2)"
      " ON CONFLICT DO NOTHING RETURNING 1",
      consumer_group, message_id);
  if (r.empty()) return false;  // processed before
  handler(tx);
  return true;
}

}  // namespace ferry
