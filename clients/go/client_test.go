package ferry_test

// The Go client against a real broker and PostgreSQL: scripts/client-test.sh go starts them
// and sets FERRY_BROKER, FERRY_TEST_DATABASE_URL and FERRY_TEST_BROKER_CTL.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ferry "github.com/ferry/ferry-go"
	"github.com/ferry/ferry-go/ferrypb"
	_ "github.com/lib/pq"
)

func setup(t *testing.T) *ferry.Client {
	t.Helper()
	if os.Getenv("FERRY_TEST_BROKER_CTL") == "" {
		t.Fatal("run these tests with scripts/client-test.sh go (it starts PostgreSQL and a broker)")
	}
	c, err := ferry.Dial(ferry.ConfigFromEnv())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func unique(prefix string) string { return fmt.Sprintf("%s.%d", prefix, time.Now().UnixNano()) }

func ctl(t *testing.T, what string) {
	t.Helper()
	if out, err := exec.Command(os.Getenv("FERRY_TEST_BROKER_CTL"), what).CombinedOutput(); err != nil {
		t.Fatalf("broker %s: %v %s", what, err, out)
	}
}

func topic(t *testing.T, c *ferry.Client, queues uint32) string {
	t.Helper()
	name := unique("go")
	if _, err := c.Admin().CreateTopic(context.Background(), &ferrypb.TopicConfig{Name: name, Queues: queues}, false); err != nil {
		t.Fatal(err)
	}
	return name
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type stored struct {
	queue   uint32
	offset  uint64
	key     string
	payload string
}

// drain reads topic with a fresh group until want messages arrived (and a little longer, for
// duplicates); sorted by queue and offset.
func drain(t *testing.T, c *ferry.Client, topic string, want int) []stored {
	t.Helper()
	var mu sync.Mutex
	var got []stored
	sub, err := c.Subscribe(context.Background(), topic, unique("g"), func(_ context.Context, m *ferry.Delivered) error {
		mu.Lock()
		got = append(got, stored{m.Queue, m.Offset, m.Key, string(m.Payload)})
		mu.Unlock()
		return nil
	}, ferry.SubscribeSettings{MaxWait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d messages", want), func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= want })
	time.Sleep(500 * time.Millisecond)
	sub.Stop(10 * time.Second)
	sort.Slice(got, func(i, j int) bool {
		return got[i].queue < got[j].queue || got[i].queue == got[j].queue && got[i].offset < got[j].offset
	})
	return got
}

func TestPublish10000BatchedAcrossABrokerKill(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 4)
	ctx := context.Background()
	pub := c.NewPublisher(ferry.PublisherSettings{RetryFor: 2 * time.Minute})
	var futures []*ferry.PublishFuture
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			futures = append(futures, pub.Publish(ctx, tp, ferry.Message{Key: fmt.Sprintf("k%d", i%50), Payload: []byte(strconv.Itoa(i))}))
		}
	}
	publish(0, 5000)
	waitFor(t, time.Minute, "half the first 5000", func() bool {
		n := 0
		for _, f := range futures {
			select {
			case <-f.Done():
				n++
			default:
			}
		}
		return n >= 2500
	})
	ctl(t, "kill")
	publish(5000, 10000)
	time.Sleep(time.Second)
	ctl(t, "start")
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	places := map[[2]uint64]bool{}
	for i, f := range futures {
		r, err := f.Get(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if r.Duplicate {
			t.Fatalf("message %d reported as a duplicate: a retry found its own attempt", i)
		}
		places[[2]uint64{uint64(r.Queue), r.Offset}] = true
	}
	if len(places) != 10000 {
		t.Fatalf("%d distinct places for 10000 messages", len(places))
	}
	got := drain(t, c, tp, 10000)
	if len(got) != 10000 {
		t.Fatalf("%d stored, want each of 10000 exactly once", len(got))
	}
	seen := map[string]bool{}
	last := map[string]int{}
	for _, s := range got {
		if seen[s.payload] {
			t.Fatalf("payload %s stored twice", s.payload)
		}
		seen[s.payload] = true
		n, _ := strconv.Atoi(s.payload)
		if prev, ok := last[s.key]; ok && n < prev {
			t.Fatalf("key %s: %d stored after %d", s.key, n, prev)
		}
		last[s.key] = n
	}
}

func TestHandlerLongerThanTheLeaseIsNotRedelivered(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 1)
	ctx := context.Background()
	pub := c.NewPublisher(ferry.PublisherSettings{})
	for i := 0; i < 3; i++ {
		pub.Publish(ctx, tp, ferry.Message{Payload: []byte(fmt.Sprintf("slow %d", i))})
	}
	pub.Close(ctx)
	var mu sync.Mutex
	var seen []string
	sub, err := c.Subscribe(ctx, tp, unique("g"), func(_ context.Context, m *ferry.Delivered) error {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s@%d", m.Payload, m.DeliveryAttempt))
		mu.Unlock()
		time.Sleep(4 * time.Second) // four leases of one second
		return nil
	}, ferry.SubscribeSettings{Lease: time.Second, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "3 acks", func() bool { return sub.Stats().Acked == 3 })
	time.Sleep(2 * time.Second)
	sub.Stop(10 * time.Second)
	sort.Strings(seen)
	if fmt.Sprint(seen) != "[slow 0@1 slow 1@1 slow 2@1]" {
		t.Fatalf("deliveries %v, want each once", seen)
	}
	if st := sub.Stats(); st.LeaseExtensions == 0 || st.StaleReceipts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFlowControlHoldsTheOutstandingLimit(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 4)
	ctx := context.Background()
	pub := c.NewPublisher(ferry.PublisherSettings{})
	for i := 0; i < 200; i++ {
		pub.Publish(ctx, tp, ferry.Message{Payload: []byte(strconv.Itoa(i))})
	}
	pub.Close(ctx)
	var mu sync.Mutex
	running, most := 0, 0
	sub, err := c.Subscribe(ctx, tp, unique("g"), func(_ context.Context, m *ferry.Delivered) error {
		mu.Lock()
		running++
		if running > most {
			most = running
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	}, ferry.SubscribeSettings{MaxOutstandingMessages: 10, Concurrency: 50})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "200 acks", func() bool { return sub.Stats().Acked == 200 })
	sub.Stop(10 * time.Second)
	if st := sub.Stats(); st.MaxOutstandingSeen > 10 || most > 10 || most < 2 {
		t.Fatalf("outstanding at most %d, handlers at once %d; want at most 10 (and some concurrency)", st.MaxOutstandingSeen, most)
	}
}

func TestFailingHandlerMessagesReachTheDeadLettersWithTheReason(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 1)
	ctx := context.Background()
	group := unique("g")
	if _, err := c.Admin().CreateGroup(ctx, &ferrypb.GroupConfig{Name: group, MaxDeliveryAttempts: 2, BackoffMs: []uint64{100}}, tp); err != nil {
		t.Fatal(err)
	}
	pub := c.NewPublisher(ferry.PublisherSettings{})
	for _, p := range []string{"ok", "bad", "reject"} {
		pub.Publish(ctx, tp, ferry.Message{Payload: []byte(p)})
	}
	pub.Close(ctx)
	sub, err := c.Subscribe(ctx, tp, group, func(_ context.Context, m *ferry.Delivered) error {
		switch string(m.Payload) {
		case "bad":
			return errors.New("cannot parse order 7")
		case "reject":
			return ferry.DeadLetter("schema v0 is not supported")
		}
		return nil
	}, ferry.SubscribeSettings{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "2 dead letters", func() bool { return sub.Stats().DeadLettered == 2 })
	sub.Stop(10 * time.Second)
	dead, err := c.Admin().DeadLetters(ctx, group, "")
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[string(d.Payload)] = d.Reason
	}
	want := map[string]string{
		"bad":    "max delivery attempts (2) reached: last outcome RETRY: cannot parse order 7",
		"reject": "rejected: schema v0 is not supported",
	}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Fatalf("dead letters %v, want %v", reasons, want)
	}
	if st := sub.Stats(); st.Acked != 1 || st.HandlerErrors != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCheckerReconnectsAfterABrokerRestartAndDecides(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 1)
	ctx := context.Background()
	group := unique("shop")
	var mu sync.Mutex
	decided := map[string]bool{}
	checker := c.OnCheck([]string{group}, func(_ context.Context, check *ferrypb.TransactionCheck) (ferry.Decision, error) {
		mu.Lock()
		decided[check.CheckRef] = true
		mu.Unlock()
		if check.CheckRef == "paid" {
			return ferry.Commit, nil
		}
		return ferry.Rollback, nil
	})
	defer checker.Stop()
	select {
	case <-checker.Connected():
	case <-time.After(10 * time.Second):
		t.Fatal("the checker did not subscribe")
	}
	ctl(t, "kill")
	ctl(t, "start")
	waitFor(t, 30*time.Second, "the checker to reconnect", func() bool {
		select {
		case <-checker.Connected():
			return checker.Connects() >= 2
		default:
			return false
		}
	})
	for _, ref := range []string{"paid", "unpaid"} {
		txn, err := c.BeginTransaction(ctx, group, ferry.TxnOptions{CheckRef: ref})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := txn.Publish(ctx, tp, ferry.Message{Payload: []byte("order " + ref)}); err != nil {
			t.Fatal(err)
		}
		// no Commit: the producer "crashed" after its local commit
	}
	waitFor(t, 30*time.Second, "both back-checks", func() bool { mu.Lock(); defer mu.Unlock(); return len(decided) == 2 })
	got := drain(t, c, tp, 1)
	if len(got) != 1 || got[0].payload != "order paid" {
		t.Fatalf("visible %v, want only the paid order", got)
	}
}

