// ferry-bench: Ferry's standard workloads against a running broker (and relay), each reported
// also as a ratio to what PostgreSQL itself does with the same rows on the same machine.
//
//   W1 produce   N messages of 256 bytes, batches of 100, 4 producers, one topic of 4 queues
//   W2 consume   drain them with one group of 4 consumers, one ACK call per batch
//   W3 latency   2,000 messages/s for 10 s while consuming: produce call -> consumer receipt
//   W4 relay     N outbox rows by 4 connections in transactions of 10 -> rows/s relayed;
//                1,000 rows/s for 10 s -> commit-to-sent latency
//   W5 backlog   W1 and W2 again with B messages already stored
//   W6 snapshot  steady produce + consume (2 producers, 4 consumers, backlog kept under 20,000)
//                for --w6-before-s, then for --w6-hold-s while another connection holds a
//                REPEATABLE READ snapshot (a running pg_sleep): the rate of every 30 s window
//                against the rate before, and how much the broker's tables grew meanwhile
//   pg-limit     the same rows straight into a plain table by 4 connections, batches of 100
//                from arrays, and read back in offset order in pages of 100
// Broker CPU seconds per million messages and peak RSS come from /proc/<--broker-pid>.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "client/client.h"
#include "common/pg/arrays.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kThreads = 4;
constexpr int kBatch = 100;
constexpr size_t kPayloadBytes = 256;

struct Options {
  std::string broker = "127.0.0.1:7420";
  std::string broker_db, app_db;
  int broker_pid = 0;
  int64_t messages = 200000;
  int64_t backlog = 5000000;
  std::string out;
  std::string only = "pg,w1,w2,w3,w4,w5,w6";
  int w6_before_s = 60;
  int w6_hold_s = 300;
  int postmaster = 0;  // found through the broker database
  std::string command_line;
};

struct ProcStat {
  double cpu_s = 0;
  long peak_rss_kb = 0;
};

// The fields of /proc/<pid>/stat after the command name: [0] is field 3 (state), [1] the
// parent, [11] utime, [12] stime, [13] cutime, [14] cstime. Empty if the process is gone.
std::vector<std::string> StatFields(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  const auto close = s.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream rest(s.substr(close + 2));
  for (std::string f; rest >> f;) out.push_back(f);
  return out;
}

ProcStat ReadProc(int pid) {
  ProcStat p;
  if (pid <= 0) return p;
  const auto f = StatFields(pid);
  if (f.size() > 12) {
    p.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / sysconf(_SC_CLK_TCK);
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) p.peak_rss_kb = std::stol(line.substr(6));
  }
  return p;
}

// CPU seconds of a PostgreSQL server: the postmaster, its children alive now, and the
// children that already exited (cutime/cstime of the postmaster).
double PostgresCpuSeconds(int postmaster) {
  if (postmaster <= 0) return 0;
  const double tick = sysconf(_SC_CLK_TCK);
  double total = 0;
  const auto own = StatFields(postmaster);
  if (own.size() > 14) {
    total +=
        (std::stod(own[11]) + std::stod(own[12]) + std::stod(own[13]) + std::stod(own[14])) / tick;
  }
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto f = StatFields(std::stoi(name));
    if (f.size() > 12 && f[1] == std::to_string(postmaster)) {
      total += (std::stod(f[11]) + std::stod(f[12])) / tick;
    }
  }
  return total;
}

int PostmasterPid(const std::string& database_url) {
  try {
    pqxx::connection c(database_url);
    pqxx::nontransaction tx(c);
    const auto f = StatFields(tx.exec("SELECT pg_backend_pid()")[0][0].as<int>());
    return f.size() > 1 ? std::stoi(f[1]) : 0;
  } catch (const std::exception&) {
    return 0;  // another machine: no PostgreSQL CPU figures
  }
}

