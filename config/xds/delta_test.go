package xds

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

type deltaReq struct {
	stream int64
	r      *discoveryv3.DeltaDiscoveryRequest
}

type deltaRsp struct {
	stream int64
	r      *discoveryv3.DeltaDiscoveryResponse
}

func (m *mgmt) deltaRequests() []deltaReq {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.dreqs)
}

func (m *mgmt) deltaResponses() []deltaRsp {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.drsps)
}

func (m *mgmt) findDeltaRequest(pred func(*discoveryv3.DeltaDiscoveryRequest) bool) *discoveryv3.DeltaDiscoveryRequest {
	for _, r := range m.deltaRequests() {
		if pred(r.r) {
			return r.r
		}
	}
	return nil
}

func (m *mgmt) logDelta(t *testing.T) {
	t.Helper()
	for _, r := range m.deltaRequests() {
		t.Logf("req  stream %d %s sub=%q unsub=%q init=%v nonce=%q err=%v node=%v", r.stream, r.r.TypeUrl,
			r.r.ResourceNamesSubscribe, r.r.ResourceNamesUnsubscribe, r.r.InitialResourceVersions,
			r.r.ResponseNonce, r.r.ErrorDetail, r.r.Node != nil)
	}
	for _, r := range m.deltaResponses() {
		t.Logf("rsp  stream %d %s v=%q %v removed=%q nonce=%q", r.stream, r.r.TypeUrl, r.r.SystemVersionInfo,
			rspNames(r.r), r.r.RemovedResources, r.r.Nonce)
	}
}

func rspNames(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var n []string
	for _, res := range r.GetResources() {
		n = append(n, res.GetName())
	}
	slices.Sort(n)
	return n
}

// lis is a listener; a stat prefix "bad" makes rejectBad refuse it.
func lis(name, statPrefix string) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, StatPrefix: statPrefix}
}

// rejectBad is what a handler's per-resource translation would say of a
// listener marked bad.
func rejectBad(res []*anypb.Any) error {
	var bad []string
	for _, a := range res {
		m, err := a.UnmarshalNew()
		if err != nil {
			return err
		}
		if l, ok := m.(*listenerv3.Listener); ok && l.GetStatPrefix() == "bad" {
			bad = append(bad, l.GetName())
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("Error adding/updating listener(s) %v: bad", bad)
	}
	return nil
}

// lastCall is the handler's latest call for typ.
func (r *recorder) lastCall(typ string) (call, bool) {
	calls := r.snapshot()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].typ == typ {
			return calls[i], true
		}
	}
	return call{}, false
}

// sawSet reports whether the handler was called for typ at version with
// exactly names.
func (r *recorder) sawSet(typ, version string, names ...string) bool {
	for _, c := range r.snapshot() {
		if c.typ == typ && c.version == version && slices.Equal(c.names, names) {
			return true
		}
	}
	return false
}

// newDeltaClient is a delta client of addr, not running yet (so a handler
// that calls Subscribe can see the variable it is assigned to).
func newDeltaClient(addr string, h Handler, o Options) *Client {
	o.Target, o.Delta = addr, true
	if o.Node == nil {
		o.Node = node()
	}
	if o.Types == nil {
		o.Types = []string{ClusterType, ListenerType}
	}
	return New(o, h)
}

// deltaClient runs a delta client of addr until the test ends.
func deltaClient(t *testing.T, addr string, h Handler, o Options) *Client {
	c := newDeltaClient(addr, h, o)
	runClient(t, c)
	return c
}

