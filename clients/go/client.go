// Package ferry is the Go client of the Ferry message broker: a batching Publisher, a
// Subscriber with flow control and lease extension, broker transactions with a back-check
// Checker, the transactional outbox and inbox on database/sql, and admin helpers.
//
//	client, err := ferry.Dial(ferry.ConfigFromEnv()) // FERRY_BROKER, FERRY_TOKEN, FERRY_TLS_*
//	pub := client.NewPublisher(ferry.PublisherSettings{})
//	res, err := pub.Publish(ctx, "orders", ferry.Message{Key: "order-1", Payload: b}).Get(ctx)
//	sub, err := client.Subscribe(ctx, "orders", "billing", handler, ferry.SubscribeSettings{})
package ferry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"time"

	"github.com/ferry/ferry-go/ferrypb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MaxMessageBytes is the channel's limit both ways: above the broker's 17 MiB request limit,
// so that its precise RESOURCE_EXHAUSTED reaches the caller rather than a transport error.
const MaxMessageBytes = 64 << 20

// Config says where the broker is and how to reach it. ConfigFromEnv reads the same
// environment variables as ferryctl.
type Config struct {
	Address       string        // HOST:PORT; default 127.0.0.1:7420
	Token         string        // bearer token for a broker run with --auth
	TLSCA         string        // PEM file of the broker certificate's CA: use TLS
	TLSClientCert string        // PEM client certificate (mutual TLS), with TLSClientKey
	TLSClientKey  string        //
	TLSServerName string        // name expected in the broker's certificate
	Timeout       time.Duration // deadline of each call without one in its context; default 30 s
	Keepalive     time.Duration // HTTP/2 ping interval; default 30 s
}

// ConfigFromEnv: FERRY_BROKER, FERRY_TOKEN, FERRY_TLS_CA, FERRY_TLS_CLIENT_CERT,
// FERRY_TLS_CLIENT_KEY, FERRY_TLS_SERVER_NAME.
func ConfigFromEnv() Config {
	return Config{
		Address:       os.Getenv("FERRY_BROKER"),
		Token:         os.Getenv("FERRY_TOKEN"),
		TLSCA:         os.Getenv("FERRY_TLS_CA"),
		TLSClientCert: os.Getenv("FERRY_TLS_CLIENT_CERT"),
		TLSClientKey:  os.Getenv("FERRY_TLS_CLIENT_KEY"),
		TLSServerName: os.Getenv("FERRY_TLS_SERVER_NAME"),
	}
}

// Client is one gRPC connection to a broker; safe for concurrent use. Close it when done.
type Client struct {
	conn    *grpc.ClientConn
	broker  ferrypb.BrokerClient
	admin   ferrypb.AdminClient
	token   string
	timeout time.Duration
}

