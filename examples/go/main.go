// Ferry from Go: produce, consume-and-commit, and a transaction decided by a back-check.
//
// Built offline by ./run.sh with Debian's golang-go and golang-google-grpc-dev (GOPATH mode,
// stubs generated from proto/ with protoc-gen-go and protoc-gen-go-grpc).
//
//	FERRY_BROKER=127.0.0.1:7420 ./run.sh        # FERRY_TOKEN too if the broker runs --auth
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "ferryexample/ferrypb"
)

var (
	topic         = "example.go." + randomHex(4)
	group         = "go-readers"
	producerGroup = "go-shop-" + randomHex(4)
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		log.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// call returns a context with a deadline and, when FERRY_TOKEN is set, the bearer token.
func call() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if token := os.Getenv("FERRY_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx, cancel
}

func must(err error, what string) {
	if err != nil {
		log.Fatalf("%s: %v", what, err)
	}
}

func consume(broker pb.BrokerClient, want int) []string {
	var got []string
	for i := 0; i < 20; i++ {
		ctx, cancel := call()
		resp, err := broker.Consume(ctx, &pb.ConsumeRequest{Group: group, Topic: topic,
			MaxMessages: 10, MaxWaitMs: 1000})
		cancel()
		must(err, "consume")
		if len(resp.Messages) == 0 {
			if len(got) >= want {
				break
			}
			continue
		}
		commit := &pb.CommitRequest{Group: group}
		for _, m := range resp.Messages {
			got = append(got, string(m.Payload))
			commit.Entries = append(commit.Entries, &pb.CommitEntry{Receipt: m.Receipt,
				Outcome: pb.CommitOutcome_ACK})
		}
		ctx, cancel = call()
		results, err := broker.Commit(ctx, commit)
		cancel()
		must(err, "commit")
		for _, r := range results.Results {
			if r.Status != pb.CommitStatus_COMMITTED {
				log.Fatalf("commit: %v", r)
			}
		}
	}
	return got
}

// checker answers back-checks for one producer group; decide says COMMIT, ROLLBACK or UNKNOWN.
type checker struct {
	mu       sync.Mutex
	answered map[string]pb.TransactionDecision // by check_ref
	cancel   context.CancelFunc
}

func startChecker(broker pb.BrokerClient, decide func(*pb.TransactionCheck) pb.TransactionDecision) *checker {
	ctx, cancel := context.WithCancel(context.Background())
	if token := os.Getenv("FERRY_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := broker.CheckTransaction(ctx)
	must(err, "check stream")
	must(stream.Send(&pb.CheckTransactionRequest{Kind: &pb.CheckTransactionRequest_Subscribe{
		Subscribe: &pb.CheckSubscribe{ProducerGroups: []string{producerGroup}, CheckerId: "go-example"}}}),
		"subscribe")
	c := &checker{answered: map[string]pb.TransactionDecision{}, cancel: cancel}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return // cancelled at the end
			}
			check := resp.Check
			if check == nil {
				continue // a refused answer (resp.Rejected): nothing to answer
			}
			decision := decide(check)
			c.mu.Lock()
			c.answered[check.CheckRef] = decision
			c.mu.Unlock()
			if err := stream.Send(&pb.CheckTransactionRequest{Kind: &pb.CheckTransactionRequest_Answer{
				Answer: &pb.CheckAnswer{TransactionId: check.TransactionId, CheckId: check.CheckId,
					Decision: decision}}}); err != nil {
				return
			}
		}
	}()
	return c
}

