package config

import (
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
