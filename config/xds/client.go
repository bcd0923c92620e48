// Package xds is Portico's Aggregated Discovery Service (ADS) client: one
// bidirectional gRPC stream to a management server carrying every subscribed
// resource type, in the state of the world (SotW) variant or, with
// Options.Delta, the incremental ("delta") one.
//
// The client follows Envoy's protocol rules (the xDS protocol document, and
// Envoy's grpc_mux_impl, new_grpc_mux_impl, delta_subscription_state and
// grpc_stream). Common to both variants:
//
//   - The node is sent on the first request of each stream only (Envoy's
//     set_node_on_first_message_only), or on every request with
//     Options.NodeOnEveryRequest (Envoy's default).
//   - On each new stream every subscribed type is requested, in the order of
//     Options.Types, and no nonce: nonces belong to one stream.
//   - Listener and Cluster types are wildcard unless Subscribe gives them
//     names. Every other type is requested by name, and is not requested at
//     all until Subscribe gives it a non-empty name set.
//   - The Handler is called with a type's whole current set of resources (see
//     below for delta). nil ACKs; an error NACKs with error_detail
//     (google.rpc.Status, code INTERNAL as Envoy sends, message = the error's
//     text, cut at 4 KiB as Envoy cuts it).
//     A handler panic is a NACK too.
//   - A response whose type_url is not in Options.Types is NACKed; a response
//     for a type in Options.Types that has no subscription is ignored.
//   - A server that answers a NACK by re-sending what was rejected must not
//     make the client spin: such a response is held until Options.NackDelay
//     has passed since the NACK, then handled again.
//   - When the stream or the server goes away the client reconnects with
//     jittered exponential back-off; the back-off restarts once a response
//     arrives on a new stream. What runs stays with the handler.
//   - Optional token bucket on requests (Envoy's rate_limit_settings).
//   - Stats count every handled response the same way in both variants.
//
// State of the world: each response is the type's whole set and is handed to
// the Handler as it is. The ACK carries the response's version_info and
// nonce; the NACK the previously accepted version_info and the response's
// nonce. The first request of a stream carries the last accepted version (so
// a server may skip a resend). "Re-sent what was rejected" is a response with
// the version_info just NACKed. The client keeps no resources.
//
// Delta (DeltaAggregatedResources):
//
//   - Subscriptions are deltas: resource_names_subscribe and
//     resource_names_unsubscribe against what the server has on this stream.
//     A type's first request on a stream states its whole subscription, and
//     initial_resource_versions with every resource the client holds (so the
//     server sends only what changed while the stream was down). A wildcard
//     type's very first request has no names (the legacy wildcard); on later
//     streams it says "*". Going from wildcard to names unsubscribes "*".
//   - The client holds, per type, the resources the server has sent (name →
//     version and body), across responses and streams. A response's
//     resources add or replace held ones (for a by-name type only the names
//     subscribed; others are ignored, as Envoy does); its removed_resources
//     delete them. The Handler is then called with the type's WHOLE held set,
//     sorted by name, and version = system_version_info, so a caller written
//     for SotW (per-resource apply and diff, SotW removal of what is missing)
//     works unchanged. Names that Subscribe drops leave the held set at once;
//     the handler sees that on the type's next response (no call is made for
//     an unsubscription: the server sends nothing for it).
//   - ACK: response_nonce. NACK: response_nonce and error_detail.
//   - After a NACK the held set still records the response: it is the server's
//     view (a server such as go-control-plane counts what it sent as the
//     client's and computes the next delta against it), so the next delta
//     applies consistently and the handler sees the server's current set,
//     rejected resources included, until the server changes them. This
//     differs from Envoy's DeltaSubscriptionState, which records versions only
//     on accept but whose subscribers keep the resources themselves; the
//     consequence is that a reconnect announces the rejected versions too, so
//     a server does not resend them unchanged.
//   - A malformed response (a name twice, a name both added and removed, an
//     embedded type_url that is not the response's, a resource without a body
//     that is not a heartbeat at the held version) is NACKed with Envoy's
//     message; nothing of it is applied and the Handler is not called. One
//     arriving within NackDelay of a NACK is held like a re-send (below).
//   - "Re-sent what was rejected" is, in delta, a response that would change
//     nothing held (every resource already held at that version and body, no
//     held name removed) arriving while the type's last outcome was a NACK.
//     It is held for NackDelay; any other response for the type supersedes
//     it. After an ACK such a response is handled at once (the handler sees
//     the same set again).
//
// Run is the whole life of a client. The manager package runs one per management
// server the bootstrap names (ads_config, or an api_config_source: Options.PerType).
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
	Node   *corev3.Node // sent on the first request of each stream (see NodeOnEveryRequest)
	// NodeOnEveryRequest puts Node on every request, not only on each
	// stream's first: Envoy's set_node_on_first_message_only false (Envoy's
	// default). false keeps the node on the first request only.
	NodeOnEveryRequest bool
	// PerType talks to Types[0]'s own discovery service (ListenerDiscoveryService
	// and its kin: Envoy's api_config_source without ADS) instead of the aggregated
	// one; Types must then hold one type.
	PerType bool
	// OnStreamFailure, if set, is called on the client's goroutine each time a stream
	// fails to open or ends other than by ctx (Envoy counts update_failure then).
	OnStreamFailure func(error)
	// Delta selects the incremental protocol (DeltaAggregatedResources,
	// Envoy's api_type DELTA_GRPC) instead of the state of the world.
	Delta bool
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

