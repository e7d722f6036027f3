// ferry-chaos: runs a workload against real ferry-broker (and ferry-relay) processes on a real
// PostgreSQL while injecting faults, records every operation, and checks the history
// (chaos/history.h). tests/chaos/run.sh starts the PostgreSQL cluster and calls this once per
// scenario:
//   broker-kill   two brokers; SIGKILL one every 1.5-3 s (restarted), or SIGSTOP it for 1-2 s
//   pg-restart    PostgreSQL shut down immediately (a crash) and restarted, and every broker
//                 connection killed with pg_terminate_backend, in turns
//   relay-kill    the outbox: application transactions (some rolled back) and two ferry-relay
//                 processes racing, one SIGKILLed every 1-2 s; consumers use the inbox
//   failover      PostgreSQL with a synchronous standby (run.sh sets it up); halfway through,
//                 the primary is killed and the standby promoted; the brokers' conninfo names
//                 both (target_session_attrs=read-write), so they reconnect to the new primary
//   network-cut   the brokers reach PostgreSQL through a TCP proxy this program controls; it
//                 cuts every connection and refuses new ones for 4-6 s (longer than the
//                 consumers' 3 s leases), every 3-5 s
//   ha-primary-kill  a pg_auto_failover formation (scripts/ha.sh: monitor + 3 nodes, run.sh
//                 starts it); the broker and the outbox workloads together; --kills times the
//                 primary node dies (postmaster and keeper SIGKILLed), a standby is promoted,
//                 the node comes back; per failover: new primary, first acknowledged Produce,
//                 health NOT_SERVING and back, EndTransaction and Commit repeated after it
//   ha-standby-kill  the same; a standby dies for 8 s: writes go on, health stays SERVING
//   ha-partition  the nodes reach the monitor and each other through proxies this program
//                 cuts (it starts the formation); the primary is cut off while brokers still
//                 reach it: nothing acknowledged between the cut and the promotion
// Producers resend an unacknowledged message with the same dedup_id until it is acknowledged
// (or the faults stop: then it is "unknown"). Every 10th produce is a transaction of two
// messages decided COMMIT or ROLLBACK; a back-check handler answers what the producer decided.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "chaos/history.h"
#include "client/client.h"
#include "client/outbox.h"
#include "client/transactions.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "relay/relay.h"
#include "support/broker_process.h"

using namespace ferry;
using namespace ferry::chaos;
using test::BrokerProcess;
using test::RelayProcess;

namespace {

struct Settings {
  std::string scenario;
  int seconds = 20;
  int heal_bound_s = 30;
  std::string pg_dir, root;
  int pg_port = 0;
  std::string log_dir = "/tmp";
  std::string standby_dir;  // failover
  int standby_port = 0;
  std::string ha_dir;  // ha-*: the pg_auto_failover formation (scripts/ha.sh); pg_port = its base
  int kills = 3;       // ha-*: how many nodes are killed, one after another
};

std::string Conninfo(const Settings& s, const std::string& db) {
  if (!s.ha_dir.empty()) {  // the formation's nodes on base+1..base+3: whichever is primary
    const auto node = [&](int n) { return std::to_string(s.pg_port + n); };
    return "host=127.0.0.1,127.0.0.1,127.0.0.1 port=" + node(1) + "," + node(2) + "," + node(3) +
           " user=postgres dbname=" + db + " target_session_attrs=read-write connect_timeout=2";
  }
  return "host=" + s.pg_dir + " port=" + std::to_string(s.pg_port) + " user=postgres dbname=" + db;
}

int Shell(const std::string& command) { return std::system(command.c_str()); }

void Sleep(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

// Runs scripts/pg.sh functions on the scenario's cluster.
void Pg(const Settings& s, const std::string& fn) {
  Shell("bash -c 'source " + s.root + "/scripts/pg.sh && " + fn + "' >/dev/null 2>&1");
}

std::mt19937& Rng() {
  thread_local std::mt19937 rng{std::random_device{}()};
  return rng;
}

double Uniform(double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(Rng());
}

// A client that talks to one of several brokers and moves to the next after an error.
class Failover {
 public:
  explicit Failover(std::vector<std::string> addresses) : addresses_(std::move(addresses)) {
    for (const auto& a : addresses_) {
      clients_.push_back(std::make_unique<Client>(a));
      clients_.back()->set_timeout(std::chrono::seconds(3));
    }
  }
  Client& now() { return *clients_[current_ % clients_.size()]; }
  void Next() { ++current_; }

 private:
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<Client>> clients_;
  size_t current_ = 0;
};

// The workload's consumers: long-poll, record, ACK. In `inbox` mode every message is processed
// through ferry::ProcessOnce in the application database, and double processing is counted.
class Consumers {
 public:
  Consumers(History& h, std::vector<std::string> brokers, std::string group, std::string topic,
            int threads, std::string inbox_db = "")
      : h_(h), group_(std::move(group)), topic_(std::move(topic)), inbox_db_(std::move(inbox_db)) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, brokers, i] { Run(brokers, i); });
    }
  }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  int64_t double_processed() const { return double_processed_.load(); }

 private:
  void Run(std::vector<std::string> brokers, int i) {
    std::rotate(brokers.begin(), brokers.begin() + (i % brokers.size()), brokers.end());
    Failover f(brokers);
    std::unique_ptr<pqxx::connection> db;
    while (!stop_) {
      v1::ConsumeRequest req;
      req.set_group(group_);
      req.set_topic(topic_);
      req.set_max_messages(50);
      req.set_max_wait_ms(500);
      req.set_visibility_timeout_ms(3000);
      auto got = f.now().Consume(req);
      if (!got.ok()) {
        f.Next();
        Sleep(0.05);
        continue;
      }
      std::vector<std::string> receipts;
      for (const auto& m : got->messages()) {
        h_.AddDelivery(Delivery{m.payload(), group_, m.queue(), m.offset(), m.delivery_attempt(),
                                Clock::now()});
        if (!inbox_db_.empty() && !Process(db, m)) break;  // database away: no ACK, redelivered
        receipts.push_back(m.receipt());
      }
      if (!receipts.empty() && !f.now().Ack(group_, receipts).ok()) f.Next();  // lost: redelivered
    }
  }

  bool Process(std::unique_ptr<pqxx::connection>& db, const v1::DeliveredMessage& m) {
    try {
      if (!db || !db->is_open()) db = std::make_unique<pqxx::connection>(inbox_db_);
      pqxx::work tx(*db);
      bool ran = ProcessOnce(tx, group_, m.headers().at("ferry-outbox-id"), [](pqxx::work&) {});
      tx.commit();
      if (ran) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!processed_.insert(m.payload()).second) ++double_processed_;
      }
      return true;
    } catch (const std::exception&) {
      db.reset();
      return false;
    }
  }

  History& h_;
  const std::string group_, topic_, inbox_db_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::set<std::string> processed_;
  std::atomic<int64_t> double_processed_{0};
};

