// Package xds is Portico's Aggregated Discovery Service (ADS) client: one
// bidirectional gRPC stream to a management server carrying every subscribed
// resource type, state of the world (SotW) variant.
//
// The client follows Envoy's protocol rules (the xDS protocol document, and
// Envoy's grpc_mux_impl and grpc_stream):
//
//   - The node is sent on the first request of each stream only (Envoy's
//     set_node_on_first_message_only).
//   - On each new stream every subscribed type is requested, in the order of
//     Options.Types, with the last version this client accepted (so a server may
//     skip a resend) and no nonce: nonces belong to one stream.
//   - Listener and Cluster types are wildcard (empty resource_names) unless
//     Subscribe gives them names. Every other type is requested by name, and is
//     not requested at all until Subscribe gives it a non-empty name set.
//   - A response is handed to the Handler. nil ACKs: a request with the
//     response's version_info and response_nonce. An error NACKs: the
//     previously accepted version_info, the response's nonce, and error_detail
//     (google.rpc.Status, code INVALID_ARGUMENT, message = the error's text).
//   - A response whose type_url is not in Options.Types is NACKed; a response
//     for a type in Options.Types that has no subscription is ignored.
//   - A server that answers a NACK by re-sending the same version at once (as
//     go-control-plane's snapshot cache does, since the NACK carries an older
//     version) must not make the client spin: such a response is held until
//     Options.NackDelay has passed since the NACK, then handled again.
//   - When the stream or the server goes away the client reconnects with
//     jittered exponential back-off; the back-off restarts once a response
//     arrives on a new stream. The client keeps no resources: what runs stays
//     with the handler.
//   - Optional token bucket on requests (Envoy's rate_limit_settings).
//
// Nothing here is wired into the binary yet; Run is the whole life of a client.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of the resource types Portico subscribes to, in the order Envoy
// sends them on an ADS stream (clusters before their endpoints, listeners
// before their routes, so a server can keep its updates make-before-break).
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// Defaults, Envoy's where Envoy has one.
const (
	defaultBackoffBase = 500 * time.Millisecond
	defaultBackoffMax  = 30 * time.Second
	defaultNackDelay   = time.Second
	defaultMaxTokens   = 100
	defaultFillRate    = 10
)

// RateLimit is Envoy's rate_limit_settings: a token bucket on the requests
// the client sends. Zero fields take Envoy's defaults (100 tokens, 10/s).
type RateLimit struct {
	MaxTokens uint32
	FillRate  float64 // tokens per second
}

// Options configure a Client.
type Options struct {
	Target string       // host:port of the management server
	Node   *corev3.Node // sent on the first request of each stream
	// Types to subscribe, in Envoy's order: CDS, EDS, LDS, RDS.
	Types []string
	// Backoff gives the wait before reconnect attempt n (0-based, reset once a
	// stream receives a response). nil: jittered exponential back-off with
	// Envoy's base 500 ms and max 30 s (see envoyBackoff).
	Backoff func(attempt int) time.Duration
	// NackDelay is how long a response carrying the version just NACKed is
	// held before it is handled again. 0: 1 s.
	NackDelay time.Duration
	RateLimit *RateLimit // nil: no limit
	Logger    *slog.Logger
	// DialOptions are added after the client's own (insecure transport
	// credentials), for tests and for keepalive settings.
	DialOptions []grpc.DialOption
}

// Handler applies one response's resources. It is called on the client's
// goroutine, in arrival order. nil ACKs the version; an error NACKs it and its
// text becomes the NACK's error_detail message. It may call Subscribe.
type Handler func(typeURL, version string, resources []*anypb.Any) error

// TypeStats are Envoy's per-subscription counters.
type TypeStats struct {
	UpdateAttempt  uint64 // responses handled
	UpdateSuccess  uint64 // ACKed
	UpdateRejected uint64 // NACKed
	Version        string // last accepted version_info
	LastNackDetail string // error_detail of the last NACK
}

// Stats is a snapshot of the client's state.
type Stats struct {
	ConnectedState bool // Envoy's control_plane.connected_state
	Types          map[string]TypeStats
}

