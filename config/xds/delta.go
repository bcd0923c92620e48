package xds

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// wildcardName is the explicit wildcard subscription of the delta protocol.
const wildcardName = "*"

// heldResource is one resource the delta client holds: the server's version
// of it and its body.
type heldResource struct {
	version string
	body    *anypb.Any
}

// deltaAck is the ACK (err nil) or NACK waiting to go out for a type.
type deltaAck struct {
	nonce string
	err   error
}

// deltaType is the delta protocol's state of one type; c.mu guards it.
type deltaType struct {
	// held is the server's view of what this client has, kept across
	// responses and streams: every response is merged in, accepted or not
	// (see the package doc).
	held map[string]heldResource
	// sent is the subscription the server has on the current stream: the
	// names, and wildcardName for a wildcard subscription.
	sent map[string]bool
	// started: the type's first request on the current stream was built.
	started bool
	// announced: a first request was built on some stream. Only the very
	// first is the legacy wildcard (no names); later streams say "*".
	announced bool
	ack       *deltaAck
	// pending is a re-send of what was NACKed, waiting out NackDelay until
	// t.pendingAt.
	pending *discoveryv3.DeltaDiscoveryResponse
}

// want is the subscription t asks for now, in the form of sent.
func (d *deltaType) want(t *typeState) map[string]bool {
	w := make(map[string]bool, len(t.names)+1)
	for _, n := range t.names {
		w[n] = true
	}
	if t.wildcard {
		w[wildcardName] = true
	}
	return w
}

// wants reports whether a resource named name belongs to t's subscription.
func (d *deltaType) wants(t *typeState, name string) bool {
	if t.wildcard {
		return true
	}
	_, ok := slices.BinarySearch(t.names, name)
	return ok
}

// dropUnsubscribed forgets the held resources t no longer subscribes to, as
// Envoy drops the state of a resource it lost interest in: they leave the set
// the next Handler call sees, and the next stream does not announce them.
func (d *deltaType) dropUnsubscribed(t *typeState) {
	for name := range d.held {
		if !d.wants(t, name) {
			delete(d.held, name)
		}
	}
}

// check rejects a response the way Envoy's delta subscription state does,
// before anything of it is applied.
func (d *deltaType) check(r *discoveryv3.DeltaDiscoveryResponse) error {
	seen := make(map[string]bool, len(r.GetResources())+len(r.GetRemovedResources()))
	for _, res := range r.GetResources() {
		if seen[res.GetName()] {
			return fmt.Errorf("duplicate name %s found among added/updated resources", res.GetName())
		}
		seen[res.GetName()] = true
		if res.GetResource() == nil {
			if d.isHeartbeat(res) {
				continue
			}
			return fmt.Errorf("resource %s has no body", res.GetName())
		}
		if got := res.GetResource().GetTypeUrl(); got != r.GetTypeUrl() {
			return fmt.Errorf("type URL %s embedded in an individual Any does not match the message-wide type URL %s in DeltaDiscoveryResponse",
				got, r.GetTypeUrl())
		}
	}
	for _, name := range r.GetRemovedResources() {
		if seen[name] {
			return fmt.Errorf("duplicate name %s found in the union of added+removed resources", name)
		}
		seen[name] = true
	}
	return nil
}

// isHeartbeat: a resource without a body at the version held is the server
// saying it still has it (Envoy's heartbeat, for resource TTLs).
func (d *deltaType) isHeartbeat(res *discoveryv3.Resource) bool {
	h, ok := d.held[res.GetName()]
	return res.GetResource() == nil && ok && h.version == res.GetVersion()
}

// changes reports whether merging r would change what is held.
func (d *deltaType) changes(t *typeState, r *discoveryv3.DeltaDiscoveryResponse) bool {
	for _, res := range r.GetResources() {
		if res.GetResource() == nil || !d.wants(t, res.GetName()) {
			continue
		}
		h, ok := d.held[res.GetName()]
		if !ok || h.version != res.GetVersion() || !proto.Equal(h.body, res.GetResource()) {
			return true
		}
	}
	for _, name := range r.GetRemovedResources() {
		if _, ok := d.held[name]; ok {
			return true
		}
	}
	return false
}