// Producers through the broker: keyed messages, one at a time per key (so per-key order is
// defined), resent with the same dedup_id until acknowledged; every 10th a transaction.
class Producers {
 public:
  Producers(History& h, std::vector<std::string> brokers, std::string topic, int threads)
      : h_(h), topic_(std::move(topic)) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, brokers, i] { Run(brokers, i); });
    }
  }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  // The back-check answer: what the producer decided (ROLLBACK when it never learnt the id).
  v1::TransactionDecision Decide(const v1::TransactionCheck& check) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = decided_.find(check.check_ref());
    if (it == decided_.end()) return v1::TRANSACTION_ROLLBACK;
    return it->second ? v1::TRANSACTION_COMMIT : v1::TRANSACTION_ROLLBACK;
  }

 private:
  void Run(std::vector<std::string> brokers, int p) {
    std::rotate(brokers.begin(), brokers.begin() + (p % brokers.size()), brokers.end());
    Failover f(brokers);
    for (int64_t n = 0; !stop_; ++n) {
      if (n % 10 == 9) {
        Transaction(f, p, n);
        continue;
      }
      const std::string key = "k" + std::to_string(p) + "-" + std::to_string(n % 4);
      const std::string id = "m-" + std::to_string(p) + "-" + std::to_string(n);
      h_.AddSent(Sent{id, key, n, false, false, ""});
      v1::ProduceRequest req;
      req.set_topic(topic_);
      auto* m = req.add_messages();
      m->set_key(key);
      m->set_payload(id);
      m->set_dedup_id(id);
      while (!stop_) {
        if (f.now().Produce(req).ok()) {
          h_.MarkAcked(id);
          break;
        }
        f.Next();
        Sleep(0.05);
      }
    }
  }

  void Transaction(Failover& f, int p, int64_t n) {
    const std::string ref = "t-" + std::to_string(p) + "-" + std::to_string(n);
    const bool commit = Uniform(0, 1) < 0.7;
    std::vector<std::string> ids = {ref + "-a", ref + "-b"};
    for (const auto& id : ids) h_.AddSent(Sent{id, "", 0, false, false, ref});
    {
      // Decided before anything is sent: a back-check may come at any moment after.
      std::lock_guard<std::mutex> lock(mu_);
      decided_[ref] = commit;
    }
    h_.AddTxn(ref, Txn{ids, commit});
    v1::ProduceRequest req;
    req.set_topic(topic_);
    req.mutable_transactional()->set_producer_group("chaos");
    req.mutable_transactional()->set_check_ref(ref);
    for (const auto& id : ids) {
      auto* m = req.add_messages();
      m->set_payload(id);
      m->set_dedup_id(id);
    }
    auto produced = f.now().Produce(req);
    if (!produced.ok()) {  // maybe stored, maybe not: the back-check answers the decision
      f.Next();
      return;
    }
    for (const auto& id : ids) h_.MarkAcked(id);  // stored: from now on it must not be lost
    v1::EndTransactionRequest end;
    end.set_transaction_id(produced->transaction_id());
    end.set_decision(commit ? v1::TRANSACTION_COMMIT : v1::TRANSACTION_ROLLBACK);
    for (int attempt = 0; attempt < 3 && !stop_; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      v1::EndTransactionResponse resp;
      if (f.now().broker().EndTransaction(&ctx, end, &resp).ok()) return;
      f.Next();
    }
    // Not ended: the back-check decides the same way.
  }

  History& h_;
  const std::string topic_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::string, bool> decided_;
};

// The application: transactions that write an outbox row (ferry::Enqueue) for keyed messages,
// one after another per key; 15% roll back (must never be published).
class OutboxWriters {
 public:
  OutboxWriters(History& h, std::string app, std::string topic, int threads)
      : h_(h), app_(std::move(app)), topic_(std::move(topic)) {
    for (int w = 0; w < threads; ++w) threads_.emplace_back([this, w] { Run(w); });
  }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Run(int w) {
    std::unique_ptr<pqxx::connection> db;
    for (int64_t n = 0; !stop_; ++n) {
      const std::string key = "k" + std::to_string(w) + "-" + std::to_string(n % 4);
      const std::string id = "r-" + std::to_string(w) + "-" + std::to_string(n);
      h_.AddSent(Sent{id, key, n, false, false, ""});
      const bool rollback = Uniform(0, 1) < 0.15;
      try {
        if (!db || !db->is_open()) db = std::make_unique<pqxx::connection>(app_);
        pqxx::work tx(*db);
        Enqueue(tx, topic_, key, id);
        if (rollback) {
          tx.abort();
          h_.MarkRejected(id);
        } else {
          tx.commit();
          h_.MarkAcked(id);
        }
      } catch (const pqxx::in_doubt_error&) {
        db.reset();  // unknown
      } catch (const std::exception&) {
        db.reset();
        h_.MarkRejected(id);  // failed before COMMIT: nothing was stored
        Sleep(0.05);
      }
      Sleep(0.002);
    }
  }

