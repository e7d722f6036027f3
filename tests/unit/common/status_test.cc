#include "common/status.h"

#include <catch2/catch.hpp>

TEST_CASE("every status code keeps its number at the gRPC edge", "[unit][status]") {
  const std::vector<std::pair<absl::StatusCode, grpc::StatusCode>> table = {
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
      {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
  };
  for (const auto& [absl_code, grpc_code] : table) {
    grpc::Status g = ferry::ToGrpcStatus(absl::Status(absl_code, "why"));
    CHECK(g.error_code() == grpc_code);
    CHECK(g.error_message() == "why");
    CHECK(ferry::FromGrpcStatus(g).code() == absl_code);
  }
  CHECK(ferry::ToGrpcStatus(absl::OkStatus()).ok());
}

TEST_CASE("status messages are cut to a bounded length", "[unit][status]") {
  grpc::Status g = ferry::ToGrpcStatus(absl::InternalError(std::string(5000, 'x')));
  CHECK(g.error_message().size() == ferry::kMaxStatusMessage);
}
