// --auth (tokens, principals, grants in PostgreSQL) and TLS (with and without client
// certificates), against an in-process broker on 127.0.0.1.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>

#include "broker/server.h"
#include "client/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "support/broker_fixture.h"

using namespace ferry;
using test::BrokerFixture;
using test::G;
using test::NewPrincipal;
using test::WithToken;

namespace {

absl::StatusCode CodeOf(const absl::Status& s) { return s.code(); }

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& r) {
  return r.status();
}

v1::ProduceRequest OneMessage(const std::string& topic) {
  v1::ProduceRequest req;
  req.set_topic(topic);
  req.add_messages()->set_payload("p");
  return req;
}

v1::ConsumeRequest ConsumeReq(const std::string& group, const std::string& topic) {
  v1::ConsumeRequest req;
  req.set_group(group);
  req.set_topic(topic);
  req.set_max_messages(10);
  return req;
}

template <typename Req, typename Resp>
grpc::Status AdminCall(Client& c,
                       grpc::Status (v1::Admin::Stub::*method)(grpc::ClientContext*, const Req&,
                                                               Resp*),
                       const Req& req, Resp* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return (c.admin().*method)(&ctx, req, resp);
}

}  // namespace

TEST_CASE("auth: no token or an unknown token is UNAUTHENTICATED - health needs none",
          "[integration][security]") {
  BrokerFixture f([](broker::BrokerOptions& o) {
    o.auth = true;
    o.auth_cache_ms = 0;
  });
  auto r = f.client->Produce(OneMessage("orders"));
  CHECK(CodeOf(StatusOf(r)) == absl::StatusCode::kUnauthenticated);
  CHECK(std::string(StatusOf(r).message()).find("Bearer") != std::string::npos);
  CHECK(CodeOf(StatusOf(f.client->ListTopics())) == absl::StatusCode::kUnauthenticated);
  CHECK(CodeOf(StatusOf(WithToken(f, "ferry_nope")->ListTopics())) ==
        absl::StatusCode::kUnauthenticated);

  auto health = grpc::health::v1::Health::NewStub(MakeChannel(f.address()));
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hresp;
  grpc::ClientContext ctx;
  REQUIRE(health->Check(&ctx, hreq, &hresp).ok());
  CHECK(hresp.status() == grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_CASE(
    "auth: grants per topic and group - denials name the permission - revoke and delete "
    "take effect - tokens are stored hashed",
    "[integration][security]") {
  broker::BrokerOptions opts;
  BrokerFixture f([&](broker::BrokerOptions& o) {
    o.auth = true;
    o.auth_cache_ms = 0;
    opts = o;
  });
  auto admin_token = broker::CreateAdmin(opts, "root");
  REQUIRE(admin_token.ok());
  auto admin = WithToken(f, *admin_token);
  v1::TopicConfig t;
  t.set_name("orders");
  t.set_queues(1);
  REQUIRE(admin->CreateTopic(t).ok());
  t.set_name("payments");
  REQUIRE(admin->CreateTopic(t).ok());

  const std::string shop_token = NewPrincipal(
      *admin, "shop", {G("produce", "topic", "orders"), G("produce", "group", "shop")});
  const std::string cart_token = NewPrincipal(
      *admin, "cart", {G("consume", "topic", "orders"), G("consume", "group", "cart")});
  auto shop = WithToken(f, shop_token);
  auto cart = WithToken(f, cart_token);

  // Allowed.
  REQUIRE(shop->Produce(OneMessage("orders")).ok());
  auto got = cart->Consume(ConsumeReq("cart", "orders"));
  REQUIRE(got.ok());
  REQUIRE(got->messages_size() == 1);
  auto acked = cart->Ack("cart", {got->messages(0).receipt()});
  REQUIRE(acked.ok());
  CHECK(acked->results(0).status() == v1::COMMITTED);

  // Denied, with the permission and the resource named.
  auto denied = shop->Produce(OneMessage("payments"));
  CHECK(CodeOf(StatusOf(denied)) == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(StatusOf(denied).message()) ==
        "principal 'shop' lacks permission produce on topic 'payments'");
  auto wrong_group = cart->Consume(ConsumeReq("billing", "orders"));
  CHECK(CodeOf(StatusOf(wrong_group)) == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(StatusOf(wrong_group).message()).find("group 'billing'") != std::string::npos);
  CHECK(CodeOf(StatusOf(shop->Consume(ConsumeReq("shop", "orders")))) ==
        absl::StatusCode::kPermissionDenied);
  t.set_name("mine");
  auto not_admin = cart->CreateTopic(t);
  CHECK(CodeOf(StatusOf(not_admin)) == absl::StatusCode::kPermissionDenied);
  CHECK(std::string(StatusOf(not_admin).message()).find("admin") != std::string::npos);
  v1::ListPrincipalsResponse principals;
  CHECK(AdminCall(*cart, &v1::Admin::Stub::ListPrincipals, v1::ListPrincipalsRequest(), &principals)
            .error_code() == grpc::StatusCode::PERMISSION_DENIED);

  // Transactions: shop may act as producer group shop; cart may not end shop's transaction.
  v1::BeginTransactionRequest begin;
  begin.set_producer_group("shop");
  v1::BeginTransactionResponse began;
  {
    grpc::ClientContext ctx;
    REQUIRE(shop->broker().BeginTransaction(&ctx, begin, &began).ok());
  }
  v1::EndTransactionRequest end;
  end.set_transaction_id(began.transaction_id());
  end.set_decision(v1::TRANSACTION_COMMIT);
  v1::EndTransactionResponse ended;
  {
    grpc::ClientContext ctx;
    grpc::Status s = cart->broker().EndTransaction(&ctx, end, &ended);
    CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(s.error_message().find("group 'shop'") != std::string::npos);
  }
  {
    grpc::ClientContext ctx;
    CHECK(shop->broker().EndTransaction(&ctx, end, &ended).ok());
  }
  // Answering back-checks of a producer group is acting as it.
  {
    grpc::ClientContext ctx;
    auto stream = cart->broker().CheckTransaction(&ctx);
    v1::CheckTransactionRequest sub;
    sub.mutable_subscribe()->add_producer_groups("shop");
    stream->Write(sub);
    stream->WritesDone();
    v1::CheckTransactionResponse ignored;
    while (stream->Read(&ignored)) {
    }
    grpc::Status s = stream->Finish();
    CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  }

  // The list shows who may do what.
  REQUIRE(
      AdminCall(*admin, &v1::Admin::Stub::ListPrincipals, v1::ListPrincipalsRequest(), &principals)
          .ok());
  REQUIRE(principals.principals_size() == 3);
  CHECK(principals.principals(0).name() == "cart");
  CHECK(principals.principals(0).grants_size() == 2);

  // Revoke: the next call is denied (cache 0 ms here; --auth-cache-ms by default).
  v1::RevokeRequest revoke;
  revoke.set_principal("shop");
  *revoke.mutable_grant() = G("produce", "topic", "orders");
  v1::RevokeResponse revoked;
  REQUIRE(AdminCall(*admin, &v1::Admin::Stub::Revoke, revoke, &revoked).ok());
  CHECK(CodeOf(StatusOf(shop->Produce(OneMessage("orders")))) ==
        absl::StatusCode::kPermissionDenied);
  CHECK(AdminCall(*admin, &v1::Admin::Stub::Revoke, revoke, &revoked).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  // A wildcard grant covers every topic.
  v1::GrantRequest grant;
  grant.set_principal("shop");
  *grant.mutable_grant() = G("produce", "topic", "*");
  v1::GrantResponse granted;
  REQUIRE(AdminCall(*admin, &v1::Admin::Stub::Grant, grant, &granted).ok());
  CHECK(shop->Produce(OneMessage("payments")).ok());
  // Bad grants are refused precisely.
  *grant.mutable_grant() = G("write", "topic", "orders");
  grpc::Status bad = AdminCall(*admin, &v1::Admin::Stub::Grant, grant, &granted);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(bad.error_message().find("produce, consume or admin") != std::string::npos);
  v1::CreatePrincipalRequest flood;
  flood.set_name("flood");
  for (int i = 0; i < 101; ++i) {
    *flood.add_grants() = G("produce", "topic", "t" + std::to_string(i));
  }
  v1::CreatePrincipalResponse flooded;
  bad = AdminCall(*admin, &v1::Admin::Stub::CreatePrincipal, flood, &flooded);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(bad.error_message() == "grants: 101 in one call; at most 100");
  CHECK(f.Query("SELECT count(*) FROM principals WHERE name = 'flood'")[0] == "0");

  // Rotate: the old token stops working, the new one works.
  v1::RotateTokenRequest rotate;
  rotate.set_name("shop");
  v1::RotateTokenResponse rotated;
  REQUIRE(AdminCall(*admin, &v1::Admin::Stub::RotateToken, rotate, &rotated).ok());
  CHECK(CodeOf(StatusOf(shop->Produce(OneMessage("orders")))) ==
        absl::StatusCode::kUnauthenticated);
  CHECK(WithToken(f, rotated.token())->Produce(OneMessage("payments")).ok());

  // Delete: the token is unknown from then on.
  v1::DeletePrincipalRequest del;
  del.set_name("cart");
  v1::DeletePrincipalResponse deleted;
  REQUIRE(AdminCall(*admin, &v1::Admin::Stub::DeletePrincipal, del, &deleted).ok());
  CHECK(CodeOf(StatusOf(cart->Consume(ConsumeReq("cart", "orders")))) ==
        absl::StatusCode::kUnauthenticated);

  // Stored: the SHA-256 of the token, never the token.
  CHECK(f.Query("SELECT count(*) FROM principals WHERE token_sha256 = sha256(convert_to('" +
                *admin_token + "', 'UTF8'))")[0] == "1");
  CHECK(f.Query("SELECT count(*) FROM principals p WHERE p::text LIKE '%" + admin_token->substr(6) +
                "%'")[0] == "0");
  CHECK(f.Query("SELECT count(*) FROM grants g WHERE g::text LIKE '%" + admin_token->substr(6) +
                "%'")[0] == "0");
}

namespace {

// A throwaway PKI made with the openssl command: a CA, a server certificate for localhost and
// 127.0.0.1, a client certificate from the same CA, and one from an unrelated CA.
struct Pki {
  std::string dir = "/tmp/ferry-pki-" + std::to_string(getpid());
  Pki() {
    std::filesystem::create_directories(dir);
    const std::string script = R"(set -e
cd ")" + dir + R"("
gen() { openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" -keyout "$1.key" -out "$1.pem" 2>/dev/null; }
leaf() { # name, ca, extension
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
gen ca
gen rogue-ca
leaf server ca "subjectAltName=DNS:localhost,IP:127.0.0.1"
leaf client ca "extendedKeyUsage=clientAuth"
leaf rogue rogue-ca "extendedKeyUsage=clientAuth"
)";
    REQUIRE(std::system(("bash -c '" + Escape(script) + "'").c_str()) == 0);
  }
  ~Pki() { std::filesystem::remove_all(dir); }
  std::string path(const std::string& name) const { return dir + "/" + name; }

  static std::string Escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == '\'') {
        out += "'\\''";
      } else {
        out += c;
      }
    }
    return out;
  }
};

absl::Status ListVia(BrokerFixture& f, ChannelOptions o) {
  o.tls_server_name = "localhost";
  auto channel = MakeChannel(f.address(), o);
  if (!channel.ok()) return channel.status();
  Client c(*channel);
  c.set_timeout(std::chrono::seconds(5));
  return c.ListTopics().status();
}

}  // namespace

TEST_CASE("TLS: a verified client certificate is required when --tls-client-ca is set",
          "[integration][security]") {
  Pki pki;
  BrokerFixture f([&](broker::BrokerOptions& o) {
    o.tls_cert_file = pki.path("server.pem");
    o.tls_key_file = pki.path("server.key");
    o.tls_client_ca_file = pki.path("ca.pem");
  });
  ChannelOptions good;
  good.tls_ca_file = pki.path("ca.pem");
  good.tls_cert_file = pki.path("client.pem");
  good.tls_key_file = pki.path("client.key");
  CHECK(ListVia(f, good).ok());

  ChannelOptions no_cert;
  no_cert.tls_ca_file = pki.path("ca.pem");
  CHECK(ListVia(f, no_cert).code() == absl::StatusCode::kUnavailable);

  ChannelOptions rogue = good;
  rogue.tls_cert_file = pki.path("rogue.pem");
  rogue.tls_key_file = pki.path("rogue.key");
  CHECK(ListVia(f, rogue).code() == absl::StatusCode::kUnavailable);

  // Plaintext to a TLS port gets nowhere.
  Client plain(MakeChannel(f.address()));
  plain.set_timeout(std::chrono::seconds(5));
  CHECK_FALSE(plain.ListTopics().ok());
}

TEST_CASE("TLS without --tls-client-ca: any client that trusts the broker's CA connects",
          "[integration][security]") {
  Pki pki;
  BrokerFixture f([&](broker::BrokerOptions& o) {
    o.tls_cert_file = pki.path("server.pem");
    o.tls_key_file = pki.path("server.key");
  });
  ChannelOptions o;
  o.tls_ca_file = pki.path("ca.pem");
  CHECK(ListVia(f, o).ok());
  // A client that does not trust the broker's CA refuses it.
  ChannelOptions distrust;
  distrust.tls_ca_file = pki.path("rogue-ca.pem");
  CHECK(ListVia(f, distrust).code() == absl::StatusCode::kUnavailable);
  // A missing file is reported before any connection.
  ChannelOptions missing;
  missing.tls_ca_file = pki.path("nope.pem");
  absl::Status s = ListVia(f, missing);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(s.message()).find("nope.pem") != std::string::npos);
}