  History& h_;
  const std::string app_, topic_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// A back-check handler on `address` for producer group "chaos" that answers what the producer
// decided.
std::unique_ptr<TransactionChecker> StartChecker(const std::string& address, Producers& producers) {
  auto c = std::make_unique<TransactionChecker>(
      MakeChannel(address), std::vector<std::string>{"chaos"}, "chaos-checker",
      [&producers](const v1::TransactionCheck& check) { return producers.Decide(check); });
  c->Start();
  return c;
}

// A TCP proxy on 127.0.0.1 in front of PostgreSQL: Cut() closes every connection through it
// and refuses new ones until Restore() (a network partition between brokers and database).
class Proxy {
 public:
  // Listens on `listen_host`:`listen_port` (0: any free port) and forwards to 127.0.0.1:
  // `target_port`.
  explicit Proxy(int target_port, const std::string& listen_host = "127.0.0.1", int listen_port = 0)
      : target_port_(target_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, listen_host.c_str(), &addr.sin_addr);
    addr.sin_port = htons(static_cast<uint16_t>(listen_port));
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 128) != 0) {
      throw std::runtime_error("proxy: cannot listen on " + listen_host + ":" +
                               std::to_string(listen_port));
    }
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~Proxy() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    acceptor_.join();
    Cut();
    for (auto& t : pumps_) t.join();
  }
  int port() const { return port_; }
  void Cut() {
    std::lock_guard<std::mutex> lock(mu_);
    cut_ = true;
    for (int fd : open_) shutdown(fd, SHUT_RDWR);  // the pumps close them
  }
  void Restore() {
    std::lock_guard<std::mutex> lock(mu_);
    cut_ = false;
  }

 private:
  void Accept() {
    while (!stop_) {
      int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (cut_ || stop_) {
        close(client);
        continue;
      }
      int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(server);
        continue;
      }
      open_.insert(client);
      open_.insert(server);
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
    }
  }
  void Pump(int a, int b) {
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    char buf[65536];
    for (bool open = true; open;) {
      if (poll(fds, 2, 500) < 0) break;
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t sent = 0; sent < n;) {
          const ssize_t w = write(fds[1 - i].fd, buf + sent, static_cast<size_t>(n - sent));
          if (w <= 0) {
            open = false;
            break;
          }
          sent += w;
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    open_.erase(a);
    open_.erase(b);
    close(a);
    close(b);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  bool cut_ = false;
  std::set<int> open_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

void CreateDatabase(const Settings& s, const std::string& name) {
  pqxx::connection admin(Conninfo(s, "postgres"));
  pqxx::nontransaction tx(admin);
  tx.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
  tx.exec("CREATE DATABASE " + name);
}

void CreateTopic(const std::string& broker, const std::string& name) {
  Client c(broker);
  v1::TopicConfig t;
  t.set_name(name);
  t.set_queues(4);
  t.set_ordered(true);
  auto r = c.CreateTopic(t);
  if (!r.ok()) throw std::runtime_error("create topic: " + std::string(r.status().message()));
}

// Waits until every group has everything acknowledged, or the hard limit.
void Heal(History& h, const std::vector<std::string>& groups, std::chrono::seconds limit) {
  const auto give_up = Clock::now() + limit;
  while (Clock::now() < give_up) {
    int64_t missing = 0;
    for (const auto& g : groups) missing += h.Missing(g);
    if (missing == 0) return;
    Sleep(0.2);
  }
}

// For a failed run: what the database says about the transactions named in the examples.
void Explain(const std::string& conninfo, const Report& r) {
  try {
    pqxx::connection c(conninfo);
    pqxx::read_transaction tx(c);
    for (const auto& e : r.examples) {
      const auto at = e.find("(transaction ");
      if (at == std::string::npos) continue;
      const std::string ref = e.substr(at + 13, e.find(')', at) - at - 13);
      for (const auto& row : tx.exec_params(
               "SELECT t.txn_id::text, t.state, t.checks_sent, coalesce(string_agg(e.kind || '/' ||"
               " e.actor || '/' || e.detail, ' ; ' ORDER BY e.event_id), '')"
               " FROM transactions t LEFT JOIN transaction_events e USING (txn_id)"
               " WHERE t.check_ref = $1 GROUP BY 1, 2, 3",
               ref)) {
        std::cout << "  " << ref << ": " << row[0].c_str() << " " << row[1].c_str()
                  << " checks_sent=" << row[2].c_str() << " events: " << row[3].c_str() << "\n";
      }
    }
  } catch (const std::exception& e) {
    std::cout << "  (cannot explain: " << e.what() << ")\n";
  }
}

Report BrokerScenario(const Settings& s) {
  CreateDatabase(s, "chaos_broker");
  // network-cut: the brokers' database connections go through the proxy.
  std::unique_ptr<Proxy> proxy;
  std::string broker_db = Conninfo(s, "chaos_broker");
  if (s.scenario == "failover") {
    broker_db = "host=" + s.pg_dir + "," + s.standby_dir + " port=" + std::to_string(s.pg_port) +
                "," + std::to_string(s.standby_port) +
                " user=postgres dbname=chaos_broker target_session_attrs=read-write"
                " connect_timeout=2";
  }
  if (s.scenario == "network-cut") {
    proxy = std::make_unique<Proxy>(s.pg_port);
    broker_db = "host=127.0.0.1 port=" + std::to_string(proxy->port()) +
                " user=postgres dbname=chaos_broker connect_timeout=2";
  }
  const std::vector<std::string> args = {
      "--txn-check-after-ms", "1000", "--txn-check-interval-ms", "1000",
      "--txn-max-checks",     "1000", "--shutdown-grace-ms",     "1000",
      "--log-level",          "warn"};
  std::vector<std::unique_ptr<BrokerProcess>> brokers;
  std::vector<std::string> addresses;
  for (int i = 0; i < 2; ++i) {
    brokers.push_back(std::make_unique<BrokerProcess>(
        broker_db, test::FreePort(),
        s.log_dir + "/ferry-chaos-" + s.scenario + "-broker" + std::to_string(i) + ".log", args));
    addresses.push_back(brokers.back()->address());
  }
  CreateTopic(addresses[0], "chaos");
  History h;
  Producers producers(h, addresses, "chaos", 3);
  auto checker0 = StartChecker(addresses[0], producers);
  auto checker1 = StartChecker(addresses[1], producers);
  Consumers consumers(h, addresses, "g1", "chaos", 2);

  const auto end = Clock::now() + std::chrono::seconds(s.seconds);
  if (s.scenario == "failover") {
    // Under load, halfway: the primary dies; the standby, which has every acknowledged commit
    // (synchronous replication), is promoted.
    Sleep(s.seconds / 2.0);
    Pg(s, "ferry_pg_crash " + s.pg_dir);
    h.AddFault("primary killed (immediate shutdown)");
    Pg(s, "ferry_pg_promote " + s.standby_dir);
    h.AddFault("standby promoted");
    while (Clock::now() < end) Sleep(0.1);
  }
  while (Clock::now() < end) {
    Sleep(s.scenario == "broker-kill"   ? Uniform(1.5, 3)
          : s.scenario == "network-cut" ? Uniform(3, 5)
                                        : Uniform(2, 4));
    if (Clock::now() >= end) break;
    if (s.scenario == "broker-kill") {
      const size_t victim = static_cast<size_t>(Uniform(0, 2)) % 2;
      if (Uniform(0, 1) < 0.7) {
        brokers[victim]->Kill();
        h.AddFault("SIGKILL broker " + std::to_string(victim));
        Sleep(Uniform(0.3, 1));
        brokers[victim]->Start();
      } else {
        brokers[victim]->Signal(SIGSTOP);
        h.AddFault("SIGSTOP broker " + std::to_string(victim));
        Sleep(Uniform(1, 2));
        brokers[victim]->Signal(SIGCONT);
      }
    } else if (s.scenario == "network-cut") {
      proxy->Cut();
      h.AddFault("network cut between brokers and PostgreSQL");
      Sleep(Uniform(4, 6));
      proxy->Restore();
    } else {  // pg-restart
      if (Uniform(0, 1) < 0.5) {
        Pg(s, "ferry_pg_crash " + s.pg_dir);
        h.AddFault("PostgreSQL immediate shutdown");
        Sleep(Uniform(0.5, 1.5));
        Pg(s, "ferry_pg_start " + s.pg_dir + " " + std::to_string(s.pg_port) + " durable");
      } else {
        try {
          pqxx::connection admin(Conninfo(s, "postgres"));
          pqxx::nontransaction tx(admin);
          tx.exec(
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
              " WHERE datname = 'chaos_broker' AND pid <> pg_backend_pid()");
          h.AddFault("pg_terminate_backend of every broker connection");
        } catch (const std::exception&) {
        }
      }
    }
  }
  const auto faults_stopped = Clock::now();
  producers.Stop();
  Heal(h, {"g1"}, std::chrono::seconds(60));
  consumers.Stop();
  checker0->Stop();
  checker1->Stop();
  Report r =
      h.Check(s.scenario, {"g1"}, {"g1"}, faults_stopped, std::chrono::seconds(s.heal_bound_s));
  if (!r.ok()) Explain(Conninfo(s, "chaos_broker"), r);
  return r;
}

// For a failed relay run: where the outbox rows named in the examples are, and the outbox's
// state as a whole.
void ExplainOutbox(const std::string& app, const Report& r) {
  try {
    pqxx::connection c(app);
    pqxx::read_transaction tx(c);
    for (const auto& row : tx.exec("SELECT status, rows, max_attempts FROM ferry_outbox_health")) {
      std::cout << "  outbox " << row[0].c_str() << ": " << row[1].c_str() << " rows, max attempts "
                << row[2].c_str() << "\n";
    }
    for (const auto& e : r.examples) {
      const auto at = e.find(": lost ");
      if (at == std::string::npos) continue;
      const std::string id = e.substr(at + 7);
      for (const auto& row : tx.exec_params(
               "SELECT status, attempts, coalesce(claimed_by, '-'), coalesce(claimed_until::text,"
               " '-'), coalesce(last_error, '-'), coalesce(broker_queue || '/' || broker_offset,"
               " '-'), key, key_seq FROM ferry_outbox WHERE payload = convert_to($1, 'UTF8')",
               id)) {
        std::cout << "  " << id << ": " << row[0].c_str() << " attempts=" << row[1].c_str()
                  << " claimed_by=" << row[2].c_str() << " until=" << row[3].c_str()
                  << " error=" << row[4].c_str() << " at=" << row[5].c_str()
                  << " key=" << row[6].c_str() << "#" << row[7].c_str() << "\n";
      }
    }
  } catch (const std::exception& e) {
    std::cout << "  (cannot explain: " << e.what() << ")\n";
  }
}

Report RelayScenario(const Settings& s) {
  CreateDatabase(s, "chaos_broker");
  CreateDatabase(s, "chaos_app");
  const std::string app = Conninfo(s, "chaos_app");
  if (absl::Status st = relay::MigrateOutbox(app); !st.ok()) {
    throw std::runtime_error(std::string(st.message()));
  }
  std::vector<std::unique_ptr<BrokerProcess>> brokers;
  std::vector<std::string> addresses;
  for (int i = 0; i < 2; ++i) {
    brokers.push_back(std::make_unique<BrokerProcess>(
        Conninfo(s, "chaos_broker"), test::FreePort(),
        s.log_dir + "/ferry-chaos-relay-broker" + std::to_string(i) + ".log",
        std::vector<std::string>{"--log-level", "warn"}));
    addresses.push_back(brokers.back()->address());
  }
  CreateTopic(addresses[0], "chaos");
  std::vector<std::unique_ptr<RelayProcess>> relays;
  for (int i = 0; i < 2; ++i) {
    relays.push_back(std::make_unique<RelayProcess>(
        std::vector<std::string>{"--database-url", app, "--broker", addresses[i], "--lease-ms",
                                 "2000", "--publish-timeout-ms", "1000", "--log-level", "warn"},
        s.log_dir + "/ferry-chaos-relay" + std::to_string(i) + ".log"));
  }
  History h;
  Consumers consumers(h, addresses, "cart", "chaos", 2, app);
  OutboxWriters writers(h, app, "chaos", 3);
  const auto end = Clock::now() + std::chrono::seconds(s.seconds);
  while (Clock::now() < end) {
    Sleep(Uniform(1, 2));
    const size_t victim = static_cast<size_t>(Uniform(0, 2)) % 2;
    relays[victim]->Kill();
    h.AddFault("SIGKILL relay " + std::to_string(victim));
    Sleep(Uniform(0.2, 0.8));
    relays[victim]->Start();
  }
  const auto faults_stopped = Clock::now();
  writers.Stop();
  Heal(h, {"cart"}, std::chrono::seconds(60));
  consumers.Stop();
  h.SetDoubleProcessed(consumers.double_processed());
  Report r =
      h.Check(s.scenario, {"cart"}, {"cart"}, faults_stopped, std::chrono::seconds(s.heal_bound_s));
  if (!r.ok()) ExplainOutbox(app, r);
  return r;
}

// --- High availability: a pg_auto_failover formation (scripts/ha.sh; run.sh starts it) ---

std::string Capture(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  pclose(p);
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  return out;
}

// scripts/ha.sh COMMAND on the scenario's formation; its output.
std::string Ha(const Settings& s, const std::string& command, const std::string& node = "") {
  return Capture(s.root + "/scripts/ha.sh " + command + " " + s.ha_dir + " " + node +
                 " 2>/dev/null");
}

bool HaHealed(const Settings& s) {
  return Shell(s.root + "/scripts/ha.sh healthy " + s.ha_dir + " >/dev/null 2>&1") == 0;
}

bool WaitFor(const std::function<bool()>& done, double seconds) {
  const auto give_up = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < give_up) {
    if (done()) return true;
    Sleep(0.1);
  }
  return done();
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// What a client sees: one small Produce every 50 ms (2 s deadline, the next broker after an
// error), each call's start, end and outcome. Its own topic, outside the checked history.
class Prober {
 public:
  struct Call {
    Clock::time_point start, end;
    bool ok;
  };
  Prober(std::vector<std::string> brokers, std::string topic)
      : thread_([this, brokers, topic] { Run(brokers, topic); }) {}
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // The first acknowledged Produce that started at or after `t`: how long after `t` it ended.
  std::optional<double> FirstAckAfter(Clock::time_point t) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Call& c : calls_) {
      if (c.ok && c.start >= t) return Seconds(c.end - t);
    }
    return std::nullopt;
  }
  // How many calls were acknowledged (answered OK) between `from` and `to`.
  int AckedBetween(Clock::time_point from, Clock::time_point to) {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const Call& c : calls_) n += c.ok && c.end >= from && c.end <= to ? 1 : 0;
    return n;
  }
  // Between `from` and `to`: the longest call (or wait for an acknowledgement) and how many
  // calls were acknowledged.
  std::pair<double, int> Between(Clock::time_point from, Clock::time_point to) {
    std::lock_guard<std::mutex> lock(mu_);
    double longest = 0;
    int acked = 0;
    Clock::time_point last_ok = from;
    for (const Call& c : calls_) {
      if (c.end < from || c.start > to) continue;
      if (c.ok) {
        ++acked;
        longest = std::max(longest, Seconds(c.end - std::max(last_ok, c.start)));
        last_ok = c.end;
      }
    }
    return {std::max(longest, Seconds(std::min(to, Clock::now()) - last_ok)), acked};
  }

 private:
  void Run(const std::vector<std::string>& brokers, const std::string& topic) {
    Failover f(brokers);
    for (int64_t n = 0; !stop_; ++n) {
      v1::ProduceRequest req;
      req.set_topic(topic);
      auto* m = req.add_messages();
      m->set_payload("probe");
      m->set_dedup_id("probe-" + std::to_string(n));
      const auto start = Clock::now();
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      v1::ProduceResponse resp;
      const bool ok = f.now().broker().Produce(&ctx, req, &resp).ok();
      {
        std::lock_guard<std::mutex> lock(mu_);
        calls_.push_back(Call{start, Clock::now(), ok});
      }
      if (!ok) f.Next();
      Sleep(0.05);
    }
  }

  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Call> calls_;
  std::thread thread_;
};

