package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const wait = 10 * time.Second // bound of every wait; never a timing assert

// eventually polls cond until it holds or the bound passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it are still
// there after a bounded wait.
func checkGoroutines(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(wait)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines: %d before, %d after:\n%s", base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// mgmt is a go-control-plane ADS server on loopback that records every
// request as the client sent it (before the server fills in the node).
type mgmt struct {
	t     *testing.T
	cache cachev3.SnapshotCache
	addr  string

	mu        sync.Mutex
	reqs      []*discoveryv3.DiscoveryRequest
	responses int // OnStreamResponse calls
	// Delta streams, recorded by the server's callbacks (a request before
	// the server fills in the node).
	dreqs  []deltaReq
	drsps  []deltaRsp
	gs     *grpc.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// newMgmt starts a server. ads makes the cache order its responses by type
// (CDS, EDS, LDS, RDS), as an ADS server must; it also makes the cache answer
// a by-name request only when the names cover all the snapshot's resources of
// that type, so tests that subscribe to a subset pass false.
func newMgmt(t *testing.T, ads bool) *mgmt {
	m := &mgmt{t: t, cache: cachev3.NewSnapshotCache(ads, cachev3.IDHash{}, nil), addr: "127.0.0.1:0"}
	m.start()
	t.Cleanup(m.stop)
	return m
}

type recordingStream struct {
	grpc.ServerStream
	m *mgmt
}

func (s recordingStream) RecvMsg(v any) error {
	err := s.ServerStream.RecvMsg(v)
	if r, ok := v.(*discoveryv3.DiscoveryRequest); ok && err == nil {
		s.m.mu.Lock()
		s.m.reqs = append(s.m.reqs, proto.Clone(r).(*discoveryv3.DiscoveryRequest))
		s.m.mu.Unlock()
	}
	return err
}

func (m *mgmt) start() {
	var ln net.Listener
	var err error
	// The same port again after a stop: retry a little in case the kernel
	// has not released it yet.
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", m.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		m.t.Fatalf("listen %s: %v", m.addr, err)
	}
	m.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	cb := serverv3.CallbackFuncs{
		StreamResponseFunc: func(context.Context, int64, *discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
			m.mu.Lock()
			m.responses++
			m.mu.Unlock()
		},
		StreamDeltaRequestFunc: func(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			m.mu.Lock()
			m.dreqs = append(m.dreqs, deltaReq{id, proto.Clone(r).(*discoveryv3.DeltaDiscoveryRequest)})
			m.mu.Unlock()
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
			m.mu.Lock()
			m.drsps = append(m.drsps, deltaRsp{id, proto.Clone(r).(*discoveryv3.DeltaDiscoveryResponse)})
			m.mu.Unlock()
		},
	}
	srv := serverv3.NewServer(ctx, m.cache, cb)
	gs := grpc.NewServer(grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(s, recordingStream{ss, m})
	}))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	m.mu.Lock()
	m.gs, m.cancel, m.done = gs, cancel, done
	m.mu.Unlock()
}

func (m *mgmt) stop() {
	m.mu.Lock()
	gs, cancel, done := m.gs, m.cancel, m.done
	m.gs = nil
	m.mu.Unlock()
	if gs == nil {
		return
	}
	gs.Stop()
	cancel()
	<-done
}

func (m *mgmt) requests() []*discoveryv3.DiscoveryRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.reqs)
}

func (m *mgmt) findRequest(pred func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	for _, r := range m.requests() {
		if pred(r) {
			return r
		}
	}
	return nil
}

func (m *mgmt) set(t *testing.T, version string, res map[resource.Type][]types.Resource) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cache.SetSnapshot(context.Background(), "node-1", snap); err != nil {
		t.Fatal(err)
	}
}

// call is one handler invocation.
type call struct {
	typ, version string
	names        []string
	res          []*anypb.Any
}

// recorder is a Handler that records its calls and fails where fail says.
type recorder struct {
	mu    sync.Mutex
	calls []call
	fail  func(typ, version string) error
	then  func(typ, version string) // after recording, e.g. Subscribe
}

