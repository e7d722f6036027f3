#include "common/version.h"

#include <mutex>

#include "common/metrics.h"
#include "version_info.h"  // generated: build/generated/version_info.h

namespace ferry {

const char* Version() { return FERRY_VERSION; }
const char* Commit() { return FERRY_COMMIT; }

std::string VersionLine(const std::string& program) {
  return program + " " + Version() + " (commit " + Commit() + ")";
}

void RegisterBuildInfo(const std::string& program) {
  static std::once_flag once;  // once per process (the tests start many brokers in one)
  std::call_once(once, [&program] {
    metrics::Default().AddCollector([program] {
      return std::vector<metrics::GaugeFamily>{
          {"ferry_build_info",
           "always 1; the labels say which build this process runs",
           {"program", "version", "commit"},
           {{{program, Version(), Commit()}, 1.0}}}};
    });
  });
}

}  // namespace ferry