// merge applies r to what is held. Resources outside the subscription are
// ignored, as Envoy ignores resources it did not ask for.
func (d *deltaType) merge(t *typeState, r *discoveryv3.DeltaDiscoveryResponse) {
	if d.held == nil {
		d.held = make(map[string]heldResource)
	}
	for _, res := range r.GetResources() {
		if res.GetResource() == nil || !d.wants(t, res.GetName()) {
			continue
		}
		d.held[res.GetName()] = heldResource{version: res.GetVersion(), body: res.GetResource()}
	}
	for _, name := range r.GetRemovedResources() {
		delete(d.held, name)
	}
}

// current is the whole held set, by name.
func (d *deltaType) current() []*anypb.Any {
	names := slices.Sorted(maps.Keys(d.held))
	out := make([]*anypb.Any, len(names))
	for i, n := range names {
		out[i] = d.held[n].body
	}
	return out
}

// versions is initial_resource_versions: every held resource's version.
func (d *deltaType) versions() map[string]string {
	if len(d.held) == 0 {
		return nil
	}
	v := make(map[string]string, len(d.held))
	for n, h := range d.held {
		v[n] = h.version
	}
	return v
}

// delta is the incremental protocol on one stream.
type delta struct {
	c *Client
	// unknown holds the NACKs of responses whose type is not in
	// Options.Types (there is no typeState to build them from).
	unknown map[string]*discoveryv3.DeltaDiscoveryRequest
}

func (p *delta) kind() string { return "delta ADS" }

func (p *delta) open(ctx context.Context, conn *grpc.ClientConn) (grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse], error) {
	return openDelta(ctx, conn, &p.c.o) // service.go
}

func (p *delta) setNode(r *discoveryv3.DeltaDiscoveryRequest, n *corev3.Node) { r.Node = n }

// begin resets the per-stream state (nonces and the server's view of the
// subscription belong to one stream) and queues every subscribed type, in
// Options.Types order.
func (p *delta) begin(q *sendQueue) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, typ := range c.o.Types {
		t := c.types[typ]
		t.d.sent, t.d.started, t.d.ack, t.d.pending = nil, false, nil, nil
		t.dirty = false
		if t.subscribed() {
			q.add(typ)
		}
	}
}