func (r *recorder) handle(typ, version string, res []*anypb.Any) error {
	var names []string
	for _, a := range res {
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("unmarshal %s: %w", a.GetTypeUrl(), err)
		}
		switch m := m.(type) {
		case *clusterv3.Cluster:
			names = append(names, m.GetName())
		case *listenerv3.Listener:
			names = append(names, m.GetName())
		case *endpointv3.ClusterLoadAssignment:
			names = append(names, m.GetClusterName())
		}
	}
	slices.Sort(names)
	r.mu.Lock()
	r.calls = append(r.calls, call{typ, version, names, res})
	fail, then := r.fail, r.then
	r.mu.Unlock()
	if then != nil {
		then(typ, version)
	}
	if fail != nil {
		return fail(typ, version)
	}
	return nil
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) saw(typ, version string) bool {
	for _, c := range r.snapshot() {
		if c.typ == typ && c.version == version {
			return true
		}
	}
	return false
}

func (r *recorder) count(typ, version string) int {
	n := 0
	for _, c := range r.snapshot() {
		if c.typ == typ && c.version == version {
			n++
		}
	}
	return n
}

// runClient runs c until the test ends and checks that Run returns on
// cancel.
func runClient(t *testing.T, c *Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func node() *corev3.Node { return &corev3.Node{Id: "node-1", Cluster: "portico"} }

func fastBackoff(n *int, mu *sync.Mutex) func(int) time.Duration {
	return func(int) time.Duration {
		mu.Lock()
		*n++
		mu.Unlock()
		return 20 * time.Millisecond
	}
}

func resources(clusters, listeners []string) map[resource.Type][]types.Resource {
	res := map[resource.Type][]types.Resource{}
	for _, c := range clusters {
		res[resource.ClusterType] = append(res[resource.ClusterType], &clusterv3.Cluster{Name: c})
	}
	for _, l := range listeners {
		res[resource.ListenerType] = append(res[resource.ListenerType], &listenerv3.Listener{Name: l})
	}
	return res
}

func TestACKAndNewVersion(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, true)
	rec := &recorder{}
	c := New(Options{Target: m.addr, Node: node(), Types: []string{ClusterType, EndpointType, ListenerType, RouteType}}, rec.handle)
	runClient(t, c)
	eventually(t, "CDS and LDS requests", func() bool { return len(m.requests()) >= 2 })
	m.set(t, "v1", resources([]string{"c1", "c2"}, []string{"l1"}))

	// Each type's response is handed on as it comes. Which one go-control-plane sends
	// first depends on whether its stream loop has made both watches when the snapshot
	// is set (a request it has received may not have its watch yet: CI saw LDS first);
	// the manager applies CDS before LDS itself, whatever the order.
	eventually(t, "CDS and LDS v1", func() bool { return rec.saw(ClusterType, "v1") && rec.saw(ListenerType, "v1") })
	if !rec.sawSet(ClusterType, "v1", "c1", "c2") || !rec.sawSet(ListenerType, "v1", "l1") {
		t.Fatalf("resources: %+v", rec.snapshot())
	}
	for _, typ := range []string{ClusterType, ListenerType} {
		eventually(t, "ACK of "+typ, func() bool {
			return m.findRequest(func(r *discoveryv3.DiscoveryRequest) bool {
				return r.TypeUrl == typ && r.VersionInfo == "v1" && r.ResponseNonce != "" && r.ErrorDetail == nil
			}) != nil
		})
	}
	reqs := m.requests()
	if reqs[0].GetNode().GetId() != "node-1" || reqs[0].TypeUrl != ClusterType {
		t.Fatalf("first request: %v, want CDS with the node", reqs[0])
	}
	for _, r := range reqs[1:] {
		if r.Node != nil {
			t.Fatalf("node sent again on a later request: %v", r)
		}
		if r.TypeUrl == EndpointType || r.TypeUrl == RouteType {
			t.Fatalf("unsubscribed type requested: %v", r)
		}
		if len(r.ResourceNames) != 0 {
			t.Fatalf("wildcard request with names: %v", r)
		}
	}
	if !c.Stats().ConnectedState {
		t.Fatal("connected_state false on a live stream")
	}

	m.set(t, "v2", resources([]string{"c1"}, []string{"l1", "l2"}))
	eventually(t, "CDS and LDS v2", func() bool { return rec.saw(ClusterType, "v2") && rec.saw(ListenerType, "v2") })
	eventually(t, "stats v2", func() bool {
		s := c.Stats().Types
		return s[ClusterType].Version == "v2" && s[ListenerType].Version == "v2"
	})
	s := c.Stats().Types[ListenerType]
	if s.UpdateAttempt != 2 || s.UpdateSuccess != 2 || s.UpdateRejected != 0 {
		t.Fatalf("LDS stats %+v", s)
	}
}

