// The build's version and git commit, for --version on every binary and the
// `ferry_build_info` metric.
#pragma once

#include <string>

namespace ferry {

const char* Version();  // "0.1.0" (CMakeLists.txt's project version)
const char* Commit();   // the git commit built, "-dirty" with local changes, or "unknown"
// "ferryctl 0.1.0 (commit 1a2b3c4d5e6f)".
std::string VersionLine(const std::string& program);
// ferry_build_info{program,version,commit} 1 on this process's /metrics (the first call wins).
void RegisterBuildInfo(const std::string& program);

}  // namespace ferry