func main() {
	log.SetFlags(0)
	addr := os.Getenv("FERRY_BROKER")
	if addr == "" {
		addr = "127.0.0.1:7420"
	}
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	must(err, "dial")
	defer conn.Close()
	admin := pb.NewAdminClient(conn)
	broker := pb.NewBrokerClient(conn)

	ctx, cancel := call()
	_, err = admin.CreateTopic(ctx, &pb.CreateTopicRequest{Topic: &pb.TopicConfig{Name: topic, Queues: 2}})
	cancel()
	if status.Code(err) != codes.AlreadyExists {
		must(err, "create topic")
	}
	fmt.Printf("topic %s ready\n", topic)

	req := &pb.ProduceRequest{Topic: topic}
	for i := 0; i < 3; i++ {
		req.Messages = append(req.Messages, &pb.ProducedMessage{Key: "order-42",
			Payload: []byte(fmt.Sprintf("event %d", i)), Headers: map[string]string{"type": "created"},
			DedupId: fmt.Sprintf("order-42-%d", i)})
	}
	ctx, cancel = call()
	produced, err := broker.Produce(ctx, req)
	cancel()
	must(err, "produce")
	fmt.Printf("produced 3 messages on queue %d: offsets %d %d %d\n", produced.Results[0].Queue,
		produced.Results[0].Offset, produced.Results[1].Offset, produced.Results[2].Offset)

	got := consume(broker, 3)
	if fmt.Sprint(got) != "[event 0 event 1 event 2]" {
		log.Fatalf("consumed %v", got)
	}
	fmt.Printf("consumed and ACKed in order: %v\n", got)

	ctx, cancel = call()
	_, err = broker.Produce(ctx, &pb.ProduceRequest{Topic: "bad topic!"})
	cancel()
	if status.Code(err) != codes.InvalidArgument {
		log.Fatalf("a bad topic name must be INVALID_ARGUMENT, got %v", err)
	}
	fmt.Printf("bad input: %s: %s\n", status.Code(err), status.Convert(err).Message())

	// A transaction whose producer "crashes" after its local commit: the back-check decides.
	var mu sync.Mutex
	committedOrders := map[string]bool{}
	c := startChecker(broker, func(check *pb.TransactionCheck) pb.TransactionDecision {
		mu.Lock()
		defer mu.Unlock()
		if committedOrders[check.CheckRef] {
			return pb.TransactionDecision_TRANSACTION_COMMIT
		}
		return pb.TransactionDecision_TRANSACTION_UNKNOWN
	})
	defer c.cancel()
	ctx, cancel = call()
	half, err := broker.Produce(ctx, &pb.ProduceRequest{Topic: topic,
		Transactional: &pb.TransactionOptions{ProducerGroup: producerGroup, CheckRef: "order-77"},
		Messages:      []*pb.ProducedMessage{{Key: "order-77", Payload: []byte("order 77 paid")}}})
	cancel()
	must(err, "half message")
	if got := consume(broker, 0); len(got) != 0 {
		log.Fatalf("a half message must stay invisible, got %v", got)
	}
	fmt.Printf("transaction %s: half message stored, invisible\n", half.TransactionId)
	mu.Lock()
	committedOrders["order-77"] = true
	mu.Unlock()
	if got := consume(broker, 1); fmt.Sprint(got) != "[order 77 paid]" {
		log.Fatalf("after the back-check: %v", got)
	}
	c.mu.Lock()
	decided := c.answered["order-77"]
	c.mu.Unlock()
	if decided != pb.TransactionDecision_TRANSACTION_COMMIT {
		log.Fatalf("the checker should have answered COMMIT, answered %v", decided)
	}
	fmt.Println("back-check answered COMMIT: the message was delivered")

	ctx, cancel = call()
	other, err := broker.Produce(ctx, &pb.ProduceRequest{Topic: topic,
		Transactional: &pb.TransactionOptions{ProducerGroup: producerGroup},
		Messages:      []*pb.ProducedMessage{{Payload: []byte("never")}}})
	cancel()
	must(err, "second transaction")
	ctx, cancel = call()
	ended, err := broker.EndTransaction(ctx, &pb.EndTransactionRequest{TransactionId: other.TransactionId,
		Decision: pb.TransactionDecision_TRANSACTION_ROLLBACK})
	cancel()
	must(err, "rollback")
	if ended.State != pb.TransactionState_TXN_ROLLED_BACK || len(consume(broker, 0)) != 0 {
		log.Fatalf("rollback: %v", ended)
	}
	fmt.Println("rolled back transaction: nothing delivered")
	fmt.Println("go example: ok")
}
