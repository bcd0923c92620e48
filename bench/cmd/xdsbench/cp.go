package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Type URLs the benchmark sets and waits for.
const (
	ldsType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	cdsType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
)

// key is one proxy's subscription to one type.
type key struct{ node, typ string }

// event is the first time something happened to one version of one key.
type event struct {
	sent  time.Time // the server's response carrying the version went out
	acked time.Time // an ACK of it came back
	nack  string    // error_detail of a NACK of it
}

// tracker records, from the server's callbacks, when each proxy was sent and
// ACKed each version of each type. A request is an ACK of version V when its
// version_info is V, it carries a response_nonce (so it answers a response,
// unlike a stream's first request that only says what the proxy had) and no
// error_detail. A NACK carries the previous version, so it is matched to the
// version it rejects through the nonce of the response it answers.
type tracker struct {
	mu      sync.Mutex
	events  map[key]map[string]*event
	nonces  map[int64]map[string]string // stream → nonce → version
	streams map[int64]string            // stream → node id
	opened  int                         // streams opened so far
	changed chan struct{}               // closed and replaced on every record
}

func newTracker() *tracker {
	return &tracker{events: map[key]map[string]*event{}, nonces: map[int64]map[string]string{},
		streams: map[int64]string{}, changed: make(chan struct{})}
}

func (t *tracker) eventLocked(k key, version string) *event {
	m := t.events[k]
	if m == nil {
		m = map[string]*event{}
		t.events[k] = m
	}
	e := m[version]
	if e == nil {
		e = &event{}
		m[version] = e
	}
	return e
}

func (t *tracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *tracker) callbacks() serverv3.CallbackFuncs {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			t.mu.Lock()
			t.opened++
			t.notifyLocked()
			t.mu.Unlock()
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			t.mu.Lock()
			delete(t.nonces, id)
			delete(t.streams, id)
			t.mu.Unlock()
		},
		StreamRequestFunc: func(id int64, r *discoveryv3.DiscoveryRequest) error {
			now := time.Now()
			t.mu.Lock()
			defer t.mu.Unlock()
			if n := r.GetNode().GetId(); n != "" && t.streams[id] != n {
				t.streams[id] = n
				t.notifyLocked()
			}
			node := t.streams[id]
			if node == "" || r.GetResponseNonce() == "" {
				return nil
			}
			k := key{node, r.GetTypeUrl()}
			if d := r.GetErrorDetail(); d != nil {
				if v, ok := t.nonces[id][r.GetResponseNonce()]; ok {
					if e := t.eventLocked(k, v); e.nack == "" {
						e.nack = d.GetMessage()
						if e.nack == "" {
							e.nack = "NACK without a message"
						}
					}
					t.notifyLocked()
				}
				return nil
			}
			if e := t.eventLocked(k, r.GetVersionInfo()); e.acked.IsZero() {
				e.acked = now
				t.notifyLocked()
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, rsp *discoveryv3.DiscoveryResponse) {
			t.sent(id, rsp.GetTypeUrl(), rsp.GetVersionInfo(), rsp.GetNonce())
		},
		// Delta: a request carries no version_info, so an ACK or a NACK is
		// matched to the version it answers through its response_nonce (the
		// response's system_version_info is the snapshot's version of the type).
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			t.mu.Lock()
			t.opened++
			t.notifyLocked()
			t.mu.Unlock()
			return nil
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) {
			t.mu.Lock()
			delete(t.nonces, id)
			delete(t.streams, id)
			t.mu.Unlock()
		},
		StreamDeltaRequestFunc: func(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			now := time.Now()
			t.mu.Lock()
			defer t.mu.Unlock()
			if n := r.GetNode().GetId(); n != "" && t.streams[id] != n {
				t.streams[id] = n
				t.notifyLocked()
			}
			node := t.streams[id]
			v, ok := t.nonces[id][r.GetResponseNonce()]
			if node == "" || r.GetResponseNonce() == "" || !ok {
				return nil
			}
			e := t.eventLocked(key{node, r.GetTypeUrl()}, v)
			if d := r.GetErrorDetail(); d != nil {
				if e.nack == "" {
					e.nack = d.GetMessage()
					if e.nack == "" {
						e.nack = "NACK without a message"
					}
				}
				t.notifyLocked()
			} else if e.acked.IsZero() {
				e.acked = now
				t.notifyLocked()
			}
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, rsp *discoveryv3.DeltaDiscoveryResponse) {
			t.sent(id, rsp.GetTypeUrl(), rsp.GetSystemVersionInfo(), rsp.GetNonce())
		},
	}
}

