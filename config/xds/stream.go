package xds

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
)

// protocol is what differs between the state-of-the-world and the delta
// variants on one stream; runStream is the loop both share. A protocol value
// lives for one stream. Its methods run on the stream's loop goroutine.
type protocol[Req, Rsp any] interface {
	// open starts the stream on conn.
	open(ctx context.Context, conn *grpc.ClientConn) (grpc.BidiStreamingClient[Req, Rsp], error)
	// begin resets the per-stream state and queues the initial requests.
	begin(q *sendQueue)
	// response handles (or holds) one response and queues its ACK or NACK.
	response(q *sendQueue, r *Rsp)
	// subscribed queues the requests that Subscribe calls made necessary.
	subscribed(q *sendQueue)
	// heldDue is when the earliest held response is due, zero if none.
	heldDue() time.Time
	// runHeld handles the held responses that are due.
	runHeld(q *sendQueue)
	// build makes typ's request as it goes out (so a request that waited for
	// the rate limit carries the newest state); nil: nothing to send.
	build(typ string) *Req
	// setNode puts the node on a request.
	setNode(r *Req, n *corev3.Node)
	// kind names the stream in errors and logs.
	kind() string
}

// sendQueue is one stream's outgoing side: the types with a request to send,
// one slot per type, in the order they were first queued.
type sendQueue struct {
	order   []string
	queued  map[string]bool
	bucket  *bucket
	sentAny bool // a request went out on this stream (the node rides the first)
}

func (q *sendQueue) add(typ string) {
	if q.queued == nil {
		q.queued = make(map[string]bool)
	}
	if !q.queued[typ] {
		q.queued[typ] = true
		q.order = append(q.order, typ)
	}
}

// flush sends the queued requests the rate limit allows.
func flush[Req, Rsp any](c *Client, p protocol[Req, Rsp], q *sendQueue, st grpc.BidiStreamingClient[Req, Rsp]) error {
	for len(q.order) > 0 {
		if !q.bucket.take() {
			return nil // the loop's timer comes back at the next token
		}
		typ := q.order[0]
		q.order = q.order[1:]
		delete(q.queued, typ)
		r := p.build(typ)
		if r == nil {
			q.bucket.giveBack()
			continue
		}
		if !q.sentAny || c.o.NodeOnEveryRequest {
			p.setNode(r, c.o.Node)
		}
		q.sentAny = true
		if err := st.Send(r); err != nil {
			return fmt.Errorf("xds: sending the %s request: %w", typ, err)
		}
	}
	return nil
}

// runStream runs one stream until it fails or ctx ends. It reports whether a
// response arrived (which resets the back-off).
func runStream[Req, Rsp any](ctx context.Context, c *Client, conn *grpc.ClientConn, p protocol[Req, Rsp]) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := p.open(sctx, conn)
	if err != nil {
		return false, fmt.Errorf("xds: opening the %s stream: %w", p.kind(), err)
	}
	c.setConnected(true)
	c.log.Info("xds: stream established", "kind", p.kind(), "target", c.o.Target)

	// Recv runs on its own goroutine so the loop can also wait for Subscribe,
	// timers and ctx; Send stays on the loop's goroutine (one sender only).
	rsps := make(chan *Rsp)
	recvErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			r, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case rsps <- r:
			case <-sctx.Done():
				return
			}
		}
	}()
	defer wg.Wait() // after cancel (deferred later, so run first): Recv returns
	defer cancel()

	q := &sendQueue{bucket: newBucket(c.o.RateLimit)}
	p.begin(q)
	if err := flush(c, p, q, st); err != nil {
		return false, err
	}

	got := false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		armTimer(timer, p.heldDue(), q)
		select {
		case <-sctx.Done():
			return got, sctx.Err()
		case err := <-recvErr:
			return got, fmt.Errorf("xds: %s stream: %w", p.kind(), err)
		case r := <-rsps:
			got = true
			p.response(q, r)
		case <-c.wake:
			p.subscribed(q)
		case <-timer.C:
			p.runHeld(q)
		}
		if err := flush(c, p, q, st); err != nil {
			return got, err
		}
	}
}

// armTimer points timer at the nearest event: a held response's due time or,
// when requests wait, the rate limiter's next token.
func armTimer(timer *time.Timer, due time.Time, q *sendQueue) {
	if len(q.order) > 0 {
		if at := q.bucket.nextToken(); due.IsZero() || at.Before(due) {
			due = at
		}
	}
	d := time.Hour // nothing due: a long wait the other events interrupt
	if !due.IsZero() {
		d = max(time.Until(due), 0)
	}
	timer.Reset(d)
}

// bucket is a token bucket; nil means unlimited.
type bucket struct {
	max, tokens, rate float64
	last              time.Time
}

func newBucket(rl *RateLimit) *bucket {
	if rl == nil {
		return nil
	}
	b := &bucket{max: float64(rl.MaxTokens), rate: rl.FillRate, last: time.Now()}
	if b.max <= 0 {
		b.max = defaultMaxTokens
	}
	if b.rate <= 0 {
		b.rate = defaultFillRate
	}
	b.tokens = b.max
	return b
}

func (b *bucket) refill() {
	now := time.Now()
	b.tokens = min(b.max, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
}

func (b *bucket) take() bool {
	if b == nil {
		return true
	}
	b.refill()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// giveBack returns a token taken for a request that turned out empty.
func (b *bucket) giveBack() {
	if b != nil {
		b.tokens = min(b.max, b.tokens+1)
	}
}

// nextToken is when the next whole token is there.
func (b *bucket) nextToken() time.Time {
	if b == nil {
		return time.Now()
	}
	b.refill()
	if b.tokens >= 1 {
		return time.Now()
	}
	return b.last.Add(time.Duration((1 - b.tokens) / b.rate * float64(time.Second)))
}
