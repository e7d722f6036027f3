// Ferry from Go with the client library (clients/go): publish, subscribe, a bad request, and
// a transaction decided by a back-check.
//
//	FERRY_BROKER=127.0.0.1:7420 ./run.sh        # FERRY_TOKEN too if the broker runs --auth
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sort"
	"sync"
	"time"

	ferry "github.com/ferry/ferry-go"
	"github.com/ferry/ferry-go/ferrypb"
)

var (
	suffix        = time.Now().Format("150405.000000")
	topic         = "example.go." + suffix
	orders        = topic + ".orders" // the transaction's topic
	producerGroup = "go-shop-" + suffix
)

func must(err error, what string) {
	if err != nil {
		log.Fatalf("%s: %v", what, err)
	}
}

// collect subscribes until want messages arrived (or timeout) and returns their payloads.
func collect(c *ferry.Client, topic string, want int, timeout time.Duration) []string {
	var mu sync.Mutex
	var got []string
	sub, err := c.Subscribe(context.Background(), topic, "go-readers", func(_ context.Context, m *ferry.Delivered) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(m.Payload))
		return nil // ACK
	}, ferry.SubscribeSettings{MaxWait: 500 * time.Millisecond})
	must(err, "subscribe")
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want {
			break
		}
	}
	sub.Stop(5 * time.Second)
	sort.Strings(got)
	return got
}

func main() {
	ctx := context.Background()
	c, err := ferry.Dial(ferry.ConfigFromEnv()) // FERRY_BROKER, FERRY_TOKEN, FERRY_TLS_*
	must(err, "dial")
	defer c.Close()
	_, err = c.Admin().CreateTopic(ctx, &ferrypb.TopicConfig{Name: topic, Queues: 2}, false)
	must(err, "create topic")
	_, err = c.Admin().CreateTopic(ctx, &ferrypb.TopicConfig{Name: orders, Queues: 1}, false)
	must(err, "create topic")
	fmt.Printf("topic %s ready\n", topic)

	pub := c.NewPublisher(ferry.PublisherSettings{}) // batches; retries with dedup ids
	var offsets []uint64
	var queue uint32
	for i := 0; i < 3; i++ {
		r, err := pub.Publish(ctx, topic, ferry.Message{Key: "order-42", Payload: []byte(fmt.Sprintf("event %d", i)),
			DedupID: fmt.Sprintf("order-42-%d", i)}).Get(ctx)
		must(err, "publish")
		offsets, queue = append(offsets, r.Offset), r.Queue
	}
	again, err := pub.Publish(ctx, topic, ferry.Message{Key: "order-42", Payload: []byte("event 0"), DedupID: "order-42-0"}).Get(ctx)
	must(err, "publish again")
	must(pub.Close(ctx), "close publisher")
	fmt.Printf("published 3 messages on queue %d: offsets %v\n", queue, offsets)
	if !again.Duplicate || again.Offset != offsets[0] {
		log.Fatalf("a repeated dedup id must be reported as a duplicate: %+v", again)
	}
	fmt.Println("re-sent message 0 with its dedup id: duplicate=true, not stored again")

	got := collect(c, topic, 3, 20*time.Second)
	if fmt.Sprint(got) != "[event 0 event 1 event 2]" {
		log.Fatalf("received %v", got)
	}
	fmt.Printf("received and ACKed: %v\n", got)

	// Errors carry the gRPC code and the broker's message; errors.Is matches the kind.
	_, err = c.Admin().CreateTopic(ctx, &ferrypb.TopicConfig{Name: "bad topic!"}, false)
	if !errors.Is(err, ferry.ErrInvalidArgument) {
		log.Fatalf("a bad topic name must be refused with INVALID_ARGUMENT, got %v", err)
	}
	fmt.Printf("bad input: %v\n", err)

	// A transaction: the half message stays invisible; the producer "crashes" after its local
	// commit; the broker's back-check asks the checker, which finds the order committed.
	var mu sync.Mutex
	committed := map[string]bool{}
	checker := c.OnCheck([]string{producerGroup}, func(_ context.Context, check *ferrypb.TransactionCheck) (ferry.Decision, error) {
		mu.Lock()
		defer mu.Unlock()
		if committed[check.CheckRef] {
			return ferry.Commit, nil
		}
		return ferry.Unknown, nil
	})
	defer checker.Stop()
	txn, err := c.BeginTransaction(ctx, producerGroup, ferry.TxnOptions{CheckRef: "order-77"})
	must(err, "begin")
	_, err = txn.Publish(ctx, orders, ferry.Message{Key: "order-77", Payload: []byte("order 77 paid")})
	must(err, "publish half message")
	fmt.Printf("transaction %s: half message stored, invisible\n", txn.ID)
	mu.Lock()
	committed["order-77"] = true // the local commit; no txn.Commit(): "crashed"
	mu.Unlock()
	if got := collect(c, orders, 1, 20*time.Second); fmt.Sprint(got) != "[order 77 paid]" {
		log.Fatalf("received %v", got)
	}
	fmt.Println("back-check answered COMMIT: the message was delivered")

	other, err := c.BeginTransaction(ctx, producerGroup, ferry.TxnOptions{})
	must(err, "begin")
	_, err = other.Publish(ctx, orders, ferry.Message{Payload: []byte("never")})
	must(err, "publish half message")
	_, err = other.Rollback(ctx)
	must(err, "rollback")
	if got := collect(c, orders, 1, 1500*time.Millisecond); len(got) != 0 {
		log.Fatalf("a rolled back message was delivered: %v", got)
	}
	fmt.Println("rolled back transaction: nothing delivered")
	fmt.Println("go example: ok")
}
