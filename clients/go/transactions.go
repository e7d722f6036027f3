package ferry

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/ferry/ferry-go/ferrypb"
	"google.golang.org/grpc/codes"
)

// Transaction is a PREPARED transaction at the broker (RocketMQ's transactional message):
// half messages stay invisible and attached ACKs are held until Commit; Rollback discards
// them. If the producer never decides, the broker asks a Checker of its producer group.
type Transaction struct {
	c             *Client
	ID            string
	ProducerGroup string
	State         ferrypb.TransactionState
}

// TxnOptions for BeginTransaction.
type TxnOptions struct {
	CheckRef string        // handed back in back-checks (e.g. your order id)
	Timeout  time.Duration // back-checks start this long after begin; 0: the broker's default
}

// BeginTransaction begins a transaction. Not retried: after an unknown outcome a retry would
// begin a second one (the first is then resolved by back-checks).
func (c *Client) BeginTransaction(ctx context.Context, producerGroup string, o TxnOptions) (*Transaction, error) {
	resp, err := call(c, ctx, c.broker.BeginTransaction, &ferrypb.BeginTransactionRequest{
		ProducerGroup: producerGroup, CheckRef: o.CheckRef, TimeoutMs: uint64(o.Timeout / time.Millisecond)})
	if err != nil {
		return nil, err
	}
	return &Transaction{c: c, ID: resp.TransactionId, ProducerGroup: producerGroup}, nil
}

// Publish stores half messages (retried with their dedup ids on retryable errors).
func (t *Transaction) Publish(ctx context.Context, topic string, msgs ...Message) ([]PublishResult, error) {
	req := &ferrypb.ProduceRequest{Topic: topic, TransactionId: t.ID}
	for _, m := range msgs {
		pm, err := toProto(m)
		if err != nil {
			return nil, err
		}
		req.Messages = append(req.Messages, pm)
	}
	resp, err := callRetry(t.c, ctx, time.Minute, t.c.broker.Produce, req)
	if err != nil {
		return nil, err
	}
	out := make([]PublishResult, len(resp.Results))
	for i, r := range resp.Results {
		out[i] = PublishResult{Queue: r.Queue, Offset: r.Offset, Duplicate: r.Duplicate, DedupID: req.Messages[i].DedupId}
	}
	return out, nil
}

// Ack attaches ACKs of delivered messages (by receipt) to the transaction: they take effect
// if and only if it commits.
func (t *Transaction) Ack(ctx context.Context, group string, receipts ...string) error {
	req := &ferrypb.CommitRequest{Group: group, TransactionId: t.ID}
	for _, r := range receipts {
		req.Entries = append(req.Entries, &ferrypb.CommitEntry{Receipt: r, Outcome: ferrypb.CommitOutcome_ACK})
	}
	resp, err := callRetry(t.c, ctx, time.Minute, t.c.broker.Commit, req)
	if err != nil {
		return err
	}
	for _, r := range resp.Results {
		if r.Status != ferrypb.CommitStatus_TRANSACTION_PENDING && r.Status != ferrypb.CommitStatus_ALREADY_COMMITTED {
			return &Error{Code: codes.FailedPrecondition, Message: "ACK not attached: " + r.Detail}
		}
	}
	return nil
}

// Commit makes the half messages visible and the ACKs take effect; returns how many messages.
func (t *Transaction) Commit(ctx context.Context) (uint32, error) {
	return t.end(ctx, ferrypb.TransactionDecision_TRANSACTION_COMMIT)
}

// Rollback discards the half messages and ACKs.
func (t *Transaction) Rollback(ctx context.Context) (uint32, error) {
	return t.end(ctx, ferrypb.TransactionDecision_TRANSACTION_ROLLBACK)
}

func (t *Transaction) end(ctx context.Context, d ferrypb.TransactionDecision) (uint32, error) {
	// The same decision again is OK at the broker: safe to retry.
	resp, err := callRetry(t.c, ctx, time.Minute, t.c.broker.EndTransaction,
		&ferrypb.EndTransactionRequest{TransactionId: t.ID, Decision: d})
	if err != nil {
		return 0, err
	}
	t.State = resp.State
	return resp.Messages, nil
}