// sent records a response going out on stream id: its nonce, and the first
// time the version went to the stream's node.
func (t *tracker) sent(id int64, typ, version, nonce string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	node := t.streams[id]
	if node == "" {
		return
	}
	m := t.nonces[id]
	if m == nil {
		m = map[string]string{}
		t.nonces[id] = m
	}
	m[nonce] = version
	if e := t.eventLocked(key{node, typ}, version); e.sent.IsZero() {
		e.sent = now
	}
}

// errNack is returned by wait when a proxy rejected the version.
var errNack = errors.New("NACK")

// want is one version a proxy must ACK.
type want struct {
	node, typ, version string
}

// wait blocks until every want is ACKed (returning each one's sent and ACK
// time, in order), one is NACKed, or the deadline passes.
func (t *tracker) wait(ctx context.Context, ws []want, deadline time.Time) ([]event, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		t.mu.Lock()
		out := make([]event, len(ws))
		done := true
		for i, w := range ws {
			e := t.events[key{w.node, w.typ}][w.version]
			if e == nil {
				done = false
				continue
			}
			out[i] = *e
			if e.nack != "" {
				t.mu.Unlock()
				return out, fmt.Errorf("%s %s version %s: %w: %s", w.node, shortType(w.typ), w.version, errNack, e.nack)
			}
			if e.acked.IsZero() {
				done = false
			}
		}
		ch := t.changed
		t.mu.Unlock()
		if done {
			return out, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			var missing []string
			for i, w := range ws {
				if out[i].acked.IsZero() {
					missing = append(missing, fmt.Sprintf("%s %s %s", w.node, shortType(w.typ), w.version))
				}
			}
			return out, fmt.Errorf("no ACK within the deadline from: %v", missing)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// waitStreams blocks until nodes n1..nk all have a stream, or the deadline.
func (t *tracker) waitStreams(ctx context.Context, want []string, deadline time.Time) error {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		t.mu.Lock()
		have := map[string]bool{}
		for _, n := range t.streams {
			have[n] = true
		}
		ch := t.changed
		t.mu.Unlock()
		var missing []string
		for _, n := range want {
			if !have[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("no ADS stream from %v", missing)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func shortType(u string) string {
	switch u {
	case ldsType:
		return "LDS"
	case cdsType:
		return "CDS"
	}
	return u
}

// controlPlane is go-control-plane's ADS server on loopback.
type controlPlane struct {
	cache cachev3.SnapshotCache
	track *tracker
	addr  string
	gs    *grpc.Server
	done  chan struct{}
}

func startControlPlane(ctx context.Context) (*controlPlane, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("control plane listen: %w", err)
	}
	cp := &controlPlane{
		// ads=true: responses in ADS order (CDS before LDS), as Envoy's docs
		// ask of an ADS server; IDHash: one snapshot per node id.
		cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		track: newTracker(),
		addr:  ln.Addr().String(),
		done:  make(chan struct{}),
	}
	srv := serverv3.NewServer(ctx, cp.cache, cp.track.callbacks())
	// A 1,000-listener response is a few hundred KiB; grpc's default 4 MiB
	// receive limit is on the proxy's side, the server's send limit is not
	// bounded by default.
	cp.gs = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.gs, srv)
	go func() { defer close(cp.done); _ = cp.gs.Serve(ln) }()
	return cp, nil
}

func (cp *controlPlane) stop() {
	cp.gs.Stop()
	<-cp.done
}