// Handler applies one type's resources: a SotW response's, or after a delta
// response the type's whole held set (version is then system_version_info).
// It is called on the client's goroutine, in arrival order. nil ACKs the
// version; an error NACKs it and its text becomes the NACK's error_detail
// message. It may call Subscribe. It must not modify the resources: in delta
// they are the client's held copies, handed again on later calls.
type Handler func(typeURL, version string, resources []*anypb.Any) error

// TypeStats are Envoy's per-subscription counters.
type TypeStats struct {
	UpdateAttempt  uint64 // responses handled
	UpdateSuccess  uint64 // ACKed
	UpdateRejected uint64 // NACKed
	Version        string // last accepted version_info (delta: system_version_info)
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
	d          deltaType // the delta protocol's state of this type
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
	t.d.dropUnsubscribed(t)
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
	if c.o.PerType && len(c.o.Types) != 1 {
		return fmt.Errorf("xds: a type's own discovery service carries one type, not %d", len(c.o.Types))
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
		var gotResponse bool
		if c.o.Delta {
			gotResponse, err = runStream(ctx, c, conn, &delta{c: c})
		} else {
			gotResponse, err = runStream(ctx, c, conn, &sotw{c: c})
		}
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
		if c.o.OnStreamFailure != nil {
			c.o.OnStreamFailure(err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sotw is the state-of-the-world protocol on one stream.
type sotw struct {
	c *Client
	// Requests queued but not sent yet (rate limit), one per type: a newer
	// request for a type replaces the queued one, as Envoy builds a type's
	// request from its latest state when it is finally sent.
	pending map[string]*discoveryv3.DiscoveryRequest
}

func (p *sotw) kind() string { return "ADS" }

func (p *sotw) open(ctx context.Context, conn *grpc.ClientConn) (grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse], error) {
	return openSotW(ctx, conn, &p.c.o) // service.go
}

func (p *sotw) setNode(r *discoveryv3.DiscoveryRequest, n *corev3.Node) { r.Node = n }

func (p *sotw) queue(q *sendQueue, r *discoveryv3.DiscoveryRequest) {
	if p.pending == nil {
		p.pending = make(map[string]*discoveryv3.DiscoveryRequest)
	}
	p.pending[r.TypeUrl] = r
	q.add(r.TypeUrl)
}

func (p *sotw) build(typ string) *discoveryv3.DiscoveryRequest {
	r := p.pending[typ]
	delete(p.pending, typ)
	return r
}

// begin queues the initial requests, in Options.Types order, with the last
// accepted version and no nonce.
func (p *sotw) begin(q *sendQueue) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, typ := range c.o.Types {
		t := c.types[typ]
		t.lastNonce = ""
		t.pendingRsp = nil
		t.dirty = false
		if t.subscribed() {
			p.queue(q, c.requestLocked(typ, t, "", nil))
		}
	}
}

func (p *sotw) heldDue() time.Time {
	c := p.c
	var due time.Time
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.types {
		if t.pendingRsp != nil && (due.IsZero() || t.pendingAt.Before(due)) {
			due = t.pendingAt
		}
	}
	return due
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
		req.ErrorDetail = nackStatus(detail)
	}
	return req
}

// nackStatus is a NACK's error_detail, as Envoy's: code INTERNAL, the message cut at
// 4 KiB (a gRPC status message rides in a header).
func nackStatus(err error) *statuspb.Status {
	msg := err.Error()
	if len(msg) > maxNackMessage {
		msg = msg[:maxNackMessage] + "...(truncated)"
	}
	return &statuspb.Status{Code: int32(codes.Internal), Message: msg}
}

// maxNackMessage is Envoy's limit on a NACK's message (truncateGrpcStatusMessage).
const maxNackMessage = 4096

func (p *sotw) subscribed(q *sendQueue) {
	c := p.c
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
		p.queue(q, r)
	}
}