func TestNACKKeepsPreviousVersionAndDoesNotSpin(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	m.set(t, "v1", resources([]string{"c1"}, []string{"l1"}))
	rec := &recorder{fail: func(typ, version string) error {
		if typ == ListenerType && version == "v2" {
			return errors.New("listener l2: bad address")
		}
		return nil
	}}
	const nackDelay = 200 * time.Millisecond
	c := New(Options{Target: m.addr, Node: node(), Types: []string{ClusterType, ListenerType}, NackDelay: nackDelay}, rec.handle)
	runClient(t, c)
	eventually(t, "LDS v1", func() bool { return c.Stats().Types[ListenerType].Version == "v1" })

	m.set(t, "v2", resources([]string{"c1"}, []string{"l1", "l2"}))
	var nack *discoveryv3.DiscoveryRequest
	eventually(t, "NACK", func() bool {
		nack = m.findRequest(func(r *discoveryv3.DiscoveryRequest) bool { return r.ErrorDetail != nil })
		return nack != nil
	})
	if nack.TypeUrl != ListenerType || nack.VersionInfo != "v1" || nack.ResponseNonce == "" ||
		nack.ErrorDetail.Code != int32(codes.Internal) || nack.ErrorDetail.Message != "listener l2: bad address" {
		t.Fatalf("NACK %v: want LDS, version v1, a nonce, INTERNAL and the handler's message", nack)
	}
	// The cache answers each NACK (version v1 ≠ v2) with v2 again at once.
	// Over a window of 5 NACK delays the handler may see v2 about 6 times;
	// without the delay it would be thousands.
	time.Sleep(5 * nackDelay)
	n := rec.count(ListenerType, "v2")
	t.Logf("the rejected v2 was handled %d times in %v", n, 5*nackDelay)
	if n < 2 || n > 10 {
		t.Fatalf("handler saw the rejected v2 %d times in %v (NackDelay %v)", n, 5*nackDelay, nackDelay)
	}
	s := c.Stats().Types[ListenerType]
	if s.Version != "v1" || s.UpdateRejected < 2 || s.LastNackDetail != "listener l2: bad address" {
		t.Fatalf("LDS stats %+v", s)
	}
	// CDS v2 was fine and is ACKed.
	if c.Stats().Types[ClusterType].Version != "v2" {
		t.Fatalf("CDS stats %+v", c.Stats().Types[ClusterType])
	}

	// A fixed v3 is accepted.
	m.set(t, "v3", resources([]string{"c1"}, []string{"l1", "l2"}))
	eventually(t, "LDS v3", func() bool { return c.Stats().Types[ListenerType].Version == "v3" })
}

func TestReconnectAfterServerRestart(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	m.set(t, "v1", resources([]string{"c1"}, []string{"l1"}))
	rec := &recorder{}
	var mu sync.Mutex
	backoffs := 0
	c := New(Options{Target: m.addr, Node: node(), Types: []string{ClusterType, ListenerType},
		Backoff: fastBackoff(&backoffs, &mu)}, rec.handle)
	runClient(t, c)
	eventually(t, "v1", func() bool { return rec.saw(ListenerType, "v1") && c.Stats().ConnectedState })

	m.stop()
	eventually(t, "connected_state false", func() bool { return !c.Stats().ConnectedState })
	// Let the client try a few times against the closed port.
	eventually(t, "back-off attempts", func() bool { mu.Lock(); defer mu.Unlock(); return backoffs >= 2 })
	before := len(m.requests())
	m.set(t, "v2", resources([]string{"c1", "c2"}, []string{"l1"}))
	m.start()

	eventually(t, "v2 after restart", func() bool { return rec.saw(ClusterType, "v2") && rec.saw(ListenerType, "v2") })
	eventually(t, "connected_state true", func() bool { return c.Stats().ConnectedState })
	after := m.requests()[before:]
	if len(after) < 2 {
		t.Fatalf("requests after restart: %v", after)
	}
	first := after[0]
	if first.TypeUrl != ClusterType || first.VersionInfo != "v1" || first.ResponseNonce != "" || first.GetNode().GetId() != "node-1" {
		t.Fatalf("first request on the new stream %v: want CDS, last version v1, no nonce, the node", first)
	}
	if r := after[1]; r.TypeUrl != ListenerType || r.VersionInfo != "v1" || r.ResponseNonce != "" || r.Node != nil {
		t.Fatalf("second request on the new stream %v: want LDS, v1, no nonce, no node", r)
	}
}

