#include "broker/options.h"

#include <catch2/catch.hpp>

using namespace ferry::broker;

TEST_CASE("passwords never reach the log", "[unit][options]") {
  CHECK(RedactDatabaseUrl("postgresql://ferry:s3cret@db:5432/ferry") ==
        "postgresql://ferry:***@db:5432/ferry");
  CHECK(RedactDatabaseUrl("host=db user=ferry password=s3cret dbname=x") ==
        "host=db user=ferry password=*** dbname=x");
  CHECK(RedactDatabaseUrl("host=db password='a b' dbname=x") == "host=db password=*** dbname=x");
  CHECK(RedactDatabaseUrl("host=/tmp port=5 user=postgres") == "host=/tmp port=5 user=postgres");
  BrokerOptions o;
  o.database_url = "postgresql://u:topsecret@h/d";
  CHECK(Describe(o).find("topsecret") == std::string::npos);
}

TEST_CASE("options are checked before start", "[unit][options]") {
  BrokerOptions o;
  CHECK(Validate(o).ok());
  o.pool_size = 0;
  CHECK(std::string(Validate(o).message()).find("--pool-size") != std::string::npos);
  o = BrokerOptions{};
  o.listen = "7420";
  CHECK(std::string(Validate(o).message()).find("--listen") != std::string::npos);
  o = BrokerOptions{};
  o.max_message_bytes = 0;
  CHECK(!Validate(o).ok());
}
