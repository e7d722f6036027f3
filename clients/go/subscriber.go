package ferry

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ferry/ferry-go/ferrypb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Delivered is a message handed to a Handler. The Subscription settles it.
type Delivered struct {
	Topic           string
	Queue           uint32
	Offset          uint64
	Key             string
	Payload         []byte
	Headers         map[string]string
	DeliveryAttempt uint32 // 1 on first delivery
	ProducedAt      time.Time
	Receipt         string
}

// ID is the outbox id (header ferry-outbox-id) for ProcessOnce, else "topic/queue/offset".
func (m *Delivered) ID() string {
	if id := m.Headers["ferry-outbox-id"]; id != "" {
		return id
	}
	return fmt.Sprintf("%s/%d/%d", m.Topic, m.Queue, m.Offset)
}

// Handler processes one message. nil: ACK. An error from Retry/RetryAfter: RETRY; from
// DeadLetter: DEAD_LETTER; any other error: RETRY on the group's backoff with the error's text
// as the reason (kept with the dead letter if it was the last allowed attempt). ctx ends when
// the Subscription's Stop gives up waiting.
type Handler func(ctx context.Context, m *Delivered) error

// RetryError asks for the message again (after Delay when HasDelay, else the group's backoff).
type RetryError struct {
	Reason   string
	Delay    time.Duration
	HasDelay bool
}

func (e *RetryError) Error() string { return "retry: " + e.Reason }

// Retry: deliver again on the group's backoff schedule.
func Retry(reason string) error { return &RetryError{Reason: reason} }

// RetryAfter: deliver again after delay (0: now).
func RetryAfter(delay time.Duration, reason string) error {
	return &RetryError{Reason: reason, Delay: delay, HasDelay: true}
}

// DeadLetterError moves the message to the group's dead letters with Reason.
type DeadLetterError struct{ Reason string }

func (e *DeadLetterError) Error() string { return "dead letter: " + e.Reason }

// DeadLetter: move the message to the group's dead letters now.
func DeadLetter(reason string) error { return &DeadLetterError{Reason: reason} }

// Ordering says how a Subscription learns whether its group reads in order.
type Ordering int

const (
	OrderingAuto      Ordering = iota // ask the broker (DescribeTopic/DescribeGroup); unordered if not allowed
	OrderingOrdered                   // the group or topic is ordered
	OrderingUnordered                 //
)

// SubscribeSettings; zero values take the defaults.
type SubscribeSettings struct {
	MaxOutstandingMessages int           // received and not yet settled; default 1000
	MaxOutstandingBytes    int           // default 100 MiB
	Concurrency            int           // handler goroutines; default 10
	Lease                  time.Duration // each delivery's lease, extended while handled; default 30 s
	MaxLeaseExtension      time.Duration // stop extending this long after receipt; default 1 h
	MaxWait                time.Duration // long poll; default 5 s
	Ordering               Ordering      //
	StartLatest            bool          // a new group starts at the end of the topic
}

// SubscriberStats are counters of a Subscription.
type SubscriberStats struct {
	Received, Acked, Retried, DeadLettered, Released, StaleReceipts, InvalidReceipts,
	LeaseExtensions, HandlerErrors, MaxOutstandingSeen int64
}

type inflight struct {
	msg        *Delivered
	size       int
	receivedAt time.Time
	leaseUntil time.Time
	chain      string // ordered: topic/queue
	started    bool
	done       bool
}

type settle struct {
	item   *inflight
	entry  *ferrypb.CommitEntry
	queued time.Time
}

