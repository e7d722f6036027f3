module github.com/ferry/ferry-go

go 1.19

require (
	github.com/lib/pq v1.10.7 // the tests only
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
