// ferryctl topic: create, list, describe, update, delete.
#include "ferryctl/cli.h"

namespace ferryctl {
namespace {

struct Options {
  std::string name, retention = "7d", dedup_window = "24h", new_retention, new_dedup_window;
  uint32_t queues = 4;
  bool topic_ordered = false;
};

}  // namespace

void AddTopicCommands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<Options>();
  auto* topic = app.add_subcommand("topic", "create, list, describe, update, delete topics");
  topic->require_subcommand(1);
  auto* topic_create = topic->add_subcommand("create", "create a topic");
  topic_create->add_option("NAME", o->name, "topic name")->required();
  topic_create->add_option("--queues", o->queues, "number of queues (1-256)")
      ->capture_default_str();
  topic_create->add_option("--retention", o->retention, "how long messages are kept")
      ->capture_default_str();
  topic_create->add_option("--dedup-window", o->dedup_window, "how long dedup_ids are remembered")
      ->capture_default_str();
  topic_create->add_flag("--ordered", o->topic_ordered,
                         "every group reads each queue in order, one consumer at a time");
  auto* topic_list = topic->add_subcommand("list", "list topics");
  auto* topic_describe = topic->add_subcommand("describe", "per queue offsets of a topic");
  topic_describe->add_option("NAME", o->name, "topic name")->required();
  auto* topic_delete = topic->add_subcommand("delete", "delete a topic and its messages");
  topic_delete->add_option("NAME", o->name, "topic name")->required();
  auto* topic_update =
      topic->add_subcommand("update", "change a topic's retention or dedup window");
  topic_update->add_option("NAME", o->name, "topic name")->required();
  auto* retention_opt =
      topic_update->add_option("--retention", o->new_retention, "how long messages are kept");
  auto* window_opt = topic_update->add_option("--dedup-window", o->new_dedup_window,
                                              "how long dedup_ids are remembered");

  topic_update->callback([o, &ctx, retention_opt, window_opt] {
    ferry::v1::UpdateTopicRequest req;
    req.set_name(o->name);
    if (retention_opt->count() > 0) {
      req.set_retention_ms(ParseDurationMs(o->new_retention, "--retention"));
    }
    if (window_opt->count() > 0) {
      req.set_dedup_window_ms(ParseDurationMs(o->new_dedup_window, "--dedup-window"));
    }
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::UpdateTopic, req, "topic update");
    if (ctx.as_json) {
      std::cout << Dump(TopicJson(r.topic())) << "\n";
    } else {
      std::cout << "topic " << r.topic().name() << ": retention " << Ms(r.topic().retention_ms())
                << ", dedup window " << Ms(r.topic().dedup_window_ms()) << "\n";
    }
  });

  topic_create->callback([o, &ctx] {
    ferry::v1::TopicConfig t;
    t.set_name(o->name);
    t.set_queues(o->queues);
    t.set_retention_ms(ParseDurationMs(o->retention, "--retention"));
    t.set_dedup_window_ms(ParseDurationMs(o->dedup_window, "--dedup-window"));
    t.set_ordered(o->topic_ordered);
    auto r = Check(ctx.client().CreateTopic(t), "topic create");
    if (ctx.as_json) {
      std::cout << Dump(TopicJson(r.topic())) << "\n";
    } else {
      std::cout << "created topic " << r.topic().name() << " with " << r.topic().queues()
                << " queues\n";
    }
  });
  topic_list->callback([o, &ctx] {
    auto r = Check(ctx.client().ListTopics(), "topic list");
    if (ctx.as_json) {
      json out = json::array();
      for (const auto& t : r.topics()) out.push_back(TopicJson(t));
      std::cout << Dump(out) << "\n";
    } else {
      std::vector<std::vector<std::string>> rows{{"NAME", "QUEUES", "RETENTION", "DEDUP_WINDOW"}};
      for (const auto& t : r.topics()) {
        rows.push_back(
            {t.name(), std::to_string(t.queues()), Ms(t.retention_ms()), Ms(t.dedup_window_ms())});
      }
      PrintTable(rows);
    }
  });
  topic_describe->callback([o, &ctx] {
    auto r = Check(ctx.client().DescribeTopic(o->name), "topic describe");
    if (ctx.as_json) {
      json out = TopicJson(r.topic());
      out["queue_states"] = json::array();
      for (const auto& q : r.queues()) {
        out["queue_states"].push_back(json{{"queue", q.queue()},
                                           {"first_offset", q.first_offset()},
                                           {"end_offset", q.end_offset()},
                                           {"message_count", q.message_count()}});
      }
      out["delayed_messages"] = r.delayed_messages();
      std::cout << Dump(out) << "\n";
    } else {
      std::cout << "topic " << r.topic().name() << ": " << r.topic().queues()
                << " queues, retention " << Ms(r.topic().retention_ms()) << ", dedup window "
                << Ms(r.topic().dedup_window_ms()) << "\n";
      std::vector<std::vector<std::string>> rows{
          {"QUEUE", "FIRST_OFFSET", "END_OFFSET", "MESSAGES"}};
      for (const auto& q : r.queues()) {
        rows.push_back({std::to_string(q.queue()), std::to_string(q.first_offset()),
                        std::to_string(q.end_offset()), std::to_string(q.message_count())});
      }
      PrintTable(rows);
      std::cout << r.delayed_messages() << " delayed messages waiting (not yet due)\n";
    }
  });
  topic_delete->callback([o, &ctx] {
    absl::Status s = ctx.client().DeleteTopic(o->name);
    if (!s.ok()) Check(absl::StatusOr<int>(s), "topic delete");
    if (!ctx.as_json) std::cout << "deleted topic " << o->name << "\n";
  });
}

}  // namespace ferryctl
