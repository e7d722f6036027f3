// Array literals for passing batches to PostgreSQL as one parameter each
// (`unnest($1::bigint[], $2::text[])`): one statement per batch instead of one per row.
#pragma once

#include <optional>
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

// bytea elements in hex form: "\\x0a1b..." (the backslash escaped for the array syntax).
inline std::string ByteaArray(const std::vector<const std::string*>& values) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t size = 2;
  for (const std::string* v : values) size += v->size() * 2 + 6;
  std::string out;
  out.reserve(size);
  out.push_back('{');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += "\"\\\\x";
    for (unsigned char c : *values[i]) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
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
