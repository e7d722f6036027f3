// Stop signals for the binaries: taken by sigwait in main, never by a handler.
#pragma once

#include <string>

namespace ferry {

// Blocks SIGINT and SIGTERM (threads started afterwards inherit the mask) and ignores SIGPIPE.
// Call first thing in main, before any thread starts.
void BlockStopSignals();

// Waits for SIGINT or SIGTERM; returns "SIGINT" or "SIGTERM".
std::string WaitForStopSignal();

}  // namespace ferry