// One broker's gRPC health, every 100 ms.
class HealthWatch {
 public:
  explicit HealthWatch(const std::string& broker)
      : stub_(grpc::health::v1::Health::NewStub(MakeChannel(broker))), thread_([this] { Run(); }) {}
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // After `t`: when health first read NOT_SERVING, and when SERVING again after that (seconds
  // after `t`; nullopt: never).
  std::pair<std::optional<double>, std::optional<double>> OutageAfter(Clock::time_point t) {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<double> down, up;
    for (const auto& [at, serving] : samples_) {
      if (at < t) continue;
      if (!down && !serving) down = Seconds(at - t);
      if (down && serving) {
        up = Seconds(at - t);
        break;
      }
    }
    return {down, up};
  }
  bool AlwaysServing(Clock::time_point from, Clock::time_point to) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [at, serving] : samples_) {
      if (at >= from && at <= to && !serving) return false;
    }
    return true;
  }

 private:
  void Run() {
    while (!stop_) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      grpc::health::v1::HealthCheckResponse resp;
      const grpc::Status st = stub_->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp);
      const bool serving =
          st.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
      {
        std::lock_guard<std::mutex> lock(mu_);
        samples_.emplace_back(Clock::now(), serving);
      }
      Sleep(0.1);
    }
  }

  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::pair<Clock::time_point, bool>> samples_;
  std::thread thread_;
};

