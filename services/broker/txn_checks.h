// TxnChecks: the broker side of CheckTransaction (back-checks of undecided transactions).
//
// Each checker opens a bidi stream and subscribes to producer groups. A scheduler thread claims
// due PREPARED transactions of the groups that have a checker on *this* broker (in PostgreSQL,
// with SKIP LOCKED and next_check_at moved ahead, so each due transaction is checked by exactly
// one broker at a time) and sends each to one of that group's checkers, round robin. Answers go
// to the executor (the store ends the transaction, or counts an UNKNOWN). Nothing is claimed,
// so nothing is counted, for a group with no checker connected.
//
// Threads: gRPC reactions (never block; answers are queued to the executor), the scheduler.
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

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/store/pg_store.h"
#include "common/executor.h"
#include "ferry/v1/broker.grpc.pb.h"

namespace ferry::broker {

class TxnChecks {
 public:
  // `auth`: nullptr when --auth is off; else subscribing needs produce on each producer group.
  TxnChecks(PgStore& store, Broker& broker, Executor& executor, std::string broker_id,
            std::chrono::milliseconds poll, Authorizer* auth = nullptr);
  ~TxnChecks();

  // A new reactor for one CheckTransaction call (owned by gRPC until OnDone).
  grpc::ServerBidiReactor<v1::CheckTransactionRequest, v1::CheckTransactionResponse>* Open(
      grpc::CallbackServerContext* ctx);

  void Stop();

 private:
  class Stream;
  void Register(Stream* stream, const std::vector<std::string>& groups);
  void Unregister(Stream* stream);
  void Answer(const std::string& checker, const v1::CheckAnswer& answer);
  void Run();

  Authorizer* const auth_;
  PgStore& store_;
  Broker& broker_;
  Executor& executor_;
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
