package config

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Resources from a management server are bytes off the network: whatever a server
// sends, reading them must give resources or errors, never a panic, and never a
// resource both accepted and rejected.

const (
	listenerTypeURL = "type.googleapis.com/envoy.config.listener.v3.Listener"
	clusterTypeURL  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
)

func fuzzAddr(port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func seedListener(f *testing.F) {
	tp, err := anypb.New(&tcpv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}})
	if err != nil {
		f.Fatal(err)
	}
	l := &listenerv3.Listener{Name: "l", Address: fuzzAddr(0), FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}}}}}
	b, err := proto.Marshal(l)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add(b[:len(b)/2])
}

func FuzzListenerResource(f *testing.F) {
	seedListener(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseListenerResources("fuzz", "1", []*anypb.Any{{TypeUrl: listenerTypeURL, Value: data}}, 1, Options{CheckOnly: true}, nil)
		if err != nil {
			return // the response as a whole: a NACK
		}
		defer closeUpdate(u)
		if len(u.Listeners)+len(u.Errors) != 1 {
			t.Fatalf("%d listeners and %d errors for one resource", len(u.Listeners), len(u.Errors))
		}
		for _, e := range u.Errors {
			if strings.TrimSpace(e.Error()) == "" {
				t.Fatal("a rejection without a reason")
			}
		}
	})
}

func FuzzClusterResource(f *testing.F) {
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: fuzzAddr(1)}}}}}}}}
	b, err := proto.Marshal(c)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseClusterResources("fuzz", "1", []*anypb.Any{{TypeUrl: clusterTypeURL, Value: data}}, 1, Options{CheckOnly: true}, nil)
		if err != nil {
			return
		}
		if len(u.Clusters)+len(u.Errors) != 1 {
			t.Fatalf("%d clusters and %d errors for one resource", len(u.Clusters), len(u.Errors))
		}
	})
}

// closeUpdate closes what a translated update opened (access-log files: none with
// CheckOnly, but the contract is the caller's).
func closeUpdate(u *ListenerUpdate) {
	for _, l := range u.Listeners {
		for _, c := range l.Closers {
			c.Close()
		}
	}
}
