package ferry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log"
	"sync"
	"time"

	"github.com/ferry/ferry-go/ferrypb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Message is what Publish sends.
type Message struct {
	Key       string            // same key: same queue, stored in publish order
	Payload   []byte            //
	Headers   map[string]string //
	DedupID   string            // generated when empty, so that retries are never stored twice
	Delay     time.Duration     // deliver no earlier than now + Delay
	DeliverAt time.Time         // or no earlier than this (set one of Delay, DeliverAt)
}

// PublishResult says where a message was stored (Queue/Offset are 0 for a delayed message).
type PublishResult struct {
	Queue     uint32
	Offset    uint64
	Duplicate bool // the caller's dedup id was stored before: this is the original's place
	Delayed   bool
	DelayedID uint64
	DedupID   string
}

// PublishSettings; zero values take the defaults (Pub/Sub's batching: 100 messages, 1 MB, 10 ms).
type PublisherSettings struct {
	MaxMessages    int           // batch size in messages (1-1000), default 100
	MaxBytes       int           // batch size in bytes, default 1 MiB (at most 16 MiB)
	MaxLatency     time.Duration // how long a message waits for company, default 10 ms
	MaxInFlight    int           // batches being sent at once (all topics), default 8
	Lanes          int           // keyed lanes per topic, each sending one batch at a time; default 8
	RetryFor       time.Duration // how long a batch is retried before its results fail, default 10 min
	MaxOutstanding int           // Publish blocks while this many messages are unsent, default 100000
}

// PublishFuture resolves when the broker stored the message (or gave up).
type PublishFuture struct {
	done   chan struct{}
	result PublishResult
	err    error
}

// Done is closed when the result is known.
func (f *PublishFuture) Done() <-chan struct{} { return f.done }

// Get waits for the result (or ctx).
func (f *PublishFuture) Get(ctx context.Context) (PublishResult, error) {
	select {
	case <-f.done:
		return f.result, f.err
	case <-ctx.Done():
		return PublishResult{}, ctx.Err()
	}
}

type pending struct {
	msg       *ferrypb.ProducedMessage
	size      int
	future    *PublishFuture
	generated bool // the dedup id is ours: found stored = our own earlier attempt
}

type lane struct {
	topic        string
	ordered      bool // keyed: one batch in flight at a time
	pending      []*pending
	pendingBytes int
	firstAt      time.Time
	ready        [][]*pending
	inFlight     int
}

type laneKey struct{ topic, key string }

type laneID struct {
	topic string
	lane  int // -1: messages without a key
}

// Publisher batches messages per topic and sends them with retries. Every message carries a
// dedup id, so a batch retried after an unknown outcome is not stored twice. Order per key:
// keyed messages go to one of Lanes lanes per topic by crc32(key), and a lane has at most one
// batch in flight (retries included). When a keyed batch fails for good its keys are paused, as
// Pub/Sub's ordering keys: their queued messages and later publishes fail with
// FAILED_PRECONDITION until ResumePublish, so nothing of a key is stored after a message that
// was not. Safe for concurrent use; Close flushes.
type Publisher struct {
	c           *Client
	s           PublisherSettings
	mu          sync.Mutex
	cond        *sync.Cond
	lanes       map[laneID]*lane
	order       []*lane // in creation order, for the sender loop
	outstanding int
	inFlight    int
	flushing    int
	closed      bool
	paused      map[laneKey]error // topic/key -> why
	wake        chan struct{}
	stopped     chan struct{}
	wg          sync.WaitGroup
}

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("ferry: publisher is closed")

// NewPublisher starts a Publisher.
func (c *Client) NewPublisher(s PublisherSettings) *Publisher {
	if s.MaxMessages <= 0 || s.MaxMessages > 1000 {
		s.MaxMessages = 100
	}
	if s.MaxBytes <= 0 || s.MaxBytes > 16<<20 {
		s.MaxBytes = 1 << 20
	}
	if s.MaxLatency <= 0 {
		s.MaxLatency = 10 * time.Millisecond
	}
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = 8
	}
	if s.Lanes <= 0 {
		s.Lanes = 8
	}
	if s.RetryFor <= 0 {
		s.RetryFor = 10 * time.Minute
	}
	if s.MaxOutstanding <= 0 {
		s.MaxOutstanding = 100000
	}
	p := &Publisher{c: c, s: s, lanes: map[laneID]*lane{}, paused: map[laneKey]error{}, wake: make(chan struct{}, 1),
		stopped: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	go p.run()
	return p
}

