package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// RDS end to end: a go-control-plane SnapshotCache (ADS) server, a real portico whose
// listeners (LDS) have HTTP connection managers with rds on the ADS stream.

// rdsHCMListener listens on port with an HCM (stat_prefix = name) whose routes are the
// route configuration routeName from RDS, with the given initial_fetch_timeout.
func rdsHCMListener(t *testing.T, name string, port int, routeName string, fetch time.Duration) *listenerv3.Listener {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: routeName,
			ConfigSource: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				InitialFetchTimeout:   durationpb.New(fetch)},
		}},
	}
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}}}}}
}

// rdsRoutes is a route configuration sending everything to cluster.
func rdsRoutes(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

// rdsBackend is an HTTP server answering every request with its name.
func rdsBackend(t *testing.T, name string) int {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(s.Close)
	var port int
	fmt.Sscanf(s.URL[strings.LastIndexByte(s.URL, ':')+1:], "%d", &port)
	return port
}

// rdsGet makes one request on a new connection: status and body ("" and 0 on error).
func rdsGet(port int) (int, string) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 256)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestXDSRDS: over both protocols (state of the world, delta), LDS listeners with rds:
// route added, changed under a kept connection, a partly bad response, a route config
// that never comes, stats, /config_dump, removal, warming.
func TestXDSRDS(t *testing.T) {
	t.Run("sotw", func(t *testing.T) { testXDSRDS(t, false) })
	t.Run("delta", func(t *testing.T) { testXDSRDS(t, true) })
}