// Broker and PostgreSQL CPU over a span of a workload.
struct CpuMeter {
  int broker_pid, postmaster;
  double broker0, pg0;
  Clock::time_point t0;
  CpuMeter(int broker, int pm)
      : broker_pid(broker),
        postmaster(pm),
        broker0(ReadProc(broker).cpu_s),
        pg0(PostgresCpuSeconds(pm)),
        t0(Clock::now()) {}
  double Broker() const { return ReadProc(broker_pid).cpu_s - broker0; }
  double Postgres() const { return PostgresCpuSeconds(postmaster) - pg0; }
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Payload(int64_t stamp_us) {
  std::string p(kPayloadBytes, 'x');
  std::memcpy(p.data(), &stamp_us, sizeof(stamp_us));
  return p;
}

void Progress(const std::string& what, int64_t done, int64_t total) {
  std::cerr << "\r  " << what << " " << done << "/" << total << "        " << std::flush;
}

// Runs `body(thread, done)` on kThreads threads, showing progress until `total` are done.
// Returns the seconds from the start to the moment the last thread finished (measured by the
// threads themselves, not by the progress loop, which only looks four times a second).
template <typename Body>
double RunTimed(const std::string& label, int64_t total, Body body) {
  std::atomic<int64_t> done{0};
  std::vector<Clock::time_point> finished(kThreads);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      body(t, done);
      finished[t] = Clock::now();
    });
  }
  while (done.load() < total) {
    Progress(label, done.load(), total);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  for (auto& th : threads) th.join();
  Progress(label, done.load(), total);
  std::cerr << "\n";
  return Seconds(*std::max_element(finished.begin(), finished.end()) - start);
}

struct Result {
  std::string name;
  double rate = 0;  // per second
  std::string unit;
  std::string detail;
  double cpu_per_million = -1;     // broker
  double pg_cpu_per_million = -1;  // PostgreSQL
};

void SetCpu(const Options& o, const CpuMeter& m, int64_t messages, Result& r) {
  if (o.broker_pid > 0) r.cpu_per_million = m.Broker() * 1e6 / messages;
  if (o.postmaster > 0) r.pg_cpu_per_million = m.Postgres() * 1e6 / messages;
}

struct Percentiles {
  double p50, p99, p999, max;
};

Percentiles Percentile(std::vector<double> v) {
  if (v.empty()) return {0, 0, 0, 0};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  return {at(0.5), at(0.99), at(0.999), v.back()};
}

void CreateTopic(ferry::Client& c, const std::string& name, int queues = 4) {
  ferry::v1::TopicConfig t;
  t.set_name(name);
  t.set_queues(queues);
  (void)c.DeleteTopic(name);
  auto r = c.CreateTopic(t);
  if (!r.ok()) throw std::runtime_error("create topic: " + std::string(r.status().message()));
}