func newDedupID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func toProto(m Message) (*ferrypb.ProducedMessage, error) {
	if m.Delay < 0 {
		return nil, &Error{Code: codes.InvalidArgument, Message: "delay must not be negative"}
	}
	if m.Delay > 0 && !m.DeliverAt.IsZero() {
		return nil, &Error{Code: codes.InvalidArgument, Message: "set Delay or DeliverAt, not both"}
	}
	pm := &ferrypb.ProducedMessage{Key: m.Key, Payload: m.Payload, Headers: m.Headers, DedupId: m.DedupID,
		DelayMs: uint64(m.Delay / time.Millisecond)}
	if pm.DedupId == "" {
		pm.DedupId = newDedupID()
	}
	if !m.DeliverAt.IsZero() {
		pm.DeliverAt = timestamppb.New(m.DeliverAt)
	}
	return pm, nil
}

// Publish queues one message; the future resolves once the broker stored it. It blocks only
// while MaxOutstanding messages are unsent (or until ctx ends).
func (p *Publisher) Publish(ctx context.Context, topic string, m Message) *PublishFuture {
	f := &PublishFuture{done: make(chan struct{})}
	pm, err := toProto(m)
	if err != nil {
		f.err = err
		close(f.done)
		return f
	}
	item := &pending{msg: pm, size: proto.Size(pm), future: f, generated: m.DedupID == ""}
	p.mu.Lock()
	if p.outstanding >= p.s.MaxOutstanding {
		p.mu.Unlock()
		defer p.wakeOnDone(ctx)()
		p.mu.Lock()
		for p.outstanding >= p.s.MaxOutstanding && !p.closed && ctx.Err() == nil {
			p.cond.Wait() // woken by every finished batch
		}
	}
	if p.closed || ctx.Err() != nil {
		p.mu.Unlock()
		f.err = ErrPublisherClosed
		if ctx.Err() != nil {
			f.err = ctx.Err()
		}
		close(f.done)
		return f
	}
	if why, ok := p.paused[laneKey{topic, m.Key}]; ok && m.Key != "" {
		p.mu.Unlock()
		f.err = pausedError(topic, m.Key, why)
		close(f.done)
		return f
	}
	id := laneID{topic, -1}
	if m.Key != "" {
		id.lane = int(crc32.ChecksumIEEE([]byte(m.Key)) % uint32(p.s.Lanes))
	}
	l := p.lanes[id]
	if l == nil {
		l = &lane{topic: topic, ordered: id.lane >= 0}
		p.lanes[id] = l
		p.order = append(p.order, l)
	}
	if len(l.pending) == 0 {
		l.firstAt = time.Now()
	}
	l.pending = append(l.pending, item)
	l.pendingBytes += item.size
	p.outstanding++
	kick := len(l.pending) == 1 || len(l.pending) >= p.s.MaxMessages || l.pendingBytes >= p.s.MaxBytes
	p.mu.Unlock()
	if kick {
		p.poke()
	}
	return f
}

// wakeOnDone wakes the cond's waiters when ctx ends (they check ctx); call the result when done.
func (p *Publisher) wakeOnDone(ctx context.Context) func() {
	if ctx.Done() == nil {
		return func() {}
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.cond.Broadcast()
			p.mu.Unlock()
		case <-stop:
		}
	}()
	return func() { close(stop) }
}

// ResumePublish lets key be published to topic again after a failure paused it.
func (p *Publisher) ResumePublish(topic, key string) {
	p.mu.Lock()
	delete(p.paused, laneKey{topic, key})
	p.mu.Unlock()
}

func pausedError(topic, key string, why error) error {
	return &Error{Code: codes.FailedPrecondition, Message: fmt.Sprintf(
		"publishing key %q to %s is paused: an earlier message of the key failed (%v); call ResumePublish", key, topic, why)}
}

// pauseLocked pauses the keys of a failed batch and fails their queued messages.
func (p *Publisher) pauseLocked(l *lane, batch []*pending, why error) int {
	for _, item := range batch {
		p.paused[laneKey{l.topic, item.msg.Key}] = why
	}
	failed := 0
	keep := func(items []*pending) []*pending {
		var kept []*pending
		for _, item := range items {
			if cause, ok := p.paused[laneKey{l.topic, item.msg.Key}]; ok {
				item.future.err = pausedError(l.topic, item.msg.Key, cause)
				close(item.future.done)
				failed++
				continue
			}
			kept = append(kept, item)
		}
		return kept
	}
	before := len(l.pending)
	l.pending = keep(l.pending)
	if len(l.pending) != before {
		l.pendingBytes = 0
		for _, item := range l.pending {
			l.pendingBytes += item.size
		}
	}
	var ready [][]*pending
	for _, b := range l.ready {
		if rest := keep(b); len(rest) > 0 {
			ready = append(ready, rest)
		}
	}
	l.ready = ready
	return failed
}