func testXDSRDS(t *testing.T, delta bool) {
	const node = "rds-1"
	portA, portB := rdsBackend(t, "A"), rdsBackend(t, "B")
	cp := startXDSServer(t)
	web, lost, web2 := freePort(t), freePort(t), freePort(t)
	clusters := []types.Resource{staticCluster("a", portA), staticCluster("b", portB)}
	listeners := []types.Resource{
		rdsHCMListener(t, "web", web, "r1", 10*time.Second),
		// A route configuration that never comes: after its initial_fetch_timeout the
		// listener starts without routes, 404 NR.
		rdsHCMListener(t, "lost", lost, "never", time.Second),
	}
	cp.set(t, "1", map[resource.Type][]types.Resource{
		cdsType: clusters, ldsType: listeners,
		rdsType: {rdsRoutes("r1", "a")},
	}, node)
	p := startXDSProxy(t, cp, xdsBoot{Node: node, Timeout: "10s", Delta: delta})
	cp.waitACK(t, "1", []string{cdsType, ldsType, rdsType}, node)

	// Route added: the listener serves backend A.
	eventually(t, "web to answer A", func() bool { st, body := rdsGet(web); return st == 200 && body == "A" })
	eventually(t, "lost to answer 404 (no route) after its initial fetch timeout", func() bool {
		st, _ := rdsGet(lost)
		return st == 404
	})

	// Route changed while requests flow on one keep-alive connection: none fails, and the
	// same connection sees backend B.
	c, br := rawConn(t, fmt.Sprintf("127.0.0.1:%d", web))
	var seenA, seenB int
	changed := false
	deadline := time.Now().Add(12 * time.Second)
	for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
		if _, err := fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: example\r\n\r\n", i); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d on the kept connection: %d %q (A %d, B %d)", i, resp.StatusCode, body, seenA, seenB)
		}
		switch body {
		case "A":
			if seenB > 0 {
				t.Fatalf("request %d went back to A after B", i)
			}
			seenA++
		case "B":
			seenB++
		default:
			t.Fatalf("request %d: body %q", i, body)
		}
		if i == 20 && !changed {
			changed = true
			cp.set(t, "2", map[resource.Type][]types.Resource{
				cdsType: clusters, ldsType: listeners,
				rdsType: {rdsRoutes("r1", "b")},
			}, node)
		}
		if seenB >= 20 {
			break
		}
	}
	if seenB < 20 {
		t.Fatalf("the kept connection never saw the new route: A %d, B %d", seenA, seenB)
	}
	c.Close()
	t.Logf("kept connection: %d requests to A, then %d to B, none failed", seenA, seenB)
	cp.waitACK(t, "2", []string{rdsType}, node)

	// A response with a bad route configuration: it is NACKed naming it, the good one of
	// the same response applies, the listener naming the bad one starts without routes.
	bad := rdsRoutes("r2", "a")
	bad.VirtualHosts[0].Routes[0].Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{}}
	listeners3 := append(listeners[:2:2], rdsHCMListener(t, "web2", web2, "r2", 10*time.Second))
	cp.set(t, "3", map[resource.Type][]types.Resource{
		cdsType: clusters, ldsType: listeners3,
		rdsType: {rdsRoutes("r1", "a"), bad},
	}, node)
	cp.waitACK(t, "3", []string{ldsType}, node)
	eventually(t, "the RDS NACK of version 3", func() bool { return strings.Contains(cp.nack(node, rdsType), `route_configuration "r2"`) })
	nack := cp.nack(node, rdsType)
	// The server orders the resources of a response as it likes: the index is not fixed.
	if !regexp.MustCompile(`resources\[[01]\] \(route_configuration "r2"\): virtual_hosts\[0\]\.routes\[0\]\.match`).MatchString(nack) || strings.Contains(nack, `"r1"`) {
		t.Errorf("NACK: %s", nack)
	}
	// State of the world: the response carrying both is NACKed, the last ACK stays 2.
	// (Delta may deliver r1's change alone before r2 is subscribed to, and ACK it.)
	if v := cp.ackedVersion(node, rdsType); !delta && v != "2" {
		t.Errorf("acked RDS version %q after the NACK, want 2", v)
	}
	eventually(t, "web back to A (the good route configuration of the NACKed response)", func() bool {
		st, body := rdsGet(web)
		return st == 200 && body == "A"
	})
	eventually(t, "web2 to answer 404 (its route configuration was rejected)", func() bool {
		st, _ := rdsGet(web2)
		return st == 404
	})

	// Stats. The NACKed response comes back about once a second (the cache answers the
	// NACK with it again), so its attempts only have a lower bound; config_reload counts
	// the versions that changed a table: r1's three.
	st := p.stats(t)
	check := func(name string, want float64, atLeast bool) {
		t.Helper()
		got, ok := st[name]
		switch {
		case !ok:
			t.Errorf("stat %s missing", name)
		case atLeast && got < want:
			t.Errorf("stat %s = %v, want at least %v", name, got, want)
		case !atLeast && got != want:
			t.Errorf("stat %s = %v, want %v", name, got, want)
		}
	}
	check("http.web.rds.r1.config_reload", 3, false)
	check("http.web.rds.r1.update_attempt", 3, true)
	check("http.web.rds.r1.update_success", 3, true)
	check("http.web.rds.r1.update_rejected", 0, false)
	check("http.web.rds.r1.version", 1, true)
	check("http.web2.rds.r2.update_rejected", 1, true)
	check("http.web2.rds.r2.update_success", 0, false)
	check("http.web2.rds.r2.config_reload", 0, false)
	check("http.lost.rds.never.config_reload", 0, false)
	check("http.lost.rds.never.update_success", 0, false)
	check("http.lost.no_route", 1, true)
	check("http.web.no_route", 0, false)
	check("listener_manager.total_listeners_warming", 0, false)
	check("listener_manager.total_listeners_active", 3, false)

	// /config_dump: the route configurations from RDS with their versions.
	_, dump, err := p.get("/config_dump?resource=dynamic_route_configs")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version_info": "3"`, `"name": "r1"`, `"cluster": "a"`, `route_configuration \"r2\"`, `"last_updated"`} {
		if !strings.Contains(dump, want) {
			t.Errorf("config_dump dynamic_route_configs lacks %s:\n%s", want, dump)
		}
	}

	// A listener no longer there takes its route configuration with it: the provider
	// and its stats go, and the subscription drops the name.
	cp.set(t, "4", map[resource.Type][]types.Resource{
		cdsType: clusters, ldsType: listeners[:1],
		rdsType: {rdsRoutes("r1", "a")},
	}, node)
	cp.waitACK(t, "4", []string{ldsType, rdsType}, node)
	eventually(t, "the route configs of removed listeners to go", func() bool {
		st := p.stats(t)
		_, never := st["http.lost.rds.never.update_attempt"]
		_, r2 := st["http.web2.rds.r2.update_attempt"]
		return !never && !r2
	})
	if st, body := rdsGet(web); st != 200 || body != "A" {
		t.Errorf("web after the removals: %d %q", st, body)
	}

	// Warming: a new listener whose route configuration has not come (no initial fetch
	// timeout) is held: not listening, warming_state in /config_dump, counted in
	// total_listeners_warming; it starts once the route configuration arrives.
	cold := freePort(t)
	l5 := []types.Resource{listeners[0], rdsHCMListener(t, "cold", cold, "late", 0)}
	cp.set(t, "5", map[resource.Type][]types.Resource{cdsType: clusters, ldsType: l5, rdsType: {rdsRoutes("r1", "a")}}, node)
	cp.waitACK(t, "5", []string{ldsType}, node)
	eventually(t, "cold to be warming", func() bool { return p.stats(t)["listener_manager.total_listeners_warming"] == 1 })
	if st, _ := rdsGet(cold); st != 0 {
		t.Errorf("a warming listener answered: %d", st)
	}
	if _, d, _ := p.get("/config_dump?resource=dynamic_listeners"); !strings.Contains(d, `"warming_state"`) {
		t.Errorf("no warming_state in the dump:\n%s", d)
	}
	cp.set(t, "6", map[resource.Type][]types.Resource{cdsType: clusters, ldsType: l5, rdsType: {rdsRoutes("r1", "a"), rdsRoutes("late", "b")}}, node)
	eventually(t, "cold to warm and answer B", func() bool { st, body := rdsGet(cold); return st == 200 && body == "B" })
	if w := p.stats(t)["listener_manager.total_listeners_warming"]; w != 0 {
		t.Errorf("total_listeners_warming = %v after the warm-up", w)
	}

	// An updated listener keeps its old version serving while the new one warms.
	l7 := []types.Resource{rdsHCMListener(t, "web", web, "next", 0), l5[1]}
	cp.set(t, "7", map[resource.Type][]types.Resource{cdsType: clusters, ldsType: l7, rdsType: {rdsRoutes("r1", "a"), rdsRoutes("late", "b")}}, node)
	cp.waitACK(t, "7", []string{ldsType}, node)
	eventually(t, "web's new version to be warming", func() bool { return p.stats(t)["listener_manager.total_listeners_warming"] == 1 })
	for i := 0; i < 20; i++ {
		if st, body := rdsGet(web); st != 200 || body != "A" {
			t.Fatalf("web while its new version warms: %d %q, want the old version's A", st, body)
		}
	}
	cp.set(t, "8", map[resource.Type][]types.Resource{cdsType: clusters, ldsType: l7, rdsType: {rdsRoutes("late", "b"), rdsRoutes("next", "b")}}, node)
	eventually(t, "web's new version to serve B", func() bool { st, body := rdsGet(web); return st == 200 && body == "B" })
}