// Calls that must be idempotent across a failover: an EndTransaction and a consumer's Commit
// (ACK) prepared on the old primary and sent after the switch, twice each.
struct IdempotencyProbe {
  std::string txn_id;
  std::vector<std::string> receipts;
};

IdempotencyProbe PrepareIdempotencyProbe(Client& c, int k) {
  IdempotencyProbe p;
  v1::ProduceRequest req;
  req.set_topic("idem");
  req.mutable_transactional()->set_producer_group("chaos-idem");
  req.mutable_transactional()->set_check_ref("idem-" + std::to_string(k));
  auto* m = req.add_messages();
  m->set_payload("txn-" + std::to_string(k));
  m->set_dedup_id("txn-" + std::to_string(k));
  auto produced = c.Produce(req);
  if (produced.ok()) p.txn_id = produced->transaction_id();
  v1::ProduceRequest plain;
  plain.set_topic("idem-acks");
  auto* a = plain.add_messages();
  a->set_payload("ack-" + std::to_string(k));
  if (!c.Produce(plain).ok()) return p;
  v1::ConsumeRequest creq;
  creq.set_group("idem");
  creq.set_topic("idem-acks");
  creq.set_max_messages(10);
  creq.set_max_wait_ms(2000);
  creq.set_visibility_timeout_ms(300000);  // not redelivered while the failover lasts
  auto got = c.Consume(creq);
  if (got.ok()) {
    for (const auto& d : got->messages()) p.receipts.push_back(d.receipt());
  }
  return p;
}