// Subscription runs a Handler for the messages of a topic in a consumer group: a long-poll
// consume loop with flow control, lease extension while handlers run, batched commits.
// STALE_RECEIPT results are counted and logged, not returned. Ordered groups: the messages of
// a queue run one after another; after a RETRY the rest of its batch is released (RETRY now)
// so that nothing overtakes it.
type Subscription struct {
	c       *Client
	topic   string
	group   string
	handler Handler
	s       SubscribeSettings
	ordered bool

	mu       sync.Mutex
	cond     *sync.Cond
	inflight map[string]*inflight
	bytes    int
	chains   map[string][]*inflight
	settles  []settle
	stopping bool
	stats    SubscriberStats

	work        chan *inflight
	kick        chan struct{}
	pullCancel  context.CancelFunc
	handlerCtx  context.Context
	handlerStop context.CancelFunc
	pullDone    chan struct{}
	workersDone chan struct{}
	keeperDone  chan struct{}
	stopOnce    sync.Once
	stopped     chan struct{}
	err         error
}

// Subscribe starts a Subscription. ctx only bounds the setup; Stop ends it.
func (c *Client) Subscribe(ctx context.Context, topic, group string, h Handler, s SubscribeSettings) (*Subscription, error) {
	if s.MaxOutstandingMessages <= 0 {
		s.MaxOutstandingMessages = 1000
	}
	if s.MaxOutstandingBytes <= 0 {
		s.MaxOutstandingBytes = 100 << 20
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 10
	}
	if s.Lease == 0 {
		s.Lease = 30 * time.Second
	}
	if s.Lease < time.Second || s.Lease > 12*time.Hour {
		return nil, &Error{Code: codes.InvalidArgument, Message: "Lease must be 1 s to 12 h"}
	}
	if s.MaxLeaseExtension <= 0 {
		s.MaxLeaseExtension = time.Hour
	}
	if s.MaxWait <= 0 {
		s.MaxWait = 5 * time.Second
	}
	sub := &Subscription{c: c, topic: topic, group: group, handler: h, s: s,
		inflight: map[string]*inflight{}, chains: map[string][]*inflight{},
		work: make(chan *inflight, s.MaxOutstandingMessages+1), kick: make(chan struct{}, 1),
		pullDone: make(chan struct{}), workersDone: make(chan struct{}), keeperDone: make(chan struct{}),
		stopped: make(chan struct{})}
	sub.cond = sync.NewCond(&sub.mu)
	switch s.Ordering {
	case OrderingOrdered:
		sub.ordered = true
	case OrderingAuto:
		ordered, err := sub.isOrdered(ctx)
		if err != nil {
			return nil, err
		}
		sub.ordered = ordered
	}
	var pullCtx context.Context
	pullCtx, sub.pullCancel = context.WithCancel(context.Background())
	sub.handlerCtx, sub.handlerStop = context.WithCancel(context.Background())
	go sub.pull(pullCtx)
	var wg sync.WaitGroup
	for i := 0; i < s.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for item := range sub.work {
				sub.handle(item)
			}
		}()
	}
	go func() { wg.Wait(); close(sub.workersDone) }()
	go sub.keeper()
	return sub, nil
}

func (s *Subscription) isOrdered(ctx context.Context) (bool, error) {
	t, err := call(s.c, ctx, s.c.admin.DescribeTopic, &ferrypb.DescribeTopicRequest{Name: s.topic})
	if err == nil && t.Topic.GetOrdered() {
		return true, nil
	}
	if err == nil {
		g, gerr := call(s.c, ctx, s.c.admin.DescribeGroup, &ferrypb.DescribeGroupRequest{Name: s.group})
		if gerr == nil {
			return g.Group.GetOrdered(), nil
		}
		err = gerr
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrUnauthenticated) {
		log.Printf("ferry: cannot tell whether %s/%s is ordered (%v): handling messages concurrently; "+
			"set Ordering: OrderingOrdered for an ordered group", s.topic, s.group, err)
		return false, nil
	}
	return false, err
}

// Stats returns the counters.
func (s *Subscription) Stats() SubscriberStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Outstanding is how many messages are received and not yet settled.
func (s *Subscription) Outstanding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

// Wait blocks until the Subscription stopped; it returns the error that stopped it on its own
// (a non-retryable Consume error such as NOT_FOUND or PERMISSION_DENIED), nil after Stop.
func (s *Subscription) Wait() error {
	<-s.stopped
	return s.err
}

