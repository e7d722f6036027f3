// ferryctl group, dlq, delayed: consumer groups, their dead letters, delayed messages.
#include "ferryctl/cli.h"

namespace ferryctl {
namespace {

struct Options {
  std::string group, name, backoff, backoff_exp, start, ordered_text, reset_to, to_topic;
  std::vector<std::string> group_topics, ids;
  uint32_t max_attempts = 0, limit = 100;
  uint64_t delayed_id = 0;
  bool group_ordered = false, all = false, dry_run = false;
};

}  // namespace

void AddGroupCommands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<Options>();
  // o->group ...
  auto* grp = app.add_subcommand("group", "consumer groups: policy, position");
  grp->require_subcommand(1);
  auto* group_create = grp->add_subcommand("create", "create a group with its delivery policy");
  group_create->add_option("NAME", o->group, "group name")->required();
  group_create->add_option("--topic", o->group_topics, "fix the start position on this topic now");
  group_create->add_option("--max-attempts", o->max_attempts,
                           "deliveries before dead letters (16)");
  auto* backoff_opt =
      group_create->add_option("--backoff", o->backoff, "retry delays by attempt, e.g. 10s,30s,1m");
  group_create->add_option("--backoff-exp", o->backoff_exp, "exponential retry delays MIN,MAX")
      ->excludes(backoff_opt);
  group_create->add_flag("--ordered", o->group_ordered, "read each queue in order");
  group_create->add_option("--start", o->start, "earliest|latest (default earliest)");
  auto* group_describe = grp->add_subcommand("describe", "policy and topics of a group");
  group_describe->add_option("NAME", o->group, "group name")->required();
  auto* group_update = grp->add_subcommand("update", "change a group's policy");
  group_update->add_option("NAME", o->group, "group name")->required();
  group_update->add_option("--max-attempts", o->max_attempts, "deliveries before dead letters");
  auto* backoff_opt2 = group_update->add_option("--backoff", o->backoff, "e.g. 10s,30s,1m");
  group_update->add_option("--backoff-exp", o->backoff_exp, "MIN,MAX")->excludes(backoff_opt2);
  group_update->add_option("--ordered", o->ordered_text, "true|false");
  group_update->add_option("--start", o->start, "earliest|latest");
  auto* group_list = grp->add_subcommand("list", "every group, with its policy and topics");
  auto* group_delete = grp->add_subcommand(
      "delete", "delete a group: its positions, leases, retries and dead letters");
  group_delete->add_option("NAME", o->group, "group name")->required();
  auto* group_reset = grp->add_subcommand("reset", "move a group's position on a topic");
  group_reset->add_option("NAME", o->group, "group name")->required();
  group_reset->add_option("--topic", o->name, "topic")->required();
  group_reset
      ->add_option("--to", o->reset_to,
                   "earliest | latest | RFC 3339 time | QUEUE:OFFSET[,QUEUE:OFFSET...]")
      ->required();
  group_reset->add_flag("--dry-run", o->dry_run,
                        "only show where each queue would move and what is redelivered or skipped");

  // dlq ...
  auto* dlq = app.add_subcommand("dlq", "dead letters of a group: list, redrive, purge");
  dlq->require_subcommand(1);
  auto* dlq_list = dlq->add_subcommand("list", "list dead letters, oldest first");
  dlq_list->add_option("--group", o->group, "consumer group")->required();
  dlq_list->add_option("--topic", o->name, "only this topic");
  dlq_list->add_option("--limit", o->limit, "at most this many (1-1000)")->capture_default_str();
  auto* dlq_redrive = dlq->add_subcommand("redrive", "deliver dead letters again");
  dlq_redrive->add_option("--group", o->group, "consumer group")->required();
  auto* all_opt = dlq_redrive->add_flag("--all", o->all, "every dead letter of the group");
  dlq_redrive->add_option("ID", o->ids, "dead letter ids")->excludes(all_opt);
  dlq_redrive->add_option("--to-topic", o->to_topic,
                          "produce them to this topic instead of back to the group");
  auto* dlq_purge = dlq->add_subcommand("purge", "delete dead letters");
  dlq_purge->add_option("--group", o->group, "consumer group")->required();
  auto* all_opt2 = dlq_purge->add_flag("--all", o->all, "every dead letter of the group");
  dlq_purge->add_option("ID", o->ids, "dead letter ids")->excludes(all_opt2);

