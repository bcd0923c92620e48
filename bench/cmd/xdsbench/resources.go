package main

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fleetState is the configuration every proxy gets, less its own address: n
// listeners l0..l(n-1), each a tcp_proxy to one of n STATIC clusters. The
// three integers say everything a version differs in, so the serve check can
// compute which backend a listener must reach:
//
//   - listener j proxies to cluster c((j+shift) mod n) of generation gen;
//   - cluster g<gen>-c<m> points at backend (m+gen) mod len(backends).
//
// A chain update moves shift (every listener's tcp_proxy names another
// existing cluster, and its stat_prefix changes: a filter-chain-only change,
// the listener's own fields stay). A cluster update moves gen: every cluster
// is replaced by one of a new name (SotW CDS removes the old ones) and every
// listener follows, so both LDS and CDS change.
type fleetState struct {
	n          int
	shift, gen int
	seq        int  // the update's sequence number: part of the versions
	chainSeq   int  // the last update that changed every listener: their stat_prefix
	stablePfx  bool // stat_prefix without seq
	oneShift   int  // listener 0's own further shift (the "one" update kind)
	ldsVersion string
	cdsVersion string
}

// clusterName is the name of cluster m in generation gen.
func clusterName(gen, m int) string { return fmt.Sprintf("g%d-c%d", gen, m) }

// clusterOf is the index of the cluster listener j proxies to in state s.
func (s fleetState) clusterOf(j int) int {
	if j == 0 {
		return (s.shift + s.oneShift) % s.n
	}
	return (j + s.shift) % s.n
}

// backendOf is the index of the backend listener j reaches in state s.
func (s fleetState) backendOf(j, nBackends int) int {
	return (s.clusterOf(j) + s.gen) % nBackends
}

func socketAddr(ip string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// listeners builds proxy ip's listeners of state s on ports base..base+n-1.
func (s fleetState) listeners(ip string, base int) ([]types.Resource, error) {
	out := make([]types.Resource, 0, s.n)
	for j := 0; j < s.n; j++ {
		// The version a listener last changed in, so that a "one" update
		// changes listener 0 alone.
		prefix := fmt.Sprintf("l%d_u%d", j, s.chainSeq)
		if j == 0 {
			prefix = fmt.Sprintf("l%d_u%d", j, s.seq)
		}
		if s.stablePfx {
			prefix = fmt.Sprintf("l%d", j)
		}
		tp, err := anypb.New(&tcpproxyv3.TcpProxy{
			StatPrefix:       prefix,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: clusterName(s.gen, s.clusterOf(j))},
		})
		if err != nil {
			return nil, fmt.Errorf("tcp_proxy config: %w", err)
		}
		out = append(out, &listenerv3.Listener{
			Name:    fmt.Sprintf("l%d", j),
			Address: socketAddr(ip, base+j),
			FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{{
					Name:       "envoy.filters.network.tcp_proxy",
					ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp},
				}},
			}},
		})
	}
	return out, nil
}

// clusters builds state s's n STATIC clusters, each one endpoint (a backend).
func (s fleetState) clusters(backends []int) []types.Resource {
	out := make([]types.Resource, 0, s.n)
	for m := 0; m < s.n; m++ {
		name := clusterName(s.gen, m)
		out = append(out, &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(time.Second),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{{
						HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
							Address: socketAddr("127.0.0.1", backends[(m+s.gen)%len(backends)]),
						}},
					}},
				}},
			},
		})
	}
	return out
}

// snapshot is proxy ip's snapshot of state s. Each type carries its own
// version, so an update that leaves the clusters alone leaves CDS's version
// alone too and go-control-plane sends only LDS (as a control plane that
// versions per type does; NewSnapshot would resend the unchanged clusters).
func (s fleetState) snapshot(ip string, base int, backends []int) (*cachev3.Snapshot, error) {
	ls, err := s.listeners(ip, base)
	if err != nil {
		return nil, err
	}
	var snap cachev3.Snapshot
	snap.Resources[types.Listener] = cachev3.NewResources(s.ldsVersion, ls)
	snap.Resources[types.Cluster] = cachev3.NewResources(s.cdsVersion, s.clusters(backends))
	return &snap, nil
}