// Dial connects lazily (the first call waits for the broker, up to its deadline).
func Dial(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:7420"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = 30 * time.Second
	}
	opts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes), grpc.WaitForReady(true)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: cfg.Keepalive, Timeout: 10 * time.Second}),
		// A restarted broker is found again within ~2 s, not after gRPC's 120 s backoff cap.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second}),
	}
	if cfg.TLSCA != "" || cfg.TLSClientCert != "" {
		tc := &tls.Config{ServerName: cfg.TLSServerName, MinVersion: tls.VersionTLS12}
		if cfg.TLSCA != "" {
			pem, err := os.ReadFile(cfg.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("ferry: TLS CA: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ferry: TLS CA %s: no PEM certificate in it", cfg.TLSCA)
			}
		}
		if (cfg.TLSClientCert == "") != (cfg.TLSClientKey == "") {
			return nil, errors.New("ferry: a TLS client certificate needs its key, and the key its certificate")
		}
		if cfg.TLSClientCert != "" {
			pair, err := tls.LoadX509KeyPair(cfg.TLSClientCert, cfg.TLSClientKey)
			if err != nil {
				return nil, fmt.Errorf("ferry: TLS client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	conn, err := grpc.Dial(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("ferry: dial %s: %w", cfg.Address, err)
	}
	return &Client{conn: conn, broker: ferrypb.NewBrokerClient(conn), admin: ferrypb.NewAdminClient(conn),
		token: cfg.Token, timeout: cfg.Timeout}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Broker is the generated Broker stub (pass contexts from c.Context for the token).
func (c *Client) Broker() ferrypb.BrokerClient { return c.broker }

// AdminStub is the generated Admin stub (pass contexts from c.Context for the token).
func (c *Client) AdminStub() ferrypb.AdminClient { return c.admin }

// Context adds the token and, if ctx has none, the client's deadline. Call cancel when done.
func (c *Client) Context(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = c.withToken(ctx)
	if _, ok := ctx.Deadline(); !ok {
		return context.WithTimeout(ctx, c.timeout)
	}
	return context.WithCancel(ctx)
}

func (c *Client) withToken(ctx context.Context) context.Context {
	if c.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
}

// call runs one RPC with the token and deadline; errors become *Error.
func call[Req, Resp any](c *Client, ctx context.Context, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	cctx, cancel := c.Context(ctx)
	defer cancel()
	resp, err := rpc(cctx, req)
	return resp, wrap(err)
}

// callRetry is call, retried with backoff on retryable errors for up to `for_`. Only for calls
// that are safe to repeat (idempotent, or carrying dedup ids).
func callRetry[Req, Resp any](c *Client, ctx context.Context, for_ time.Duration, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	deadline := time.Now().Add(for_)
	b := newBackoff(50*time.Millisecond, 2*time.Second)
	for {
		resp, err := call(c, ctx, rpc, req)
		if err == nil || !IsRetryable(err) {
			return resp, err
		}
		wait := b.next()
		if time.Now().Add(wait).After(deadline) {
			return resp, err
		}
		if sleepCtx(ctx, wait) != nil {
			return resp, err
		}
	}
}

// Error is a failed call: the gRPC code and the broker's message.
type Error struct {
	Code    codes.Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("ferry: %s: %s", e.Code, e.Message) }

// Is makes errors.Is(err, ferry.ErrNotFound) (and the other Err* kinds) match by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// GRPCStatus lets status.FromError / status.Code see the original status.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Error kinds, for errors.Is.
var (
	ErrInvalidArgument    = &Error{Code: codes.InvalidArgument}
	ErrNotFound           = &Error{Code: codes.NotFound}
	ErrAlreadyExists      = &Error{Code: codes.AlreadyExists}
	ErrPermissionDenied   = &Error{Code: codes.PermissionDenied}
	ErrUnauthenticated    = &Error{Code: codes.Unauthenticated}
	ErrResourceExhausted  = &Error{Code: codes.ResourceExhausted}
	ErrFailedPrecondition = &Error{Code: codes.FailedPrecondition}
	ErrUnavailable        = &Error{Code: codes.Unavailable}
	ErrDeadlineExceeded   = &Error{Code: codes.DeadlineExceeded}
)

func wrap(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return &Error{Code: s.Code(), Message: s.Message()}
	}
	return err
}

// IsRetryable: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, and RESOURCE_EXHAUSTED unless it is a
// size limit (retrying cannot help those).
func IsRetryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	case codes.ResourceExhausted:
		for _, w := range []string{"are allowed", "larger than", "at most"} {
			if strings.Contains(e.Message, w) {
				return false
			}
		}
		return true
	}
	return false
}

// backoff: exponential with jitter, the n-th wait uniform in [c/2, c], c = min(max, initial*2^n).
type backoffState struct {
	initial, max time.Duration
	attempt      int
}

func newBackoff(initial, max time.Duration) *backoffState {
	return &backoffState{initial: initial, max: max}
}

func (b *backoffState) next() time.Duration {
	c := b.initial << uint(b.attempt)
	if c > b.max || c <= 0 {
		c = b.max
	} else {
		b.attempt++
	}
	return c/2 + time.Duration(rand.Int63n(int64(c/2)+1))
}

func (b *backoffState) reset() { b.attempt = 0 }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
