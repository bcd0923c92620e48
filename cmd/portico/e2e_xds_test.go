package main

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-proxy/portico/internal/testpki"
)

// loadLoop opens new connections to each port in turn, on a bounded schedule, until
// stop is closed or the bound passes, counting those that did not get a backend's line.
type loadLoop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       chan struct{}
}

func startLoad(ports func() []int, every time.Duration, bound time.Duration) *loadLoop {
	l := &loadLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		end := time.Now().Add(bound)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for time.Now().Before(end) {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			for _, p := range ports() {
				if s, err := dialRead(p); err != nil || s == "" {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, fmt.Sprintf("port %d: %q %v", p, s, err))
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
			}
		}
	}()
	return l
}

func (l *loadLoop) finish(t *testing.T) (ok, failed int64) {
	t.Helper()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Logf("failures: %v", l.errs)
	}
	return l.ok.Load(), l.failed.Load()
}

// TestXDSFleet: three Portico processes configured by one go-control-plane server. The
// snapshots add, change and remove listeners and clusters while traffic flows; a bad
// listener is NACKed in Envoy's words while the rest of its version applies; the server
// is killed and restarted while the proxies keep serving, and they reconnect and ACK;
// all three converge on every version.
func TestXDSFleet(t *testing.T) {
	t.Run("sotw", func(t *testing.T) { testXDSFleet(t, false) })
	t.Run("delta", func(t *testing.T) { testXDSFleet(t, true) })
}