func TestDeltaWildcardUpdateRemove(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	m.set(t, "v1", resources([]string{"c1", "c2"}, []string{"l1"}))
	rec := &recorder{}
	c := deltaClient(t, m.addr, rec.handle, Options{})

	eventually(t, "CDS and LDS v1", func() bool {
		return rec.sawSet(ClusterType, "v1", "c1", "c2") && rec.sawSet(ListenerType, "v1", "l1")
	})
	for _, typ := range []string{ClusterType, ListenerType} {
		eventually(t, "ACK of "+typ, func() bool {
			return m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool {
				return r.TypeUrl == typ && r.ResponseNonce != "" && r.ErrorDetail == nil
			}) != nil
		})
	}
	reqs := m.deltaRequests()
	if first := reqs[0].r; first.TypeUrl != ClusterType || first.GetNode().GetId() != "node-1" ||
		len(first.ResourceNamesSubscribe) != 0 || len(first.InitialResourceVersions) != 0 {
		m.logDelta(t)
		t.Fatalf("first request %v: want CDS, the node, the legacy wildcard (no names), no initial versions", first)
	}
	for _, r := range reqs[1:] {
		if r.r.Node != nil {
			t.Fatalf("node sent again on a later request: %v", r.r)
		}
		if len(r.r.ResourceNamesSubscribe)+len(r.r.ResourceNamesUnsubscribe) != 0 {
			t.Fatalf("wildcard request with names: %v", r.r)
		}
	}
	if !c.Stats().ConnectedState {
		t.Fatal("connected_state false on a live stream")
	}

	// v2: c2 goes, l1 changes, l2 comes. The server sends only that; the
	// handler sees each type's whole set.
	res := resources([]string{"c1"}, nil)
	res[resource.ListenerType] = []types.Resource{lis("l1", "changed"), lis("l2", "")}
	m.set(t, "v2", res)
	eventually(t, "CDS and LDS v2", func() bool {
		return rec.sawSet(ClusterType, "v2", "c1") && rec.sawSet(ListenerType, "v2", "l1", "l2")
	})
	var cds2 *discoveryv3.DeltaDiscoveryResponse
	for _, r := range m.deltaResponses() {
		if r.r.TypeUrl == ClusterType && r.r.SystemVersionInfo == "v2" {
			cds2 = r.r
		}
	}
	if cds2 == nil || len(cds2.Resources) != 0 || !slices.Equal(cds2.RemovedResources, []string{"c2"}) {
		m.logDelta(t)
		t.Fatalf("CDS v2 response %v: want only the removal of c2 (c1 unchanged, held by the client)", cds2)
	}
	l, _ := rec.lastCall(ListenerType)
	got, err := l.res[0].UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	if got.(*listenerv3.Listener).GetStatPrefix() != "changed" {
		t.Fatalf("LDS v2 handed %v, want the changed l1", got)
	}
	eventually(t, "stats v2", func() bool {
		s := c.Stats().Types
		return s[ClusterType].Version == "v2" && s[ListenerType].Version == "v2"
	})
	if s := c.Stats().Types[ListenerType]; s.UpdateAttempt != 2 || s.UpdateSuccess != 2 || s.UpdateRejected != 0 {
		t.Fatalf("LDS stats %+v", s)
	}
}

func TestDeltaSubscribeEDSByNameAndUnsubscribe(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	cla := func(name string, n int) *endpointv3.ClusterLoadAssignment {
		a := &endpointv3.ClusterLoadAssignment{ClusterName: name}
		for i := 0; i < n; i++ {
			a.Endpoints = append(a.Endpoints, &endpointv3.LocalityLbEndpoints{Priority: uint32(i)})
		}
		return a
	}
	res := resources([]string{"c1", "c2"}, nil)
	res[resource.EndpointType] = []types.Resource{cla("c1", 0), cla("c2", 0)}
	m.set(t, "v1", res)
	rec := &recorder{}
	var c *Client
	rec.then = func(typ, _ string) {
		if typ == ClusterType {
			c.Subscribe(EndpointType, []string{"c1"})
		}
	}
	c = newDeltaClient(m.addr, rec.handle, Options{Types: []string{ClusterType, EndpointType}})
	runClient(t, c)

	eventually(t, "EDS [c1]", func() bool { return rec.sawSet(EndpointType, "v1", "c1") })
	if r := m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.TypeUrl == EndpointType }); r == nil ||
		!slices.Equal(r.ResourceNamesSubscribe, []string{"c1"}) || len(r.ResourceNamesUnsubscribe) != 0 {
		m.logDelta(t)
		t.Fatalf("first EDS request %v: want subscribe [c1]", r)
	}

	// Adding c2 subscribes c2 only; the handler sees both.
	c.Subscribe(EndpointType, []string{"c2", "c1", "c2"})
	eventually(t, "EDS [c1 c2]", func() bool { return rec.sawSet(EndpointType, "v1", "c1", "c2") })
	if m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.TypeUrl == EndpointType && slices.Equal(r.ResourceNamesSubscribe, []string{"c2"}) && len(r.ResourceNamesUnsubscribe) == 0
	}) == nil {
		m.logDelta(t)
		t.Fatal("no EDS request subscribing [c2] alone")
	}

	// Dropping c1 unsubscribes it; the next EDS update (both change in v2,
	// the server sends c2 only) hands the handler [c2].
	c.Subscribe(EndpointType, []string{"c2"})
	eventually(t, "EDS unsubscribe [c1]", func() bool {
		return m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool {
			return r.TypeUrl == EndpointType && slices.Equal(r.ResourceNamesUnsubscribe, []string{"c1"}) && len(r.ResourceNamesSubscribe) == 0
		}) != nil
	})
	res = resources([]string{"c1", "c2"}, nil)
	res[resource.EndpointType] = []types.Resource{cla("c1", 1), cla("c2", 1)}
	m.set(t, "v2", res)
	eventually(t, "EDS v2 [c2]", func() bool { return rec.sawSet(EndpointType, "v2", "c2") })
	for _, r := range m.deltaResponses() {
		if r.r.TypeUrl == EndpointType && r.r.SystemVersionInfo == "v2" && !slices.Equal(rspNames(r.r), []string{"c2"}) {
			m.logDelta(t)
			t.Fatalf("EDS v2 response %v: want c2 alone", rspNames(r.r))
		}
	}

	// Unsubscribing everything sends the unsubscription, nothing more.
	c.Subscribe(EndpointType, nil)
	eventually(t, "EDS unsubscribe [c2]", func() bool {
		return m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool {
			return r.TypeUrl == EndpointType && slices.Equal(r.ResourceNamesUnsubscribe, []string{"c2"})
		}) != nil
	})
	if s := c.Stats().Types[EndpointType]; s.UpdateRejected != 0 || s.Version != "v2" {
		t.Fatalf("EDS stats %+v", s)
	}
}