// build makes typ's request from its state as it goes out. A type's first
// request on a stream states the whole subscription and the held versions
// (initial_resource_versions); later ones carry the subscription's change
// since the last request, and the pending ACK or NACK.
func (p *delta) build(typ string) *discoveryv3.DeltaDiscoveryRequest {
	if r, ok := p.unknown[typ]; ok {
		delete(p.unknown, typ)
		return r
	}
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.types[typ]
	want := t.d.want(t)
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
	first := !t.d.started
	if first {
		if len(want) == 0 {
			t.dirty = false
			return nil // nothing subscribed and nothing said yet on this stream
		}
		t.d.started = true
		req.InitialResourceVersions = t.d.versions()
		// The very first wildcard request is the legacy one, with no names
		// (what every server understands as wildcard); on later streams the
		// wildcard is explicit.
		if !t.wildcard || len(t.names) > 0 || t.d.announced {
			req.ResourceNamesSubscribe = slices.Sorted(maps.Keys(want))
		}
		t.d.announced = true
	} else {
		for n := range want {
			if !t.d.sent[n] {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		for n := range t.d.sent {
			if !want[n] {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
			}
		}
		slices.Sort(req.ResourceNamesSubscribe)
		slices.Sort(req.ResourceNamesUnsubscribe)
	}
	t.d.sent = want
	t.dirty = false
	if a := t.d.ack; a != nil {
		t.d.ack = nil
		req.ResponseNonce = a.nonce
		if a.err != nil {
			req.ErrorDetail = nackStatus(a.err)
		}
	} else if !first && len(req.ResourceNamesSubscribe) == 0 && len(req.ResourceNamesUnsubscribe) == 0 {
		return nil // the subscription changed and changed back
	}
	return req
}

func (p *delta) subscribed(q *sendQueue) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, typ := range c.o.Types {
		if c.types[typ].dirty {
			q.add(typ)
		}
	}
}

// response checks r, holds it if it only repeats what was just NACKed, or
// applies it.
func (p *delta) response(q *sendQueue, r *discoveryv3.DeltaDiscoveryResponse) {
	c := p.c
	typ := r.GetTypeUrl()
	c.mu.Lock()
	t, ok := c.types[typ]
	if !ok {
		c.mu.Unlock()
		c.log.Warn("xds: NACK of a delta response of an unknown type", "type_url", typ, "version", r.GetSystemVersionInfo())
		if p.unknown == nil {
			p.unknown = make(map[string]*discoveryv3.DeltaDiscoveryRequest)
		}
		p.unknown[typ] = &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: r.GetNonce(),
			ErrorDetail: nackStatus(fmt.Errorf("unknown type URL %q", typ))}
		q.add(typ)
		return
	}
	if !t.subscribed() {
		c.mu.Unlock()
		c.log.Debug("xds: ignoring a delta response for an unsubscribed type", "type_url", typ)
		return
	}
	err := t.d.check(r)
	if t.hasNacked && (err != nil || !t.d.changes(t, r)) {
		if due := t.nackedAt.Add(c.o.NackDelay); time.Now().Before(due) {
			// The server re-sent what was just rejected (everything in it
			// is held at these versions already, or it is malformed again):
			// wait before trying it again. A newer such response replaces
			// this one; any other response for the type supersedes it.
			t.d.pending, t.pendingAt = r, due
			c.mu.Unlock()
			return
		}
	}
	t.d.pending = nil
	c.mu.Unlock()
	p.handle(q, typ, r, err)
}

// handle NACKs a malformed response (checkErr; nothing of it is applied and
// the handler is not called) or applies it.
func (p *delta) handle(q *sendQueue, typ string, r *discoveryv3.DeltaDiscoveryResponse, checkErr error) {
	if checkErr == nil {
		p.apply(q, typ, r)
		return
	}
	c := p.c
	c.mu.Lock()
	t := c.types[typ]
	c.countLocked(t, r.GetSystemVersionInfo(), checkErr)
	t.d.ack = &deltaAck{nonce: r.GetNonce(), err: checkErr}
	c.mu.Unlock()
	c.log.Warn("xds: NACK", "type_url", typ, "version", r.GetSystemVersionInfo(), "error", checkErr)
	q.add(typ)
}

func (p *delta) heldDue() time.Time {
	c := p.c
	var due time.Time
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.types {
		if t.d.pending != nil && (due.IsZero() || t.pendingAt.Before(due)) {
			due = t.pendingAt
		}
	}
	return due
}

func (p *delta) runHeld(q *sendQueue) {
	c := p.c
	now := time.Now()
	for _, typ := range c.o.Types {
		c.mu.Lock()
		t := c.types[typ]
		r := t.d.pending
		if r == nil || now.Before(t.pendingAt) {
			c.mu.Unlock()
			continue
		}
		t.d.pending = nil
		err := t.d.check(r) // against what is held now
		c.mu.Unlock()
		p.handle(q, typ, r, err)
	}
}

// apply merges r into what is held, hands the handler the type's whole set
// (without the lock: it may call Subscribe) and queues the ACK or NACK.
func (p *delta) apply(q *sendQueue, typ string, r *discoveryv3.DeltaDiscoveryResponse) {
	c := p.c
	c.mu.Lock()
	t := c.types[typ]
	t.d.merge(t, r)
	set := t.d.current()
	c.mu.Unlock()
	err := c.callHandler(typ, r.GetSystemVersionInfo(), set)
	c.mu.Lock()
	c.countLocked(t, r.GetSystemVersionInfo(), err)
	t.d.ack = &deltaAck{nonce: r.GetNonce(), err: err}
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("xds: NACK", "type_url", typ, "version", r.GetSystemVersionInfo(), "error", err)
	}
	q.add(typ)
}