func testXDSFleet(t *testing.T, delta bool) {
	cp := startXDSServer(t)
	a, b := named(t, "A"), named(t, "B")
	nodes := []string{"proxy-1", "proxy-2", "proxy-3"}
	// Each proxy gets its own listener ports (one machine).
	type ports struct{ web, api, extra int }
	pp := map[string]*ports{}
	for _, n := range nodes {
		pp[n] = &ports{freePort(t), freePort(t), freePort(t)}
	}
	snap := func(version string, listeners func(n string, p *ports) []types.Resource, clusters []types.Resource) {
		for _, n := range nodes {
			cp.set(t, version, map[resource.Type][]types.Resource{
				resource.ClusterType:  clusters,
				resource.ListenerType: listeners(n, pp[n]),
			}, n)
		}
	}
	both := []string{cdsType, ldsType}

	// v1: one listener to A.
	snap("v1", func(n string, p *ports) []types.Resource {
		return []types.Resource{tcpListener(t, "web", p.web, "backend")}
	}, []types.Resource{staticCluster("backend", a)})
	procs := map[string]*proc{}
	for _, n := range nodes {
		procs[n] = startXDSProxy(t, cp, xdsBoot{Node: n, Delta: delta}, "--drain-time-s", "1")
	}
	cp.waitACK(t, "v1", both, nodes...)
	for _, n := range nodes {
		if s, err := dialRead(pp[n].web); s != "A" {
			t.Fatalf("%s web: got %q, %v; want A", n, s, err)
		}
		// The node went as configured: id, cluster and metadata.
		nd := cp.node(n)
		if nd.GetCluster() != "fleet" || nd.GetMetadata().GetFields()["role"].GetStringValue() != "test" || nd.GetUserAgentName() != "portico" {
			t.Fatalf("%s: node sent as %v", n, nd)
		}
	}

	// Traffic on every proxy's web listener from here on: no new connection may fail.
	webPorts := func() []int {
		var out []int
		for _, n := range nodes {
			out = append(out, pp[n].web)
		}
		return out
	}
	load := startLoad(webPorts, 20*time.Millisecond, 60*time.Second)

	// v2: the cluster moves to B, and a second listener with its own cluster arrives in
	// the same version, listed before its cluster.
	snap("v2", func(n string, p *ports) []types.Resource {
		return []types.Resource{tcpListener(t, "api", p.api, "api"), tcpListener(t, "web", p.web, "backend")}
	}, []types.Resource{staticCluster("backend", b), staticCluster("api", a)})
	cp.waitACK(t, "v2", both, nodes...)
	for _, n := range nodes {
		eventually(t, n+" web to reach B", func() bool { s, _ := dialRead(pp[n].web); return s == "B" })
		if s, err := dialRead(pp[n].api); s != "A" {
			t.Fatalf("%s api: got %q, %v; want A", n, s, err)
		}
	}

	// v3: a partial NACK. The listener "bad" names a filter Portico lacks; "extra" is good
	// and "web" is unchanged: the good ones apply, the NACK names "bad".
	snap("v3", func(n string, p *ports) []types.Resource {
		bad := tcpListener(t, "bad", freePort(t), "api")
		bad.FilterChains[0].Filters[0].Name = "envoy.filters.network.mongo_proxy"
		bad.FilterChains[0].Filters[0].ConfigType = nil
		return []types.Resource{tcpListener(t, "web", p.web, "backend"), tcpListener(t, "api", p.api, "api"),
			bad, tcpListener(t, "extra", p.extra, "api")}
	}, []types.Resource{staticCluster("backend", b), staticCluster("api", a)})
	for _, n := range nodes {
		eventually(t, n+" to NACK v3", func() bool { return cp.nack(n, ldsType) != "" })
		msg := cp.nack(n, ldsType)
		if !strings.Contains(msg, "Error adding/updating listener(s)") || !strings.Contains(msg, `"bad"`) || !strings.Contains(msg, "mongo_proxy") {
			t.Fatalf("%s: NACK detail %q", n, msg)
		}
		if v := cp.ackedVersion(n, ldsType); v != "v2" {
			t.Fatalf("%s: LDS ACKed %q after the NACK, want v2 still", n, v)
		}
		eventually(t, n+" extra to serve", func() bool { s, _ := dialRead(pp[n].extra); return s == "A" })
	}
	st := procs["proxy-1"].stats(t)
	if st["listener_manager.lds.update_rejected"] < 1 || st["control_plane.connected_state"] != 1 {
		t.Fatalf("stats after the NACK: update_rejected %v connected_state %v",
			st["listener_manager.lds.update_rejected"], st["control_plane.connected_state"])
	}

	// The management server goes away: the proxies keep serving what they have (the
	// load goes on), say so in connected_state, and come back when it does.
	cp.stop()
	for _, n := range nodes {
		eventually(t, n+" to see the server gone", func() bool {
			return procs[n].stats(t)["control_plane.connected_state"] == 0
		})
	}
	time.Sleep(500 * time.Millisecond) // traffic while the server is down
	// v4 is set while it is down: "bad" is fixed away and "api" removed.
	snap("v4", func(n string, p *ports) []types.Resource {
		return []types.Resource{tcpListener(t, "web", p.web, "backend"), tcpListener(t, "extra", p.extra, "api")}
	}, []types.Resource{staticCluster("backend", b), staticCluster("api", a)})
	cp.start()
	cp.waitACK(t, "v4", both, nodes...)
	for _, n := range nodes {
		eventually(t, n+" to reconnect", func() bool { return procs[n].stats(t)["control_plane.connected_state"] == 1 })
		eventually(t, n+" api to be removed", func() bool { _, err := dialRead(pp[n].api); return err != nil })
	}
	if st := procs["proxy-1"].stats(t); st["listener_manager.lds.update_failure"] < 1 || st["cluster_manager.cds.update_failure"] < 1 {
		t.Fatalf("the lost stream is not counted: lds.update_failure %v, cds.update_failure %v",
			st["listener_manager.lds.update_failure"], st["cluster_manager.cds.update_failure"])
	}
	ok, failed := load.finish(t)
	t.Logf("new connections through v2..v4 and a server restart: %d ok, %d failed", ok, failed)
	if failed != 0 || ok < 100 {
		t.Fatalf("%d of %d new connections failed", failed, ok+failed)
	}

	// Every proxy is on v4, by its own account too.
	for _, n := range nodes {
		_, body, err := procs[n].get("/config_dump")
		if err != nil || !strings.Contains(body, `"version_info": "v4"`) && !strings.Contains(body, `"version_info":"v4"`) {
			t.Fatalf("%s /config_dump lacks version v4 (%v):\n%.2000s", n, err, body)
		}
		st := procs[n].stats(t)
		if st["listener_manager.total_listeners_active"] != 2 || st["cluster_manager.active_clusters"] != 3 {
			t.Fatalf("%s: %v listeners, %v clusters", n, st["listener_manager.total_listeners_active"], st["cluster_manager.active_clusters"])
		}
	}
}