func TestDeltaWildcardToNames(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	m.set(t, "v1", resources(nil, []string{"l1", "l2"}))
	rec := &recorder{}
	c := deltaClient(t, m.addr, rec.handle, Options{Types: []string{ListenerType}})
	eventually(t, "LDS v1", func() bool { return rec.sawSet(ListenerType, "v1", "l1", "l2") })

	c.Subscribe(ListenerType, []string{"l1"})
	eventually(t, "LDS names request", func() bool {
		return m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool {
			return slices.Equal(r.ResourceNamesSubscribe, []string{"l1"}) && slices.Equal(r.ResourceNamesUnsubscribe, []string{"*"})
		}) != nil
	})
	// l2 is no longer held: an update of l1 hands the handler [l1].
	m.set(t, "v2", map[resource.Type][]types.Resource{resource.ListenerType: {lis("l1", "x"), lis("l2", "x")}})
	eventually(t, "LDS v2 [l1]", func() bool { return rec.sawSet(ListenerType, "v2", "l1") })

	// Back to wildcard: "*" again, l1 unsubscribed by name.
	c.Subscribe(ListenerType, nil)
	eventually(t, "LDS v2 [l1 l2]", func() bool { return rec.sawSet(ListenerType, "v2", "l1", "l2") })
	if m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return slices.Equal(r.ResourceNamesSubscribe, []string{"*"}) && slices.Equal(r.ResourceNamesUnsubscribe, []string{"l1"})
	}) == nil {
		m.logDelta(t)
		t.Fatal("no request back to wildcard")
	}
}

func TestDeltaNACKThenFix(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	set := func(version string, ls ...*listenerv3.Listener) {
		var r []types.Resource
		for _, l := range ls {
			r = append(r, l)
		}
		m.set(t, version, map[resource.Type][]types.Resource{resource.ListenerType: r})
	}
	set("v1", lis("l1", ""))
	rec := &recorder{}
	h := func(typ, version string, res []*anypb.Any) error {
		if err := rec.handle(typ, version, res); err != nil {
			return err
		}
		return rejectBad(res)
	}
	c := deltaClient(t, m.addr, h, Options{Types: []string{ListenerType}})
	eventually(t, "LDS v1", func() bool { return c.Stats().Types[ListenerType].Version == "v1" })

	set("v2", lis("l1", ""), lis("l2", "bad"))
	var nack *discoveryv3.DeltaDiscoveryRequest
	eventually(t, "NACK", func() bool {
		nack = m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.ErrorDetail != nil })
		return nack != nil
	})
	const msg = "Error adding/updating listener(s) [l2]: bad"
	if nack.TypeUrl != ListenerType || nack.ResponseNonce == "" ||
		nack.ErrorDetail.Code != int32(codes.Internal) || nack.ErrorDetail.Message != msg {
		t.Fatalf("NACK %v: want LDS, the nonce, INTERNAL and the handler's message", nack)
	}
	eventually(t, "NACK counted", func() bool { return c.Stats().Types[ListenerType].UpdateRejected == 1 })
	if s := c.Stats().Types[ListenerType]; s.Version != "v1" || s.LastNackDetail != msg {
		t.Fatalf("LDS stats %+v", s)
	}

	// v3 adds l3 and leaves the rejected l2 as it was: the server sends l3
	// alone, and the handler sees the server's whole set, l2 included
	// (held after the NACK), and rejects it again.
	set("v3", lis("l1", ""), lis("l2", "bad"), lis("l3", ""))
	eventually(t, "LDS v3", func() bool { return rec.sawSet(ListenerType, "v3", "l1", "l2", "l3") })
	for _, r := range m.deltaResponses() {
		if r.r.SystemVersionInfo == "v3" && !slices.Equal(rspNames(r.r), []string{"l3"}) {
			t.Fatalf("v3 response %v: want l3 alone", rspNames(r.r))
		}
	}
	eventually(t, "second NACK", func() bool { return c.Stats().Types[ListenerType].UpdateRejected == 2 })

	// Fixed.
	set("v4", lis("l1", ""), lis("l2", ""), lis("l3", ""))
	eventually(t, "LDS v4", func() bool { return c.Stats().Types[ListenerType].Version == "v4" })
	if !rec.sawSet(ListenerType, "v4", "l1", "l2", "l3") {
		t.Fatalf("calls %v", rec.snapshot())
	}
	// go-control-plane does not resend after a NACK: each version once.
	for _, v := range []string{"v1", "v2", "v3", "v4"} {
		if n := rec.count(ListenerType, v); n != 1 {
			t.Fatalf("handler saw %s %d times", v, n)
		}
	}
	if s := c.Stats().Types[ListenerType]; s.UpdateAttempt != 4 || s.UpdateSuccess != 2 || s.UpdateRejected != 2 {
		t.Fatalf("LDS stats %+v", s)
	}
}