// typeState is what the client remembers of one type across streams.
type typeState struct {
	wildcard   bool     // Listener/Cluster with no explicit names
	names      []string // sorted, deduplicated
	stats      TypeStats
	nackedVer  string // version of the last NACKed response
	nackedAt   time.Time
	hasNacked  bool
	dirty      bool   // Subscribe changed names since the last request
	lastNonce  string // of the current stream
	pendingRsp *discoveryv3.DiscoveryResponse
	pendingAt  time.Time
}

func (t *typeState) subscribed() bool { return t.wildcard || len(t.names) > 0 }

// Client is an ADS client. Create it with New, run it with Run.
type Client struct {
	o       Options
	h       Handler
	log     *slog.Logger
	backoff func(int) time.Duration

	wake chan struct{} // Subscribe → stream loop, capacity 1

	mu        sync.Mutex
	types     map[string]*typeState
	connected bool
}

// New returns a client; it does nothing until Run.
func New(o Options, h Handler) *Client {
	c := &Client{o: o, h: h, log: o.Logger, backoff: o.Backoff, wake: make(chan struct{}, 1),
		types: make(map[string]*typeState, len(o.Types))}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.backoff == nil {
		c.backoff = envoyBackoff
	}
	if c.o.NackDelay <= 0 {
		c.o.NackDelay = defaultNackDelay
	}
	for _, t := range o.Types {
		c.types[t] = &typeState{wildcard: t == ListenerType || t == ClusterType}
	}
	return c
}

// envoyBackoff follows Envoy's JitteredExponentialBackOffStrategy with the
// xDS stream's defaults: the ceiling doubles from 500 ms up to 30 s. Envoy
// draws the wait in [0, ceiling); this draws it in the upper half, so
// reconnecting clients still spread out but a dead server is never retried
// at once.
func envoyBackoff(attempt int) time.Duration {
	d := defaultBackoffMax
	if attempt < 16 {
		d = min(defaultBackoffBase<<attempt, defaultBackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// Subscribe sets the resource names requested for typeURL and (re)sends its
// request on the current stream, or on the next one. Safe from any goroutine,
// the Handler included (it never blocks). For Listener and Cluster, empty
// names mean wildcard; for other types they end the subscription (a request
// with no names is still sent so the server stops sending).
func (c *Client) Subscribe(typeURL string, names []string) {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	c.mu.Lock()
	t, ok := c.types[typeURL]
	if !ok {
		c.mu.Unlock()
		c.log.Warn("xds: Subscribe for a type not in Options.Types is ignored", "type_url", typeURL)
		return
	}
	t.wildcard = len(names) == 0 && (typeURL == ListenerType || typeURL == ClusterType)
	if slices.Equal(t.names, names) && !t.dirty {
		c.mu.Unlock()
		return
	}
	t.names = names
	t.dirty = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see this type dirty
	}
}

// Stats returns a copy of the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{ConnectedState: c.connected, Types: make(map[string]TypeStats, len(c.types))}
	for k, t := range c.types {
		s.Types[k] = t.stats
	}
	return s
}

func (c *Client) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
}

