// Process metrics in the Prometheus text format (version 0.0.4), served by MetricsServer.
//
// Counters and histograms are declared once (names, help, label names) and updated from any
// thread; each labelled child is created on first use and kept for the life of the process.
// Values that live in the database (lag, queue ends, half messages) are gauges produced at
// scrape time by collectors, so a scrape always shows the current stored state.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::metrics {

using Labels = std::vector<std::string>;  // values, in the family's label-name order

class Counter {
 public:
  void Add(double v = 1);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void Observe(double v);

 private:
  friend class Registry;
  const std::vector<double>& bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // one per bound, then +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// One sample of a gauge reported by a collector.
struct GaugeSample {
  Labels labels;
  double value = 0;
};

struct GaugeFamily {
  std::string name;
  std::string help;
  std::vector<std::string> label_names;
  std::vector<GaugeSample> samples;
};

class Registry {
 public:
  // Declaring a name twice returns the same family (the label names must match).
  class CounterFamily;
  class HistogramFamily;
  CounterFamily& Counters(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names);
  HistogramFamily& Histograms(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names, std::vector<double> bounds);

  // Runs at every scrape; an exception becomes `ferry_metrics_collector_errors_total`.
  // Returns an id for RemoveCollector (call it before whatever the collector uses goes away).
  int AddCollector(std::function<std::vector<GaugeFamily>()> collect);
  void RemoveCollector(int id);

  std::string Render();

 private:
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<CounterFamily>> counters_;
  std::map<std::string, std::unique_ptr<HistogramFamily>> histograms_;
  std::map<int, std::function<std::vector<GaugeFamily>()>> collectors_;
  int next_collector_ = 1;
  Counter collector_errors_;
};

class Registry::CounterFamily {
 public:
  Counter& With(const Labels& labels);

 private:
  friend class Registry;
  std::string help_;
  std::vector<std::string> label_names_;
  std::mutex mu_;
  std::map<Labels, std::unique_ptr<Counter>> children_;
};

class Registry::HistogramFamily {
 public:
  Histogram& With(const Labels& labels);

 private:
  friend class Registry;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  std::mutex mu_;
  std::map<Labels, std::unique_ptr<Histogram>> children_;
};

// Latency buckets in seconds, 0.5 ms to 10 s.
const std::vector<double>& LatencyBuckets();

// The process's registry (the binaries have one each).
Registry& Default();

}  // namespace ferry::metrics