func TestDeltaReconnectSendsInitialResourceVersions(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	snap := func(listeners ...string) map[resource.Type][]types.Resource {
		res := resources([]string{"c1"}, listeners)
		res[resource.EndpointType] = []types.Resource{&endpointv3.ClusterLoadAssignment{ClusterName: "c1"}}
		return res
	}
	m.set(t, "v1", snap("l1"))
	rec := &recorder{}
	var c *Client
	rec.then = func(typ, _ string) {
		if typ == ClusterType {
			c.Subscribe(EndpointType, []string{"c1"})
		}
	}
	var mu sync.Mutex
	backoffs := 0
	c = newDeltaClient(m.addr, rec.handle, Options{Types: []string{ClusterType, EndpointType, ListenerType},
		Backoff: fastBackoff(&backoffs, &mu)})
	runClient(t, c)
	eventually(t, "v1", func() bool {
		return rec.sawSet(ListenerType, "v1", "l1") && rec.sawSet(ClusterType, "v1", "c1") && rec.sawSet(EndpointType, "v1", "c1")
	})
	versions := map[string]string{} // resource name → the version the server sent
	for _, r := range m.deltaResponses() {
		for _, res := range r.r.Resources {
			versions[res.Name] = res.Version
		}
	}

	m.stop()
	eventually(t, "connected_state false", func() bool { return !c.Stats().ConnectedState })
	eventually(t, "back-off attempts", func() bool { mu.Lock(); defer mu.Unlock(); return backoffs >= 2 })
	beforeReq, beforeRsp := len(m.deltaRequests()), len(m.deltaResponses())
	m.set(t, "v2", snap("l1", "l2"))
	m.start()

	eventually(t, "LDS v2 after restart", func() bool { return rec.sawSet(ListenerType, "v2", "l1", "l2") })
	eventually(t, "connected_state true", func() bool { return c.Stats().ConnectedState })
	after := m.deltaRequests()[beforeReq:]
	if len(after) < 3 {
		m.logDelta(t)
		t.Fatalf("requests after restart: %v", after)
	}
	// The new stream's first three requests, in Options.Types order: the
	// whole subscription ("*" now, not the legacy empty wildcard) and the
	// held versions; the node on the first only; no nonce.
	for i, w := range []struct {
		typ, name string
		sub       []string
	}{{ClusterType, "c1", []string{"*"}}, {EndpointType, "c1", []string{"c1"}}, {ListenerType, "l1", []string{"*"}}} {
		r := after[i].r
		if r.TypeUrl != w.typ || r.ResponseNonce != "" || (r.GetNode().GetId() == "node-1") != (i == 0) ||
			!slices.Equal(r.ResourceNamesSubscribe, w.sub) || !maps.Equal(r.InitialResourceVersions, map[string]string{w.name: versions[w.name]}) {
			m.logDelta(t)
			t.Fatalf("request %d on the new stream %v: want %s, subscribe %q, initial_resource_versions {%s: %s}",
				i, r, w.typ, w.sub, w.name, versions[w.name])
		}
	}
	// The server sent only what the client lacked.
	for _, r := range m.deltaResponses()[beforeRsp:] {
		if len(r.r.Resources) > 0 && !slices.Equal(rspNames(r.r), []string{"l2"}) {
			m.logDelta(t)
			t.Fatalf("%s response after restart %v: want l2 alone", r.r.TypeUrl, rspNames(r.r))
		}
	}
}