  // delayed ...
  auto* delayed = app.add_subcommand("delayed", "delayed messages");
  delayed->require_subcommand(1);
  auto* delayed_cancel = delayed->add_subcommand("cancel", "cancel one that is not due yet");
  delayed_cancel->add_option("TOPIC", o->name, "topic")->required();
  delayed_cancel->add_option("ID", o->delayed_id, "the id produce printed")->required();

  group_create->callback([o, &ctx] {
    ferry::v1::CreateGroupRequest req;
    auto* g = req.mutable_group();
    g->set_name(o->group);
    g->set_max_delivery_attempts(o->max_attempts);
    if (!o->backoff.empty()) {
      for (uint64_t b : ParseDurationList(o->backoff, "--backoff")) g->add_backoff_ms(b);
    }
    if (!o->backoff_exp.empty()) {
      auto mm = ParseDurationList(o->backoff_exp, "--backoff-exp");
      if (mm.size() != 2) throw Failure{"--backoff-exp takes MIN,MAX"};
      g->set_backoff_min_ms(mm[0]);
      g->set_backoff_max_ms(mm[1]);
    }
    g->set_ordered(o->group_ordered);
    if (!o->start.empty()) g->set_start_position(ParseStart(o->start));
    for (const auto& t : o->group_topics) req.add_topics(t);
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::CreateGroup, req, "group create");
    if (ctx.as_json) {
      std::cout << Dump(GroupJson(r.group())) << "\n";
    } else {
      PrintGroup(r.group());
    }
  });
  group_describe->callback([o, &ctx] {
    ferry::v1::DescribeGroupRequest req;
    req.set_name(o->group);
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::DescribeGroup, req, "group describe");
    if (ctx.as_json) {
      json j = GroupJson(r.group());
      j["topics"] = std::vector<std::string>(r.topics().begin(), r.topics().end());
      std::cout << Dump(j) << "\n";
    } else {
      PrintGroup(r.group());
      std::cout << "topics:";
      for (const auto& t : r.topics()) std::cout << " " << t;
      std::cout << "\n";
    }
  });
  group_update->callback([o, &ctx] {
    ferry::v1::UpdateGroupRequest req;
    req.set_name(o->group);
    if (o->max_attempts > 0) req.set_max_delivery_attempts(o->max_attempts);
    if (!o->backoff.empty()) {
      req.set_set_backoff(true);
      for (uint64_t b : ParseDurationList(o->backoff, "--backoff")) req.add_backoff_ms(b);
      req.set_backoff_min_ms(0);  // a list replaces an exponential schedule
      req.set_backoff_max_ms(0);
    }
    if (!o->backoff_exp.empty()) {
      auto mm = ParseDurationList(o->backoff_exp, "--backoff-exp");
      if (mm.size() != 2) throw Failure{"--backoff-exp takes MIN,MAX"};
      req.set_backoff_min_ms(mm[0]);
      req.set_backoff_max_ms(mm[1]);
    }
    if (!o->ordered_text.empty()) {
      if (o->ordered_text != "true" && o->ordered_text != "false") {
        throw Failure{"--ordered takes true or false"};
      }
      req.set_ordered(o->ordered_text == "true");
    }
    if (!o->start.empty()) req.set_start_position(ParseStart(o->start));
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::UpdateGroup, req, "group update");
    if (ctx.as_json) {
      std::cout << Dump(GroupJson(r.group())) << "\n";
    } else {
      PrintGroup(r.group());
    }
  });
  group_list->callback([&ctx] {
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::ListGroups,
                       ferry::v1::ListGroupsRequest(), "group list");
    std::vector<std::vector<std::string>> rows{{"NAME", "MAX_ATTEMPTS", "ORDERED", "TOPICS"}};
    for (const auto& g : r.groups()) {
      if (ctx.as_json) {
        json j = GroupJson(g.group());
        j["topics"] = std::vector<std::string>(g.topics().begin(), g.topics().end());
        j["created_at_ms"] = g.created_at_unix_ms();
        std::cout << Dump(j) << "\n";
      } else {
        std::string topics;
        for (const auto& t : g.topics()) topics += (topics.empty() ? "" : ",") + t;
        rows.push_back({g.group().name(), std::to_string(g.group().max_delivery_attempts()),
                        g.group().ordered() ? "yes" : "no", topics.empty() ? "-" : topics});
      }
    }
    if (!ctx.as_json) PrintTable(rows);
  });
  group_delete->callback([o, &ctx] {
    ferry::v1::DeleteGroupRequest req;
    req.set_name(o->group);
    AdminCall(ctx.client(), &ferry::v1::Admin::Stub::DeleteGroup, req, "group delete");
    if (!ctx.as_json) std::cout << "deleted group " << o->group << "\n";
  });
  group_reset->callback([o, &ctx] {
    ferry::v1::ResetGroupRequest req;
    req.set_group(o->group);
    req.set_topic(o->name);
    req.set_dry_run(o->dry_run);
    if (o->reset_to == "earliest" || o->reset_to == "latest") {
      req.set_position(ParseStart(o->reset_to));
    } else if (o->reset_to.find(':') != std::string::npos &&
               o->reset_to.find('T') == std::string::npos) {
      for (absl::string_view part : absl::StrSplit(o->reset_to, ',', absl::SkipEmpty())) {
        std::vector<std::string> qo = absl::StrSplit(part, ':');
        uint32_t q = 0;
        uint64_t o = 0;
        if (qo.size() != 2 || !absl::SimpleAtoi(qo[0], &q) || !absl::SimpleAtoi(qo[1], &o)) {
          throw Failure{"--to: \"" + std::string(part) + "\" is not QUEUE:OFFSET"};
        }
        auto* e = req.mutable_offsets()->add_offsets();
        e->set_queue(q);
        e->set_offset(o);
      }
    } else {
      req.set_timestamp_ms(static_cast<uint64_t>(ParseTimeMs(o->reset_to, "--to")));
    }
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::ResetGroup, req, "group reset");
    // The broker keeps a position within what is stored (Kafka's reset does the same): say so
    // when an asked offset was moved.
    if (req.has_offsets()) {
      for (const auto& asked : req.offsets().offsets()) {
        for (const auto& p : r.positions()) {
          if (p.queue() != asked.queue() || p.offset() == asked.offset()) continue;
          std::cerr << "ferryctl: group reset: queue " << asked.queue() << ": offset "
                    << asked.offset()
                    << (asked.offset() > p.offset() ? " is past the queue's end"
                                                    : " is before the oldest stored message")
                    << "; the position is " << p.offset() << "\n";
        }
      }
    }
    std::vector<std::vector<std::string>> rows{{"QUEUE", "FROM", "POSITION", "EFFECT"}};
    json out = json::array();
    for (int i = 0; i < r.positions_size(); ++i) {
      const auto& p = r.positions(i);
      const uint64_t before = i < r.previous_size() ? r.previous(i).offset() : p.offset();
      const std::string effect =
          p.offset() < before   ? "redelivers " + std::to_string(before - p.offset())
          : p.offset() > before ? "skips " + std::to_string(p.offset() - before)
                                : "no change";
      rows.push_back(
          {std::to_string(p.queue()), std::to_string(before), std::to_string(p.offset()), effect});
      out.push_back(json{{"queue", p.queue()}, {"offset", p.offset()}, {"previous", before}});
    }
    if (o->dry_run && !ctx.as_json) std::cout << "dry run: nothing changed\n";
    if (ctx.as_json) {
      std::cout << Dump(out) << "\n";
    } else {
      PrintTable(rows);
    }
  });
  dlq_list->callback([o, &ctx] {
    ferry::v1::ListDeadLettersRequest req;
    req.set_group(o->group);
    req.set_topic(o->name);
    req.set_page_size(o->limit);
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::ListDeadLetters, req, "dlq list");
    std::vector<std::vector<std::string>> rows{
        {"ID", "TOPIC", "QUEUE", "OFFSET", "KEY", "ATTEMPTS", "DIED", "REASON"}};
    for (const auto& d : r.dead_letters()) {
      if (ctx.as_json) {
        json headers_json = json::object();
        for (const auto& [k, v] : d.headers()) headers_json[k] = v;
        json line{{"id", d.id()},
                  {"topic", d.topic()},
                  {"queue", d.queue()},
                  {"offset", d.offset()},
                  {"key", d.key()}};
        AddPayload(line, d.payload());
        line.update(json{{"headers", headers_json},
                         {"attempts", d.attempts()},
                         {"reason", d.reason()},
                         {"produced_at_ms", d.produced_at_unix_ms()},
                         {"first_delivered_at_ms", d.first_delivered_at_unix_ms()},
                         {"last_delivered_at_ms", d.last_delivered_at_unix_ms()},
                         {"dead_at_ms", d.dead_at_unix_ms()}});
        std::cout << Dump(line) << "\n";
      } else {
        rows.push_back(
            {std::to_string(d.id()), d.topic(), std::to_string(d.queue()),
             std::to_string(d.offset()), d.key(), std::to_string(d.attempts()),
             absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                              absl::FromUnixMillis(static_cast<int64_t>(d.dead_at_unix_ms())),
                              absl::UTCTimeZone()),
             d.reason()});
      }
    }
    if (!ctx.as_json) {
      PrintTable(rows);
      if (!r.next_page_token().empty()) std::cout << "(more: raise --limit)\n";
    }
  });
  dlq_redrive->callback([o, &ctx] {
    ferry::v1::RedriveDeadLettersRequest req;
    req.set_group(o->group);
    req.set_all(o->all);
    for (uint64_t id : ParseIds(o->ids)) req.add_ids(id);
    req.set_to_topic(o->to_topic);
    auto r =
        AdminCall(ctx.client(), &ferry::v1::Admin::Stub::RedriveDeadLetters, req, "dlq redrive");
    if (ctx.as_json) {
      json failures = json::array();
      for (const auto& f : r.failures()) {
        failures.push_back(json{{"id", f.id()}, {"reason", f.reason()}});
      }
      std::cout << Dump(json{{"redriven", r.redriven()}, {"failures", failures}}) << "\n";
    } else {
      std::cout << "redriven " << r.redriven() << "\n";
      for (const auto& f : r.failures()) {
        std::cout << "kept " << f.id() << ": " << f.reason() << "\n";
      }
    }
    if (r.failures_size() > 0) {
      ctx.exit_code = 1;
      return;
    }
  });
  dlq_purge->callback([o, &ctx] {
    ferry::v1::PurgeDeadLettersRequest req;
    req.set_group(o->group);
    req.set_all(o->all);
    for (uint64_t id : ParseIds(o->ids)) req.add_ids(id);
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::PurgeDeadLetters, req, "dlq purge");
    if (ctx.as_json) {
      std::cout << Dump(json{{"purged", r.purged()}}) << "\n";
    } else {
      std::cout << "purged " << r.purged() << "\n";
    }
  });
  delayed_cancel->callback([o, &ctx] {
    ferry::v1::CancelDelayedRequest req;
    req.set_topic(o->name);
    req.set_delayed_id(o->delayed_id);
    AdminCall(ctx.client(), &ferry::v1::Admin::Stub::CancelDelayed, req, "delayed cancel");
    if (!ctx.as_json) std::cout << "cancelled " << o->delayed_id << "\n";
  });
}

}  // namespace ferryctl
