// Status helpers shared by every Ferry binary. Inside the services errors are absl::Status;
// ToGrpcStatus is the one conversion at the gRPC edge.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <grpcpp/support/status.h>

namespace ferry {

// Converts a domain status to a gRPC status with the same code. The message is cut to
// kMaxStatusMessage characters; it never carries SQL or connection strings because the
// store layer never puts them into a status (they go to the log).
grpc::Status ToGrpcStatus(const absl::Status& status);

// The reverse, for clients: a gRPC status as an absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

inline constexpr size_t kMaxStatusMessage = 1024;

}  // namespace ferry

#define FERRY_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status ferry_status_ = (expr);         \
    if (!ferry_status_.ok()) return ferry_status_; \
  } while (0)
