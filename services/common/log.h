// Logging: spdlog, one named logger per module, key=value fields, to stderr.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace ferry::log {

// Sets the level ("trace", "debug", "info", "warn", "error") and the line format for every
// logger. Call once from main before starting threads. Unknown levels fall back to info.
// format "logfmt" (default): `<time> <level> <logger>: key=value ...`; "json": one JSON object
// per line, {"ts", "level", "logger", "msg"} with msg the key=value text (for log shippers).
void Init(const std::string& level, const std::string& format = "logfmt");

// True for the levels Init accepts: trace, debug, info, warn, error, off.
bool IsLevel(const std::string& level);
// True for the formats Init accepts: logfmt, json.
bool IsFormat(const std::string& format);

// Returns the logger called `name` ("broker.service", "pg", ...), creating it on first use.
// Thread-safe.
std::shared_ptr<spdlog::logger> Get(const std::string& name);

// A value for a key=value field, as logfmt reads it: as is when it is a plain word, else in
// double quotes with \\, \" and control characters escaped (names, reasons and errors from
// users may hold spaces, quotes or newlines).
std::string Quote(std::string_view value);

}  // namespace ferry::log