// Stop stops pulling, releases the messages not started (delivered again now, to anyone),
// gives running handlers up to timeout to finish (then cancels their ctx), sends the commits.
func (s *Subscription) Stop(timeout time.Duration) {
	s.stopOnce.Do(func() { s.stop(timeout) })
	<-s.stopped
}

func (s *Subscription) stop(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.pullCancel()
	<-s.pullDone
	close(s.work) // workers release what is left in it and exit
	select {
	case <-s.workersDone:
	case <-time.After(time.Until(deadline)):
		s.handlerStop()
	}
	s.mu.Lock()
	for len(s.settles) > 0 && time.Now().Before(deadline) {
		s.mu.Unlock()
		s.poke()
		time.Sleep(10 * time.Millisecond)
		s.mu.Lock()
	}
	s.mu.Unlock()
	s.handlerStop()
	close(s.stopped)
	s.poke()
	<-s.keeperDone
}

func (s *Subscription) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Subscription) pull(ctx context.Context) {
	defer close(s.pullDone)
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	start := ferrypb.StartPosition_START_POSITION_EARLIEST
	if s.s.StartLatest {
		start = ferrypb.StartPosition_START_POSITION_LATEST
	}
	for {
		s.mu.Lock()
		for !s.stopping && (len(s.inflight) >= s.s.MaxOutstandingMessages || s.bytes >= s.s.MaxOutstandingBytes) {
			s.cond.Wait()
		}
		if s.stopping {
			s.mu.Unlock()
			return
		}
		want := s.s.MaxOutstandingMessages - len(s.inflight)
		s.mu.Unlock()
		if want > 1000 {
			want = 1000
		}
		req := &ferrypb.ConsumeRequest{Group: s.group, Topic: s.topic, MaxMessages: uint32(want),
			MaxWaitMs: uint32(s.s.MaxWait / time.Millisecond), VisibilityTimeoutMs: uint32(s.s.Lease / time.Millisecond),
			StartPosition: start}
		cctx, cancel := context.WithTimeout(ctx, s.c.timeout+s.s.MaxWait)
		resp, err := call(s.c, cctx, s.c.broker.Consume, req)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !IsRetryable(err) {
				log.Printf("ferry: consume %s/%s failed: %v; the subscription stops", s.topic, s.group, err)
				s.err = err
				go s.Stop(0)
				return
			}
			wait := b.next()
			log.Printf("ferry: consume %s/%s failed: %v; again in %v", s.topic, s.group, err, wait)
			if sleepCtx(ctx, wait) != nil {
				return
			}
			continue
		}
		b.reset()
		s.dispatch(resp.Messages)
	}
}

func (s *Subscription) dispatch(msgs []*ferrypb.DeliveredMessage) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		item := &inflight{msg: &Delivered{Topic: m.Topic, Queue: m.Queue, Offset: m.Offset, Key: m.Key,
			Payload: m.Payload, Headers: m.Headers, DeliveryAttempt: m.DeliveryAttempt,
			ProducedAt: m.ProducedAt.AsTime(), Receipt: m.Receipt},
			size: proto.Size(m), receivedAt: now, leaseUntil: now.Add(s.s.Lease)}
		s.inflight[m.Receipt] = item
		s.bytes += item.size
		s.stats.Received++
		if s.ordered {
			item.chain = fmt.Sprintf("%s/%d", m.Topic, m.Queue)
			if chain, ok := s.chains[item.chain]; ok {
				s.chains[item.chain] = append(chain, item) // runs after the ones before it
				continue
			}
			s.chains[item.chain] = nil
		}
		s.work <- item // never blocks: capacity is MaxOutstandingMessages+1
	}
	if n := int64(len(s.inflight)); n > s.stats.MaxOutstandingSeen {
		s.stats.MaxOutstandingSeen = n
	}
}

