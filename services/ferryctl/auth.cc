// ferryctl auth: principals, tokens and grants (a broker run with --auth).
#include "ferryctl/cli.h"

namespace ferryctl {
namespace {

struct Options {
  std::string principal, permission, resource;
  std::vector<std::string> grant_specs;
};

}  // namespace

void AddAuthCommands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<Options>();
  auto* auth = app.add_subcommand("auth", "principals, tokens and grants (broker --auth)");
  auth->require_subcommand(1);
  auto* auth_create = auth->add_subcommand("create", "create a principal; prints its token once");
  auth_create->add_option("NAME", o->principal, "principal name")->required();
  auth_create->add_option("--grant", o->grant_specs,
                          "PERMISSION:RESOURCE, e.g. produce:topic:orders (repeatable)");
  auto* auth_rotate = auth->add_subcommand("rotate", "a new token; the old one stops working");
  auth_rotate->add_option("NAME", o->principal, "principal name")->required();
  auto* auth_delete = auth->add_subcommand("delete", "delete a principal and its grants");
  auth_delete->add_option("NAME", o->principal, "principal name")->required();
  auto* auth_list = auth->add_subcommand("list", "principals and their grants");
  auto* auth_grant = auth->add_subcommand("grant", "allow a principal something");
  auto* auth_revoke = auth->add_subcommand("revoke", "take a grant away");
  for (auto* sub : {auth_grant, auth_revoke}) {
    sub->add_option("NAME", o->principal, "principal name")->required();
    sub->add_option("PERMISSION", o->permission, "produce|consume|admin")->required();
    sub->add_option("RESOURCE", o->resource, "topic:NAME, group:NAME (NAME may be *) or cluster")
        ->required();
  }

  auth_create->callback([o, &ctx] {
    ferry::v1::CreatePrincipalRequest req;
    req.set_name(o->principal);
    for (const auto& spec : o->grant_specs) {
      const auto colon = spec.find(':');
      if (colon == std::string::npos) throw Failure{"--grant " + spec + ": PERMISSION:RESOURCE"};
      *req.add_grants() = ParseGrant(spec.substr(0, colon), spec.substr(colon + 1));
    }
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::CreatePrincipal, req, "auth create");
    if (ctx.as_json) {
      std::cout << Dump(json{{"principal", o->principal}, {"token", r.token()}}) << "\n";
    } else {
      std::cout << r.token() << "\n";
    }
  });
  auth_rotate->callback([o, &ctx] {
    ferry::v1::RotateTokenRequest req;
    req.set_name(o->principal);
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::RotateToken, req, "auth rotate");
    std::cout << r.token() << "\n";
  });
  auth_delete->callback([o, &ctx] {
    ferry::v1::DeletePrincipalRequest req;
    req.set_name(o->principal);
    AdminCall(ctx.client(), &ferry::v1::Admin::Stub::DeletePrincipal, req, "auth delete");
    if (!ctx.as_json) std::cout << "deleted principal " << o->principal << "\n";
  });
  auto change = [o, &ctx](bool grant) {
    ferry::v1::GrantRequest g;
    g.set_principal(o->principal);
    *g.mutable_grant() = ParseGrant(o->permission, o->resource);
    if (grant) {
      AdminCall(ctx.client(), &ferry::v1::Admin::Stub::Grant, g, "auth grant");
    } else {
      ferry::v1::RevokeRequest r;
      r.set_principal(o->principal);
      *r.mutable_grant() = g.grant();
      AdminCall(ctx.client(), &ferry::v1::Admin::Stub::Revoke, r, "auth revoke");
    }
    if (!ctx.as_json) {
      std::cout << (grant ? "granted " : "revoked ") << o->permission << " on " << o->resource
                << (grant ? " to " : " from ") << o->principal << "\n";
    }
  };
  auth_grant->callback([change] { change(true); });
  auth_revoke->callback([change] { change(false); });
  auth_list->callback([o, &ctx] {
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::ListPrincipals,
                       ferry::v1::ListPrincipalsRequest(), "auth list");
    std::vector<std::vector<std::string>> rows{{"PRINCIPAL", "PERMISSION", "RESOURCE"}};
    json out = json::array();
    for (const auto& p : r.principals()) {
      json grants = json::array();
      if (p.grants().empty()) rows.push_back({p.name(), "-", "-"});
      for (const auto& g : p.grants()) {
        const std::string res = g.resource_type() == "cluster"
                                    ? "cluster"
                                    : g.resource_type() + ":" + g.resource_name();
        rows.push_back({p.name(), g.permission(), res});
        grants.push_back(json{{"permission", g.permission()}, {"resource", res}});
      }
      out.push_back(json{{"principal", p.name()}, {"grants", grants}});
    }
    if (ctx.as_json) {
      std::cout << Dump(out) << "\n";
    } else {
      PrintTable(rows);
    }
  });
}

}  // namespace ferryctl