func (p *Publisher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Flush sends everything queued now and waits until it is resolved (or ctx ends).
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	p.flushing++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.flushing--
		p.mu.Unlock()
	}()
	p.poke()
	defer p.wakeOnDone(ctx)()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.outstanding > 0 && ctx.Err() == nil {
		p.cond.Wait()
	}
	return ctx.Err()
}

// Close flushes (for up to ctx) and stops; Publish fails afterwards.
func (p *Publisher) Close(ctx context.Context) error {
	err := p.Flush(ctx)
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.poke()
	<-p.stopped
	p.wg.Wait()
	return err
}

func (p *Publisher) cut(l *lane) []*pending {
	n, size := 0, 0
	for n < len(l.pending) && n < p.s.MaxMessages {
		if n > 0 && size+l.pending[n].size > p.s.MaxBytes {
			break
		}
		size += l.pending[n].size
		n++
	}
	batch := make([]*pending, n)
	copy(batch, l.pending[:n])
	l.pending = l.pending[n:]
	l.pendingBytes -= size
	if len(l.pending) > 0 {
		l.firstAt = time.Now()
	}
	return batch
}

// run cuts batches and starts senders: one goroutine for the publisher.
func (p *Publisher) run() {
	defer close(p.stopped)
	timer := time.NewTimer(time.Hour)
	for {
		p.mu.Lock()
		if p.closed && p.outstanding == 0 {
			p.mu.Unlock()
			return
		}
		now := time.Now()
		var wake time.Duration = time.Hour
		for _, l := range p.order {
			for len(l.pending) > 0 && (p.flushing > 0 || p.closed || len(l.pending) >= p.s.MaxMessages ||
				l.pendingBytes >= p.s.MaxBytes || now.Sub(l.firstAt) >= p.s.MaxLatency) {
				l.ready = append(l.ready, p.cut(l))
			}
			if len(l.pending) > 0 {
				if due := l.firstAt.Add(p.s.MaxLatency).Sub(now); due < wake {
					wake = due
				}
			}
			for len(l.ready) > 0 && p.inFlight < p.s.MaxInFlight && !(l.ordered && l.inFlight > 0) {
				batch := l.ready[0]
				l.ready = l.ready[1:]
				l.inFlight++
				p.inFlight++
				p.wg.Add(1)
				go p.send(l, batch)
			}
		}
		p.mu.Unlock()
		if wake < 500*time.Microsecond {
			wake = 500 * time.Microsecond
		}
		timer.Reset(wake)
		select {
		case <-p.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (p *Publisher) send(l *lane, batch []*pending) {
	defer p.wg.Done()
	req := &ferrypb.ProduceRequest{Topic: l.topic, Messages: make([]*ferrypb.ProducedMessage, len(batch))}
	for i, b := range batch {
		req.Messages[i] = b.msg
	}
	deadline := time.Now().Add(p.s.RetryFor)
	b := newBackoff(100*time.Millisecond, 10*time.Second)
	var resp *ferrypb.ProduceResponse
	var err error
	for {
		resp, err = call(p.c, context.Background(), p.c.broker.Produce, req)
		if err == nil || !IsRetryable(err) {
			break
		}
		wait := b.next()
		if time.Now().Add(wait).After(deadline) {
			break
		}
		log.Printf("ferry: produce to %s failed (%v); retrying %d messages in %v with the same dedup ids",
			l.topic, err, len(batch), wait)
		time.Sleep(wait)
	}
	for i, item := range batch {
		if err != nil {
			item.future.err = err
		} else {
			r := resp.Results[i]
			item.future.result = PublishResult{Queue: r.Queue, Offset: r.Offset, Duplicate: r.Duplicate && !item.generated,
				Delayed: r.Delayed, DelayedID: r.DelayedId, DedupID: item.msg.DedupId}
		}
		close(item.future.done)
	}
	p.mu.Lock()
	if err != nil && l.ordered {
		p.outstanding -= p.pauseLocked(l, batch, err)
	}
	l.inFlight--
	p.inFlight--
	p.outstanding -= len(batch)
	p.cond.Broadcast()
	p.mu.Unlock()
	p.poke()
}
