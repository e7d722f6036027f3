// BrokerProcess: the real ferry-broker binary in a child process on 127.0.0.1, for e2e tests
// that kill it (SIGKILL) and start it again.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "client/client.h"

namespace ferry::test {

// A TCP port on 127.0.0.1 that nothing listens on right now.
int FreePort();

// Starts `binary args...` with stdout and stderr appended to `log_path`; returns its pid.
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::string& log_path);

// ferry-relay in a child process (ready as soon as it runs: it needs no port).
class RelayProcess {
 public:
  RelayProcess(std::vector<std::string> args, std::string log_path);
  ~RelayProcess();  // SIGKILL if still running
  void Start();
  void Kill();
  int Terminate();

 private:
  std::vector<std::string> args_;
  std::string log_path_;
  pid_t pid_ = -1;
};

class BrokerProcess {
 public:
  // Starts ferry-broker on 127.0.0.1:`port` against `conninfo`, and waits until it answers
  // gRPC health SERVING (throws if it does not within 20 s). Its log goes to `log_path`.
  BrokerProcess(const std::string& conninfo, int port, const std::string& log_path,
                std::vector<std::string> extra_args = {});
  ~BrokerProcess();  // SIGKILL if still running

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void Kill();           // SIGKILL and reap
  int Terminate();       // SIGTERM, wait; returns the exit status (or -1)
  void Start();          // (re)start with the same settings
  void Signal(int sig);  // e.g. SIGSTOP / SIGCONT (a pause)

 private:
  std::string conninfo_;
  int port_;
  std::string log_path_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = -1;
};

// The log file of an e2e test's broker named `name` (/tmp/ferry-e2e-NAME.log).
std::string E2eLogPath(const std::string& name);

// Creates topic `name` with `queues` queues through `client`; throws with the broker's message.
void CreateTopic(Client& client, const std::string& name, uint32_t queues);

}  // namespace ferry::test
