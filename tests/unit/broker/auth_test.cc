#include "broker/auth.h"

#include <catch2/catch.hpp>

#include "support/unimplemented_store.h"

using namespace ferry::broker;

TEST_CASE(
    "grants: a permission on a resource or a wildcard - admin implies the rest - cluster "
    "admin allows everything",
    "[unit][auth]") {
  const std::vector<GrantRecord> shop = {
      {"produce", "topic", "orders"}, {"produce", "group", "shop"}, {"consume", "group", "*"}};
  CHECK(Allows(shop, Permission::kProduce, "topic", "orders"));
  CHECK_FALSE(Allows(shop, Permission::kProduce, "topic", "payments"));
  CHECK_FALSE(Allows(shop, Permission::kConsume, "topic", "orders"));  // produce is not consume
  CHECK(Allows(shop, Permission::kProduce, "group", "shop"));
  CHECK_FALSE(Allows(shop, Permission::kProduce, "group", "cart"));
  CHECK(Allows(shop, Permission::kConsume, "group", "anything"));  // wildcard
  CHECK_FALSE(Allows(shop, Permission::kAdmin, "group", "shop"));
  CHECK_FALSE(Allows(shop, Permission::kAdmin, "cluster", "*"));

  const std::vector<GrantRecord> group_admin = {{"admin", "group", "shop"}};
  CHECK(Allows(group_admin, Permission::kProduce, "group", "shop"));
  CHECK(Allows(group_admin, Permission::kConsume, "group", "shop"));
  CHECK_FALSE(Allows(group_admin, Permission::kProduce, "topic", "shop"));  // kinds differ

  const std::vector<GrantRecord> root = {{"admin", "cluster", "*"}};
  CHECK(Allows(root, Permission::kProduce, "topic", "orders"));
  CHECK(Allows(root, Permission::kAdmin, "cluster", "*"));

  const std::vector<GrantRecord> cluster_reader = {{"consume", "cluster", "*"}};
  CHECK(Allows(cluster_reader, Permission::kConsume, "cluster", "*"));
  CHECK_FALSE(Allows(cluster_reader, Permission::kConsume, "topic", "orders"));
  CHECK_FALSE(Allows({}, Permission::kConsume, "topic", "orders"));
}

TEST_CASE("an open caller (auth off) is allowed everything without asking the store",
          "[unit][auth]") {
  ferry::test::UnimplementedStore store;
  Authorizer authorizer(store);
  CHECK(authorizer.Check(Caller::Open(), {{Permission::kAdmin, TransactionGroup("x")}}).ok());
  CHECK(store.calls == 0);
  CHECK(Caller::Open().As("admin") == "admin");
  auto alice = std::make_shared<const PrincipalRecord>(PrincipalRecord{"alice", {}, 0});
  CHECK(Caller::Of(alice).As("admin") == "admin alice");
  absl::Status denied = authorizer.Check(Caller::Of(alice), {{Permission::kProduce, Topic("t")}});
  CHECK(denied.code() == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(denied.message()) == "principal 'alice' lacks permission produce on topic 't'");
}

TEST_CASE("a transaction's group that cannot be read denies - it never allows", "[unit][auth]") {
  ferry::test::UnimplementedStore store;  // every lookup fails
  Authorizer authorizer(store);
  auto root = std::make_shared<const PrincipalRecord>(
      PrincipalRecord{"root", {{"admin", "cluster", "*"}}, 0});
  absl::Status s =
      authorizer.Check(Caller::Of(root), {{Permission::kProduce, TransactionGroup("t")}});
  CHECK_FALSE(s.ok());
  CHECK(store.calls == 1);
}