func TestOutboxAndInboxAcrossARollback(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 1)
	ctx := context.Background()
	db, err := sql.Open("postgres", os.Getenv("FERRY_TEST_DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS go_cart (order_id text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		id     string
		commit bool
	}{{"order-1", true}, {"order-2", false}, {"order-3", true}} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ferry.Enqueue(ctx, tx, tp, o.id, []byte(o.id), map[string]string{"type": "created"}); err != nil {
			t.Fatal(err)
		}
		if o.commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	group := unique("cart")
	var mu sync.Mutex
	var got []string
	sub, err := c.Subscribe(ctx, tp, group, func(ctx context.Context, m *ferry.Delivered) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		first, err := ferry.ProcessOnce(ctx, tx, group, m.ID(), func() error {
			_, err := tx.ExecContext(ctx, "INSERT INTO go_cart VALUES ($1)", string(m.Payload))
			return err
		})
		if err != nil {
			return err
		}
		again, err := ferry.ProcessOnce(ctx, tx, group, m.ID(), func() error { return errors.New("ran twice") })
		if err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %v %v %s", m.Payload, first, again, m.Headers["type"]))
		mu.Unlock()
		return nil
	}, ferry.SubscribeSettings{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the committed orders", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 2 })
	time.Sleep(time.Second)
	sub.Stop(10 * time.Second)
	sort.Strings(got)
	if fmt.Sprint(got) != "[order-1 true false created order-3 true false created]" {
		t.Fatalf("processed %v", got)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM ferry_inbox WHERE consumer_group = $1", group).Scan(&n); err != nil || n != 2 {
		t.Fatalf("inbox rows %d (%v), want 2", n, err)
	}
}

func TestErrorsCarryTheCodeAndTheBrokersMessage(t *testing.T) {
	c := setup(t)
	ctx := context.Background()
	pub := c.NewPublisher(ferry.PublisherSettings{})
	_, err := pub.Publish(ctx, "go.no-such-topic", ferry.Message{Payload: []byte("x")}).Get(ctx)
	pub.Close(ctx)
	var fe *ferry.Error
	if !errors.Is(err, ferry.ErrNotFound) || !errors.As(err, &fe) || !strings.Contains(fe.Message, "go.no-such-topic") {
		t.Fatalf("error %v, want NOT_FOUND naming the topic", err)
	}
	// A size limit is not retried: it fails at once.
	tp := topic(t, c, 1)
	pub = c.NewPublisher(ferry.PublisherSettings{})
	defer pub.Close(ctx)
	started := time.Now()
	_, err = pub.Publish(ctx, tp, ferry.Message{Payload: make([]byte, 5<<20)}).Get(ctx)
	if !errors.Is(err, ferry.ErrResourceExhausted) || ferry.IsRetryable(err) || time.Since(started) > 30*time.Second {
		t.Fatalf("oversized message: %v after %v, want RESOURCE_EXHAUSTED at once", err, time.Since(started))
	}
	if r, err := pub.Publish(ctx, tp, ferry.Message{Payload: []byte("fine")}).Get(ctx); err != nil || r.Offset != 0 {
		t.Fatalf("the publisher after a failed message: %+v %v", r, err)
	}
}

func TestTokenAndMutualTLS(t *testing.T) {
	setup(t)
	ctx := context.Background()
	cfg := ferry.Config{Address: os.Getenv("FERRY_TEST_SECURE_BROKER"), Token: os.Getenv("FERRY_TEST_SECURE_TOKEN"),
		TLSCA: os.Getenv("FERRY_TEST_TLS_CA"), TLSClientCert: os.Getenv("FERRY_TEST_TLS_CLIENT_CERT"),
		TLSClientKey: os.Getenv("FERRY_TEST_TLS_CLIENT_KEY")}
	c, err := ferry.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tp := topic(t, c, 1)
	pub := c.NewPublisher(ferry.PublisherSettings{})
	if _, err := pub.Publish(ctx, tp, ferry.Message{Payload: []byte("over TLS")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	pub.Close(ctx)
	if got := drain(t, c, tp, 1); len(got) != 1 || got[0].payload != "over TLS" {
		t.Fatalf("got %v", got)
	}
	cfg.Token = "ferry_wrong"
	wrong, err := ferry.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if _, err := wrong.Admin().ListTopics(ctx); !errors.Is(err, ferry.ErrUnauthenticated) {
		t.Fatalf("a wrong token: %v, want UNAUTHENTICATED", err)
	}
	cfg.TLSClientCert, cfg.TLSClientKey, cfg.Token = "", "", ""
	nocert, err := ferry.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nocert.Close()
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := nocert.Admin().ListTopics(short); err == nil {
		t.Fatal("a broker with --tls-client-ca accepted a client without a certificate")
	}
}

func TestOrderedGroupHandlesAQueueInOrderAcrossARetry(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 1)
	ctx := context.Background()
	group := unique("g")
	if _, err := c.Admin().CreateGroup(ctx, &ferrypb.GroupConfig{Name: group, Ordered: true}, tp); err != nil {
		t.Fatal(err)
	}
	pub := c.NewPublisher(ferry.PublisherSettings{})
	for i := 0; i < 20; i++ {
		pub.Publish(ctx, tp, ferry.Message{Key: "one-key", Payload: []byte(strconv.Itoa(i))})
	}
	pub.Close(ctx)
	var mu sync.Mutex
	var done []int
	attempts := map[int]int{}
	sub, err := c.Subscribe(ctx, tp, group, func(_ context.Context, m *ferry.Delivered) error {
		n, _ := strconv.Atoi(string(m.Payload))
		mu.Lock()
		defer mu.Unlock()
		attempts[n]++
		if n == 5 && attempts[n] == 1 {
			return ferry.RetryAfter(200*time.Millisecond, "not yet")
		}
		done = append(done, n)
		return nil
	}, ferry.SubscribeSettings{Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "20 messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(done) >= 20 })
	sub.Stop(10 * time.Second)
	for i, n := range done {
		if n != i {
			t.Fatalf("handled %v, want 0..19 in order (5 retried in place)", done)
		}
	}
	if attempts[5] != 2 || sub.Stats().Released == 0 {
		t.Fatalf("attempts of 5: %d, released %d", attempts[5], sub.Stats().Released)
	}
}

func TestAFailedKeyIsPausedUntilResumed(t *testing.T) {
	c := setup(t)
	tp := topic(t, c, 1)
	ctx := context.Background()
	pub := c.NewPublisher(ferry.PublisherSettings{})
	defer pub.Close(ctx)
	get := func(key string, payload []byte) (ferry.PublishResult, error) {
		return pub.Publish(ctx, tp, ferry.Message{Key: key, Payload: payload}).Get(ctx)
	}
	if r, err := get("k", []byte("1")); err != nil || r.Offset != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := get("k", make([]byte, 5<<20)); !errors.Is(err, ferry.ErrResourceExhausted) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := get("k", []byte("3")); !errors.Is(err, ferry.ErrFailedPrecondition) || !strings.Contains(err.Error(), "ResumePublish") {
		t.Fatalf("after a failure the key must be paused: %v", err)
	}
	if r, err := get("j", []byte("other")); err != nil || r.Offset != 1 {
		t.Fatalf("another key: %+v %v", r, err)
	}
	pub.ResumePublish(tp, "k")
	if r, err := get("k", []byte("4")); err != nil || r.Offset != 2 {
		t.Fatalf("resumed: %+v %v", r, err)
	}
}
