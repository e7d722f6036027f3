#include "common/signals.h"

#include <pthread.h>

#include <csignal>

namespace ferry {
namespace {
sigset_t StopSignals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}
}  // namespace

void BlockStopSignals() {
  const sigset_t s = StopSignals();
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

std::string WaitForStopSignal() {
  const sigset_t s = StopSignals();
  int sig = 0;
  sigwait(&s, &sig);
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

}  // namespace ferry