Result Produce(const Options& o, const std::string& topic, const std::string& label,
               int queues = 4) {
  ferry::Client admin(o.broker);
  CreateTopic(admin, topic, queues);
  const int64_t batches = o.messages / kBatch;
  std::atomic<int64_t> next{0};
  const CpuMeter cpu(o.broker_pid, o.postmaster);
  const double secs = RunTimed(label, batches * kBatch, [&](int, std::atomic<int64_t>& done) {
    ferry::Client c(o.broker);
    for (int64_t b = next++; b < batches; b = next++) {
      ferry::v1::ProduceRequest req;
      req.set_topic(topic);
      for (int i = 0; i < kBatch; ++i) req.add_messages()->set_payload(Payload(NowUs()));
      while (!c.Produce(req).ok()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      done += kBatch;
    }
  });
  Result r{label, batches * kBatch / secs, "messages/s",
           std::to_string(batches * kBatch) + " messages in " + std::to_string(secs).substr(0, 5) +
               " s"};
  SetCpu(o, cpu, batches * kBatch, r);
  return r;
}

Result Consume(const Options& o, const std::string& topic, const std::string& group,
               const std::string& label) {
  const int64_t total = o.messages / kBatch * kBatch;
  const CpuMeter cpu(o.broker_pid, o.postmaster);
  const double secs = RunTimed(label, total, [&](int, std::atomic<int64_t>& done) {
    ferry::Client c(o.broker);
    while (done.load() < total) {
      ferry::v1::ConsumeRequest req;
      req.set_group(group);
      req.set_topic(topic);
      req.set_max_messages(kBatch);
      req.set_max_wait_ms(500);
      req.set_visibility_timeout_ms(60000);
      auto got = c.Consume(req);
      if (!got.ok() || got->messages_size() == 0) continue;
      std::vector<std::string> receipts;
      for (const auto& m : got->messages()) receipts.push_back(m.receipt());
      while (!c.Ack(group, receipts).ok())
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      done += got->messages_size();
    }
  });
  Result r{label, total / secs, "messages/s",
           std::to_string(total) + " messages in " + std::to_string(secs).substr(0, 5) + " s"};
  SetCpu(o, cpu, total, r);
  return r;
}

Result Latency(const Options& o, const std::string& topic, const std::string& label, int queues) {
  ferry::Client admin(o.broker);
  CreateTopic(admin, topic, queues);
  {  // the group exists before the first message
    ferry::v1::ConsumeRequest req;
    req.set_group(topic);
    req.set_topic(topic);
    (void)admin.Consume(req);
  }
  constexpr int kRate = 2000, kSeconds = 10, kPerSend = 10;
  const int64_t total = static_cast<int64_t>(kRate) * kSeconds;
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::atomic<int64_t> received{0};
  std::vector<std::thread> consumers;
  for (int t = 0; t < 2; ++t) {
    consumers.emplace_back([&] {
      ferry::Client c(o.broker);
      const auto give_up = Clock::now() + std::chrono::seconds(kSeconds + 20);
      while (received.load() < total && Clock::now() < give_up) {
        ferry::v1::ConsumeRequest req;
        req.set_group(topic);
        req.set_topic(topic);
        req.set_max_messages(kBatch);
        req.set_max_wait_ms(1000);
        auto got = c.Consume(req);
        const int64_t now = NowUs();
        if (!got.ok()) continue;
        std::vector<std::string> receipts;
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto& m : got->messages()) {
            int64_t sent = 0;
            std::memcpy(&sent, m.payload().data(), sizeof(sent));
            latencies_ms.push_back((now - sent) / 1000.0);
            receipts.push_back(m.receipt());
          }
        }
        received += got->messages_size();
        if (!receipts.empty()) (void)c.Ack(topic, receipts);
      }
    });
  }
  ferry::Client producer(o.broker);
  const CpuMeter cpu(o.broker_pid, o.postmaster);
  auto next = Clock::now();
  std::vector<double> produce_ms;
  for (int64_t sent = 0; sent < total; sent += kPerSend) {
    std::this_thread::sleep_until(next);
    next += std::chrono::microseconds(1000000 * kPerSend / kRate);
    ferry::v1::ProduceRequest req;
    req.set_topic(topic);
    for (int i = 0; i < kPerSend; ++i) req.add_messages()->set_payload(Payload(NowUs()));
    const int64_t t0 = NowUs();
    (void)producer.Produce(req);
    produce_ms.push_back((NowUs() - t0) / 1000.0);
    if (sent % 2000 == 0) Progress(label + " at 2,000 msg/s", sent, total);
  }
  const double span = Seconds(Clock::now() - cpu.t0);
  const double broker_cores = cpu.Broker() / span, pg_cores = cpu.Postgres() / span;
  for (auto& t : consumers) t.join();
  std::cerr << "\n";
  const Percentiles p = Percentile(latencies_ms);
  const Percentiles pp = Percentile(produce_ms);
  std::ostringstream d;
  d << std::fixed << std::setprecision(1) << "p50 " << p.p50 << " ms, p99 " << p.p99 << " ms, p999 "
    << p.p999 << " ms, max " << p.max << " ms (" << latencies_ms.size()
    << " messages); the produce call alone: p50 " << pp.p50 << " ms, p99 " << pp.p99
    << " ms; CPU while sending: broker " << std::setprecision(2) << broker_cores << " + PostgreSQL "
    << pg_cores << " = " << broker_cores + pg_cores << " cores";
  return Result{label, p.p99, "ms p99", d.str()};
}