// Run connects to Options.Target and keeps an ADS stream open, reconnecting
// with back-off, until ctx ends; it then returns ctx's error. Any other
// return is a configuration error (an unusable target).
func (c *Client) Run(ctx context.Context) error {
	if len(c.o.Types) == 0 {
		return errors.New("xds: no resource types to subscribe")
	}
	dopts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, c.o.DialOptions...)
	attempt := 0
	for {
		// A new channel per attempt so that reconnect timing is the
		// client's back-off alone, as Envoy's GrpcStream owns its retry
		// timer: a long-lived grpc-go channel has its own reconnect back-off
		// (up to 120 s), which would stack on ours while the server is down.
		conn, err := grpc.NewClient(c.o.Target, dopts...)
		if err != nil {
			return fmt.Errorf("xds: management server %q: %w", c.o.Target, err)
		}
		gotResponse, err := c.stream(ctx, discoveryv3.NewAggregatedDiscoveryServiceClient(conn))
		c.setConnected(false)
		if cerr := conn.Close(); cerr != nil {
			c.log.Debug("xds: closing the channel", "error", cerr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if gotResponse {
			attempt = 0
		}
		wait := c.backoff(attempt)
		attempt++
		c.log.Warn("xds: stream to the management server ended, reconnecting",
			"target", c.o.Target, "error", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// stream runs one ADS stream until it fails or ctx ends. It reports whether a
// response arrived (which resets the back-off).
func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("xds: opening the ADS stream: %w", err)
	}
	c.setConnected(true)
	c.log.Info("xds: ADS stream established", "target", c.o.Target)

	// Recv runs on its own goroutine so the loop can also wait for Subscribe,
	// timers and ctx; Send stays on the loop's goroutine (one sender only).
	rsps := make(chan *discoveryv3.DiscoveryResponse)
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

	s := &streamState{c: c, st: st, first: true, bucket: newBucket(c.o.RateLimit)}
	c.mu.Lock()
	for _, t := range c.types {
		t.lastNonce = ""
		t.pendingRsp = nil
	}
	c.mu.Unlock()
	// Initial requests, in Options.Types order, with the last accepted
	// version and no nonce.
	for _, typ := range c.o.Types {
		c.mu.Lock()
		t := c.types[typ]
		t.dirty = false
		if !t.subscribed() {
			c.mu.Unlock()
			continue
		}
		req := c.requestLocked(typ, t, "", nil)
		c.mu.Unlock()
		s.queue(req)
	}
	if err := s.flush(); err != nil {
		return false, err
	}

	got := false
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.armTimer(timer, s)
		select {
		case <-sctx.Done():
			return got, sctx.Err()
		case err := <-recvErr:
			return got, fmt.Errorf("xds: ADS stream: %w", err)
		case r := <-rsps:
			got = true
			c.onResponse(s, r)
		case <-c.wake:
			c.sendDirty(s)
		case <-timer.C:
			c.runPending(s)
		}
		if err := s.flush(); err != nil {
			return got, err
		}
	}
}

// armTimer points timer at the nearest event: a held response's due time or
// the rate limiter's next token.
func (c *Client) armTimer(timer *time.Timer, s *streamState) {
	var due time.Time
	c.mu.Lock()
	for _, t := range c.types {
		if t.pendingRsp != nil && (due.IsZero() || t.pendingAt.Before(due)) {
			due = t.pendingAt
		}
	}
	c.mu.Unlock()
	if len(s.order) > 0 {
		if at := s.bucket.nextToken(); due.IsZero() || at.Before(due) {
			due = at
		}
	}
	d := time.Hour // nothing due: a long wait the other events interrupt
	if !due.IsZero() {
		d = max(time.Until(due), 0)
	}
	timer.Reset(d)
}

// requestLocked builds the request for typ from its state; c.mu is held.
func (c *Client) requestLocked(typ string, t *typeState, version string, detail error) *discoveryv3.DiscoveryRequest {
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   version,
		TypeUrl:       typ,
		ResourceNames: slices.Clone(t.names),
		ResponseNonce: t.lastNonce,
	}
	if version == "" {
		req.VersionInfo = t.stats.Version
	}
	if detail != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail.Error()}
	}
	return req
}

func (c *Client) sendDirty(s *streamState) {
	c.mu.Lock()
	var reqs []*discoveryv3.DiscoveryRequest
	for _, typ := range c.o.Types {
		t := c.types[typ]
		if !t.dirty {
			continue
		}
		t.dirty = false
		reqs = append(reqs, c.requestLocked(typ, t, "", nil))
	}
	c.mu.Unlock()
	for _, r := range reqs {
		s.queue(r)
	}
}

