// TxnChecks: the broker side of CheckTransaction (back-checks of undecided transactions).
//
// Each checker opens a bidi stream and subscribes to producer groups (Broker::SubscribeChecks:
// with --auth, produce on each). A scheduler thread claims due PREPARED transactions of the
// groups that have a checker on *this* broker (in PostgreSQL, with SKIP LOCKED and
// next_check_at moved ahead, so each due transaction is checked by exactly one broker at a
// time) and sends each to one of that group's checkers, round robin. Nothing is claimed, so
// nothing is counted, for a group with no checker connected.
//
// An answer is bound to the check it answers: it counts only if this stream was sent that
// check_id for that transaction and has not answered it yet; the producer group comes from the
// check, never from the checker. Anything else is refused on the stream (a
// CheckAnswerRejected with the reason) and changes nothing. Accepted answers go through
// Broker::AnswerCheck on the executor, which authorizes them again (a revoked grant stops
// counting) and has the store verify the check once more.
//
// Threads: gRPC reactions (never block; work goes to the executor), the scheduler.
// Stop() finishes every stream (a server with open streams cannot shut down).
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker/broker.h"
#include "broker/rpc.h"
#include "broker/store/store.h"
#include "ferry/v1/broker.pb.h"

namespace ferry::broker {

class TxnChecks {
 public:
  TxnChecks(Store& store, Broker& broker, rpc::Edge& edge, std::string broker_id,
            std::chrono::milliseconds poll);
  ~TxnChecks();

  // A new reactor for one CheckTransaction call (owned by gRPC until OnDone).
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Open(
      grpc::CallbackServerContext* ctx);

  void Stop();

  // Checks sent on one stream and not answered yet that it remembers; beyond, the oldest are
  // forgotten (an answer to one is refused, and the transaction is checked again later).
  static constexpr size_t kMaxOutstandingChecks = 10000;
  // Checks queued for a checker that has not read them; beyond, a check goes to another
  // checker or is tried again later (a checker that never reads must not grow memory).
  static constexpr size_t kMaxUnread = 1000;

 private:
  class Stream;
  void Register(Stream* stream, const std::vector<std::string>& groups);
  void Unregister(Stream* stream);
  void Run();

  Store& store_;
  Broker& broker_;
  rpc::Edge& edge_;
  const std::string broker_id_;
  const std::chrono::milliseconds poll_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::set<Stream*> streams_;
  std::map<std::string, std::vector<Stream*>> by_group_;
  size_t round_robin_ = 0;
  std::thread thread_;
};

}  // namespace ferry::broker
