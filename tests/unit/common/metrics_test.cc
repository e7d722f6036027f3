#include "common/metrics.h"

#include <catch2/catch.hpp>

using ferry::metrics::GaugeFamily;
using ferry::metrics::Registry;

TEST_CASE("metrics render in the Prometheus text format with escaped labels", "[unit][metrics]") {
  Registry r;
  auto& calls = r.Counters("t_calls_total", "calls", {"method"});
  calls.With({"Produce"}).Add();
  calls.With({"Produce"}).Add(2);
  calls.With({"we\"ird\\name\n"}).Add();
  auto& h = r.Histograms("t_seconds", "latency", {"m"}, {0.01, 0.1});
  h.With({"x"}).Observe(0.005);
  h.With({"x"}).Observe(0.05);
  h.With({"x"}).Observe(5);
  r.AddCollector([] {
    return std::vector<GaugeFamily>{{"t_lag", "lag", {"group"}, {{{"g"}, 7}}}};
  });
  const int failing = r.AddCollector(
      []() -> std::vector<GaugeFamily> { throw std::runtime_error("database down"); });
  const std::string text = r.Render();
  CHECK(text.find("# TYPE t_calls_total counter\n") != std::string::npos);
  CHECK(text.find("t_calls_total{method=\"Produce\"} 3\n") != std::string::npos);
  CHECK(text.find("t_calls_total{method=\"we\\\"ird\\\\name\\n\"} 1\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{m=\"x\",le=\"0.01\"} 1\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{m=\"x\",le=\"0.1\"} 2\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{m=\"x\",le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("t_seconds_count{m=\"x\"} 3\n") != std::string::npos);
  CHECK(text.find("# TYPE t_lag gauge\nt_lag{group=\"g\"} 7\n") != std::string::npos);
  CHECK(text.find("ferry_metrics_collector_errors_total 1\n") != std::string::npos);
  r.RemoveCollector(failing);
  CHECK(r.Render().find("ferry_metrics_collector_errors_total 1\n") != std::string::npos);
  CHECK_THROWS(r.Counters("t_calls_total", "calls", {"other"}));
}
