// Reading a /metrics or /healthz endpoint in tests (cpp-httplib; integration tests only).
#pragma once

#include <httplib.h>

#include <catch2/catch.hpp>
#include <sstream>
#include <string>

namespace ferry::test {

// The value of the sample whose line starts with `series` (name and labels), or -1.
inline double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

inline std::string Scrape(int port) {
  httplib::Client c("127.0.0.1", port);
  auto res = c.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  CHECK(res->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
  return res->body;
}

// GET /healthz: the status code and body.
inline std::pair<int, std::string> Healthz(int port) {
  httplib::Client c("127.0.0.1", port);
  auto res = c.Get("/healthz");
  REQUIRE(res);
  return {res->status, res->body};
}

}  // namespace ferry::test
