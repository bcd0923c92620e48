package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A go-control-plane management server for the xDS tests: its SnapshotCache (ADS mode:
// responses ordered by type) and server packages on loopback, recording what each node
// ACKed and NACKed.

// xdsCP is a management server the test started.
type xdsCP struct {
	t     *testing.T
	cache cachev3.SnapshotCache
	addr  string // host:port, kept across restart

	mu      sync.Mutex
	streams map[int64]string             // stream → node id (the node comes on the first request)
	acked   map[string]map[string]string // node → type URL → last ACKed version
	nacked  map[string]map[string]string // node → type URL → last NACK's error_detail message
	nodes   map[string]*corev3.Node      // node id → the node as the proxy sent it
	// deltaSent maps a delta response's nonce to its system_version_info: a delta ACK
	// names the nonce only.
	deltaSent map[string]string
	// opened are the streams opened, by service: "" for ADS, a type URL for a type's
	// own service; "delta:" before either for the incremental protocol.
	opened []string
	gs     *grpc.Server
	cancel context.CancelFunc
	done   chan struct{}
	tls    *tls.Config // nil: plaintext
}

// startXDSServer starts a management server on a free loopback port; it stops with the
// test.
func startXDSServer(t *testing.T) *xdsCP {
	t.Helper()
	return startXDSServerTLS(t, nil)
}

// startXDSServerTLS is startXDSServer over TLS with cfg (nil: plaintext).
func startXDSServerTLS(t *testing.T, cfg *tls.Config) *xdsCP {
	t.Helper()
	cp := &xdsCP{t: t, tls: cfg, cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), addr: "127.0.0.1:0",
		streams: map[int64]string{}, acked: map[string]map[string]string{},
		nacked: map[string]map[string]string{}, nodes: map[string]*corev3.Node{}, deltaSent: map[string]string{}}
	cp.start()
	t.Cleanup(cp.stop)
	return cp
}

func (cp *xdsCP) port() int {
	_, p, _ := net.SplitHostPort(cp.addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

// start (again, after stop) serves on cp.addr; the cache, with its snapshots, stays.
func (cp *xdsCP) start() {
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the same port after a stop: the kernel may still hold it
		if ln, err = net.Listen("tcp", cp.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cp.t.Fatalf("management server: listen %s: %v", cp.addr, err)
	}
	cp.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, r *discoveryv3.DiscoveryRequest) error {
			cp.record(id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil,
				func(string) string { return r.GetVersionInfo() })
			return nil
		},
		StreamOpenFunc: func(_ context.Context, _ int64, typ string) error {
			cp.mu.Lock()
			cp.opened = append(cp.opened, typ)
			cp.mu.Unlock()
			return nil
		},
		DeltaStreamOpenFunc: func(_ context.Context, _ int64, typ string) error {
			cp.mu.Lock()
			cp.opened = append(cp.opened, "delta:"+typ)
			cp.mu.Unlock()
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			// A delta ACK names the nonce only: its version is the response's.
			cp.record(id, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil,
				func(nonce string) string { return cp.deltaSent[nonce] })
			return nil
		},
		StreamDeltaResponseFunc: func(_ int64, _ *discoveryv3.DeltaDiscoveryRequest, rsp *discoveryv3.DeltaDiscoveryResponse) {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			cp.deltaSent[rsp.GetNonce()] = rsp.GetSystemVersionInfo()
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			cp.mu.Lock()
			delete(cp.streams, id)
			cp.mu.Unlock()
		},
	}
	srv := serverv3.NewServer(ctx, cp.cache, cb)
	var opts []grpc.ServerOption
	if cp.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cp.tls)))
	}
	gs := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, srv)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, srv)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, srv) // an EDS cluster's own api_config_source
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	cp.mu.Lock()
	cp.gs, cp.cancel, cp.done = gs, cancel, done
	cp.mu.Unlock()
}

// record notes a request of stream id: the node (sent on the first request, or on
// every one), and, for an answer to a response (a nonce), its ACK of the version
// versionOf gives or its NACK.
func (cp *xdsCP) record(id int64, n *corev3.Node, typ, nonce, nackMsg string, isNACK bool, versionOf func(nonce string) string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	node := cp.streams[id]
	if n.GetId() != "" {
		node = n.GetId()
		cp.streams[id] = node
		cp.nodes[node] = n
	}
	if node == "" || nonce == "" {
		return // a subscription, not an answer to a response
	}
	if isNACK {
		put(cp.nacked, node, typ, nackMsg)
	} else if v := versionOf(nonce); v != "" {
		put(cp.acked, node, typ, v)
	}
}

func put(m map[string]map[string]string, node, typ, v string) {
	if m[node] == nil {
		m[node] = map[string]string{}
	}
	m[node][typ] = v
}

