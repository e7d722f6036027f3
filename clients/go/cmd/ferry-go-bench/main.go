// ferry-go-bench: publish and subscribe rates of the Go client against $FERRY_BROKER.
//
//	clients/go/bench.sh [MESSAGES] [PAYLOAD_BYTES]   (scripts/client-test.sh go --bench starts a stack)
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	ferry "github.com/ferry/ferry-go"
	"github.com/ferry/ferry-go/ferrypb"
)

func main() {
	n, size := 200000, 100
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		size, _ = strconv.Atoi(os.Args[2])
	}
	ctx := context.Background()
	c, err := ferry.Dial(ferry.ConfigFromEnv())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	topic := fmt.Sprintf("bench.go.%d", time.Now().UnixNano())
	if _, err := c.Admin().CreateTopic(ctx, &ferrypb.TopicConfig{Name: topic, Queues: 4}, false); err != nil {
		log.Fatal(err)
	}
	payload := make([]byte, size)
	start := time.Now()
	// BENCH_BATCH / BENCH_IN_FLIGHT override the publisher's defaults (100 messages, 8 batches).
	pub := c.NewPublisher(ferry.PublisherSettings{MaxMessages: envInt("BENCH_BATCH"), MaxInFlight: envInt("BENCH_IN_FLIGHT")})
	futures := make([]*ferry.PublishFuture, n)
	for i := range futures {
		futures[i] = pub.Publish(ctx, topic, ferry.Message{Key: keyOf(i), Payload: payload})
	}
	if err := pub.Close(ctx); err != nil {
		log.Fatal(err)
	}
	for _, f := range futures {
		if _, err := f.Get(ctx); err != nil {
			log.Fatal(err)
		}
	}
	publish := time.Since(start)

	var count int64
	done := make(chan struct{})
	start = time.Now()
	sub, err := c.Subscribe(ctx, topic, "bench", func(context.Context, *ferry.Delivered) error {
		if atomic.AddInt64(&count, 1) == int64(n) {
			close(done)
		}
		return nil
	}, ferry.SubscribeSettings{MaxWait: 200 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	<-done
	for sub.Stats().Acked < int64(n) {
		time.Sleep(5 * time.Millisecond)
	}
	subscribe := time.Since(start)
	sub.Stop(10 * time.Second)
	fmt.Printf("go: publish %d x %d B: %.0f msg/s; subscribe (ack each): %.0f msg/s\n", n, size,
		float64(n)/publish.Seconds(), float64(n)/subscribe.Seconds())
}

func keyOf(i int) string {
	if os.Getenv("BENCH_NOKEY") != "" {
		return ""
	}
	return "k" + strconv.Itoa(i%64)
}

func envInt(name string) int {
	v, _ := strconv.Atoi(os.Getenv(name))
	return v
}