std::vector<Result> Relay(const Options& o) {
  std::vector<Result> out;
  ferry::Client admin(o.broker);
  CreateTopic(admin, "w4");
  {
    pqxx::connection c(o.app_db);
    pqxx::work tx(c);
    tx.exec("DELETE FROM ferry_outbox");
    tx.commit();
  }
  auto wait_sent = [&](const std::string& label, int64_t total) {
    pqxx::connection c(o.app_db);
    for (;;) {
      pqxx::nontransaction tx(c);
      const int64_t open =
          tx.exec("SELECT count(*) FROM ferry_outbox WHERE status <> 'sent'")[0][0].as<int64_t>();
      Progress(label, total - open, total);
      if (open == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::cerr << "\n";
  };
  const int64_t txns = o.messages / 10;
  std::atomic<int64_t> next{0};
  const auto start = Clock::now();
  std::vector<std::thread> writers;
  const std::string payload(kPayloadBytes, 'x');
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&] {
      pqxx::connection c(o.app_db);
      for (int64_t i = next++; i < txns; i = next++) {
        pqxx::work tx(c);
        tx.exec_params(
            "INSERT INTO ferry_outbox (topic, payload) SELECT 'w4', convert_to($1, 'UTF8')"
            " FROM generate_series(1, 10)",
            payload);
        tx.commit();
      }
    });
  }
  for (auto& t : writers) t.join();
  const double insert_secs = Seconds(Clock::now() - start);
  wait_sent("W4 relay throughput", txns * 10);
  double secs = Seconds(Clock::now() - start);
  {  // exact span on the database's clock: first insert to last sent
    pqxx::connection c(o.app_db);
    pqxx::nontransaction tx(c);
    secs =
        tx.exec("SELECT extract(epoch FROM max(sent_at) - min(created_at)) FROM ferry_outbox")[0][0]
            .as<double>(secs);
  }
  out.push_back(Result{"W4 relay", txns * 10 / secs, "rows/s",
                       std::to_string(txns * 10) +
                           " rows, first insert to last sent; the 4"
                           " writers alone inserted " +
                           std::to_string(static_cast<int64_t>(txns * 10 / insert_secs)) +
                           " rows/s"});
  {
    pqxx::connection c(o.app_db);
    pqxx::work tx(c);
    tx.exec("DELETE FROM ferry_outbox");
    tx.commit();
  }
  pqxx::connection c(o.app_db);
  auto next_at = Clock::now();
  for (int i = 0; i < 10000; ++i) {
    std::this_thread::sleep_until(next_at);
    next_at += std::chrono::milliseconds(1);
    pqxx::work tx(c);
    tx.exec_params(
        "INSERT INTO ferry_outbox (topic, payload) VALUES ('w4', convert_to($1, 'UTF8'))", payload);
    tx.commit();
    if (i % 1000 == 0) Progress("W4 relay latency at 1,000 rows/s", i, 10000);
  }
  std::cerr << "\n";
  wait_sent("W4 relay latency drain", 10000);
  pqxx::nontransaction tx(c);
  auto r = tx.exec(
      "SELECT 1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY sent_at - "
      "created_at)),"
      " 1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY sent_at - "
      "created_at)),"
      " 1000 * extract(epoch FROM max(sent_at - created_at)) FROM ferry_outbox");
  std::ostringstream d;
  d << std::fixed << std::setprecision(1) << "commit to sent: p50 " << r[0][0].as<double>()
    << " ms, p99 " << r[0][1].as<double>() << " ms, max " << r[0][2].as<double>() << " ms";
  out.push_back(Result{"W4 relay latency", r[0][1].as<double>(), "ms p99", d.str()});
  return out;
}

std::vector<Result> PgLimit(const Options& o) {
  {
    pqxx::connection c(o.broker_db);
    pqxx::work tx(c);
    tx.exec(
        "DROP TABLE IF EXISTS bench_raw; CREATE TABLE bench_raw (q int, off bigint,"
        " payload bytea, PRIMARY KEY (q, off))");
    tx.commit();
  }
  const int64_t per_thread = o.messages / kThreads;
  const std::string payload(kPayloadBytes, 'x');
  auto run = [&](const std::string& label, auto body) {
    return per_thread * kThreads / RunTimed(label, per_thread * kThreads, body);
  };
  const double insert = run("pg-limit insert", [&](int t, std::atomic<int64_t>& done) {
    pqxx::connection c(o.broker_db);
    for (int64_t off = 0; off < per_thread; off += kBatch) {
      std::vector<int64_t> offsets;
      std::vector<const std::string*> payloads;
      for (int i = 0; i < kBatch; ++i) {
        offsets.push_back(off + i);
        payloads.push_back(&payload);
      }
      pqxx::work tx(c);
      tx.exec_params(
          "INSERT INTO bench_raw SELECT $1, o, p FROM unnest($2::bigint[], $3::bytea[])"
          " AS x(o, p)",
          t, ferry::pg::IntArray(offsets), ferry::pg::ByteaArray(payloads));
      tx.commit();
      done += kBatch;
    }
  });
  const double read = run("pg-limit read", [&](int t, std::atomic<int64_t>& done) {
    pqxx::connection c(o.broker_db);
    for (int64_t off = 0; off < per_thread; off += kBatch) {
      pqxx::work tx(c);
      auto r = tx.exec_params(
          "SELECT off, payload FROM bench_raw WHERE q = $1 AND off >= $2"
          " ORDER BY off LIMIT 100",
          t, off);
      for (const auto& row : r) (void)pqxx::binarystring(row[1]).size();
      tx.commit();
      done += static_cast<int64_t>(r.size());
    }
  });
  {  // gone before the next workload, so autovacuum does not work on it during W1
    pqxx::connection c(o.broker_db);
    pqxx::nontransaction tx(c);
    tx.exec("DROP TABLE bench_raw");
  }
  return {Result{"pg-limit insert", insert, "rows/s", "4 connections, 100 rows per transaction"},
          Result{"pg-limit read", read, "rows/s", "4 connections, pages of 100 by offset"}};
}

