#include "common/metrics.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace ferry::metrics {
namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  // Shortest text that reads back as the same double (0.1, not 0.10000000000000001).
  for (int precision = 6; precision <= 17; ++precision) {
    std::ostringstream s;
    s.precision(precision);
    s << v;
    if (std::stod(s.str()) == v) return s.str();
  }
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

std::string LabelText(const std::vector<std::string>& names, const Labels& values,
                      const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + Escape(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    out += (out.empty() ? "" : ",") + extra_name + "=\"" + extra_value + "\"";
  }
  return out.empty() ? "" : "{" + out + "}";
}

void Header(std::ostringstream& out, const std::string& name, const std::string& help,
            const char* type) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

}  // namespace

void Counter::Add(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

Counter& Registry::CounterFamily::With(const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& child = children_[labels];
  if (!child) child = std::make_unique<Counter>();
  return *child;
}

Histogram& Registry::HistogramFamily::With(const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& child = children_[labels];
  if (!child) child = std::make_unique<Histogram>(bounds_);
  return *child;
}

Registry::CounterFamily& Registry::Counters(const std::string& name, const std::string& help,
                                            std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = counters_[name];
  if (!f) {
    f = std::make_unique<CounterFamily>();
    f->help_ = help;
    f->label_names_ = std::move(label_names);
  } else if (f->label_names_ != label_names) {
    throw std::logic_error("metric " + name + " declared twice with different labels");
  }
  return *f;
}

Registry::HistogramFamily& Registry::Histograms(const std::string& name, const std::string& help,
                                                std::vector<std::string> label_names,
                                                std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = histograms_[name];
  if (!f) {
    f = std::make_unique<HistogramFamily>();
    f->help_ = help;
    f->label_names_ = std::move(label_names);
    f->bounds_ = std::move(bounds);
  } else if (f->label_names_ != label_names) {
    throw std::logic_error("metric " + name + " declared twice with different labels");
  }
  return *f;
}

int Registry::AddCollector(std::function<std::vector<GaugeFamily>()> collect) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.emplace(next_collector_, std::move(collect));
  return next_collector_++;
}

void Registry::RemoveCollector(int id) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.erase(id);
}

std::string Registry::Render() {
  std::vector<std::function<std::vector<GaugeFamily>()>> collectors;
  std::ostringstream out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, c] : collectors_) collectors.push_back(c);
    for (auto& [name, f] : counters_) {
      Header(out, name, f->help_, "counter");
      std::lock_guard<std::mutex> child_lock(f->mu_);
      for (auto& [labels, c] : f->children_) {
        out << name << LabelText(f->label_names_, labels) << " " << Number(c->Value()) << "\n";
      }
    }
    for (auto& [name, f] : histograms_) {
      Header(out, name, f->help_, "histogram");
      std::lock_guard<std::mutex> child_lock(f->mu_);
      for (auto& [labels, h] : f->children_) {
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= f->bounds_.size(); ++i) {
          cumulative += h->buckets_[i].load(std::memory_order_relaxed);
          const std::string le =
              i < f->bounds_.size() ? Number(f->bounds_[i]) : std::string("+Inf");
          out << name << "_bucket" << LabelText(f->label_names_, labels, "le", le) << " "
              << cumulative << "\n";
        }
        out << name << "_sum" << LabelText(f->label_names_, labels) << " " << Number(h->sum_.load())
            << "\n";
        out << name << "_count" << LabelText(f->label_names_, labels) << " " << h->count_.load()
            << "\n";
      }
    }
  }
  for (const auto& collect : collectors) {
    try {
      for (const GaugeFamily& g : collect()) {
        Header(out, g.name, g.help, "gauge");
        for (const GaugeSample& s : g.samples) {
          out << g.name << LabelText(g.label_names, s.labels) << " " << Number(s.value) << "\n";
        }
      }
    } catch (const std::exception&) {
      collector_errors_.Add();
    }
  }
  Header(out, "ferry_metrics_collector_errors_total",
         "scrapes where a collector failed (e.g. the database was unreachable)", "counter");
  out << "ferry_metrics_collector_errors_total " << Number(collector_errors_.Value()) << "\n";
  return out.str();
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> b{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return b;
}

Registry& Default() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace ferry::metrics