func TestNodeOnEveryRequest(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			checkGoroutines(t)
			m := newMgmt(t, false)
			m.set(t, "v1", resources([]string{"c1"}, []string{"l1"}))
			c := New(Options{Target: m.addr, Node: node(), Types: []string{ClusterType, ListenerType},
				Delta: delta, NodeOnEveryRequest: true}, func(string, string, []*anypb.Any) error { return nil })
			runClient(t, c)
			eventually(t, "v1 ACKed", func() bool {
				s := c.Stats().Types
				return s[ClusterType].Version == "v1" && s[ListenerType].Version == "v1"
			})
			var nodes []bool
			if delta {
				// The ACKs reach the server after the stats change.
				eventually(t, "4 requests", func() bool { return len(m.deltaRequests()) >= 4 })
				for _, r := range m.deltaRequests() {
					nodes = append(nodes, r.r.GetNode().GetId() == "node-1")
				}
			} else {
				eventually(t, "4 requests", func() bool { return len(m.requests()) >= 4 })
				for _, r := range m.requests() {
					nodes = append(nodes, r.GetNode().GetId() == "node-1")
				}
			}
			if slices.Contains(nodes, false) {
				t.Fatalf("node on requests: %v, want on all", nodes)
			}
		})
	}
}

// fakeDelta answers each delta request with what respond returns, and sends
// what the test pushes, for what a real control plane would not send.
type fakeDelta struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	respond func(n int, r *discoveryv3.DeltaDiscoveryRequest) []*discoveryv3.DeltaDiscoveryResponse
	reqs    chan *discoveryv3.DeltaDiscoveryRequest // if not nil, every request, until full
	push    chan *discoveryv3.DeltaDiscoveryResponse
}