// TestXDSInPlaceChainUpdate: a version that changes one filter chain of a listener drains
// only the connections on that chain; those on the other chain live on.
func TestXDSInPlaceChainUpdate(t *testing.T) {
	cp := startXDSServer(t)
	a, b := echoBackend(t), echoBackend(t)
	port := freePort(t)
	cidrs := func(p string) []*corev3.CidrRange {
		pfx := netip.MustParsePrefix(p)
		return []*corev3.CidrRange{{AddressPrefix: pfx.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(pfx.Bits()))}}
	}
	lst := func(otherCluster string) *listenerv3.Listener {
		// Connections from 127.0.0.1 take the first chain; the others (127.0.0.2) the
		// default one, which the update changes.
		return &listenerv3.Listener{Name: "web", Address: sockAddr("127.0.0.1", port),
			FilterChains: []*listenerv3.FilterChain{tcpChain(t, "stable", "stable",
				&listenerv3.FilterChainMatch{SourcePrefixRanges: cidrs("127.0.0.1/32")})},
			DefaultFilterChain: tcpChain(t, "churn", otherCluster, nil)}
	}
	set := func(v, other string) {
		cp.set(t, v, map[resource.Type][]types.Resource{
			resource.ClusterType:  {staticCluster("stable", a), staticCluster("one", a), staticCluster("two", b)},
			resource.ListenerType: {lst(other)},
		}, "proxy-1")
	}
	set("v1", "one")
	p := startXDSProxy(t, cp, xdsBoot{Node: "proxy-1"}, "--drain-time-s", "1")
	cp.waitACK(t, "v1", []string{cdsType, ldsType}, "proxy-1")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	stop := make(chan struct{})
	stableC, churnC := make(chan *stream, 1), make(chan *stream, 1)
	go func() { stableC <- runStream(addr, "127.0.0.1", stop) }()
	go func() { churnC <- runStream(addr, "127.0.0.2", stop) }()
	eventually(t, "both streams to open", func() bool {
		return p.stats(t)["tcp.stable.downstream_cx_total"] == 1 && p.stats(t)["tcp.churn.downstream_cx_total"] == 1
	})
	set("v2", "two")
	cp.waitACK(t, "v2", []string{ldsType}, "proxy-1")
	if st := p.stats(t); st["listener_manager.listener_in_place_updated"] != 1 {
		t.Fatalf("listener_in_place_updated = %v, want 1", st["listener_manager.listener_in_place_updated"])
	}
	// The changed chain's connection is closed by its drain (1 s); the other echoes on.
	var churn *stream
	select {
	case churn = <-churnC:
	case <-time.After(10 * time.Second):
		t.Fatal("the changed chain's connection was not drained")
	}
	if !churn.byPeer {
		t.Fatalf("the changed chain's connection ended by %v, not by the proxy", churn.err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	if s := <-stableC; s.err != nil {
		t.Fatalf("the unchanged chain's connection broke: %v", s.err)
	}
}

// TestXDSOverTLS: the management server's cluster has a transport_socket; the stream runs
// over TLS with the cluster's trusted CA, SNI and the h2 ALPN gRPC servers require.
func TestXDSOverTLS(t *testing.T) {
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "xds", "xds.example")
	cp := startXDSServerTLS(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	a := named(t, "A")
	port := freePort(t)
	cp.set(t, "v1", map[resource.Type][]types.Resource{
		resource.ClusterType:  {staticCluster("backend", a)},
		resource.ListenerType: {tcpListener(t, "web", port, "backend")},
	}, "proxy-1")
	tlsCtx := fmt.Sprintf(`        sni: xds.example
        common_tls_context:
          validation_context:
            trusted_ca: {filename: %s}
            match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: xds.example}}]`, pki.CAFile)
	startXDSProxy(t, cp, xdsBoot{Node: "proxy-1", XDSTLS: tlsCtx})
	cp.waitACK(t, "v1", []string{cdsType, ldsType}, "proxy-1")
	if s, err := dialRead(port); s != "A" {
		t.Fatalf("got %q, %v; want A", s, err)
	}

	// A server whose certificate the CA did not sign is not talked to.
	other, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := other.Issue(testpki.ECDSA, "xds.example")
	if err != nil {
		t.Fatal(err)
	}
	cp2 := startXDSServerTLS(t, &tls.Config{Certificates: []tls.Certificate{bad.TLS}})
	cp2.set(t, "v1", map[resource.Type][]types.Resource{resource.ListenerType: {tcpListener(t, "web", freePort(t), "backend")}}, "proxy-2")
	b := xdsBoot{Node: "proxy-2", XDSTLS: tlsCtx, Timeout: "1s", CP: cp2.port(), Admin: freePort(t)}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", b.Admin), "-c", writeConfig(t, xdsBootstrapTmpl, b))
	if n := p.stats(t)["listener_manager.total_listeners_active"]; n != 0 || cp2.ackedVersion("proxy-2", ldsType) != "" {
		t.Fatalf("a server with an untrusted certificate configured %v listeners", n)
	}
	eventually(t, "the TLS failure in the log", func() bool {
		return strings.Contains(p.stderr.String(), "certificate signed by unknown authority") || strings.Contains(p.stderr.String(), "unknown authority")
	})
}

// TestXDSPerTypeSources: lds_config and cds_config each name an api_config_source of
// their own (no ADS): a stream per type to the listener and cluster discovery services,
// with the node on every request (Envoy's default).
func TestXDSPerTypeSources(t *testing.T) {
	cp := startXDSServer(t)
	a := named(t, "A")
	port := freePort(t)
	cp.set(t, "v1", map[resource.Type][]types.Resource{
		resource.ClusterType:  {staticCluster("backend", a)},
		resource.ListenerType: {tcpListener(t, "web", port, "backend")},
	}, "proxy-1")
	src := func(api string) string {
		return "{api_config_source: {api_type: " + api + ", transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}, resource_api_version: V3}"
	}
	for _, api := range []string{"GRPC", "DELTA_GRPC"} {
		b := xdsBoot{Node: "proxy-1", CP: cp.port(), Admin: freePort(t)}
		cfg := writeConfig(t, xdsBootstrapTmpl, b)
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(data)
		start, end := strings.Index(doc, "  ads_config:"), strings.Index(doc, "static_resources:")
		doc = doc[:start] + "  cds_config: " + src(api) + "\n  lds_config: " + src(api) + "\n" + doc[end:]
		if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", b.Admin), "-c", cfg)
		cp.waitACK(t, "v1", []string{cdsType, ldsType}, "proxy-1")
		if s, err := dialRead(port); s != "A" {
			t.Fatalf("%s: got %q, %v; want A", api, s, err)
		}
		p.stop(t, 10*time.Second)
		want := []string{cdsType, ldsType}
		if api == "DELTA_GRPC" {
			want = []string{"delta:" + cdsType, "delta:" + ldsType}
		}
		cp.mu.Lock()
		opened := cp.opened
		cp.opened, cp.acked = nil, map[string]map[string]string{}
		cp.mu.Unlock()
		if !slices.Contains(opened, want[0]) || !slices.Contains(opened, want[1]) || slices.Contains(opened, "") {
			t.Fatalf("%s: streams opened %q, want %q and no ADS", api, opened, want)
		}
	}
}
