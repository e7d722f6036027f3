#include "broker/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <algorithm>

#include "broker/admin.h"
#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/broker_service.h"
#include "broker/console.h"
#include "broker/long_poll.h"
#include "broker/routing.h"
#include "broker/rpc.h"
#include "broker/store/pg_store.h"
#include "broker/txn_checks.h"
#include "common/config.h"
#include "common/executor.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "common/pg/migrate.h"
#include "common/pg/pool.h"
#include "common/version.h"

namespace ferry::broker {

const std::vector<pg::Migration>& BrokerMigrations();  // generated from migrations/broker

namespace {
constexpr char kMigrationsTable[] = "broker_schema_migrations";
}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const BrokerOptions& o) {
  if (o.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  auto cert = config::ReadFile(o.tls_cert_file, "--tls-cert");
  if (!cert.ok()) return cert.status();
  auto key = config::ReadFile(o.tls_key_file, "--tls-key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.tls_client_ca_file.empty()) {
    auto ca = config::ReadFile(o.tls_client_ca_file, "--tls-client-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::string> CreateAdmin(const BrokerOptions& options, const std::string& name) {
  if (absl::Status s = MigrateDatabase(options); !s.ok()) return s;
  pg::ConnectionPool pool(options.database_url, 1, "ferry-broker", PgStore::AllStatements());
  PgStore store(pool, RouteByKey());
  NewToken t = GenerateToken();
  if (absl::Status s =
          store.CreatePrincipal(name, t.sha256, {GrantRecord{"admin", "cluster", "*"}});
      !s.ok()) {
    return s;
  }
  return t.token;
}

absl::Status MigrateDatabase(const BrokerOptions& options) {
  pg::ConnectionPool pool(options.database_url, 1, "ferry-broker", {});
  std::unique_ptr<pqxx::connection> conn;
  try {
    conn = pool.OpenDedicated("migrate");
  } catch (const std::exception& e) {
    // For the operator at start: libpq's reason (it names the host, never the password).
    std::string why = e.what();
    why = why.substr(0, why.find('\n'));
    const std::string where = options.database_url.empty()
                                  ? "from the PG* environment variables"
                                  : config::RedactConninfo(options.database_url);
    return absl::UnavailableError("cannot connect to the database (" + where + "): " + why);
  }
  return pg::ApplyMigrations(*conn, kMigrationsTable, BrokerMigrations());
}

BrokerServer::BrokerServer(BrokerOptions options) : options_(std::move(options)) {}

BrokerServer::~BrokerServer() { Shutdown(); }

absl::Status BrokerServer::Start() {
  auto logger = ferry::log::Get("broker");
  if (absl::Status s = Validate(options_); !s.ok()) return s;
  logger->info("event=starting {}", Describe(options_));
  if (options_.migrate) {
    if (absl::Status s = MigrateDatabase(options_); !s.ok()) return s;
  }
  pool_ = std::make_unique<pg::ConnectionPool>(options_.database_url, options_.pool_size,
                                               "ferry-broker", PgStore::AllStatements(),
                                               pg::PlanMode::kGeneric);
  {
    // Open one connection now: a bad URL or a schema mismatch fails here, not on a request.
    auto lease = pool_->Acquire(std::chrono::seconds(10));
    if (!lease.ok()) return lease.status();
  }
  store_ =
      std::make_unique<PgStore>(*pool_, RouteByKey(),
                                TxnTiming{options_.txn_check_after_ms,
                                          options_.txn_check_interval_ms, options_.txn_max_checks});
  if (absl::Status s = store_->EnsureSegments(2); !s.ok()) return s;
  auto key = store_->ReceiptKey();
  if (!key.ok()) return key.status();
  Limits limits;
  limits.max_message_bytes = options_.max_message_bytes;
  authorizer_ = std::make_unique<Authorizer>(*store_);
  if (options_.auth) {
    authenticator_ =
        std::make_unique<Authenticator>(*store_, std::chrono::milliseconds(options_.auth_cache_ms));
  }
  broker_ = std::make_unique<Broker>(*store_, *authorizer_, ReceiptCodec(*key), limits,
                                     options_.group_commit);
  admin_ = std::make_unique<Admin>(*store_, *authorizer_, limits);
  executor_ = std::make_unique<Executor>(options_.pool_size,
                                         static_cast<size_t>(options_.max_queued_calls));
  edge_ = std::make_unique<rpc::Edge>(*executor_, authenticator_.get());
  poller_ = std::make_unique<LongPoller>(std::chrono::milliseconds(options_.poll_interval_ms));
  listener_ = std::make_unique<NotificationListener>(*pool_, *poller_);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  // The id this broker signs back-checks with in the audit trail: host/pid.
  broker_id_ = std::string(host) + "/" + std::to_string(getpid());
  checks_ = std::make_unique<TxnChecks>(
      *store_, *broker_, *edge_, broker_id_,
      std::chrono::milliseconds(std::clamp<int64_t>(options_.txn_check_interval_ms / 4, 20, 250)));
  broker_service_ = std::make_unique<BrokerService>(*broker_, *edge_, *poller_, *checks_);
  admin_service_ = std::make_unique<AdminService>(*admin_, *edge_);
  auto credentials = ServerCredentials(options_);
  if (!credentials.ok()) return credentials.status();

  rpc::RouteProtobufLogs();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();  // see toolchain notes: --as-needed
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, *credentials, &port_);
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);  // larger: RESOURCE_EXHAUSTED, never parsed
  builder.SetMaxSendMessageSize(kMaxReplyBytes);
  builder.RegisterService(broker_service_.get());
  builder.RegisterService(admin_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::InvalidArgumentError("cannot listen on " + options_.listen +
                                      " (address in use or invalid?)");
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  if (!options_.metrics_listen.empty()) {
    RegisterBuildInfo("ferry-broker");
    collector_ = metrics::Default().AddCollector([this] {
      std::vector<metrics::GaugeFamily> out = pg::PoolGauges(*pool_);
      out.push_back({"ferry_database_up",
                     "1 when the last database probe (every health_interval_ms) succeeded",
                     {},
                     {{{}, database_up_.load() ? 1.0 : 0.0}}});
      auto gauges = store_->MetricGauges();
      if (!gauges.ok()) throw std::runtime_error(std::string(gauges.status().message()));
      for (auto& g : *gauges) out.push_back(std::move(g));
      return out;
    });
    auto m = metrics::MetricsServer::Start(options_.metrics_listen, metrics::Default());
    if (!m.ok()) return m.status();
    metrics_ = *std::move(m);
  }
  if (!options_.console_listen.empty()) {
    ConsoleOptions co{
        options_.console_listen,
        options_.console_dir.empty() ? ConsoleServer::DefaultStaticDir() : options_.console_dir,
        options_.tls_cert_file, options_.tls_key_file, options_.tls_client_ca_file};
    auto console = ConsoleServer::Start(co, InProcessChannel());
    if (!console.ok()) return console.status();
    console_ = *std::move(console);
  }
  admin_->set_stats_interval_ms(options_.stats_interval_ms);
  started_at_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  maintenance_ = std::thread([this] { Maintain(); });
  reporter_ = std::thread([this] { Report(); });
  delayed_mover_ = std::thread([this] { MoveDelayed(); });
  database_watch_ = std::thread([this] { WatchDatabase(); });
  logger->info("event=serving listen={} port={}", options_.listen, port_);
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> BrokerServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReplyBytes);
  args.SetMaxSendMessageSize(kMaxReplyBytes);
  return server_->InProcessChannel(args);
}

bool BrokerServer::Sleep(int ms) {
  std::unique_lock<std::mutex> lock(maintain_mu_);
  return !maintain_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

void BrokerServer::Maintain() {
  auto logger = ferry::log::Get("broker.maintain");
  while (Sleep(options_.maintenance_interval_ms)) {
    auto retention = store_->ApplyRetention(10000);
    if (!retention.ok()) {
      logger->warn("event=retention_failed error={}",
                   ferry::log::Quote(std::string(retention.status().message())));
    } else if (retention->segments > 0 || retention->messages > 0 || retention->leases > 0) {
      logger->info("event=retention_applied segments_dropped={} messages_deleted={} leases={}",
                   retention->segments, retention->messages, retention->leases);
    }
    auto deleted = store_->DeleteExpiredDedup(10000);
    if (!deleted.ok()) {
      logger->warn("event=dedup_expiry_failed error={}",
                   ferry::log::Quote(std::string(deleted.status().message())));
    } else if (*deleted > 0) {
      logger->info("event=dedup_expired rows={}", *deleted);
    }
  }
}

void BrokerServer::MoveDelayed() {
  auto logger = ferry::log::Get("broker.delayed");
  constexpr int64_t kBatch = 1000;
  int wait_ms = 0;
  while (Sleep(wait_ms)) {
    auto moved = store_->MoveDueDelayed(kBatch);
    if (!moved.ok()) {
      logger->warn("event=move_failed error={}",
                   ferry::log::Quote(std::string(moved.status().message())));
      wait_ms = 1000;
      continue;
    }
    if (*moved > 0) logger->debug("event=moved messages={}", *moved);
    wait_ms = *moved == kBatch ? 0 : options_.delayed_poll_ms;  // a full batch: more are due
  }
}

void BrokerServer::WatchDatabase() {
  // On the store's own probe connection, so that a pool busy with long transactions does not
  // read as an outage; with a short statement_timeout (at least a second, so that one slow
  // fsync under load does not read as one), so that a hung database reads as one.
  auto logger = ferry::log::Get("broker.health");
  while (Sleep(options_.health_interval_ms)) {
    const absl::Status probe = store_->Probe(std::max<int64_t>(options_.health_interval_ms, 1000));
    const bool up = probe.ok();
    if (!up && database_up_.load()) {
      logger->warn("event=database_unreachable error={}",
                   ferry::log::Quote(std::string(probe.message())));
    }
    if (up != database_up_.exchange(up)) {
      if (up) logger->info("event=database_reachable");
      // NOT_SERVING while the database is away: load balancers and compose move traffic away.
      std::lock_guard<std::mutex> lock(maintain_mu_);
      if (!stopping_) server_->GetHealthCheckService()->SetServingStatus(up);
    }
  }
}

int BrokerServer::metrics_port() const { return metrics_ ? metrics_->port() : 0; }

int BrokerServer::console_port() const { return console_ ? console_->port() : 0; }

void BrokerServer::Report() {
  // The brokers table (every 5 s) and the stats samples (every stats_interval_ms, one broker).
  auto logger = ferry::log::Get("broker.stats");
  const BrokerInstanceRow self{broker_id_, Version(), options_.listen, started_at_ms_, 0, true};
  const int64_t keep_ms = int64_t{options_.stats_retention_hours} * 3600 * 1000;
  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::milliseconds(options_.stats_interval_ms);
  auto next_sample = Clock::now();
  int wait_ms = 0;
  while (Sleep(wait_ms)) {
    if (absl::Status s = store_->Heartbeat(self); !s.ok()) {
      logger->debug("event=heartbeat_failed error={}", ferry::log::Quote(std::string(s.message())));
    }
    if (Clock::now() >= next_sample) {
      next_sample = Clock::now() + interval;
      auto written = store_->RecordStats(options_.stats_interval_ms, keep_ms);
      if (!written.ok()) {
        logger->warn("event=stats_failed error={}",
                     ferry::log::Quote(std::string(written.status().message())));
      } else if (*written > 0) {
        logger->debug("event=stats_recorded rows={}", *written);
      }
    }
    const auto until_sample =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_sample - Clock::now()).count();
    wait_ms = static_cast<int>(std::clamp<int64_t>(until_sample, 1, 5000));
  }
}

void BrokerServer::Shutdown() {
  if (console_) console_->Stop();
  if (metrics_) metrics_->Stop();
  if (collector_ != 0) metrics::Default().RemoveCollector(collector_);
  collector_ = 0;
  {
    std::lock_guard<std::mutex> lock(maintain_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  maintain_cv_.notify_all();
  auto logger = ferry::log::Get("broker");
  const bool serving = server_ != nullptr;  // false when Start() failed or never ran
  if (serving) logger->info("event=stopping");
  // Inputs first: stop reporting healthy, answer parked long polls, stop accepting calls and
  // let in-flight ones finish; then the workers, the listener, and the connections.
  if (server_) server_->GetHealthCheckService()->SetServingStatus(false);
  if (poller_) poller_->Stop();
  if (checks_) checks_->Stop();  // open streams would keep Shutdown() waiting
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(options_.shutdown_grace_ms));
  }
  if (executor_) executor_->Shutdown();
  if (server_) server_->Wait();
  if (maintenance_.joinable()) maintenance_.join();
  if (reporter_.joinable()) reporter_.join();
  if (delayed_mover_.joinable()) delayed_mover_.join();
  if (database_watch_.joinable()) database_watch_.join();
  if (listener_) listener_->Stop();
  listener_.reset();
  console_.reset();
  server_.reset();
  checks_.reset();
  admin_service_.reset();
  broker_service_.reset();
  poller_.reset();
  executor_.reset();
  edge_.reset();
  admin_.reset();
  broker_.reset();
  authorizer_.reset();
  authenticator_.reset();
  store_.reset();
  pool_.reset();
  if (serving) logger->info("event=stopped");
}

}  // namespace ferry::broker
