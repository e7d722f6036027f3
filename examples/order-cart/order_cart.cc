// The order/cart scenario: an order service and a cart service that must never disagree.
//
// The order service turns a customer's cart into an order and, in the same PostgreSQL
// transaction, writes an "order created" message into ferry_outbox. ferry-relay publishes it.
// The cart service consumes it and clears the ordered items from the cart, through the inbox, so
// that a redelivered message (here: the cart service "crashes" before its first ACK) changes
// nothing twice. An order whose transaction rolls back never reaches the cart service.
//
//   order-cart-demo --database-url APP_DB --broker HOST:PORT                  the story, once
//   order-cart-demo --database-url APP_DB order-service --every-ms 1000       runs until killed
//   order-cart-demo --database-url APP_DB --broker HOST:PORT cart-service     runs until killed
// The two services are what docker-compose.yml runs: every --every-ms the order service fills a
// customer's cart and orders it (every fifth payment is declined: rolled back), and the cart
// service clears ordered carts. Both touch /tmp/heartbeat after each round (their health check).
#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "client/client.h"
#include "client/outbox.h"
#include "client/subscriber.h"

using nlohmann::json;

namespace {

void Say(const std::string& who, const std::string& what) {
  std::cout << "  " << who << ": " << what << std::endl;
}

// The order service: one transaction for the order and its message.
int64_t PlaceOrder(pqxx::connection& db, const std::string& customer, bool fail_payment) {
  pqxx::work tx(db);
  json items = json::array();
  for (const auto& row :
       tx.exec_params("SELECT item FROM cart_items WHERE customer = $1 ORDER BY item", customer)) {
    items.push_back(row[0].as<std::string>());
  }
  const int64_t id =
      tx.exec_params("INSERT INTO orders (customer, items) VALUES ($1, $2::jsonb) RETURNING id",
                     customer, items.dump())[0][0]
          .as<int64_t>();
  const std::string msg_id =
      ferry::Enqueue(tx, "orders", "order-" + std::to_string(id),
                     json{{"order", id}, {"customer", customer}, {"items", items}}.dump(),
                     {{"type", "order.created"}});
  if (fail_payment) {
    Say("order service", "order " + std::to_string(id) + " for " + customer +
                             ": payment declined, transaction rolled back (order and message)");
    tx.abort();
    return -1;
  }
  tx.commit();
  Say("order service",
      "order " + std::to_string(id) + " for " + customer + " with " + std::to_string(items.size()) +
          " items and its outbox row committed together (message " + msg_id.substr(0, 8) + "...)");
  return id;
}

void EnsureSchema(pqxx::connection& db) {
  pqxx::work tx(db);
  tx.exec("SELECT pg_advisory_xact_lock(7420)");  // two services starting at once
  tx.exec(
      "CREATE TABLE IF NOT EXISTS orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
      " customer text NOT NULL, items jsonb NOT NULL, created_at timestamptz DEFAULT now());"
      "CREATE TABLE IF NOT EXISTS cart_items (customer text, item text,"
      " PRIMARY KEY (customer, item));");
  tx.commit();
}

void Heartbeat() { std::ofstream("/tmp/heartbeat") << std::time(nullptr) << "\n"; }

// Removes an order's items from its customer's cart, once per message id (the inbox).
// Returns the items removed, or -1 when the message was processed before.
int ClearCart(pqxx::connection& cart_db, const ferry::v1::DeliveredMessage& m) {
  const json order = json::parse(m.payload());
  pqxx::work tx(cart_db);
  int removed = 0;
  const bool ran =
      ferry::ProcessOnce(tx, "cart", m.headers().at("ferry-outbox-id"), [&](pqxx::work& t) {
        for (const auto& item : order["items"]) {
          removed += t.exec_params("DELETE FROM cart_items WHERE customer = $1 AND item = $2",
                                   order["customer"].get<std::string>(), item.get<std::string>())
                         .affected_rows();
        }
      });
  tx.commit();
  return ran ? removed : -1;
}

// The long-running order service: fill a cart, order it; every fifth payment is declined.
int OrderService(const std::string& database_url, int every_ms) {
  pqxx::connection db(database_url);
  EnsureSchema(db);
  const std::vector<std::string> customers{"ada", "bob", "cy", "dee"};
  for (int64_t n = 0;; ++n) {
    const std::string customer = customers[n % customers.size()];
    {
      pqxx::work tx(db);
      tx.exec_params(
          "INSERT INTO cart_items VALUES ($1, 'item-' || $2), ($1, 'gift-' || $2)"
          " ON CONFLICT DO NOTHING",
          customer, std::to_string(n));
      tx.commit();
    }
    PlaceOrder(db, customer, n % 5 == 4);
    Heartbeat();
    std::this_thread::sleep_for(std::chrono::milliseconds(every_ms));
  }
}

// The long-running cart service: the library's Subscriber reads "orders" as group "cart"
// (long polls, leases extended while a message is handled, ACKs batched); each message clears
// a cart through the inbox, and the handler's return ACKs it. An exception (the database went
// away) is a RETRY with the error as its reason.
int CartService(const std::string& database_url, const std::string& broker) {
  pqxx::connection cart_db(database_url);
  EnsureSchema(cart_db);
  ferry::Client client(broker);
  ferry::SubscriberOptions options;
  options.concurrency = 1;  // one database connection
  ferry::Subscriber sub(
      client, "orders", "cart",
      [&](const ferry::v1::DeliveredMessage& m) {
        const int removed = ClearCart(cart_db, m);
        Say("cart service", removed < 0
                                ? "order already processed (inbox)"
                                : "cleared " + std::to_string(removed) + " items for " +
                                      json::parse(m.payload())["customer"].get<std::string>());
        return ferry::Outcome::Ack();
      },
      options);
  while (sub.error().ok()) {
    Heartbeat();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  Say("cart service", "stopped: " + sub.error().ToString());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string database_url, broker = "127.0.0.1:7420";
  int every_ms = 1000;
  CLI::App app{"order-cart-demo: an order service and a cart service on Ferry's outbox"};
  app.add_option("--database-url", database_url, "the application database")
      ->envname("FERRY_DATABASE_URL")
      ->required();
  app.add_option("--broker", broker, "broker HOST:PORT")
      ->envname("FERRY_BROKER")
      ->capture_default_str();
  app.fallthrough();
  auto* order_service = app.add_subcommand("order-service", "place an order every --every-ms");
  order_service->add_option("--every-ms", every_ms, "ms between orders")->capture_default_str();
  auto* cart_service = app.add_subcommand("cart-service", "clear carts of ordered items");
  CLI11_PARSE(app, argc, argv);
  std::cout.setf(std::ios::unitbuf);  // logs of the services show up at once
  if (order_service->parsed()) return OrderService(database_url, every_ms);
  if (cart_service->parsed()) return CartService(database_url, broker);

  pqxx::connection db(database_url);
  EnsureSchema(db);
  {
    pqxx::work tx(db);
    tx.exec(
        "DELETE FROM cart_items;"
        "INSERT INTO cart_items VALUES ('ada', 'book'), ('ada', 'lamp'), ('bob', 'chair'),"
        " ('bob', 'desk'), ('bob', 'pen')");
    tx.commit();
  }
  std::cout << "\nCarts: ada {book, lamp}, bob {chair, desk, pen}\n\n";

  const int64_t ada = PlaceOrder(db, "ada", false);
  PlaceOrder(db, "bob", true);  // rolled back: the cart service must never hear of it
  (void)ada;

  // The cart service.
  ferry::Client client(broker);
  pqxx::connection cart_db(database_url);
  bool crashed_once = false;
  int handled = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (handled < 1 && std::chrono::steady_clock::now() < give_up) {
    ferry::v1::ConsumeRequest req;
    req.set_group("cart");
    req.set_topic("orders");
    req.set_max_messages(10);
    req.set_max_wait_ms(2000);
    req.set_visibility_timeout_ms(1000);
    auto got = client.Consume(req);
    if (!got.ok()) {
      std::cerr << "consume: " << got.status() << "\n";
      return 1;
    }
    for (const auto& m : got->messages()) {
      const json order = json::parse(m.payload());
      Say("cart service", "received " + m.headers().at("type") + " for order " +
                              std::to_string(order["order"].get<int64_t>()) +
                              " (delivery attempt " + std::to_string(m.delivery_attempt()) + ")");
      const int removed = ClearCart(cart_db, m);
      if (removed >= 0) {
        Say("cart service", "removed " + std::to_string(removed) + " items from " +
                                order["customer"].get<std::string>() + "'s cart");
      } else {
        Say("cart service", "already processed (inbox): nothing done twice");
      }
      if (!crashed_once) {
        crashed_once = true;
        Say("cart service", "crashes before its ACK: the broker will deliver the message again");
        continue;
      }
      (void)client.Ack("cart", {m.receipt()});
      Say("cart service", "ACKed");
      ++handled;
    }
  }

  std::cout << "\nWhat the databases say:\n";
  pqxx::read_transaction tx(db);
  for (const auto& row : tx.exec("SELECT id, customer, items::text FROM orders ORDER BY id")) {
    std::cout << "  orders:      #" << row[0].c_str() << " " << row[1].c_str() << " "
              << row[2].c_str() << "\n";
  }
  for (const auto& row : tx.exec(
           "SELECT customer, string_agg(item, ', ' ORDER BY item) FROM cart_items GROUP BY 1")) {
    std::cout << "  cart_items:  " << row[0].c_str() << " {" << row[1].c_str() << "}\n";
  }
  for (const auto& row :
       tx.exec("SELECT status, count(*), min(broker_queue), min(broker_offset) FROM ferry_outbox"
               " GROUP BY status")) {
    std::cout << "  ferry_outbox: " << row[1].c_str() << " row " << row[0].c_str() << " (queue "
              << row[2].c_str() << ", offset " << row[3].c_str() << ")\n";
  }
  for (const auto& row : tx.exec("SELECT count(*) FROM ferry_inbox")) {
    std::cout << "  ferry_inbox: " << row[0].c_str() << " message processed\n";
  }
  std::cout << "\nbob's cart is untouched: his order rolled back, and its message never existed.\n";
  return handled == 1 ? 0 : 1;
}