// response handles or holds one response.
func (p *sotw) response(q *sendQueue, r *discoveryv3.DiscoveryResponse) {
	c := p.c
	typ := r.GetTypeUrl()
	c.mu.Lock()
	t, ok := c.types[typ]
	if !ok {
		c.mu.Unlock()
		c.log.Warn("xds: NACK of a response of an unknown type", "type_url", typ, "version", r.GetVersionInfo())
		p.queue(q, &discoveryv3.DiscoveryRequest{
			TypeUrl:       typ,
			ResponseNonce: r.GetNonce(),
			ErrorDetail:   nackStatus(fmt.Errorf("unknown type URL %q", typ)),
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
	p.apply(q, typ, r)
}

// runHeld handles the held responses that are due.
func (p *sotw) runHeld(q *sendQueue) {
	c := p.c
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
		p.apply(q, typ, r)
	}
}

// apply calls the handler (without the lock: it may call Subscribe) and
// queues the ACK or NACK.
func (p *sotw) apply(q *sendQueue, typ string, r *discoveryv3.DiscoveryResponse) {
	c := p.c
	err := c.callHandler(typ, r.GetVersionInfo(), r.GetResources())
	c.mu.Lock()
	t := c.types[typ]
	var req *discoveryv3.DiscoveryRequest
	if c.countLocked(t, r.GetVersionInfo(), err) {
		req = c.requestLocked(typ, t, r.GetVersionInfo(), nil)
	} else {
		t.nackedVer = r.GetVersionInfo()
		req = c.requestLocked(typ, t, "", err) // the previous accepted version
	}
	t.dirty = false // this request carries the current names too
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("xds: NACK", "type_url", typ, "version", r.GetVersionInfo(), "error", err)
	}
	p.queue(q, req)
}

// countLocked records a handled response in t's stats and NACK state and
// reports whether it was accepted; c.mu is held. Both protocols count the
// same way.
func (c *Client) countLocked(t *typeState, version string, err error) bool {
	t.stats.UpdateAttempt++
	if err == nil {
		t.stats.UpdateSuccess++
		t.stats.Version = version
		t.hasNacked = false
		return true
	}
	t.stats.UpdateRejected++
	t.stats.LastNackDetail = err.Error()
	t.hasNacked, t.nackedAt = true, time.Now()
	return false
}

// callHandler turns a handler panic into a NACK: a bad resource must not take
// the client down.
func (c *Client) callHandler(typ, version string, res []*anypb.Any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return c.h(typ, version, res)
}