func truncateReason(r string) string {
	r = strings.ReplaceAll(r, "\x00", " ")
	if len(r) <= 4096 {
		return r
	}
	r = r[:4096]
	for !utf8.ValidString(r) {
		r = r[:len(r)-1]
	}
	return r
}

// handle runs item, then (ordered) the rest of its chain, on this goroutine.
func (s *Subscription) handle(item *inflight) {
	for item != nil {
		s.mu.Lock()
		if s.stopping || item.done {
			s.releaseLocked(item, "released: the subscriber stopped before handling it")
			item = s.nextLocked(item, true)
			s.mu.Unlock()
			continue
		}
		item.started = true
		s.mu.Unlock()

		err := s.run(item.msg)
		entry := &ferrypb.CommitEntry{Receipt: item.msg.Receipt, Outcome: ferrypb.CommitOutcome_ACK}
		failed := false
		var re *RetryError
		var de *DeadLetterError
		switch {
		case err == nil:
		case errors.As(err, &re):
			entry.Outcome = ferrypb.CommitOutcome_RETRY
			entry.Reason = truncateReason(re.Reason)
			if re.HasDelay {
				d := uint32(re.Delay / time.Millisecond)
				entry.RetryDelayMs = &d
			}
		case errors.As(err, &de):
			entry.Outcome = ferrypb.CommitOutcome_DEAD_LETTER
			entry.Reason = truncateReason(de.Reason)
		default:
			failed = true
			log.Printf("ferry: handler failed on %s/%d/%d (attempt %d): %v", item.msg.Topic, item.msg.Queue,
				item.msg.Offset, item.msg.DeliveryAttempt, err)
			entry.Outcome = ferrypb.CommitOutcome_RETRY
			entry.Reason = truncateReason(err.Error())
		}
		s.mu.Lock()
		if failed {
			s.stats.HandlerErrors++
		}
		item.done = true
		s.settles = append(s.settles, settle{item, entry, time.Now()})
		item = s.nextLocked(item, entry.Outcome == ferrypb.CommitOutcome_RETRY)
		s.mu.Unlock()
		s.poke()
	}
}

// run calls the handler, turning a panic into an error (the message is retried).
func (s *Subscription) run(m *Delivered) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return s.handler(s.handlerCtx, m)
}

// nextLocked: the next message of item's chain, after releasing the chain's rest on a RETRY.
func (s *Subscription) nextLocked(item *inflight, released bool) *inflight {
	if item.chain == "" {
		return nil
	}
	chain := s.chains[item.chain]
	if released {
		for _, rest := range chain {
			s.releaseLocked(rest, "released: an earlier message of its queue is being retried")
		}
		chain = nil
	}
	if len(chain) == 0 {
		delete(s.chains, item.chain)
		return nil
	}
	s.chains[item.chain] = chain[1:]
	return chain[0]
}

func (s *Subscription) releaseLocked(item *inflight, why string) {
	if item.done {
		return
	}
	item.done = true
	s.stats.Released++
	zero := uint32(0)
	s.settles = append(s.settles, settle{item, &ferrypb.CommitEntry{Receipt: item.msg.Receipt,
		Outcome: ferrypb.CommitOutcome_RETRY, RetryDelayMs: &zero, Reason: why}, time.Now()})
}

// keeper sends commits (100 entries or 10 ms) and extends leases (every Lease/3).
func (s *Subscription) keeper() {
	defer close(s.keeperDone)
	every := s.s.Lease / 3
	if every > 5*time.Second {
		every = 5 * time.Second
	}
	if every < 500*time.Millisecond {
		every = 500 * time.Millisecond
	}
	nextExtend := time.Now().Add(every)
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-s.kick:
		case <-ticker.C:
		}
		s.mu.Lock()
		var batch []settle
		if n := len(s.settles); n > 0 && (n >= 100 || s.stopping || time.Since(s.settles[0].queued) >= 10*time.Millisecond) {
			if n > 1000 {
				n = 1000
			}
			batch = append([]settle(nil), s.settles[:n]...)
			s.settles = s.settles[n:]
		}
		s.mu.Unlock()
		if len(batch) > 0 {
			s.commit(batch)
			continue
		}
		select {
		case <-s.stopped:
			return
		default:
		}
		if time.Now().After(nextExtend) {
			s.extend()
			nextExtend = time.Now().Add(every)
		}
	}
}