void Prefill(const Options& o) {
  ferry::Client admin(o.broker);
  CreateTopic(admin, "backlog");
  std::cerr << "  W5: storing " << o.backlog << " messages in topic backlog (SQL, one pass)\n";
  pqxx::connection c(o.broker_db);
  pqxx::work tx(c);
  const int64_t per_queue = o.backlog / 4;
  tx.exec_params(
      "WITH t AS (SELECT topic_id FROM topics WHERE name = 'backlog')"
      " INSERT INTO messages (topic_id, queue_id, msg_offset, segment, payload)"
      " SELECT t.topic_id, q, o, ferry_current_segment(), convert_to(repeat('x', 256), 'UTF8')"
      " FROM t, generate_series(0, 3) q, generate_series(0, $1 - 1) o",
      per_queue);
  tx.exec(
      "WITH t AS (SELECT topic_id FROM topics WHERE name = 'backlog')"
      " INSERT INTO queue_segments (topic_id, queue_id, segment, first_offset)"
      " SELECT t.topic_id, q, ferry_current_segment(), 0 FROM t, generate_series(0, 3) q");
  tx.exec_params(
      "UPDATE queues SET next_offset = $1, segment = ferry_current_segment()"
      " WHERE topic_id = (SELECT topic_id FROM topics WHERE name = 'backlog')",
      per_queue);
  tx.commit();
  pqxx::nontransaction vacuum(c);
  vacuum.exec("ANALYZE messages");
}

// Bytes of the broker's tables (heap, indexes, TOAST), by table; partitions of messages count
// as "messages".
std::map<std::string, int64_t> TableBytes(pqxx::connection& c) {
  pqxx::nontransaction tx(c);
  std::map<std::string, int64_t> out;
  for (const auto& row : tx.exec(
           "SELECT CASE WHEN c.relispartition THEN (SELECT p.relname FROM pg_inherits i"
           "  JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid) ELSE c.relname END,"
           " sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n"
           " ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY "
           "1")) {
    out[row[0].as<std::string>()] = row[1].as<int64_t>();
  }
  return out;
}