func (f *fakeDelta) DeltaAggregatedResources(s grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	type recv struct {
		r   *discoveryv3.DeltaDiscoveryRequest
		err error
	}
	in := make(chan recv)
	go func() { // ends with the stream: Recv fails once the handler returns
		for {
			r, err := s.Recv()
			select {
			case in <- recv{r, err}:
			case <-s.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	nonce := 0
	send := func(rsp *discoveryv3.DeltaDiscoveryResponse) error {
		nonce++
		rsp.Nonce = strconv.Itoa(nonce)
		return s.Send(rsp)
	}
	for n := 0; ; {
		select {
		case <-s.Context().Done():
			return s.Context().Err()
		case rsp := <-f.push:
			if err := send(rsp); err != nil {
				return err
			}
		case got := <-in:
			if got.err != nil {
				return got.err
			}
			if f.reqs != nil {
				select {
				case f.reqs <- got.r:
				default:
				}
			}
			for _, rsp := range f.respond(n, got.r) {
				if err := send(rsp); err != nil {
					return err
				}
			}
			n++
		}
	}
}

func anyOf(t *testing.T, l *listenerv3.Listener) *anypb.Any {
	t.Helper()
	a, err := anypb.New(l)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDeltaNackDelayOnResend(t *testing.T) {
	checkGoroutines(t)
	bad := anyOf(t, lis("l1", "bad"))
	var mu sync.Mutex
	sent := 0
	// A server that answers every request but an ACK with the same l1 (as
	// a server that forgets what it sent on a NACK would).
	f := &fakeDelta{respond: func(_ int, r *discoveryv3.DeltaDiscoveryRequest) []*discoveryv3.DeltaDiscoveryResponse {
		if r.ResponseNonce != "" && r.ErrorDetail == nil {
			return nil
		}
		mu.Lock()
		sent++
		mu.Unlock()
		return []*discoveryv3.DeltaDiscoveryResponse{{TypeUrl: ListenerType, SystemVersionInfo: "v1",
			Resources: []*discoveryv3.Resource{{Name: "l1", Version: "1", Resource: bad}}}}
	}}
	addr := startFake(t, f)
	rec := &recorder{}
	h := func(typ, version string, res []*anypb.Any) error {
		if err := rec.handle(typ, version, res); err != nil {
			return err
		}
		return rejectBad(res)
	}
	const nackDelay = 200 * time.Millisecond
	c := deltaClient(t, addr, h, Options{Types: []string{ListenerType}, NackDelay: nackDelay})
	eventually(t, "first NACK", func() bool { return c.Stats().Types[ListenerType].UpdateRejected >= 1 })
	time.Sleep(5 * nackDelay)
	n := rec.count(ListenerType, "v1")
	mu.Lock()
	t.Logf("the rejected l1 was sent %d times and handled %d times in %v", sent, n, 5*nackDelay)
	mu.Unlock()
	if n < 2 || n > 10 {
		t.Fatalf("handler saw the rejected l1 %d times in %v (NackDelay %v)", n, 5*nackDelay, nackDelay)
	}
}

func TestDeltaMalformedUnknownAndUnsubscribed(t *testing.T) {
	checkGoroutines(t)
	l1 := anyOf(t, lis("l1", ""))
	f := &fakeDelta{reqs: make(chan *discoveryv3.DeltaDiscoveryRequest, 16),
		respond: func(n int, _ *discoveryv3.DeltaDiscoveryRequest) []*discoveryv3.DeltaDiscoveryResponse {
			if n != 0 {
				return nil
			}
			return []*discoveryv3.DeltaDiscoveryResponse{
				{TypeUrl: EndpointType, SystemVersionInfo: "e1"}, // in Types, not subscribed: ignored
				{TypeUrl: "type.googleapis.com/foo.Bar", SystemVersionInfo: "x1"},
				{TypeUrl: ListenerType, SystemVersionInfo: "v1", Resources: []*discoveryv3.Resource{
					{Name: "l1", Version: "1", Resource: l1}, {Name: "l1", Version: "2", Resource: l1}}},
				{TypeUrl: ListenerType, SystemVersionInfo: "v2", RemovedResources: []string{"l9"},
					Resources: []*discoveryv3.Resource{{Name: "l9", Version: "1", Resource: l1}}},
			}
		}}
	addr := startFake(t, f)
	rec := &recorder{}
	// The second malformed LDS response comes right after the first's NACK:
	// it is held NackDelay, then NACKed.
	c := deltaClient(t, addr, rec.handle, Options{Types: []string{ListenerType, EndpointType}, NackDelay: 50 * time.Millisecond})
	next := func() *discoveryv3.DeltaDiscoveryRequest {
		t.Helper()
		select {
		case r := <-f.reqs:
			return r
		case <-time.After(wait):
			t.Fatal("no request")
			return nil
		}
	}
	if r := next(); r.TypeUrl != ListenerType || r.GetNode().GetId() != "node-1" {
		t.Fatalf("first request %v", r)
	}
	// The rest, by nonce: NACKs of the unknown type (2) and of both LDS
	// responses (3, 4); the EDS response (1) is ignored.
	got := map[string]*discoveryv3.DeltaDiscoveryRequest{}
	for len(got) < 3 {
		r := next()
		got[r.ResponseNonce] = r
	}
	want := map[string][2]string{
		"2": {"type.googleapis.com/foo.Bar", `unknown type URL "type.googleapis.com/foo.Bar"`},
		"3": {ListenerType, "duplicate name l1 found among added/updated resources"},
		"4": {ListenerType, "duplicate name l9 found in the union of added+removed resources"},
	}
	for nonce, w := range want {
		r := got[nonce]
		if r == nil || r.TypeUrl != w[0] || r.ErrorDetail.GetCode() != int32(codes.Internal) || r.ErrorDetail.GetMessage() != w[1] {
			t.Fatalf("request for nonce %s: %v, want a NACK of %s: %s (all: %v)", nonce, r, w[0], w[1], got)
		}
	}
	s := c.Stats().Types[ListenerType]
	if s.UpdateRejected != 2 || s.UpdateAttempt != 2 || s.Version != "" {
		t.Fatalf("LDS stats %+v", s)
	}
	if len(rec.snapshot()) != 0 {
		t.Fatalf("handler called: %v", rec.snapshot())
	}
}

func TestDeltaHandlerPanicNACKs(t *testing.T) {
	checkGoroutines(t)
	f := &fakeDelta{reqs: make(chan *discoveryv3.DeltaDiscoveryRequest, 16),
		respond: func(n int, _ *discoveryv3.DeltaDiscoveryRequest) []*discoveryv3.DeltaDiscoveryResponse {
			if n != 0 {
				return nil
			}
			return []*discoveryv3.DeltaDiscoveryResponse{{TypeUrl: ClusterType, SystemVersionInfo: "c1"}}
		}}
	addr := startFake(t, f)
	c := deltaClient(t, addr, func(string, string, []*anypb.Any) error { panic("bad cluster") }, Options{Types: []string{ClusterType}})
	<-f.reqs
	select {
	case r := <-f.reqs:
		if r.ResponseNonce != "1" || r.ErrorDetail.GetMessage() != "handler panic: bad cluster" {
			t.Fatalf("request %v: want the NACK of the panicking update", r)
		}
	case <-time.After(wait):
		t.Fatal("no NACK")
	}
	if s := c.Stats().Types[ClusterType]; s.UpdateRejected != 1 || s.Version != "" {
		t.Fatalf("CDS stats %+v", s)
	}
}

func TestDeltaRateLimitedRequestsAllGoOut(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	m.set(t, "v1", resources([]string{"c1"}, []string{"l1"}))
	rec := &recorder{}
	// One token: the LDS request and both ACKs wait for refills.
	c := deltaClient(t, m.addr, rec.handle, Options{RateLimit: &RateLimit{MaxTokens: 1, FillRate: 20}})
	eventually(t, "CDS and LDS ACKed", func() bool {
		s := c.Stats().Types
		return s[ClusterType].Version == "v1" && s[ListenerType].Version == "v1" &&
			m.findDeltaRequest(func(r *discoveryv3.DeltaDiscoveryRequest) bool {
				return r.TypeUrl == ListenerType && r.ResponseNonce != ""
			}) != nil
	})
}

func TestDeltaHeldResendSupersededByAChange(t *testing.T) {
	checkGoroutines(t)
	bad, good := anyOf(t, lis("l1", "bad")), anyOf(t, lis("l1", ""))
	badRsp := func() []*discoveryv3.DeltaDiscoveryResponse {
		return []*discoveryv3.DeltaDiscoveryResponse{{TypeUrl: ListenerType, SystemVersionInfo: "v1",
			Resources: []*discoveryv3.Resource{{Name: "l1", Version: "1", Resource: bad}}}}
	}
	var resent atomic.Int32
	f := &fakeDelta{push: make(chan *discoveryv3.DeltaDiscoveryResponse),
		respond: func(_ int, r *discoveryv3.DeltaDiscoveryRequest) []*discoveryv3.DeltaDiscoveryResponse {
			if r.ErrorDetail != nil {
				resent.Add(1)
			}
			if r.ResponseNonce == "" || r.ErrorDetail != nil {
				return badRsp() // the initial request and every NACK
			}
			return nil
		}}
	addr := startFake(t, f)
	rec := &recorder{}
	h := func(typ, version string, res []*anypb.Any) error {
		if err := rec.handle(typ, version, res); err != nil {
			return err
		}
		return rejectBad(res)
	}
	// A NackDelay far beyond the test's bound: the re-sent l1 stays held.
	c := deltaClient(t, addr, h, Options{Types: []string{ListenerType}, NackDelay: time.Hour})
	// The re-send goes out before the push below (one server loop, one
	// stream), so it reaches the client first and is held.
	eventually(t, "the NACK answered with a re-send", func() bool { return resent.Load() == 1 })
	// The fixed l1 is a change: handled at once, and the held re-send dropped.
	f.push <- &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ListenerType, SystemVersionInfo: "v2",
		Resources: []*discoveryv3.Resource{{Name: "l1", Version: "2", Resource: good}}}
	eventually(t, "LDS v2", func() bool { return c.Stats().Types[ListenerType].Version == "v2" })
	if n := rec.count(ListenerType, "v1"); n != 1 {
		t.Fatalf("the re-sent v1 was handled %d times, want once (the re-send held, then superseded)", n)
	}
	if s := c.Stats().Types[ListenerType]; s.UpdateAttempt != 2 || s.UpdateRejected != 1 {
		t.Fatalf("LDS stats %+v", s)
	}
}

func TestDeltaSubscribeFromManyGoroutines(t *testing.T) {
	checkGoroutines(t)
	m := newMgmt(t, false)
	cla := func(i, prio int) *endpointv3.ClusterLoadAssignment {
		return &endpointv3.ClusterLoadAssignment{ClusterName: fmt.Sprintf("c%d", i),
			Endpoints: []*endpointv3.LocalityLbEndpoints{{Priority: uint32(prio)}}}
	}
	set := func(version string, prio int) {
		var r []types.Resource
		for i := 0; i < 8; i++ {
			r = append(r, cla(i, prio))
		}
		m.set(t, version, map[resource.Type][]types.Resource{resource.EndpointType: r})
	}
	set("v1", 0)
	rec := &recorder{}
	c := deltaClient(t, m.addr, rec.handle, Options{Types: []string{ClusterType, EndpointType}})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				c.Subscribe(EndpointType, []string{fmt.Sprintf("c%d", g), fmt.Sprintf("c%d", i%8)})
			}
		}()
	}
	wg.Wait()
	c.Subscribe(EndpointType, []string{"c3", "c5"})
	// However the deltas interleaved, replaying them must end on [c3 c5],
	// and the server must agree: every resource changes in v2 and the
	// handler sees those two.
	replay := func() []string {
		sub := map[string]bool{}
		for _, r := range m.deltaRequests() {
			if r.r.TypeUrl != EndpointType {
				continue
			}
			for _, n := range r.r.ResourceNamesSubscribe {
				sub[n] = true
			}
			for _, n := range r.r.ResourceNamesUnsubscribe {
				if !sub[n] {
					t.Errorf("unsubscribed %s, not subscribed", n)
				}
				delete(sub, n)
			}
		}
		return slices.Sorted(maps.Keys(sub))
	}
	eventually(t, "the deltas adding up to [c3 c5]", func() bool { return slices.Equal(replay(), []string{"c3", "c5"}) })
	t.Logf("%d EDS requests for 201 Subscribe calls", len(slices.DeleteFunc(m.deltaRequests(), func(r deltaReq) bool { return r.r.TypeUrl != EndpointType })))
	set("v2", 1)
	eventually(t, "EDS v2 [c3 c5]", func() bool { return rec.sawSet(EndpointType, "v2", "c3", "c5") })
}