func TestSubscribeEDS(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	res := resources([]string{"c1", "c2"}, nil)
	res[resource.EndpointType] = []types.Resource{
		&endpointv3.ClusterLoadAssignment{ClusterName: "c1"},
		&endpointv3.ClusterLoadAssignment{ClusterName: "c2"},
	}
	m.set(t, "v1", res)
	rec := &recorder{}
	var c *Client
	// As Envoy does: the clusters' handler subscribes to their endpoints.
	rec.then = func(typ, _ string) {
		if typ == ClusterType {
			c.Subscribe(EndpointType, []string{"c1"})
		}
	}
	c = New(Options{Target: m.addr, Node: node(), Types: []string{ClusterType, EndpointType}}, rec.handle)
	runClient(t, c)

	eventually(t, "EDS c1", func() bool {
		for _, cl := range rec.snapshot() {
			if cl.typ == EndpointType && slices.Equal(cl.names, []string{"c1"}) {
				return true
			}
		}
		return false
	})
	reqs := m.requests()
	iCDSAck := slices.IndexFunc(reqs, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.TypeUrl == ClusterType && r.ResponseNonce != ""
	})
	iEDS := slices.IndexFunc(reqs, func(r *discoveryv3.DiscoveryRequest) bool { return r.TypeUrl == EndpointType })
	if iCDSAck < 0 || iEDS < iCDSAck || !slices.Equal(reqs[iEDS].ResourceNames, []string{"c1"}) {
		t.Fatalf("requests %v: want the CDS ACK, then EDS for [c1]", reqs)
	}

	c.Subscribe(EndpointType, []string{"c2", "c1", "c2"})
	eventually(t, "EDS c1+c2", func() bool {
		for _, cl := range rec.snapshot() {
			if cl.typ == EndpointType && slices.Equal(cl.names, []string{"c1", "c2"}) {
				return true
			}
		}
		return false
	})
	if r := m.findRequest(func(r *discoveryv3.DiscoveryRequest) bool {
		return r.TypeUrl == EndpointType && slices.Equal(r.ResourceNames, []string{"c1", "c2"})
	}); r == nil || r.VersionInfo != "v1" || r.ResponseNonce == "" {
		t.Fatalf("EDS re-subscription %v: want names [c1 c2], version v1, the last nonce", r)
	}
}

// fakeADS sends scripted responses and records requests, for what a real
// control plane would not send.
type fakeADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	send []*discoveryv3.DiscoveryResponse
	reqs chan *discoveryv3.DiscoveryRequest
}