// Decision is a Checker's answer.
type Decision = ferrypb.TransactionDecision

const (
	Commit   = ferrypb.TransactionDecision_TRANSACTION_COMMIT
	Rollback = ferrypb.TransactionDecision_TRANSACTION_ROLLBACK
	Unknown  = ferrypb.TransactionDecision_TRANSACTION_UNKNOWN // asked again later
)

// CheckHandler decides a transaction from the application's own state. An error answers
// Unknown.
type CheckHandler func(ctx context.Context, check *ferrypb.TransactionCheck) (Decision, error)

// Checker answers back-checks on the CheckTransaction stream, reconnecting with backoff.
type Checker struct {
	c       *Client
	groups  []string
	handler CheckHandler
	id      string
	cancel  context.CancelFunc
	done    chan struct{}

	mu        sync.Mutex
	connects  int
	checks    int
	connected chan struct{} // closed while connected; replaced on reconnect
}

// OnCheck starts a Checker for these producer groups; Stop it when done.
func (c *Client) OnCheck(groups []string, h CheckHandler) *Checker {
	host, _ := os.Hostname()
	ctx, cancel := context.WithCancel(context.Background())
	k := &Checker{c: c, groups: groups, handler: h, id: fmt.Sprintf("%s:%d:%s", host, os.Getpid(), newDedupID()[:6]),
		cancel: cancel, done: make(chan struct{}), connected: make(chan struct{})}
	go k.run(ctx)
	return k
}

// Connects is how many times the stream was established (reconnects + 1).
func (k *Checker) Connects() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.connects
}

// Checks is how many back-checks were answered.
func (k *Checker) Checks() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.checks
}

// Connected is closed once the current stream is subscribed.
func (k *Checker) Connected() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.connected
}

// Stop ends the stream and waits for the Checker to finish.
func (k *Checker) Stop() {
	k.cancel()
	<-k.done
}

func (k *Checker) run(ctx context.Context) {
	defer close(k.done)
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := k.session(ctx, b)
		if ctx.Err() != nil {
			return
		}
		wait := b.next()
		log.Printf("ferry: back-check stream ended (%v); reconnecting in %v", err, wait)
		_ = sleepCtx(ctx, wait)
	}
}

func (k *Checker) session(ctx context.Context, b *backoffState) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := k.c.broker.CheckTransaction(k.c.withToken(sctx)) // no deadline: it lives on
	if err != nil {
		return wrap(err)
	}
	if err := stream.Send(&ferrypb.CheckTransactionRequest{Kind: &ferrypb.CheckTransactionRequest_Subscribe{
		Subscribe: &ferrypb.CheckSubscribe{ProducerGroups: k.groups, CheckerId: k.id}}}); err != nil {
		return wrap(err)
	}
	// The broker sends the headers once the subscription is registered.
	if _, err := stream.Header(); err != nil {
		return wrap(err)
	}
	k.mu.Lock()
	k.connects++
	close(k.connected)
	k.mu.Unlock()
	b.reset()
	defer func() {
		k.mu.Lock()
		k.connected = make(chan struct{})
		k.mu.Unlock()
	}()
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return wrap(err)
		}
		if r := resp.Rejected; r != nil {
			log.Printf("ferry: back-check answer for %s refused: %s", r.TransactionId, r.Reason)
			continue
		}
		check := resp.Check
		if check == nil {
			continue
		}
		d, herr := k.handler(ctx, check)
		if herr != nil {
			log.Printf("ferry: check handler failed for %s: %v; answering UNKNOWN", check.TransactionId, herr)
			d = Unknown
		}
		if err := stream.Send(&ferrypb.CheckTransactionRequest{Kind: &ferrypb.CheckTransactionRequest_Answer{
			Answer: &ferrypb.CheckAnswer{TransactionId: check.TransactionId, CheckId: check.CheckId, Decision: d}}}); err != nil {
			return wrap(err)
		}
		k.mu.Lock()
		k.checks++
		k.mu.Unlock()
	}
}