std::vector<Result> HeldSnapshot(const Options& o) {
  ferry::Client admin(o.broker);
  CreateTopic(admin, "w6");
  {  // the group exists before the first message
    ferry::v1::ConsumeRequest req;
    req.set_group("w6");
    req.set_topic("w6");
    (void)admin.Consume(req);
  }
  constexpr int64_t kMaxBacklog = 20000;
  constexpr int kWindowS = 30;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> produced{0}, consumed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      ferry::Client c(o.broker);
      while (!stop) {
        if (produced - consumed > kMaxBacklog) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        ferry::v1::ProduceRequest req;
        req.set_topic("w6");
        for (int i = 0; i < kBatch; ++i) req.add_messages()->set_payload(Payload(NowUs()));
        if (c.Produce(req).ok()) produced += kBatch;
      }
    });
  }
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      ferry::Client c(o.broker);
      while (!stop) {
        ferry::v1::ConsumeRequest req;
        req.set_group("w6");
        req.set_topic("w6");
        req.set_max_messages(kBatch);
        req.set_max_wait_ms(200);
        req.set_visibility_timeout_ms(60000);
        auto got = c.Consume(req);
        if (!got.ok() || got->messages_size() == 0) continue;
        std::vector<std::string> receipts;
        for (const auto& m : got->messages()) receipts.push_back(m.receipt());
        if (c.Ack("w6", receipts).ok()) consumed += got->messages_size();
      }
    });
  }
  pqxx::connection sizes(o.broker_db);
  auto window = [&](const std::string& what) {
    const int64_t from = consumed;
    const auto start = Clock::now();
    for (int i = 0; i < kWindowS * 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      std::cerr << "\r  W6 " << what << ": " << consumed - from << " consumed in this window    "
                << std::flush;
    }
    return (consumed - from) / Seconds(Clock::now() - start);
  };
  std::vector<double> before, during;
  for (int w = 0; w < std::max(1, o.w6_before_s / kWindowS); ++w)
    before.push_back(window("before"));
  const auto bytes_before = TableBytes(sizes);
  const int64_t consumed_before = consumed, produced_before = produced;
  // The snapshot: a REPEATABLE READ transaction whose first statement runs for the whole hold.
  std::thread holder([&] {
    pqxx::connection c(o.broker_db);
    pqxx::work tx(c, "w6-holder");
    tx.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    tx.exec_params("SELECT pg_sleep($1)", o.w6_hold_s);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int w = 0; w < std::max(1, o.w6_hold_s / kWindowS); ++w) during.push_back(window("held"));
  const auto bytes_after = TableBytes(sizes);
  const int64_t stored = produced - produced_before;
  stop = true;
  for (auto& t : threads) t.join();
  holder.join();
  std::cerr << "\n";

  double base = 0;
  for (double r : before) base += r / static_cast<double>(before.size());
  double worst = during.empty() ? 0 : *std::min_element(during.begin(), during.end());
  std::ostringstream rates, growth;
  rates << std::fixed << std::setprecision(0) << "before " << base << " msg/s; held windows:";
  for (double r : during) rates << " " << r;
  rates << std::setprecision(2) << " (worst " << (base > 0 ? worst / base : 0) << " x before)";
  int64_t others = 0;
  for (const auto& [table, after] : bytes_after) {
    const auto it = bytes_before.find(table);
    const int64_t grew = after - (it == bytes_before.end() ? 0 : it->second);
    if (table != "messages") others += grew;
    if (grew >= (1 << 20)) growth << " " << table << " +" << grew / (1 << 20) << " MiB;";
  }
  growth << " messages stored meanwhile: " << stored << " (" << stored * kPayloadBytes / (1 << 20)
         << " MiB of payload); consumed " << consumed - consumed_before;
  return {Result{"W6 before the snapshot", base, "messages/s", "produce + consume, steady"},
          Result{"W6 snapshot held, worst 30 s", worst, "messages/s", rates.str()},
          Result{"W6 tables other than messages grew", static_cast<double>(others) / (1 << 20),
                 "MiB", growth.str()}};
}

