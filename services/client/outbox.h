// The transactional outbox from C++ (tables created by `ferry-relay migrate`).
//
// Producer side: enqueue messages in the same transaction as your business rows; ferry-relay
// publishes them after commit (and never if the transaction rolls back).
//
//   pqxx::work tx(conn);
//   tx.exec_params("INSERT INTO orders (id, total) VALUES ($1, $2)", id, total);
//   ferry::Enqueue(tx, "orders", "order-" + id, payload, {{"type", "created"}});
//   tx.commit();
//
// Consumer side (effectively-once processing): the inbox.
//
//   pqxx::work tx(conn);
//   bool ran = ferry::ProcessOnce(tx, "cart", message.headers().at("ferry-outbox-id"),
//                                 [&](pqxx::work& tx) { /* your effects, in tx */ });
//   tx.commit();            // effects and the inbox row together
//   consumer.Ack(receipt);  // then ACK (a crash before it: redelivered, and skipped)
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <string>

namespace ferry {

// Inserts one ferry_outbox row in `tx`; returns its id (the message's dedup_id at the broker
// and its "ferry-outbox-id" header). Messages with the same key are published in commit order.
std::string Enqueue(pqxx::work& tx, const std::string& topic, const std::optional<std::string>& key,
                    const std::string& payload,
                    const std::map<std::string, std::string>& headers = {});

// Runs `handler` inside `tx` only if `consumer_group` has not processed `message_id` yet, and
// records it in the same transaction. Returns true if the handler ran, false for a duplicate.
// A concurrent duplicate waits on the first one's row lock, then sees it. Throws what pqxx
// throws (the caller's transaction is then rolled back: nothing recorded, nothing done).
bool ProcessOnce(pqxx::work& tx, const std::string& consumer_group, const std::string& message_id,
                 const std::function<void(pqxx::work&)>& handler);

}  // namespace ferry
