// ferryctl txn: end, list, resolve, rearm, checker.
#include "ferryctl/cli.h"

namespace ferryctl {
namespace {

struct Options {
  std::string txn_id, txn_group, txn_state, reason, answer;
  std::vector<std::string> checker_groups;
  bool commit_flag = false, rollback_flag = false;
  uint32_t txn_limit = 20, answer_count = 0;
};

}  // namespace

void AddTxnCommands(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<Options>();
  auto* txn = app.add_subcommand("txn", "transactions: end, list, resolve, rearm");
  txn->require_subcommand(1);
  auto* txn_end = txn->add_subcommand("end", "decide a transaction as its producer");
  txn_end->add_option("ID", o->txn_id, "transaction id")->required();
  auto* c1 = txn_end->add_flag("--commit", o->commit_flag, "make its messages visible");
  txn_end->add_flag("--rollback", o->rollback_flag, "discard its messages")->excludes(c1);
  auto* txn_list = txn->add_subcommand("list", "transactions, newest first, with check history");
  txn_list->add_option("--state", o->txn_state, "PREPARED|COMMITTED|ROLLED_BACK|CHECK_EXHAUSTED");
  txn_list->add_option("--group", o->txn_group, "producer group");
  txn_list->add_option("--limit", o->txn_limit, "at most this many")->capture_default_str();
  auto* txn_resolve = txn->add_subcommand("resolve", "an administrator's decision, with a reason");
  txn_resolve->add_option("ID", o->txn_id, "transaction id")->required();
  auto* c2 = txn_resolve->add_flag("--commit", o->commit_flag, "make its messages visible");
  txn_resolve->add_flag("--rollback", o->rollback_flag, "discard its messages")->excludes(c2);
  txn_resolve->add_option("--reason", o->reason, "kept in the audit trail")->required();
  auto* txn_rearm = txn->add_subcommand("rearm", "CHECK_EXHAUSTED: start back-checks again");
  txn_rearm->add_option("ID", o->txn_id, "transaction id")->required();
  txn_rearm->add_option("--reason", o->reason, "kept in the audit trail");
  auto* txn_checker = txn->add_subcommand(
      "checker", "answer back-checks for producer groups (asks on stdin unless --answer)");
  txn_checker->add_option("--group", o->checker_groups, "producer group (repeatable)")->required();
  txn_checker->add_option("--answer", o->answer, "commit|rollback|unknown for every check");
  txn_checker->add_option("--count", o->answer_count, "stop after this many answers (0: never)");

  // As the producer (EndTransaction) or as an administrator (ResolveTransaction).
  auto end = [o, &ctx](bool by_admin) {
    if (!o->commit_flag && !o->rollback_flag) throw Failure{"give --commit or --rollback"};
    const auto decision =
        o->commit_flag ? ferry::v1::TRANSACTION_COMMIT : ferry::v1::TRANSACTION_ROLLBACK;
    ferry::v1::TransactionState state;
    if (!by_admin) {
      ferry::v1::EndTransactionRequest req;
      req.set_transaction_id(o->txn_id);
      req.set_decision(decision);
      grpc::ClientContext call;
      call.set_deadline(std::chrono::system_clock::now() + ctx.client().timeout());
      ferry::v1::EndTransactionResponse resp;
      grpc::Status st = ctx.client().broker().EndTransaction(&call, req, &resp);
      if (!st.ok()) {
        throw Failure{
            "txn end: " +
            std::string(absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code()))) +
            ": " + st.error_message()};
      }
      state = resp.state();
    } else {
      ferry::v1::ResolveTransactionRequest req;
      req.set_transaction_id(o->txn_id);
      req.set_decision(decision);
      req.set_reason(o->reason);
      state =
          AdminCall(ctx.client(), &ferry::v1::Admin::Stub::ResolveTransaction, req, "txn resolve")
              .state();
    }
    std::cout << (ctx.as_json ? Dump(json{{"transaction_id", o->txn_id},
                                          {"state", ferry::v1::TransactionState_Name(state)}})
                              : o->txn_id + " " + ferry::v1::TransactionState_Name(state))
              << "\n";
  };
  txn_end->callback([end] { end(false); });
  txn_resolve->callback([end] { end(true); });
  txn_list->callback([o, &ctx] {
    ferry::v1::ListTransactionsRequest req;
    if (!o->txn_state.empty()) {
      ferry::v1::TransactionState st;
      if (!ferry::v1::TransactionState_Parse("TXN_" + o->txn_state, &st)) {
        throw Failure{"--state must be PREPARED, COMMITTED, ROLLED_BACK or CHECK_EXHAUSTED"};
      }
      req.set_state(st);
    }
    req.set_producer_group(o->txn_group);
    req.set_limit(o->txn_limit);
    auto r = AdminCall(ctx.client(), &ferry::v1::Admin::Stub::ListTransactions, req, "txn list");
    std::vector<std::vector<std::string>> rows{
        {"ID", "GROUP", "STATE", "MESSAGES", "ACKS", "CHECKS", "CHECKER", "CHECK_REF"}};
    for (const auto& t : r.transactions()) {
      if (ctx.as_json) {
        json events = json::array();
        for (const auto& e : t.events()) {
          events.push_back(json{{"at_ms", e.at_unix_ms()},
                                {"kind", e.kind()},
                                {"actor", e.actor()},
                                {"detail", e.detail()}});
        }
        std::cout << Dump(json{
                         {"transaction_id", t.transaction_id()},
                         {"producer_group", t.producer_group()},
                         {"state", ferry::v1::TransactionState_Name(t.state())},
                         {"check_ref", t.check_ref()},
                         {"messages", t.messages()},
                         {"attached_acks", t.attached_acks()},
                         {"topics", std::vector<std::string>(t.topics().begin(), t.topics().end())},
                         {"checks_sent", t.checks_sent()},
                         {"checker_connected", t.checker_connected()},
                         {"began_at_ms", t.began_at_unix_ms()},
                         {"ended_at_ms", t.ended_at_unix_ms()},
                         {"events", events}})
                  << "\n";
      } else {
        rows.push_back({t.transaction_id(), t.producer_group(),
                        ferry::v1::TransactionState_Name(t.state()).substr(4),
                        std::to_string(t.messages()), std::to_string(t.attached_acks()),
                        std::to_string(t.checks_sent()),
                        t.state() == ferry::v1::TXN_PREPARED
                            ? (t.checker_connected() ? "connected" : "no checker")
                            : "-",
                        t.check_ref()});
      }
    }
    if (!ctx.as_json) PrintTable(rows);
  });
  txn_checker->callback([o, &ctx] {
    if (!o->answer.empty() && o->answer != "commit" && o->answer != "rollback" &&
        o->answer != "unknown") {
      throw Failure{"--answer must be commit, rollback or unknown"};
    }
    std::mutex io;
    std::atomic<bool> input_closed{false};
    auto decide = [&](const ferry::v1::TransactionCheck& check) {
      std::lock_guard<std::mutex> lock(io);
      std::cout << Dump(json{{"transaction_id", check.transaction_id()},
                             {"producer_group", check.producer_group()},
                             {"check_ref", check.check_ref()},
                             {"check_number", check.check_number()},
                             {"topics", std::vector<std::string>(check.topics().begin(),
                                                                 check.topics().end())},
                             {"messages", check.message_count()}})
                << std::endl;
      std::string said = o->answer;
      if (said.empty()) {
        std::cout << "commit, rollback or unknown? " << std::flush;
        if (!std::getline(std::cin, said)) {
          input_closed = true;
          said = "unknown";
        }
      }
      std::cout << "answered " << said << std::endl;
      return said == "commit"     ? ferry::v1::TRANSACTION_COMMIT
             : said == "rollback" ? ferry::v1::TRANSACTION_ROLLBACK
                                  : ferry::v1::TRANSACTION_UNKNOWN;
    };
    ferry::TransactionChecker checker(ctx.channel(), o->checker_groups, "ferryctl", decide);
    checker.Start();
    while (!input_closed && (o->answer_count == 0 || checker.answered() < o->answer_count)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    checker.Stop();
  });
  txn_rearm->callback([o, &ctx] {
    ferry::v1::RearmTransactionChecksRequest req;
    req.set_transaction_id(o->txn_id);
    req.set_reason(o->reason);
    AdminCall(ctx.client(), &ferry::v1::Admin::Stub::RearmTransactionChecks, req, "txn rearm");
    if (!ctx.as_json) std::cout << o->txn_id << " PREPARED: back-checks start again\n";
  });
}

}  // namespace ferryctl