std::string Machine(const Options& o) {
  std::ostringstream m;
  std::ifstream mem("/proc/meminfo");
  std::string memline;
  std::getline(mem, memline);
  std::ifstream cpu("/proc/cpuinfo");
  std::string model;
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  m << "- cores: " << std::thread::hardware_concurrency() << " (" << model
    << ")\n- memory: " << memline.substr(memline.find_first_of("0123456789")) << "\n";
  pqxx::connection c(o.broker_db);
  pqxx::nontransaction tx(c);
  m << "- PostgreSQL: " << tx.exec("SHOW server_version")[0][0].c_str();
  for (const char* s :
       {"fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "wal_buffers",
        "wal_level", "wal_compression", "commit_delay", "max_wal_size", "checkpoint_timeout",
        "work_mem", "autovacuum_naptime", "autovacuum_vacuum_scale_factor"}) {
    m << ", " << s << "=" << tx.exec(std::string("SHOW ") + s)[0][0].c_str();
  }
  m << "\n";
  return m.str();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ferry-bench: Ferry's standard workloads (see bench/README.md)"};
  app.add_option("--broker", o.broker, "broker HOST:PORT")->capture_default_str();
  app.add_option("--broker-database-url", o.broker_db, "the broker's database (pg-limit, W5)")
      ->required();
  app.add_option("--app-database-url", o.app_db,
                 "an application database with ferry_outbox, "
                 "published by a running ferry-relay (W4)");
  app.add_option("--broker-pid", o.broker_pid, "for CPU seconds and peak RSS of the broker");
  app.add_option("--messages", o.messages, "messages per workload")->capture_default_str();
  app.add_option("--backlog", o.backlog, "messages stored before W5")->capture_default_str();
  app.add_option("--only", o.only, "comma list of pg,w1,w2,w3,w4,w5,w6")->capture_default_str();
  app.add_option("--w6-before-s", o.w6_before_s, "W6: seconds of steady load before the snapshot")
      ->capture_default_str();
  app.add_option("--w6-hold-s", o.w6_hold_s, "W6: seconds the snapshot is held")
      ->capture_default_str();
  app.add_option("--out", o.out, "write the results here (Markdown)");
  CLI11_PARSE(app, argc, argv);
  // Recorded without the machine's addresses and paths (those of this run's stack).
  o.command_line = "bench/run.sh";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--broker" || a == "--broker-pid" || a == "--broker-database-url" ||
        a == "--app-database-url" || a == "--out") {
      ++i;
      continue;
    }
    o.command_line += " " + a;
  }
  o.postmaster = PostmasterPid(o.broker_db);
  auto want = [&](const std::string& w) { return o.only.find(w) != std::string::npos; };

  std::vector<Result> results;
  double pg_insert = 0;
  double w1 = 0;
  try {
    if (want("pg")) {
      auto pg = PgLimit(o);
      pg_insert = pg[0].rate;
      results.insert(results.end(), pg.begin(), pg.end());
    }
    // W1-W3 on a topic of one queue and on the default topic of four (the targets hold for
    // both): W2 drains what W1 stored in the same topic.
    for (int queues : {1, 4}) {
      const std::string q = std::to_string(queues);
      const std::string on = queues == 1 ? ", 1 queue" : ", 4 queues";
      if (want("w1")) {
        results.push_back(Produce(o, "w1q" + q, "W1 produce" + on, queues));
        if (queues == 4) w1 = results.back().rate;
      }
      if (want("w2")) results.push_back(Consume(o, "w1q" + q, "w2q" + q, "W2 consume+ACK" + on));
      if (want("w3")) results.push_back(Latency(o, "w3q" + q, "W3 latency" + on, queues));
    }
    if (want("w4") && !o.app_db.empty()) {
      auto r = Relay(o);
      results.insert(results.end(), r.begin(), r.end());
    }
    if (want("w5")) {
      Prefill(o);
      results.push_back(Produce(o, "w5", "W5 produce with backlog"));
      results.push_back(Consume(o, "w5", "w5", "W5 consume+ACK with backlog"));
    }
    if (want("w6")) {
      auto r = HeldSnapshot(o);
      results.insert(results.end(), r.begin(), r.end());
    }
  } catch (const std::exception& e) {
    std::cerr << "\nferry-bench: " << e.what() << "\n";
    return 1;
  }
  const ProcStat broker = ReadProc(o.broker_pid);

  std::ostringstream md;
  md << "| workload | result | vs pg-limit insert | broker CPU us / msg | PostgreSQL CPU us / msg"
        " | detail |\n"
     << "| --- | --- | --- | --- | --- | --- |\n";
  for (const Result& r : results) {
    std::ostringstream ratio, cpu, pg_cpu;
    if (r.unit != "ms p99" && r.unit != "MiB" && pg_insert > 0 &&
        r.name.rfind("pg-limit", 0) != 0) {
      ratio << std::fixed << std::setprecision(2) << r.rate / pg_insert;
    }
    if (r.name == "W4 relay" && w1 > 0)
      ratio << " (" << std::setprecision(2) << r.rate / w1 << " x W1)";
    // CPU seconds per million messages = microseconds per message.
    if (r.cpu_per_million >= 0) cpu << std::fixed << std::setprecision(1) << r.cpu_per_million;
    if (r.pg_cpu_per_million >= 0) {
      pg_cpu << std::fixed << std::setprecision(1) << r.pg_cpu_per_million;
    }
    md << "| " << r.name << " | " << std::fixed << std::setprecision(r.unit == "ms p99" ? 1 : 0)
       << r.rate << " " << r.unit << " | " << ratio.str() << " | " << cpu.str() << " | "
       << pg_cpu.str() << " | " << r.detail << " |\n";
  }
  if (o.broker_pid > 0) md << "\nBroker peak RSS: " << broker.peak_rss_kb / 1024 << " MiB\n";
  std::cout << "\n" << md.str();
  if (!o.out.empty()) {
    std::ofstream f(o.out);
    f << "# Ferry benchmark results\n\nWritten by `make bench` (bench/run.sh). Durable settings:"
         " fsync and synchronous_commit on; PostgreSQL runs with deploy/postgresql.conf (what a"
         " user deploys), for the yardstick and for Ferry alike.\n\n## Machine\n\n"
      << Machine(o) << "\n## Command\n\n```\n"
      << o.command_line << "\n```\n\n## Results\n\n"
      << md.str();
  }
  return 0;
}
