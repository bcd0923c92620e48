package config

import (
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	echov3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/echo/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-proxy/portico/engine"
)

func echoListenerMsg(t *testing.T, name string, port uint32) *listenerv3.Listener {
	t.Helper()
	echo, err := anypb.New(&echov3.Echo{})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.echo", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: echo}}}}},
	}
}

// TestParseListenerResources: listeners that arrive as Any values (an xDS response) take
// the file's path: per-resource errors with their paths, the good ones translated, the
// Change classification against prev, and removals.
func TestParseListenerResources(t *testing.T) {
	good := echoListenerMsg(t, "good", 10001)
	bad := echoListenerMsg(t, "bad", 10002)
	bad.EnableMptcp = true
	var rs []*anypb.Any
	for _, m := range []*listenerv3.Listener{good, bad} {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, a)
	}
	// A resource of a type this binary does not know is rejected alone.
	rs = append(rs, &anypb.Any{TypeUrl: "type.googleapis.com/example.Unknown", Value: []byte{1}})
	u, err := ParseListenerResources("xds", "v1", rs, 1, Options{CheckOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.Version != "v1" || len(u.Listeners) != 1 || u.Listeners[0].Name != "good" || u.Listeners[0].Change != Added {
		t.Fatalf("listeners %+v", u.Listeners)
	}
	if len(u.Errors) != 2 || !strings.Contains(u.Errors[0].Error(), `resources[1] (listener "bad"): enable_mptcp: not supported`) ||
		!strings.Contains(u.Errors[1].Error(), "resources[2]") {
		t.Fatalf("errors: %v", u.Errors)
	}
	prev := map[string]*ListenerResource{"good": u.Listeners[0]}
	a, _ := anypb.New(good)
	u2, err := ParseListenerResources("xds", "v2", []*anypb.Any{a}, 1, Options{CheckOnly: true}, prev)
	if err != nil || len(u2.Listeners) != 1 || u2.Listeners[0].Change != Unchanged {
		t.Fatalf("the same listener again: %v %+v", err, u2)
	}
	u3, err := ParseListenerResources("xds", "v3", nil, 1, Options{CheckOnly: true}, prev)
	if err != nil || len(u3.Removed) != 1 || u3.Removed[0] != "good" {
		t.Fatalf("an empty state of the world: %v %+v", err, u3)
	}
}

// TestParseClusterResources: clusters as Any values, one good, one with a bad endpoint.
func TestParseClusterResources(t *testing.T) {
	cl := func(name, addr string) *anypb.Any {
		c := &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(1e9),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}}}},
					LoadBalancingWeight: wrapperspb.UInt32(1)}}}}}}
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	u, err := ParseClusterResources("xds", "1", []*anypb.Any{cl("a", "127.0.0.1"), cl("b", "999.1.1.1")}, 1,
		Options{CheckOnly: true, Clusters: engine.NewClusterRegistry()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Clusters) != 1 || u.Clusters[0].Name != "a" || len(u.Errors) != 1 || !strings.Contains(u.Errors[0].Error(), `(cluster "b")`) {
		t.Fatalf("clusters %+v, errors %v", u.Clusters, u.Errors)
	}
}

