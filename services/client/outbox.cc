#include "client/outbox.h"

#include <nlohmann/json.hpp>

namespace ferry {

std::string Enqueue(pqxx::work& tx, const std::string& topic, const std::optional<std::string>& key,
                    const std::string& payload, const std::map<std::string, std::string>& headers) {
  nlohmann::json h = nlohmann::json::object();
  for (const auto& [k, v] : headers) h[k] = v;
  const pqxx::binarystring bytes(payload);
  pqxx::result r = key ? tx.exec_params(
                             "INSERT INTO ferry_outbox (topic, key, payload, headers)"
                             " VALUES ($1, $2, $3, $4::jsonb) RETURNING id::text",
                             topic, *key, bytes, h.dump())
                       : tx.exec_params(
                             "INSERT INTO ferry_outbox (topic, payload, headers)"
                             " VALUES ($1, $2, $3::jsonb) RETURNING id::text",
                             topic, bytes, h.dump());
  return r[0][0].as<std::string>();
}

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
