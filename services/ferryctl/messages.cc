// ferryctl produce, consume, commit, lag: the data plane from the command line.
#include <optional>

#include "ferryctl/cli.h"

namespace ferryctl {
namespace {

struct Options {
  std::string position;
  uint32_t peek_queue = 0;
  uint64_t peek_from = 0;
  std::optional<std::string> peek_key, peek_dedup_id;
  std::string peek_after, peek_before;
  std::string name, key, dedup_id, value, deliver_at, txn_group, check_ref, txn_id, group,
      dead_letter;
  std::vector<std::string> headers, receipts;
  size_t batch = 100;
  double retry_for_s = 30;
  uint64_t delay_ms = 0;
  CLI::Option* value_opt = nullptr;
  uint32_t max = 10, wait_ms = 1000, visibility_ms = 30000;
  std::optional<uint32_t> retry_delay_ms;
  bool no_commit = false, latest = false, retry = false;
};

}  // namespace

void AddMessageCommands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<Options>();
  auto* produce = app.add_subcommand(
      "produce", "send --value, or one message per line of standard input (sent in batches)");
  produce->add_option("TOPIC", o->name, "topic")->required();
  produce->add_option("--key", o->key, "message key (same key: same queue, in order)");
  produce->add_option("--dedup-id", o->dedup_id, "dedup id (only with --value)");
  produce->add_option("--header", o->headers, "header k=v (repeatable)");
  o->value_opt = produce->add_option("--value", o->value, "the payload");
  produce
      ->add_option("--retry-for", o->retry_for_s,
                   "seconds to keep retrying a batch while the broker or its database is "
                   "unreachable (same dedup ids: stored once); 0: no retry")
      ->capture_default_str();
  produce->add_option("--batch", o->batch, "messages per Produce call from stdin (1-1000)")
      ->capture_default_str();
  auto* delay_opt = produce->add_option("--delay-ms", o->delay_ms, "deliver no earlier than this");
  produce->add_option("--deliver-at", o->deliver_at, "deliver no earlier than this RFC 3339 time")
      ->excludes(delay_opt);
  auto* txn_group_opt = produce->add_option(
      "--txn-group", o->txn_group,
      "begin a transaction for this producer group and store the messages as half messages "
      "(prints the transaction id; end it with `ferryctl txn end`)");
  produce->add_option("--check-ref", o->check_ref, "with --txn-group: handed back in back-checks")
      ->needs(txn_group_opt);
  produce->add_option("--txn", o->txn_id, "add the messages to this open transaction")
      ->excludes(txn_group_opt);

  // consume
  auto* consume =
      app.add_subcommand("consume", "receive messages as JSON lines; ACK them unless --no-commit");
  consume->add_option("TOPIC", o->name, "topic")->required();
  consume->add_option("--group", o->group, "consumer group")->required();
  consume->add_option("--max", o->max, "at most this many messages (1-1000)")
      ->capture_default_str();
  consume->add_option("--wait-ms", o->wait_ms, "long poll up to this long (0-30000)")
      ->capture_default_str();
  consume->add_option("--visibility-ms", o->visibility_ms, "lease length (1000-43200000)")
      ->capture_default_str();
  consume->add_flag("--no-commit", o->no_commit,
                    "do not ACK: the messages come back after the lease");
  consume->add_flag("--latest", o->latest,
                    "a new group starts at the end instead of the beginning");

  // commit
  auto* commit = app.add_subcommand("commit", "ACK receipts");
  commit->add_option("--group", o->group, "consumer group")->required();
  commit->add_option("RECEIPT", o->receipts, "receipts from consume")->required();
  auto* retry_opt = commit->add_flag("--retry", o->retry, "deliver again after a backoff");
  commit
      ->add_option("--delay-ms", o->retry_delay_ms,
                   "with --retry: deliver again after this many ms (0: now; default: the "
                   "group's backoff)")
      ->needs(retry_opt);
  commit
      ->add_option("--dead-letter", o->dead_letter,
                   "move to the group's dead letters, with this reason")
      ->excludes(retry_opt);

  // message get, peek: reading never consumes
  auto* message = app.add_subcommand("message", "one stored message and where it is per group");
  message->require_subcommand(1);
  auto* message_get = message->add_subcommand(
      "get", "print a message and its state for every group (pending, in flight, acked, ...)");
  message_get->add_option("TOPIC", o->name, "topic")->required();
  message_get->add_option("POSITION", o->position, "QUEUE:OFFSET")->required();
  auto* peek = app.add_subcommand(
      "peek", "print stored messages as JSON lines without a lease (nothing is consumed)");
  peek->add_option("TOPIC", o->name, "topic")->required();
  auto* peek_queue_opt = peek->add_option("--queue", o->peek_queue, "only this queue");
  peek->add_option("--from", o->peek_from, "from this offset (default: the oldest stored)");
  peek->add_option("--max", o->max, "at most this many per queue (1-1000)")->capture_default_str();
  peek->add_option("--key", o->peek_key,
                   "only messages with this key (without --queue: the key's own queue)");
  peek->add_option("--dedup-id", o->peek_dedup_id,
                   "only the message with this dedup id (the relay's outbox id)");
  peek->add_option("--after", o->peek_after, "only messages produced at or after (RFC 3339)");
  peek->add_option("--before", o->peek_before, "only messages produced before (RFC 3339)");