// Sends the probe's EndTransaction COMMIT and ACKs twice (retrying while unavailable); returns
// what went wrong, or "".
std::string CheckIdempotency(Failover& f, const IdempotencyProbe& p) {
  if (p.txn_id.empty() || p.receipts.empty()) return "could not prepare (before the kill)";
  for (int round = 0; round < 2; ++round) {
    bool ended = false, acked = false;
    std::string why;
    for (int attempt = 0; attempt < 100 && !(ended && acked); ++attempt) {
      if (!ended) {
        v1::EndTransactionRequest end;
        end.set_transaction_id(p.txn_id);
        end.set_decision(v1::TRANSACTION_COMMIT);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
        v1::EndTransactionResponse resp;
        const grpc::Status st = f.now().broker().EndTransaction(&ctx, end, &resp);
        if (st.ok()) {
          ended = true;
        } else if (st.error_code() != grpc::StatusCode::UNAVAILABLE &&
                   st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
          return "EndTransaction COMMIT (round " + std::to_string(round + 1) +
                 "): " + st.error_message();
        }
      }
      if (ended && !acked) {
        auto r = f.now().Ack("idem", p.receipts);
        if (r.ok()) {
          for (const auto& res : r->results()) {
            if (res.status() != v1::COMMITTED && res.status() != v1::ALREADY_COMMITTED) {
              return "Commit (round " + std::to_string(round + 1) + "): status " +
                     v1::CommitStatus_Name(res.status());
            }
          }
          acked = true;
        }
      }
      if (!(ended && acked)) {
        f.Next();
        Sleep(0.2);
      }
    }
    if (!(ended && acked)) return "EndTransaction/Commit still unavailable after 100 tries";
  }
  return "";
}

