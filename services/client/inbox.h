// The consumer side of effectively-once processing: the inbox (table ferry_inbox, created by
// `ferry-relay migrate` beside ferry_outbox).
//
//   pqxx::work tx(conn);
//   bool ran = ferry::ProcessOnce(tx, "cart", message.headers().at("ferry-outbox-id"),
//                                 [&](pqxx::work& tx) { /* your effects, in tx */ });
//   tx.commit();            // effects and the inbox row together
//   consumer.Ack(receipt);  // then ACK (a crash before it: redelivered, and skipped)
#pragma once

#include <functional>
#include <pqxx/pqxx>
#include <string>

namespace ferry {

// Runs `handler` inside `tx` only if `consumer_group` has not processed `message_id` yet, and
// records it in the same transaction. Returns true if the handler ran, false for a duplicate.
// A concurrent duplicate waits on the first one's row lock, then sees it. Throws what pqxx
// throws (the caller's transaction is then rolled back: nothing recorded, nothing done).
bool ProcessOnce(pqxx::work& tx, const std::string& consumer_group, const std::string& message_id,
                 const std::function<void(pqxx::work&)>& handler);

}  // namespace ferry
