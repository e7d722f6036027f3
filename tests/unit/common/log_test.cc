// Logged values are valid logfmt: a name or reason with spaces, quotes, '=' or newlines cannot
// split a line into fields a log reader would misread.
#include "common/log.h"

#include <catch2/catch.hpp>

using ferry::log::Quote;

TEST_CASE("log values: plain words as they are - anything else quoted and escaped", "[unit][log]") {
  CHECK(Quote("orders") == "orders");
  CHECK(Quote("topic-1.a_b") == "topic-1.a_b");
  CHECK(Quote("") == "\"\"");
  CHECK(Quote("bad amount") == "\"bad amount\"");
  CHECK(Quote("a=b") == "\"a=b\"");
  CHECK(Quote("say \"no\"") == "\"say \\\"no\\\"\"");
  CHECK(Quote("back\\slash") == "\"back\\\\slash\"");
  CHECK(Quote("two\nlines") == "\"two\\nlines\"");
  CHECK(Quote(std::string("nul\0x", 5)) == "\"nul\\u0000x\"");
  CHECK(Quote("caf\xc3\xa9") == "caf\xc3\xa9");  // UTF-8 passes through
}