// ha-primary-kill: the broker workload (producers with transactions, consumers, back-checks)
// and the outbox workload (application transactions, two relays, inbox consumers) on a
// formation of three nodes; `kills` times: once the formation has healed, the primary node dies
// (SIGKILL of its postmaster and keeper), a standby is promoted, the dead node is started
// again (it rejoins as a standby). ha-standby-kill: the same, but a standby dies; writes must
// go on without a pause. Both: the data checks of every scenario, plus per fault what a client
// saw (first acknowledged Produce, health) and the idempotency of EndTransaction and Commit.
std::vector<Report> HaScenario(const Settings& s, std::vector<std::string>& notes) {
  const bool partition = s.scenario == "ha-partition";
  const bool primary_kill = s.scenario == "ha-primary-kill" || partition;
  // ha-partition: node N is known to the monitor and to the other nodes as 127.0.0.(10+N) and
  // reaches the monitor through 127.0.0.(20+N) (scripts/ha.sh, FERRY_HA_ADVERTISE): proxies
  // that this program cuts. Brokers reach every node directly on 127.0.0.1. So the formation
  // is started here, after the proxies.
  std::map<std::string, std::vector<std::unique_ptr<Proxy>>> proxies;  // node -> its two
  if (partition) {
    for (int n = 1; n <= 3; ++n) {
      auto& p = proxies["node" + std::to_string(n)];
      p.push_back(std::make_unique<Proxy>(s.pg_port + n, "127.0.0." + std::to_string(10 + n),
                                          s.pg_port + n));
      p.push_back(
          std::make_unique<Proxy>(s.pg_port, "127.0.0." + std::to_string(20 + n), s.pg_port));
    }
    if (Shell("FERRY_HA_ADVERTISE=1 " + s.root + "/scripts/ha.sh start " + s.ha_dir + " " +
              std::to_string(s.pg_port) + " >/dev/null") != 0) {
      throw std::runtime_error("the formation did not start");
    }
  }
  CreateDatabase(s, "chaos_broker");
  CreateDatabase(s, "chaos_app");
  const std::string app = Conninfo(s, "chaos_app");
  if (absl::Status st = relay::MigrateOutbox(app); !st.ok()) {
    throw std::runtime_error(std::string(st.message()));
  }
  const std::vector<std::string> args = {"--txn-check-after-ms",
                                         "1000",
                                         "--txn-check-interval-ms",
                                         "1000",
                                         "--txn-max-checks",
                                         "1000",
                                         "--shutdown-grace-ms",
                                         "1000",
                                         "--health-interval-ms",
                                         "200",
                                         "--log-level",
                                         "warn"};
  std::vector<std::unique_ptr<BrokerProcess>> brokers;
  std::vector<std::string> addresses;
  for (int i = 0; i < 2; ++i) {
    brokers.push_back(std::make_unique<BrokerProcess>(
        Conninfo(s, "chaos_broker"), test::FreePort(),
        s.log_dir + "/ferry-chaos-" + s.scenario + "-broker" + std::to_string(i) + ".log", args));
    addresses.push_back(brokers.back()->address());
  }
  for (const char* topic : {"chaos", "outbox", "probe", "idem", "idem-acks"}) {
    CreateTopic(addresses[0], topic);
  }
  std::vector<std::unique_ptr<RelayProcess>> relays;
  for (int i = 0; i < 2; ++i) {
    relays.push_back(std::make_unique<RelayProcess>(
        std::vector<std::string>{"--database-url", app, "--broker", addresses[i], "--lease-ms",
                                 "2000", "--publish-timeout-ms", "1000", "--log-level", "warn"},
        s.log_dir + "/ferry-chaos-" + s.scenario + "-relay" + std::to_string(i) + ".log"));
  }
  History hb, hr;
  Producers producers(hb, addresses, "chaos", 3);
  auto checker0 = StartChecker(addresses[0], producers);
  auto checker1 = StartChecker(addresses[1], producers);
  Consumers consumers(hb, addresses, "g1", "chaos", 2);
  OutboxWriters writers(hr, app, "outbox", 3);
  Consumers carts(hr, addresses, "cart", "outbox", 2, app);
  Prober prober(addresses, "probe");
  HealthWatch health(addresses[0]);
  Client idem_client(addresses[0]);
  idem_client.set_timeout(std::chrono::seconds(5));
  Failover idem_failover(addresses);

  std::vector<std::string> failures;
  struct Kill {
    std::string victim;
    Clock::time_point at, back, promoted_at;
    std::string promoted;
    double new_primary_s = -1;
    std::string idempotency;
  };
  std::vector<Kill> kills;
  Sleep(3);
  for (int k = 1; k <= s.kills; ++k) {
    if (!WaitFor([&] { return HaHealed(s); }, 180)) {
      failures.push_back("the formation did not heal before kill " + std::to_string(k));
      break;
    }
    Sleep(2);
    Kill kill;
    kill.victim = Ha(s, primary_kill ? "primary" : "secondary");
    if (kill.victim.empty()) {
      failures.push_back("no node to kill before kill " + std::to_string(k));
      break;
    }
    const IdempotencyProbe idem =
        primary_kill && !partition ? PrepareIdempotencyProbe(idem_client, k) : IdempotencyProbe{};
    if (partition) {
      for (auto& p : proxies[kill.victim]) p->Cut();
    } else {
      Ha(s, "kill", kill.victim);
    }
    kill.at = Clock::now();
    const std::string what =
        partition ? kill.victim + " (primary) cut off from the monitor and the standbys"
                  : kill.victim + (primary_kill ? " (primary)" : " (standby)") +
                        " killed: postmaster and keeper SIGKILLed";
    hb.AddFault(what);
    hr.AddFault(what);
    if (primary_kill) {
      if (WaitFor(
              [&] {
                kill.promoted = Ha(s, "primary");
                return !kill.promoted.empty() && kill.promoted != kill.victim;
              },
              180)) {
        kill.promoted_at = Clock::now();
        kill.new_primary_s = Seconds(kill.promoted_at - kill.at);
      } else {
        failures.push_back("no new primary within 180 s of killing " + kill.victim);
      }
      if (partition) {
        // The partition outlasts the promotion a little: the old primary still runs and
        // brokers may still reach it, but it can confirm no commit.
        Sleep(5);
      } else {
        kill.idempotency = CheckIdempotency(idem_failover, idem);
        if (!kill.idempotency.empty()) {
          failures.push_back("failover " + std::to_string(k) + ": " + kill.idempotency);
        }
      }
    } else {
      Sleep(8);  // writes go on with the other synchronous standby
    }
    kill.back = Clock::now();
    if (partition) {
      for (auto& p : proxies[kill.victim]) p->Restore();  // it rejoins as a standby
    } else {
      Ha(s, "run-node", kill.victim);  // the machine comes back; it rejoins as a standby
    }
    kills.push_back(kill);
  }
  if (!WaitFor([&] { return HaHealed(s); }, 180)) {
    failures.push_back("the formation did not heal after the last kill");
  }
  const auto faults_stopped = Clock::now();
  producers.Stop();
  writers.Stop();
  Heal(hb, {"g1"}, std::chrono::seconds(60));
  Heal(hr, {"cart"}, std::chrono::seconds(60));
  consumers.Stop();
  carts.Stop();
  checker0->Stop();
  checker1->Stop();
  Sleep(1);
  prober.Stop();
  health.Stop();

  // Per fault: what a client saw.
  for (size_t i = 0; i < kills.size(); ++i) {
    const Kill& k = kills[i];
    char line[512];
    const auto first_ack = prober.FirstAckAfter(k.at);
    const auto [down, up] = health.OutageAfter(k.at);
    if (partition) {
      // Nothing may be acknowledged between the cut (plus half a second for answers already
      // on their way) and the promotion (less a second: this program sees it late): the old
      // primary can reach no standby, so no commit of its can be confirmed.
      const int acked = prober.AckedBetween(k.at + std::chrono::milliseconds(500),
                                            k.promoted_at - std::chrono::seconds(1));
      std::snprintf(line, sizeof(line),
                    "partition %zu: %s cut off -> %s primary after %.1f s; Produce calls "
                    "acknowledged in between: %d; first acknowledged Produce after %.1f s; "
                    "health NOT_SERVING from +%.1f s to +%.1f s",
                    i + 1, k.victim.c_str(), k.promoted.c_str(), k.new_primary_s, acked,
                    first_ack.value_or(-1), down.value_or(-1), up.value_or(-1));
      if (acked > 0) {
        failures.push_back("the partitioned primary acknowledged " + std::to_string(acked) +
                           " Produce calls");
      }
      if (!first_ack) failures.push_back("no Produce acknowledged after the partition");
      if (!down) failures.push_back("health never read NOT_SERVING after the partition");
      if (!up) failures.push_back("health did not come back to SERVING after the partition");
    } else if (primary_kill) {
      std::snprintf(line, sizeof(line),
                    "failover %zu: %s killed -> %s primary after %.1f s; first acknowledged "
                    "Produce after %.1f s; health NOT_SERVING from +%.1f s to +%.1f s; "
                    "EndTransaction and Commit sent twice after the switch: %s",
                    i + 1, k.victim.c_str(), k.promoted.c_str(), k.new_primary_s,
                    first_ack.value_or(-1), down.value_or(-1), up.value_or(-1),
                    k.idempotency.empty() ? "ok" : k.idempotency.c_str());
      if (!first_ack) failures.push_back("no Produce acknowledged after killing " + k.victim);
      if (!down) failures.push_back("health never read NOT_SERVING after killing " + k.victim);
      if (!up) failures.push_back("health did not come back to SERVING after " + k.victim);
    } else {
      const auto [longest, acked] = prober.Between(k.at, k.back);
      const bool serving = health.AlwaysServing(k.at, k.back);
      std::snprintf(line, sizeof(line),
                    "standby %zu: %s killed for %.1f s: %d Produce calls acknowledged meanwhile, "
                    "longest wait %.2f s, health %s",
                    i + 1, k.victim.c_str(), Seconds(k.back - k.at), acked, longest,
                    serving ? "SERVING throughout" : "went NOT_SERVING");
      if (acked == 0 || longest > 2.0) {
        failures.push_back("writes paused while standby " + k.victim + " was down");
      }
      if (!serving) failures.push_back("health went NOT_SERVING while a standby was down");
    }
    notes.push_back(line);
  }
  hr.SetDoubleProcessed(carts.double_processed());
  Report rb =
      hb.Check(s.scenario, {"g1"}, {"g1"}, faults_stopped, std::chrono::seconds(s.heal_bound_s));
  Report rr = hr.Check(s.scenario + "/relay", {"cart"}, {"cart"}, faults_stopped,
                       std::chrono::seconds(s.heal_bound_s));
  rb.service_failures = failures;
  if (!rb.ok()) Explain(Conninfo(s, "chaos_broker"), rb);
  if (!rr.ok()) ExplainOutbox(app, rr);
  return {rb, rr};
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"ferry-chaos: a workload under faults, checked against Ferry's contract"};
  app.add_option("--scenario", s.scenario,
                 "broker-kill | pg-restart | network-cut | failover | relay-kill | "
                 "ha-primary-kill | ha-standby-kill | ha-partition")
      ->required();
  app.add_option("--seconds", s.seconds, "how long faults are injected")->capture_default_str();
  app.add_option("--heal-bound", s.heal_bound_s,
                 "every acknowledged message must arrive within this after the faults stop (s)")
      ->capture_default_str();
  app.add_option("--pg-dir", s.pg_dir, "the cluster's folder (scripts/pg.sh)")->required();
  app.add_option("--pg-port", s.pg_port, "its port")->required();
  app.add_option("--root", s.root, "the repository (for scripts/pg.sh)")->required();
  app.add_option("--log-dir", s.log_dir, "process logs go here")->capture_default_str();
  app.add_option("--standby-dir", s.standby_dir, "failover: the synchronous standby's folder");
  app.add_option("--standby-port", s.standby_port, "failover: its port");
  app.add_option("--ha-dir", s.ha_dir,
                 "ha-*: the pg_auto_failover formation's folder (scripts/ha.sh; --pg-port is its "
                 "base port)");
  app.add_option("--kills", s.kills, "ha-*: nodes killed one after another")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  signal(SIGPIPE, SIG_IGN);
  setenv("FERRY_TEST_PG", Conninfo(s, "postgres").c_str(), 1);
  std::vector<Report> reports;
  std::vector<std::string> notes;
  try {
    if (s.scenario == "relay-kill") {
      reports = {RelayScenario(s)};
    } else if (s.scenario == "broker-kill" || s.scenario == "pg-restart" ||
               s.scenario == "network-cut" || s.scenario == "failover") {
      reports = {BrokerScenario(s)};
    } else if (s.scenario == "ha-primary-kill" || s.scenario == "ha-standby-kill" ||
               s.scenario == "ha-partition") {
      if (s.ha_dir.empty()) throw std::runtime_error("--ha-dir is required");
      reports = HaScenario(s, notes);
    } else {
      std::cerr << "unknown scenario " << s.scenario << "\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::cerr << "ferry-chaos " << s.scenario << ": " << e.what() << "\n";
    return 1;
  }
  std::cout << Table(reports);
  bool ok = true;
  for (const Report& r : reports) {
    std::cout << r.scenario << ": faults: " << r.faults
              << "; acknowledged after the first fault: " << r.acked_after_first_fault
              << "; all delivered " << r.healed_after_s << " s after the faults stopped\n";
    for (const auto& e : r.examples) std::cout << "  " << e << "\n";
    for (const auto& f : r.service_failures) std::cout << "  FAILED: " << f << "\n";
    ok = ok && r.ok();
  }
  for (const auto& n : notes) std::cout << n << "\n";
  return ok ? 0 : 1;
}