  // lag
  auto* lag = app.add_subcommand("lag", "a group's progress per queue");
  lag->add_option("--group", o->group, "consumer group")->required();
  lag->add_option("--topic", o->name, "only this topic");

  produce->callback([o, &ctx] {
    if (o->batch < 1 || o->batch > 1000) throw Failure{"--batch must be between 1 and 1000"};
    ferry::v1::ProducedMessage base;
    base.set_key(o->key);
    for (const auto& h : o->headers) {
      const auto eq = h.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw Failure{"--header \"" + h + "\" must be NAME=VALUE"};
      }
      (*base.mutable_headers())[h.substr(0, eq)] = h.substr(eq + 1);
    }
    if (!o->dedup_id.empty() && o->value_opt->count() == 0) {
      throw Failure{"--dedup-id needs --value (each stdin line would share one dedup id)"};
    }
    base.set_delay_ms(o->delay_ms);
    if (!o->deliver_at.empty()) {
      *base.mutable_deliver_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(
          ParseTimeMs(o->deliver_at, "--deliver-at"));
    }
    auto send = [&](ferry::v1::ProduceRequest& req) {
      // Retried with the same dedup ids (generated for lines without one) while the broker or
      // its database is unreachable: a batch is stored once even if an answer was lost.
      auto r =
          Check(ctx.client().ProduceWithRetry(
                    req, std::chrono::milliseconds(static_cast<int64_t>(o->retry_for_s * 1000))),
                "produce");
      if (!r.transaction_id().empty()) {
        // Half messages: one line with the transaction; later batches join it.
        if (req.has_transactional()) {
          if (ctx.as_json) {
            std::cout << Dump(json{{"transaction_id", r.transaction_id()},
                                   {"half_messages", r.results_size()}})
                      << "\n";
          } else {
            std::cout << "transaction " << r.transaction_id() << " (" << r.results_size()
                      << " half messages; end it with: ferryctl txn end " << r.transaction_id()
                      << " --commit | --rollback)\n";
          }
          req.clear_transactional();
          req.set_transaction_id(r.transaction_id());
        } else if (!ctx.as_json) {
          std::cout << r.results_size() << " more half messages in " << r.transaction_id() << "\n";
        }
        req.clear_messages();
        return;
      }
      for (const auto& res : r.results()) {
        if (ctx.as_json) {
          json j{{"duplicate", res.duplicate()}};
          if (res.delayed()) {
            j["delayed_id"] = res.delayed_id();
          } else {
            j["queue"] = res.queue();
            j["offset"] = res.offset();
          }
          std::cout << Dump(j) << "\n";
        } else if (res.delayed()) {
          std::cout << "delayed_id " << res.delayed_id()
                    << (res.duplicate() ? " (duplicate: stored before)" : "") << "\n";
        } else {
          std::cout << "queue " << res.queue() << " offset " << res.offset()
                    << (res.duplicate() ? " (duplicate: stored before)" : "") << "\n";
        }
      }
      req.clear_messages();
    };
    ferry::v1::ProduceRequest req;
    req.set_topic(o->name);
    req.set_transaction_id(o->txn_id);
    if (!o->txn_group.empty()) {
      req.mutable_transactional()->set_producer_group(o->txn_group);
      req.mutable_transactional()->set_check_ref(o->check_ref);
    }
    if (o->value_opt->count() > 0) {
      auto* m = req.add_messages();
      *m = base;
      m->set_payload(o->value);
      m->set_dedup_id(o->dedup_id);
      send(req);
    } else {
      std::string line;
      while (std::getline(std::cin, line)) {
        auto* m = req.add_messages();
        *m = base;
        m->set_payload(line);
        if (static_cast<size_t>(req.messages_size()) >= o->batch) send(req);
      }
      if (req.messages_size() > 0) send(req);
    }
  });
  consume->callback([o, &ctx] {
    ferry::v1::ConsumeRequest req;
    req.set_group(o->group);
    req.set_topic(o->name);
    req.set_max_messages(o->max);
    req.set_max_wait_ms(o->wait_ms);
    req.set_visibility_timeout_ms(o->visibility_ms);
    req.set_start_position(o->latest ? ferry::v1::START_POSITION_LATEST
                                     : ferry::v1::START_POSITION_EARLIEST);
    auto r = Check(ctx.client().Consume(req), "consume");
    std::vector<std::string> to_ack;
    for (const auto& m : r.messages()) {
      json headers_json = json::object();
      for (const auto& [k, v] : m.headers()) headers_json[k] = v;
      json line{
          {"topic", m.topic()}, {"queue", m.queue()}, {"offset", m.offset()}, {"key", m.key()}};
      AddPayload(line, m.payload());
      line["headers"] = headers_json;
      line["attempt"] = m.delivery_attempt();
      line["receipt"] = m.receipt();
      std::cout << Dump(line) << "\n";
      to_ack.push_back(m.receipt());
    }
    std::cout.flush();
    if (!o->no_commit && !to_ack.empty()) {
      auto c = Check(ctx.client().Ack(o->group, to_ack), "commit");
      for (const auto& res : c.results()) {
        if (res.status() != ferry::v1::COMMITTED) {
          std::cerr << "ferryctl: commit: " << ferry::v1::CommitStatus_Name(res.status()) << ": "
                    << res.detail() << "\n";
        }
      }
    }
  });
  commit->callback([o, &ctx] {
    ferry::v1::CommitRequest req;
    req.set_group(o->group);
    for (const auto& receipt : o->receipts) {
      auto* e = req.add_entries();
      e->set_receipt(receipt);
      if (o->retry) {
        e->set_outcome(ferry::v1::RETRY);
        if (o->retry_delay_ms) e->set_retry_delay_ms(*o->retry_delay_ms);
      } else if (!o->dead_letter.empty()) {
        e->set_outcome(ferry::v1::DEAD_LETTER);
        e->set_reason(o->dead_letter);
      } else {
        e->set_outcome(ferry::v1::ACK);
      }
    }
    auto r = Check(ctx.client().Commit(req), "commit");
    bool all_ok = true;
    for (int i = 0; i < r.results_size(); ++i) {
      const auto& res = r.results(i);
      const bool ok =
          res.status() == ferry::v1::COMMITTED || res.status() == ferry::v1::ALREADY_COMMITTED ||
          res.status() == ferry::v1::RETRY_SCHEDULED || res.status() == ferry::v1::DEAD_LETTERED;
      all_ok = all_ok && ok;
      const std::string status = ferry::v1::CommitStatus_Name(res.status());
      if (ctx.as_json) {
        std::cout << Dump(json{
                         {"receipt", o->receipts[i]}, {"status", status}, {"detail", res.detail()}})
                  << "\n";
      } else if (ok) {
        std::cout << status << (res.detail().empty() ? "" : ": " + res.detail()) << "\n";
      }
      if (!ok) {
        // Like every other failure: on stderr, with the prefix (the receipt's position in the
        // command line tells which one, when several were given).
        std::cerr << "ferryctl: commit: receipt " << i + 1 << " of " << r.results_size() << ": "
                  << status << (res.detail().empty() ? "" : ": " + res.detail()) << "\n";
      }
    }
    if (!all_ok) {
      ctx.exit_code = 1;
      return;
    }
  });
  message_get->callback([o, &ctx] {
    std::vector<std::string> qo = absl::StrSplit(o->position, ':');
    uint32_t queue = 0;
    uint64_t offset = 0;
    if (qo.size() != 2 || !absl::SimpleAtoi(qo[0], &queue) || !absl::SimpleAtoi(qo[1], &offset)) {
      throw Failure{"message get: \"" + o->position + "\" is not QUEUE:OFFSET"};
    }
    ferry::v1::GetMessageRequest req;
    req.set_topic(o->name);
    req.set_queue(queue);
    req.set_offset(offset);
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::GetMessage, req, "message get");
    json groups = json::array();
    std::vector<std::vector<std::string>> rows{{"GROUP", "STATE", "ATTEMPT", "UNTIL", "REASON"}};
    for (const auto& g : r.groups()) {
      std::string state = ferry::v1::MessageState_Name(g.state());
      state = absl::AsciiStrToLower(state.substr(std::string("MESSAGE_").size()));
      const std::string until =
          g.deadline_unix_ms() == 0
              ? "-"
              : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                 absl::FromUnixMillis(static_cast<int64_t>(g.deadline_unix_ms())),
                                 absl::UTCTimeZone());
      groups.push_back(json{{"group", g.group()},
                            {"state", state},
                            {"attempt", g.attempt()},
                            {"deadline_ms", g.deadline_unix_ms()},
                            {"dead_letter_reason", g.dead_letter_reason()}});
      rows.push_back({g.group(), state, g.attempt() == 0 ? "-" : std::to_string(g.attempt()), until,
                      g.dead_letter_reason().empty() ? "-" : g.dead_letter_reason()});
    }
    json m = StoredJson(r.message());
    if (ctx.as_json) {
      m["groups"] = groups;
      std::cout << Dump(m) << "\n";
    } else {
      std::cout << Dump(m) << "\n";
      if (r.groups_size() == 0) {
        std::cout << "no group has a position on this queue\n";
      } else {
        PrintTable(rows);
      }
    }
  });
  peek->callback([o, &ctx, peek_queue_opt] {
    if (o->max < 1 || o->max > 1000) throw Failure{"--max must be between 1 and 1000"};
    // One queue, or every queue of the topic (the first answer says how many there are).
    // With --key and no --queue: the queue the broker routes the key to.
    const bool one = peek_queue_opt->count() > 0 || o->peek_key.has_value();
    const uint64_t after = o->peek_after.empty() ? 0 : ParseTimeMs(o->peek_after, "--after");
    const uint64_t before = o->peek_before.empty() ? 0 : ParseTimeMs(o->peek_before, "--before");
    uint32_t queues = 1;
    for (uint32_t i = 0; i < queues; ++i) {
      // A filtered page reads a bounded stretch of offsets and may find fewer than asked:
      // go on from where it stopped until --max are found or the queue's end is reached.
      uint64_t from = o->peek_from;
      uint32_t found = 0;
      for (;;) {
        ferry::v1::PeekMessagesRequest req;
        req.set_topic(o->name);
        if (peek_queue_opt->count() > 0 || !o->peek_key) req.set_queue(one ? o->peek_queue : i);
        if (o->peek_key) req.set_key(*o->peek_key);
        if (o->peek_dedup_id) req.set_dedup_id(*o->peek_dedup_id);
        req.set_produced_after_unix_ms(after);
        req.set_produced_before_unix_ms(before);
        req.set_from_offset(from);
        req.set_max_messages(o->max - found);
        auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::PeekMessages, req, "peek");
        if (!one) queues = r.queues();
        for (const auto& m : r.messages()) std::cout << Dump(StoredJson(m)) << "\n";
        found += static_cast<uint32_t>(r.messages_size());
        if (found >= o->max || r.next_offset() >= r.end_offset() || r.next_offset() <= from) {
          break;
        }
        from = r.next_offset();
      }
    }
  });
  lag->callback([o, &ctx] {
    auto r = Check(ctx.client().GetGroupLag(o->group, o->name), "lag");
    if (ctx.as_json) {
      json out = json::array();
      for (const auto& q : r.queues()) {
        out.push_back(json{{"topic", q.topic()},
                           {"queue", q.queue()},
                           {"end_offset", q.end_offset()},
                           {"committed_offset", q.committed_offset()},
                           {"delivered_offset", q.delivered_offset()},
                           {"in_flight", q.in_flight()},
                           {"lag", q.lag()},
                           {"backlog", q.backlog()},
                           {"unsettled", q.unsettled()},
                           {"retrying", q.retrying()},
                           {"dead_letters", q.dead_letters()},
                           {"oldest_unacked_age_ms", q.oldest_unacked_age_ms()}});
      }
      json delayed = json::object();
      for (const auto& d : r.delayed()) delayed[d.topic()] = d.delayed();
      std::cout << Dump(json{{"group", r.group()}, {"queues", out}, {"delayed", delayed}}) << "\n";
    } else {
      // BACKLOG: not delivered yet; UNSETTLED: delivered, not settled (in flight + retrying).
      // LAG (end - committed) also counts settled messages above the oldest unsettled one.
      std::vector<std::vector<std::string>> rows{{"TOPIC", "QUEUE", "END", "COMMITTED", "BACKLOG",
                                                  "UNSETTLED", "IN_FLIGHT", "RETRYING", "DEAD",
                                                  "LAG", "OLDEST_UNACKED"}};
      for (const auto& q : r.queues()) {
        rows.push_back({q.topic(), std::to_string(q.queue()), std::to_string(q.end_offset()),
                        std::to_string(q.committed_offset()), std::to_string(q.backlog()),
                        std::to_string(q.unsettled()), std::to_string(q.in_flight()),
                        std::to_string(q.retrying()), std::to_string(q.dead_letters()),
                        std::to_string(q.lag()),
                        q.lag() == 0 ? "-" : Age(q.oldest_unacked_age_ms())});
      }
      PrintTable(rows);
      for (const auto& d : r.delayed()) {
        std::cout << d.topic() << ": " << d.delayed() << " delayed messages not yet due\n";
      }
    }
  });
}

}  // namespace ferryctl