// rdsStaticBootstrap is the bootstrap of a proxy connected to a management server on
// CP (ADS for CDS and LDS) with a static listener whose HCM has rds.
const rdsStaticBootstrap = `
node: {id: {{.Node}}, cluster: fleet}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: xds_cluster, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{.CP}}}}}}]}]}
  listeners:
  - name: static_web
    address: {socket_address: {address: 127.0.0.1, port_value: {{.Port}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: static_web
          rds:
            route_config_name: static_routes
            config_source: {ads: {}, resource_api_version: V3}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{.Admin}}}}}
`

// TestXDSRDSStatic: a static listener's HCM with rds: the proxy subscribes to its route
// configuration at start and waits for it before the workers start (the first request
// finds the routes), then follows its changes.
func TestXDSRDSStatic(t *testing.T) {
	const node = "rds-static"
	portA, portB := rdsBackend(t, "A"), rdsBackend(t, "B")
	cp := startXDSServer(t)
	clusters := []types.Resource{staticCluster("a", portA), staticCluster("b", portB)}
	cp.set(t, "1", map[resource.Type][]types.Resource{cdsType: clusters, ldsType: {}, rdsType: {rdsRoutes("static_routes", "a")}}, node)
	port, admin := freePort(t), freePort(t)
	path := writeConfig(t, rdsStaticBootstrap, map[string]any{"Node": node, "CP": cp.port(), "Port": port, "Admin": admin})
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", admin), "-c", path)
	// LIVE comes after the initial fetch, RDS included: no waiting here.
	if st, body := rdsGet(port); st != 200 || body != "A" {
		t.Fatalf("first request: %d %q, want 200 A", st, body)
	}
	cp.set(t, "2", map[resource.Type][]types.Resource{cdsType: clusters, ldsType: {}, rdsType: {rdsRoutes("static_routes", "b")}}, node)
	cp.waitACK(t, "2", []string{rdsType}, node)
	eventually(t, "the static listener to follow the new route", func() bool { st, body := rdsGet(port); return st == 200 && body == "B" })
	if v := p.stats(t)["http.static_web.rds.static_routes.config_reload"]; v != 2 {
		t.Errorf("config_reload = %v, want 2", v)
	}
	_, dump, _ := p.get("/config_dump?resource=dynamic_route_configs")
	if !strings.Contains(dump, `"version_info": "2"`) || !strings.Contains(dump, `"name": "static_routes"`) {
		t.Errorf("config_dump:\n%s", dump)
	}
	// validate_clusters is false for RDS (Envoy): a route to a cluster that does not
	// exist is accepted and answers 503 (NC) at request time.
	cp.set(t, "3", map[resource.Type][]types.Resource{cdsType: clusters, ldsType: {}, rdsType: {rdsRoutes("static_routes", "missing")}}, node)
	cp.waitACK(t, "3", []string{rdsType}, node)
	eventually(t, "a route to an unknown cluster to answer 503", func() bool { st, _ := rdsGet(port); return st == 503 })
	if n := p.stats(t)["http.static_web.no_cluster"]; n < 1 {
		t.Errorf("http.static_web.no_cluster = %v", n)
	}
	// The listener of the static_resources is dynamic in nothing but its routes: no
	// inline route_config to show, and static_route_configs is empty.
	if _, d, _ := p.get("/config_dump?resource=static_route_configs"); strings.Contains(d, "route_config") {
		t.Errorf("static_route_configs:\n%s", d)
	}
}
