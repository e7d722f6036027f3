// The chaos checker must see each kind of violation: a checker that reports 0 because it cannot
// count would make every chaos run pass.
#include "chaos/history.h"

#include <catch2/catch.hpp>

using namespace ferry::chaos;

namespace {

Delivery D(const std::string& id, uint64_t offset, uint32_t attempt, int ms) {
  return Delivery{id, "g", 0, offset, attempt, Clock::time_point(std::chrono::milliseconds(ms))};
}

}  // namespace

TEST_CASE("the chaos checker counts lost - phantom - duplicates - order - partial transactions",
          "[unit][chaos]") {
  History h;
  for (int i = 0; i < 5; ++i) {
    h.AddSent(Sent{"m" + std::to_string(i), "k", i, false, false, ""});
    h.MarkAcked("m" + std::to_string(i));
  }
  h.AddSent(Sent{"unknown", "", 0, false, false, ""});  // never acked: may or may not arrive
  h.AddSent(Sent{"rolled", "", 0, false, false, ""});
  h.MarkRejected("rolled");
  h.AddSent(Sent{"ta", "", 0, false, false, "t1"});
  h.AddSent(Sent{"tb", "", 0, false, false, "t1"});
  h.MarkAcked("ta");
  h.MarkAcked("tb");
  h.AddTxn("t1", Txn{{"ta", "tb"}, true});
  h.AddSent(Sent{"tc", "", 0, false, false, "t3"});  // its Produce failed: may never exist
  h.AddTxn("t3", Txn{{"tc"}, true});
  h.AddSent(Sent{"rx", "", 0, false, false, "t2"});
  h.AddTxn("t2", Txn{{"rx"}, false});

  h.AddDelivery(D("m0", 0, 1, 1));
  h.AddDelivery(D("m2", 2, 1, 2));  // before m1: out of order for key k
  h.AddDelivery(D("m1", 1, 1, 3));
  h.AddDelivery(D("m1", 1, 2, 4));  // redelivery the broker counted: expected
  h.AddDelivery(D("m2", 5, 1, 5));  // stored twice: unexplained
  // m3 never arrives: lost. m4 arrives long after the faults stopped: stuck.
  h.AddDelivery(D("m4", 4, 1, 100000));
  h.AddDelivery(D("unknown", 6, 1, 6));  // allowed
  h.AddDelivery(D("rolled", 7, 1, 7));   // phantom
  h.AddDelivery(D("ghost", 8, 1, 8));    // phantom: never sent
  h.AddDelivery(D("ta", 9, 1, 9));       // tb missing: partial (and tb lost)
  h.AddDelivery(D("rx", 10, 1, 10));     // rolled-back transaction: phantom
  const Report r = h.Check("unit", {"g"}, {"g"}, Clock::time_point(std::chrono::milliseconds(0)),
                           std::chrono::seconds(30));
  CHECK(r.acked == 7);
  CHECK(r.unknown == 2);  // "unknown" and "tc"
  CHECK(r.lost == 2);     // m3, tb
  CHECK(r.stuck == 1);
  CHECK(r.phantom == 3);
  CHECK(r.dup_expected == 1);
  CHECK(r.dup_unexplained == 1);
  CHECK(r.out_of_order == 1);
  CHECK(r.partial_txns == 1);
  CHECK_FALSE(r.ok());
  CHECK(h.Missing("g") == 2);
  CHECK(Table({r}).find("FAILED") != std::string::npos);
}

TEST_CASE("the chaos checker passes a clean history", "[unit][chaos]") {
  History h;
  h.AddSent(Sent{"a", "k", 0, false, false, ""});
  h.MarkAcked("a");
  h.AddSent(Sent{"b", "k", 1, false, false, ""});
  h.MarkAcked("b");
  h.AddDelivery(D("a", 0, 1, 1));
  h.AddDelivery(D("b", 1, 1, 2));
  h.AddDelivery(D("a", 0, 2, 3));
  const Report r = h.Check("clean", {"g"}, {"g"}, Clock::time_point(), std::chrono::seconds(30));
  CHECK(r.ok());
  CHECK(r.dup_expected == 1);
}