// TestDeltaRequestBuilding drives the request builder directly through the
// subscription changes no server needs to see: a change undone before it
// was sent, an ACK with no change, and a new stream's restatement.
func TestDeltaRequestBuilding(t *testing.T) {
	c := New(Options{Types: []string{EndpointType, ListenerType}, Node: node()}, nil)
	p := &delta{c: c}
	q := &sendQueue{}
	p.begin(q)
	if !slices.Equal(q.order, []string{ListenerType}) {
		t.Fatalf("queued on a new stream: %v, want LDS alone (EDS has no names)", q.order)
	}
	type want struct{ sub, unsub []string }
	check := func(what string, typ string, w *want) {
		t.Helper()
		r := p.build(typ)
		switch {
		case w == nil && r != nil:
			t.Fatalf("%s: request %v, want none", what, r)
		case w != nil && r == nil:
			t.Fatalf("%s: no request", what)
		case w != nil && (!slices.Equal(r.ResourceNamesSubscribe, w.sub) || !slices.Equal(r.ResourceNamesUnsubscribe, w.unsub)):
			t.Fatalf("%s: subscribe %q unsubscribe %q, want %q %q", what, r.ResourceNamesSubscribe, r.ResourceNamesUnsubscribe, w.sub, w.unsub)
		}
	}
	check("first LDS", ListenerType, &want{})
	check("EDS with no names", EndpointType, nil)
	c.Subscribe(EndpointType, []string{"b", "a"})
	check("EDS [a b]", EndpointType, &want{sub: []string{"a", "b"}})
	c.Subscribe(EndpointType, []string{"b", "c"})
	check("EDS [b c]", EndpointType, &want{sub: []string{"c"}, unsub: []string{"a"}})
	c.Subscribe(EndpointType, []string{"b", "c", "d"})
	c.Subscribe(EndpointType, []string{"b", "c"})
	check("EDS changed and changed back", EndpointType, nil)

	// A response: held, ACKed with the nonce alone.
	cla, err := anypb.New(&endpointv3.ClusterLoadAssignment{ClusterName: "b"})
	if err != nil {
		t.Fatal(err)
	}
	c.h = func(string, string, []*anypb.Any) error { return nil }
	p.response(q, &discoveryv3.DeltaDiscoveryResponse{TypeUrl: EndpointType, SystemVersionInfo: "v1", Nonce: "n1",
		Resources: []*discoveryv3.Resource{{Name: "b", Version: "1", Resource: cla}, {Name: "x", Version: "1", Resource: cla}}}) // x: not asked for
	if r := p.build(EndpointType); r == nil || r.ResponseNonce != "n1" || r.ErrorDetail != nil || len(r.ResourceNamesSubscribe)+len(r.ResourceNamesUnsubscribe) != 0 {
		t.Fatalf("ACK %v: want the nonce alone", r)
	}

	// A new stream restates everything: the explicit wildcard now, and the
	// held versions (b only: x was not subscribed).
	q = &sendQueue{}
	p.begin(q)
	if !slices.Equal(q.order, []string{EndpointType, ListenerType}) {
		t.Fatalf("queued on the second stream: %v", q.order)
	}
	r := p.build(EndpointType)
	if !slices.Equal(r.ResourceNamesSubscribe, []string{"b", "c"}) || !maps.Equal(r.InitialResourceVersions, map[string]string{"b": "1"}) || r.ResponseNonce != "" {
		t.Fatalf("EDS on the second stream %v", r)
	}
	check("LDS on the second stream", ListenerType, &want{sub: []string{"*"}})
	// Unsubscribing b forgets it: a third stream announces nothing held.
	c.Subscribe(EndpointType, []string{"c"})
	p.begin(q)
	if r := p.build(EndpointType); len(r.InitialResourceVersions) != 0 || !slices.Equal(r.ResourceNamesSubscribe, []string{"c"}) {
		t.Fatalf("EDS on the third stream %v", r)
	}
}