// onResponse handles or holds one response.
func (c *Client) onResponse(s *streamState, r *discoveryv3.DiscoveryResponse) {
	typ := r.GetTypeUrl()
	c.mu.Lock()
	t, ok := c.types[typ]
	if !ok {
		c.mu.Unlock()
		c.log.Warn("xds: NACK of a response of an unknown type", "type_url", typ, "version", r.GetVersionInfo())
		s.queue(&discoveryv3.DiscoveryRequest{
			TypeUrl:       typ,
			ResponseNonce: r.GetNonce(),
			ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument),
				Message: fmt.Sprintf("unknown type URL %q", typ)},
		})
		return
	}
	if !t.subscribed() {
		c.mu.Unlock()
		c.log.Debug("xds: ignoring a response for an unsubscribed type", "type_url", typ)
		return
	}
	t.lastNonce = r.GetNonce()
	if t.hasNacked && r.GetVersionInfo() == t.nackedVer {
		if due := t.nackedAt.Add(c.o.NackDelay); time.Now().Before(due) {
			// The server re-sent what was just rejected: wait before
			// trying again (the newest such response replaces an older one).
			t.pendingRsp, t.pendingAt = r, due
			c.mu.Unlock()
			return
		}
	}
	t.pendingRsp = nil
	c.mu.Unlock()
	c.apply(s, typ, r)
}

// runPending handles the held responses that are due.
func (c *Client) runPending(s *streamState) {
	now := time.Now()
	for _, typ := range c.o.Types {
		c.mu.Lock()
		t := c.types[typ]
		r := t.pendingRsp
		if r == nil || now.Before(t.pendingAt) {
			c.mu.Unlock()
			continue
		}
		t.pendingRsp = nil
		c.mu.Unlock()
		c.apply(s, typ, r)
	}
}

// apply calls the handler (without the lock: it may call Subscribe) and
// queues the ACK or NACK.
func (c *Client) apply(s *streamState, typ string, r *discoveryv3.DiscoveryResponse) {
	err := c.callHandler(typ, r)
	c.mu.Lock()
	t := c.types[typ]
	t.stats.UpdateAttempt++
	var req *discoveryv3.DiscoveryRequest
	if err == nil {
		t.stats.UpdateSuccess++
		t.stats.Version = r.GetVersionInfo()
		t.hasNacked = false
		req = c.requestLocked(typ, t, r.GetVersionInfo(), nil)
	} else {
		t.stats.UpdateRejected++
		t.stats.LastNackDetail = err.Error()
		t.hasNacked, t.nackedVer, t.nackedAt = true, r.GetVersionInfo(), time.Now()
		req = c.requestLocked(typ, t, "", err) // the previous accepted version
	}
	t.dirty = false // this request carries the current names too
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("xds: NACK", "type_url", typ, "version", r.GetVersionInfo(), "error", err)
	}
	s.queue(req)
}

// callHandler turns a handler panic into a NACK: a bad resource must not take
// the client down.
func (c *Client) callHandler(typ string, r *discoveryv3.DiscoveryResponse) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return c.h(typ, r.GetVersionInfo(), r.GetResources())
}

// streamState is owned by one stream's loop goroutine.
type streamState struct {
	c      *Client
	st     grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	first  bool
	bucket *bucket
	// Outgoing requests not sent yet (rate limit), one per type: a newer
	// request for a type replaces the queued one, as Envoy builds a type's
	// request from its latest state when it is finally sent.
	order   []string
	pending map[string]*discoveryv3.DiscoveryRequest
}

func (s *streamState) queue(r *discoveryv3.DiscoveryRequest) {
	if s.pending == nil {
		s.pending = make(map[string]*discoveryv3.DiscoveryRequest)
	}
	if _, ok := s.pending[r.TypeUrl]; !ok {
		s.order = append(s.order, r.TypeUrl)
	}
	s.pending[r.TypeUrl] = r
}

// flush sends the queued requests the rate limit allows.
func (s *streamState) flush() error {
	for len(s.order) > 0 {
		if !s.bucket.take() {
			return nil // the loop's timer comes back at the next token
		}
		typ := s.order[0]
		r := s.pending[typ]
		s.order = s.order[1:]
		delete(s.pending, typ)
		if s.first {
			r.Node = s.c.o.Node
			s.first = false
		}
		if err := s.st.Send(r); err != nil {
			return fmt.Errorf("xds: sending the %s request: %w", typ, err)
		}
	}
	return nil
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
