#include "support/broker_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "client/client.h"
#include "grpc/health/v1/health.grpc.pb.h"

#if !defined(FERRY_BROKER_BIN) || !defined(FERRY_RELAY_BIN)
#error "FERRY_BROKER_BIN and FERRY_RELAY_BIN must name the binaries"
#endif

namespace ferry::test {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    throw std::runtime_error("bind to 127.0.0.1:0 failed");
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

BrokerProcess::BrokerProcess(const std::string& conninfo, int port, const std::string& log_path,
                             std::vector<std::string> extra_args)
    : conninfo_(conninfo), port_(port), log_path_(log_path), extra_args_(std::move(extra_args)) {
  Start();
}

BrokerProcess::~BrokerProcess() { Kill(); }

pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::string& log_path) {
  std::vector<std::string> all = {binary};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

namespace {
void KillAndReap(pid_t& pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  pid = -1;
}
int TerminateAndReap(pid_t& pid) {
  if (pid <= 0) return -1;
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

RelayProcess::RelayProcess(std::vector<std::string> args, std::string log_path)
    : args_(std::move(args)), log_path_(std::move(log_path)) {
  Start();
}
RelayProcess::~RelayProcess() { Kill(); }
void RelayProcess::Start() { pid_ = Spawn(FERRY_RELAY_BIN, args_, log_path_); }
void RelayProcess::Kill() { KillAndReap(pid_); }
int RelayProcess::Terminate() { return TerminateAndReap(pid_); }

void BrokerProcess::Start() {
  const std::string listen = address();
  std::vector<std::string> args = {"--listen", listen, "--database-url", conninfo_};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  pid_ = Spawn(FERRY_BROKER_BIN, args, log_path_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("ferry-broker exited at start; see " + log_path_);
    }
    // A new channel per probe: a channel that failed to connect backs off for seconds. gRPC
    // health, which needs no token (brokers with --auth too).
    auto health = grpc::health::v1::Health::NewStub(ferry::MakeChannel(listen));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckResponse resp;
    if (health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp).ok() &&
        resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Kill();
  throw std::runtime_error("ferry-broker did not answer within 20 s; see " + log_path_);
}

void BrokerProcess::Kill() { KillAndReap(pid_); }

void BrokerProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int BrokerProcess::Terminate() { return TerminateAndReap(pid_); }

std::string E2eLogPath(const std::string& name) { return "/tmp/ferry-e2e-" + name + ".log"; }

void CreateTopic(Client& client, const std::string& name, uint32_t queues) {
  v1::TopicConfig t;
  t.set_name(name);
  t.set_queues(queues);
  auto r = client.CreateTopic(t);
  if (!r.ok()) throw std::runtime_error(std::string(r.status().message()));
}

}  // namespace ferry::test