func (s *Subscription) commit(batch []settle) {
	req := &ferrypb.CommitRequest{Group: s.group}
	for _, b := range batch {
		req.Entries = append(req.Entries, b.entry)
	}
	// Commit is idempotent: retried for as long as a lease could still be valid.
	resp, err := callRetry(s.c, context.Background(), s.s.Lease, s.c.broker.Commit, req)
	if err != nil {
		log.Printf("ferry: commit of %d messages in %s failed: %v; they are delivered again when their leases end",
			len(batch), s.group, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range batch {
		if err == nil {
			s.count(b, resp.Results[i])
		}
		if item, ok := s.inflight[b.item.msg.Receipt]; ok {
			delete(s.inflight, b.item.msg.Receipt)
			s.bytes -= item.size
		}
	}
	s.cond.Broadcast()
}

func (s *Subscription) count(b settle, r *ferrypb.CommitResult) {
	m := b.item.msg
	switch r.Status {
	case ferrypb.CommitStatus_STALE_RECEIPT:
		s.stats.StaleReceipts++
		log.Printf("ferry: stale receipt for %s/%d/%d in %s: its lease had ended and it was delivered again (%s)",
			m.Topic, m.Queue, m.Offset, s.group, r.Detail)
	case ferrypb.CommitStatus_INVALID_RECEIPT, ferrypb.CommitStatus_TOPIC_NOT_FOUND:
		s.stats.InvalidReceipts++
		log.Printf("ferry: commit refused for %s/%d/%d: %s", m.Topic, m.Queue, m.Offset, r.Detail)
	case ferrypb.CommitStatus_DEAD_LETTERED:
		s.stats.DeadLettered++
	case ferrypb.CommitStatus_RETRY_SCHEDULED:
		if b.entry.Reason != "" && strings.HasPrefix(b.entry.Reason, "released:") {
			return
		}
		s.stats.Retried++
	default:
		s.stats.Acked++
	}
}

func (s *Subscription) extend() {
	now := time.Now()
	s.mu.Lock()
	var due []*inflight
	for _, item := range s.inflight {
		if !item.done && item.leaseUntil.Sub(now) < s.s.Lease*2/3 && now.Sub(item.receivedAt) < s.s.MaxLeaseExtension {
			due = append(due, item)
		}
	}
	s.mu.Unlock()
	for start := 0; start < len(due); start += 1000 {
		end := start + 1000
		if end > len(due) {
			end = len(due)
		}
		chunk := due[start:end]
		req := &ferrypb.ExtendLeaseRequest{Group: s.group, VisibilityTimeoutMs: uint32(s.s.Lease / time.Millisecond)}
		for _, item := range chunk {
			req.Receipts = append(req.Receipts, item.msg.Receipt)
		}
		resp, err := call(s.c, context.Background(), s.c.broker.ExtendLease, req)
		if err != nil {
			log.Printf("ferry: extending %d leases in %s failed: %v", len(chunk), s.group, err)
			continue
		}
		s.mu.Lock()
		for i, item := range chunk {
			if resp.Results[i].Status == ferrypb.CommitStatus_LEASE_EXTENDED {
				item.leaseUntil = now.Add(s.s.Lease)
				s.stats.LeaseExtensions++
			} else if !item.done {
				log.Printf("ferry: lease of %s/%d/%d not extended: %s", item.msg.Topic, item.msg.Queue,
					item.msg.Offset, resp.Results[i].Detail)
			}
		}
		s.mu.Unlock()
	}
}