// TestUnchangedBytesAreNotReadAgain: a resource that comes as the same bytes as its
// previous version is Unchanged without being read again, and everything around it
// (removal of the names a response lacks, duplicates, address clashes) holds as if it had
// been.
func TestUnchangedBytesAreNotReadAgain(t *testing.T) {
	mk := func(name string, port uint32, tweak func(*listenerv3.Listener)) *anypb.Any {
		l := echoListenerMsg(t, name, port)
		if tweak != nil {
			tweak(l)
		}
		a, err := anypb.New(l)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	parse := func(v string, prev map[string]*ListenerResource, rs ...*anypb.Any) *ListenerUpdate {
		t.Helper()
		u, err := ParseListenerResources("xds", v, rs, 1, Options{CheckOnly: true}, prev)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	state := func(u *ListenerUpdate) map[string]*ListenerResource {
		m := map[string]*ListenerResource{}
		for _, r := range u.Listeners {
			m[r.Name] = r
		}
		return m
	}
	a, b, c := mk("a", 10011, nil), mk("b", 10012, nil), mk("c", 10013, nil)
	v1 := parse("1", nil, a, b, c)
	if len(v1.Listeners) != 3 || v1.Listeners[0].wire == nil {
		t.Fatalf("v1: %+v", v1.Listeners)
	}
	prev := state(v1)
	// b changes (its chain's name: an in-place update); a and c come as the same bytes.
	b2 := mk("b", 10012, func(l *listenerv3.Listener) { l.FilterChains[0].Name = "renamed" })
	v2 := parse("2", prev, a, b2, c)
	changes := map[string]Change{}
	for _, r := range v2.Listeners {
		changes[r.Name] = r.Change
		if r.Version != "2" {
			t.Errorf("%s: version %q, want 2", r.Name, r.Version)
		}
	}
	if changes["a"] != Unchanged || changes["c"] != Unchanged || changes["b"] != ChainsOnly || len(v2.Removed) != 0 || len(v2.Errors) != 0 {
		t.Fatalf("v2: changes %v, removed %v, errors %v", changes, v2.Removed, v2.Errors)
	}
	if state(v2)["a"].msg != prev["a"].msg || state(v2)["a"].Config.FilterChains != prev["a"].Config.FilterChains {
		t.Fatal("the unchanged listener was built again")
	}
	prev = state(v2)
	// c is gone from the response: removed, though a was not read.
	if v3 := parse("3", prev, a, b2); !slicesEqual(v3.Removed, []string{"c"}) || len(v3.Listeners) != 2 {
		t.Fatalf("v3: removed %v, listeners %d", v3.Removed, len(v3.Listeners))
	}
	// The same bytes twice: the second is a duplicate.
	if v4 := parse("4", prev, a, a, b2, c); len(v4.Errors) != 1 || !strings.Contains(v4.Errors[0].Error(), `resources[1] (listener "a"): name: `) {
		t.Fatalf("v4: errors %v", v4.Errors)
	}
	// A new listener may not take the address of one that was not read.
	d := mk("d", 10011, nil)
	if v5 := parse("5", prev, a, b2, c, d); len(v5.Errors) != 1 || !strings.Contains(v5.Errors[0].Error(), `resources[3] (listener "d"): address: address 127.0.0.1:10011 is already used by resources[0] (listener "a")`) {
		t.Fatalf("v5: errors %v", v5.Errors)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkListenerResourcesOneChanged: a state-of-the-world LDS response of 1,000
// listeners in which one changed.
func BenchmarkListenerResourcesOneChanged(b *testing.B) {
	t := &testing.T{}
	var rs []*anypb.Any
	for i := range 1000 {
		a, err := anypb.New(echoListenerMsg(t, "l"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i), uint32(20000+i)))
		if err != nil {
			b.Fatal(err)
		}
		rs = append(rs, a)
	}
	u, err := ParseListenerResources("xds", "1", rs, 1, Options{CheckOnly: true}, nil)
	if err != nil || len(u.Listeners) != 1000 {
		b.Fatal(err, len(u.Listeners))
	}
	prev := map[string]*ListenerResource{}
	for _, r := range u.Listeners {
		prev[r.Name] = r
	}
	changed := echoListenerMsg(t, u.Listeners[0].Name, 20000)
	changed.FilterChains[0].Name = "renamed"
	rs[0], _ = anypb.New(changed)
	// Each previous version without its bytes: every listener is read again (the path
	// before the unchanged-bytes check, and a file's).
	reread := map[string]*ListenerResource{}
	for k, r := range prev {
		c := *r
		c.wire = nil
		reread[k] = &c
	}
	for _, bc := range []struct {
		name string
		prev map[string]*ListenerResource
	}{{"same-bytes-skipped", prev}, {"all-read-again", reread}} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				if _, err := ParseListenerResources("xds", "2", rs, 1, Options{CheckOnly: true}, bc.prev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
