// Array literals for passing batches to PostgreSQL as one parameter each
// (`unnest($1::bigint[], $2::text[])`): one statement per batch instead of one per row.
#pragma once

#include <cstdint>
#include <optional>
#include <pqxx/binarystring>
#include <string>
#include <vector>

namespace ferry::pg {

inline void AppendQuoted(std::string& out, const std::string& s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

inline std::string TextArray(const std::vector<std::optional<std::string>>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    if (values[i].has_value()) {
      AppendQuoted(out, *values[i]);
    } else {
      out += "NULL";
    }
  }
  out.push_back('}');
  return out;
}

inline std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendQuoted(out, values[i]);
  }
  out.push_back('}');
  return out;
}

// A bytea[] parameter in PostgreSQL's binary array format (array_recv): the payloads are
// copied as they are, not hex-encoded by us and decoded again by the server (hex encoding was
// 14 % of the broker's CPU on W1). The statement must name the parameter's type
// (`$5::bytea[]`), and the parameter is passed as this binarystring, which libpqxx sends in
// binary format.
inline pqxx::binarystring ByteaArray(const std::vector<const std::string*>& values) {
  constexpr uint32_t kByteaOid = 17;
  size_t size = 20;
  for (const std::string* v : values) size += 4 + v->size();
  std::string out;
  out.reserve(size);
  auto put32 = [&out](uint32_t v) {
    const char be[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                        static_cast<char>(v >> 8), static_cast<char>(v)};
    out.append(be, 4);
  };
  put32(values.empty() ? 0 : 1);  // dimensions (an empty array has none)
  put32(0);                       // no NULL elements
  put32(kByteaOid);
  if (!values.empty()) {
    put32(static_cast<uint32_t>(values.size()));
    put32(1);  // lower bound
  }
  for (const std::string* v : values) {
    put32(static_cast<uint32_t>(v->size()));
    out += *v;
  }
  return pqxx::binarystring(out);
}

template <typename T>
inline std::string IntArray(const std::vector<T>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(values[i]);
  }
  out.push_back('}');
  return out;
}

template <typename T>
inline std::string IntArray(const std::vector<std::optional<T>>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += values[i] ? std::to_string(*values[i]) : "NULL";
  }
  out.push_back('}');
  return out;
}

}  // namespace ferry::pg