func (f *fakeADS) StreamAggregatedResources(s grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	for _, r := range f.send {
		if err := s.Send(r); err != nil {
			return err
		}
	}
	for {
		r, err := s.Recv()
		if err != nil {
			return err
		}
		select {
		case f.reqs <- r:
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

func TestUnknownTypeNACKedUnsubscribedIgnored(t *testing.T) {
	checkGoroutines(t)
	f := &fakeADS{reqs: make(chan *discoveryv3.DiscoveryRequest, 16), send: []*discoveryv3.DiscoveryResponse{
		{TypeUrl: EndpointType, VersionInfo: "e1", Nonce: "n1"}, // in Types, not subscribed: ignored
		{TypeUrl: "type.googleapis.com/foo.Bar", VersionInfo: "x1", Nonce: "n2"},
	}}
	addr := startFake(t, f)
	rec := &recorder{}
	c := New(Options{Target: addr, Node: node(), Types: []string{ClusterType, EndpointType}}, rec.handle)
	runClient(t, c) // its cleanup runs before the server's: the stream ends from our side
	next := func() *discoveryv3.DiscoveryRequest { return nextRequest(t, f) }
	if r := next(); r.TypeUrl != ClusterType || r.GetNode().GetId() != "node-1" {
		t.Fatalf("first request %v", r)
	}
	r := next()
	if r.TypeUrl != "type.googleapis.com/foo.Bar" || r.ResponseNonce != "n2" || r.ErrorDetail.GetCode() != int32(codes.Internal) {
		t.Fatalf("request %v: want the NACK of the unknown type (the EDS response ignored)", r)
	}
	if len(rec.snapshot()) != 0 {
		t.Fatalf("handler called: %v", rec.snapshot())
	}
}

func TestRunWithoutTypes(t *testing.T) {
	if err := New(Options{Target: "127.0.0.1:1"}, nil).Run(context.Background()); err == nil {
		t.Fatal("Run with no types: want an error")
	}
}

func TestEnvoyBackoffBounds(t *testing.T) {
	for attempt := 0; attempt < 40; attempt++ {
		ceil := defaultBackoffMax
		if attempt < 16 {
			ceil = min(defaultBackoffBase<<attempt, defaultBackoffMax)
		}
		for i := 0; i < 20; i++ {
			if d := envoyBackoff(attempt); d < ceil/2 || d > ceil {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, ceil/2, ceil)
			}
		}
	}
}

func TestBucket(t *testing.T) {
	b := newBucket(&RateLimit{MaxTokens: 2, FillRate: 1000})
	for i := 0; i < 2; i++ {
		if !b.take() {
			t.Fatalf("a full bucket of 2 refused token %d", i)
		}
	}
	if at := b.nextToken(); at.After(time.Now().Add(time.Second)) {
		t.Fatalf("next token at %v, fill rate 1000/s", at)
	}
	eventually(t, "refill", b.take)
	var nilb *bucket
	if !nilb.take() {
		t.Fatal("no rate limit refused")
	}
}

func TestRateLimitedRequestsAllGoOut(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	m.set(t, "v1", resources([]string{"c1"}, []string{"l1"}))
	rec := &recorder{}
	// One token: the LDS request and both ACKs wait for refills.
	c := New(Options{Target: m.addr, Node: node(), Types: []string{ClusterType, ListenerType},
		RateLimit: &RateLimit{MaxTokens: 1, FillRate: 20}}, rec.handle)
	runClient(t, c)
	eventually(t, "CDS and LDS ACKed", func() bool {
		s := c.Stats().Types
		return s[ClusterType].Version == "v1" && s[ListenerType].Version == "v1" &&
			m.findRequest(func(r *discoveryv3.DiscoveryRequest) bool {
				return r.TypeUrl == ListenerType && r.VersionInfo == "v1" && r.ResponseNonce != ""
			}) != nil
	})
}

// startFake serves f on loopback until the test ends.
func startFake(t *testing.T, f discoveryv3.AggregatedDiscoveryServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String()
}

func nextRequest(t *testing.T, f *fakeADS) *discoveryv3.DiscoveryRequest {
	t.Helper()
	select {
	case r := <-f.reqs:
		return r
	case <-time.After(wait):
		t.Fatal("no request")
		return nil
	}
}

func TestHandlerPanicNACKs(t *testing.T) {
	checkGoroutines(t)
	f := &fakeADS{reqs: make(chan *discoveryv3.DiscoveryRequest, 16), send: []*discoveryv3.DiscoveryResponse{
		{TypeUrl: ClusterType, VersionInfo: "c1", Nonce: "n1"},
	}}
	addr := startFake(t, f)
	c := New(Options{Target: addr, Types: []string{ClusterType}}, func(string, string, []*anypb.Any) error {
		panic("bad cluster")
	})
	runClient(t, c)
	nextRequest(t, f) // the initial CDS request
	r := nextRequest(t, f)
	if r.ResponseNonce != "n1" || r.VersionInfo != "" || r.ErrorDetail.GetMessage() != "handler panic: bad cluster" {
		t.Fatalf("request %v: want the NACK of the panicking update", r)
	}
	if s := c.Stats().Types[ClusterType]; s.UpdateRejected != 1 || s.Version != "" {
		t.Fatalf("CDS stats %+v", s)
	}
}

func TestSubscribeFromManyGoroutines(t *testing.T) {
	checkGoroutines(t)
	f := &fakeADS{reqs: make(chan *discoveryv3.DiscoveryRequest, 1024)}
	addr := startFake(t, f)
	c := New(Options{Target: addr, Types: []string{ClusterType, EndpointType}}, func(string, string, []*anypb.Any) error { return nil })
	runClient(t, c)
	nextRequest(t, f) // CDS
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				c.Subscribe(EndpointType, []string{fmt.Sprintf("c%d", g), fmt.Sprintf("c%d", i)})
			}
		}()
	}
	wg.Wait()
	c.Subscribe(EndpointType, []string{"final"})
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("no request for the final name set")
		}
		r := nextRequest(t, f)
		if r.TypeUrl != EndpointType {
			t.Fatalf("request %v", r)
		}
		if slices.Equal(r.ResourceNames, []string{"final"}) {
			break
		}
	}
	// Unsubscribing sends an empty by-name request, and nothing more.
	c.Subscribe(EndpointType, nil)
	if r := nextRequest(t, f); r.TypeUrl != EndpointType || len(r.ResourceNames) != 0 {
		t.Fatalf("request %v: want EDS with no names", r)
	}
}