// stop ends the server and its streams (the proxies see it go away).
func (cp *xdsCP) stop() {
	cp.mu.Lock()
	gs, cancel, done := cp.gs, cp.cancel, cp.done
	cp.gs = nil
	cp.mu.Unlock()
	if gs == nil {
		return
	}
	gs.Stop()
	cancel()
	<-done
}

// set gives the nodes a snapshot: version, with the resources by type URL.
func (cp *xdsCP) set(t *testing.T, version string, res map[resource.Type][]types.Resource, nodes ...string) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := cp.cache.SetSnapshot(context.Background(), n, snap); err != nil {
			t.Fatal(err)
		}
	}
}

// ackedVersion is the version node last ACKed of typ ("" for none).
func (cp *xdsCP) ackedVersion(node, typ string) string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.acked[node][typ]
}

// nack is the error_detail of the node's last NACK of typ ("" for none).
func (cp *xdsCP) nack(node, typ string) string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.nacked[node][typ]
}

// node is the node as the proxy sent it (nil before it connected).
func (cp *xdsCP) node(id string) *corev3.Node {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.nodes[id]
}

// waitACK waits until every node ACKed version of each type.
func (cp *xdsCP) waitACK(t *testing.T, version string, typs []string, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		for _, typ := range typs {
			eventually(t, fmt.Sprintf("%s to ACK %s version %s (NACK: %q)", n, typ, version, cp.nack(n, typ)),
				func() bool { return cp.ackedVersion(n, typ) == version })
		}
	}
}

// Type URLs the tests wait on.
const (
	ldsType = resource.ListenerType
	cdsType = resource.ClusterType
	edsType = resource.EndpointType
	rdsType = resource.RouteType
)

// xdsBootstrapTmpl is a bootstrap whose listeners and clusters all come from the
// management server on CP (ADS, state of the world); Extra goes under static_resources'
// clusters (more static clusters).
const xdsBootstrapTmpl = `
node:
  id: {{.Node}}
  cluster: fleet
  metadata: {role: test, index: "{{.Node}}"}
dynamic_resources:
  ads_config:
    api_type: {{if .Delta}}DELTA_GRPC{{else}}GRPC{{end}}
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
  cds_config: {ads: {}, resource_api_version: V3{{if .Timeout}}, initial_fetch_timeout: {{.Timeout}}{{end}}}
  lds_config: {ads: {}, resource_api_version: V3{{if .Timeout}}, initial_fetch_timeout: {{.Timeout}}{{end}}}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{.CP}}}}}}]}]
{{- if .XDSTLS}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
{{.XDSTLS}}
{{- end}}
{{.Extra}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: {{.Admin}}}}
`

// xdsBoot describes one proxy of a fleet.
type xdsBoot struct {
	Node    string
	CP      int
	Admin   int
	Delta   bool
	Timeout string // initial_fetch_timeout, "" for Envoy's default
	Extra   string
	// XDSTLS is the xds_cluster's UpstreamTlsContext fields (YAML indented 8 spaces);
	// empty: plaintext.
	XDSTLS string
}

// startXDSProxy starts a portico whose resources come from cp, as node; it returns once
// /ready says LIVE (after the initial fetch).
func startXDSProxy(t *testing.T, cp *xdsCP, b xdsBoot, args ...string) *proc {
	t.Helper()
	b.CP = cp.port()
	if b.Admin == 0 {
		b.Admin = freePort(t)
	}
	path := writeConfig(t, xdsBootstrapTmpl, b)
	return startPortico(t, fmt.Sprintf("127.0.0.1:%d", b.Admin), append([]string{"-c", path}, args...)...)
}

// Resource builders.

func tcpProxyAny(t *testing.T, statPrefix, cluster string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(&tcpv3.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sockAddr(host string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}
}

// tcpChain is a filter chain with a lone tcp_proxy to cluster.
func tcpChain(t *testing.T, name, cluster string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcpProxyAny(t, name, cluster)}}}}
}

// tcpListener listens on 127.0.0.1:port with one tcp_proxy chain to cluster.
func tcpListener(t *testing.T, name string, port int, cluster string) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", port),
		FilterChains: []*listenerv3.FilterChain{tcpChain(t, name, cluster, nil)}}
}

// staticCluster is a STATIC cluster with the given loopback ports as its hosts.
func staticCluster(name string, ports ...int) *clusterv3.Cluster {
	var eps []*endpointv3.LbEndpoint
	for _, p := range ports {
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: sockAddr("127.0.0.1", p)}}})
	}
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}}
}

// named serves connections that get name and a newline, then close: which backend a
// proxied connection reached.
func named(t *testing.T, name string) int {
	return serveTCP(t, func(c net.Conn) { fmt.Fprintf(c, "%s\n", name) })
}

// dialRead connects to 127.0.0.1:port and returns the first line it gets ("" and the
// error on failure).
func dialRead(port int) (string, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if n > 0 {
		s := string(buf[:n])
		if i := len(s) - 1; i >= 0 && s[i] == '\n' {
			s = s[:i]
		}
		return s, nil
	}
	return "", err
}
