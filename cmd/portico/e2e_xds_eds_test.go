package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// edsCluster is a CDS cluster of type EDS whose endpoints are service's, over ADS.
func edsCluster(name, service string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: service, EdsConfig: &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
}

// edsAssignment is a ClusterLoadAssignment of the given loopback ports.
func edsAssignment(service string, ports ...int) *endpointv3.ClusterLoadAssignment {
	var eps []*endpointv3.LbEndpoint
	for _, p := range ports {
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: sockAddr("127.0.0.1", p)}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: service, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

// edsStaticCluster is the bootstrap's static EDS cluster (under static_resources.clusters).
const edsStaticCluster = `  - name: static_eds
    type: EDS
    connect_timeout: 1s
    eds_cluster_config: {service_name: static-svc, eds_config: {ads: {}, resource_api_version: V3}}`

// TestXDSEDS: a go-control-plane server gives a Portico process an EDS cluster by CDS
// and endpoints for it and for a static EDS cluster of the bootstrap, with tcp_proxy
// listeners by LDS. The endpoints move from A to B while new connections flow (none may
// fail); a bad assignment is NACKed naming it while the other applies; the cluster
// removed and added again gets its endpoints; the per-cluster EDS stats count it all.
func TestXDSEDS(t *testing.T) {
	t.Run("sotw", func(t *testing.T) { testXDSEDS(t, false) })
	t.Run("delta", func(t *testing.T) { testXDSEDS(t, true) })
}

// testXDSEDS waits, at each version, only for the types whose resources change: a delta
// server sends nothing for the others.
func testXDSEDS(t *testing.T, delta bool) {
	cp := startXDSServer(t)
	a, b := named(t, "A"), named(t, "B")
	const node = "eds-1"
	web, st := freePort(t), freePort(t)
	listeners := []types.Resource{tcpListener(t, "web", web, "web"), tcpListener(t, "st", st, "static_eds")}
	snap := func(version string, clusters []types.Resource, clas ...types.Resource) {
		cp.set(t, version, map[resource.Type][]types.Resource{
			resource.ClusterType:  clusters,
			resource.EndpointType: clas,
			resource.ListenerType: listeners,
		}, node)
	}
	webCluster := []types.Resource{edsCluster("web", "web-svc")}
	all := []string{cdsType, edsType, ldsType}

	snap("v1", webCluster, edsAssignment("web-svc", a), edsAssignment("static-svc", a))
	p := startXDSProxy(t, cp, xdsBoot{Node: node, Delta: delta, Extra: edsStaticCluster}, "--drain-time-s", "1")
	cp.waitACK(t, "v1", all, node)
	for _, port := range []int{web, st} {
		if s, err := dialRead(port); s != "A" {
			t.Fatalf("port %d: got %q, %v; want A", port, s, err)
		}
	}

	// v2: both services move between B and A, five times, ending on B, while new
	// connections flow.
	load := startLoad(func() []int { return []int{web, st} }, 5*time.Millisecond, 60*time.Second)
	for i, to := range []int{b, a, b, a, b} {
		want := map[int]string{a: "A", b: "B"}[to]
		time.Sleep(100 * time.Millisecond) // some connections before each change
		v := fmt.Sprintf("v2.%d", i)
		snap(v, webCluster, edsAssignment("web-svc", to), edsAssignment("static-svc", to))
		cp.waitACK(t, v, []string{edsType}, node)
		for _, port := range []int{web, st} {
			eventually(t, "traffic to reach "+want, func() bool { s, _ := dialRead(port); return s == want })
		}
	}
	time.Sleep(100 * time.Millisecond) // some connections after the last
	ok, failed := load.finish(t)
	t.Logf("during five moves between A and B: %d connections proxied, %d failed", ok, failed)
	if failed != 0 || ok == 0 {
		t.Fatalf("%d of %d new connections failed while the endpoints changed", failed, ok+failed)
	}

	// v3: web-svc's assignment is bad (a priority Portico lacks): NACKed by name, while
	// static-svc's moves back to A; web keeps B.
	bad := edsAssignment("web-svc", a)
	bad.Endpoints[0].Priority = 1
	snap("v3", webCluster, bad, edsAssignment("static-svc", a))
	eventually(t, "the bad assignment's NACK", func() bool { return cp.nack(node, edsType) != "" })
	if n := cp.nack(node, edsType); !strings.Contains(n, `(cluster_load_assignment "web-svc"): endpoints[0].priority: not supported by Portico`) {
		t.Fatalf("NACK: %q", n)
	}
	eventually(t, "static_eds back to A", func() bool { s, _ := dialRead(st); return s == "A" })
	if s, err := dialRead(web); s != "B" {
		t.Fatalf("web after a rejected assignment: %q, %v; want B", s, err)
	}
	if got := cp.ackedVersion(node, edsType); got != "v2.4" {
		t.Fatalf("EDS ACKed %q after the NACK, want v2.4 still", got)
	}

	// v4: web removed (its endpoints go with it); v5: web back, and it gets its endpoints.
	snap("v4", nil, edsAssignment("web-svc", b), edsAssignment("static-svc", a))
	cp.waitACK(t, "v4", []string{cdsType}, node)
	eventually(t, "web removed", func() bool { _, ok := p.stats(t)["cluster.web.update_success"]; return !ok })
	if s, _ := dialRead(web); s != "" {
		t.Fatalf("web without its cluster reached %q", s)
	}
	snap("v5", webCluster, edsAssignment("web-svc", b), edsAssignment("static-svc", a))
	cp.waitACK(t, "v5", []string{cdsType, edsType}, node)
	eventually(t, "web re-added to reach B", func() bool { s, _ := dialRead(web); return s == "B" })

	// v6: web's new version takes a service nothing serves yet: it warms while the
	// version it replaces serves on; late, with a 1s initial_fetch_timeout, is published
	// without endpoints once it passes. v7: web-svc2 arrives and web's new version serves.
	web2 := edsCluster("web", "web-svc2")
	late := edsCluster("late", "late-svc")
	late.EdsClusterConfig.EdsConfig.InitialFetchTimeout = durationpb.New(time.Second)
	snap("v6", []types.Resource{web2, late}, edsAssignment("web-svc", b), edsAssignment("static-svc", a))
	cp.waitACK(t, "v6", []string{cdsType}, node)
	eventually(t, "late published without endpoints", func() bool {
		v, ok := p.stats(t)["cluster.late.membership_total"]
		return ok && v == 0
	})
	if w := p.stats(t)["cluster_manager.warming_clusters"]; w != 1 {
		t.Fatalf("warming_clusters %v, want 1 (web's new version)", w)
	}
	if s, err := dialRead(web); s != "B" {
		t.Fatalf("web while its new version warms: %q, %v; want B from the old one", s, err)
	}
	snap("v7", []types.Resource{web2, late}, edsAssignment("web-svc2", a), edsAssignment("static-svc", a), edsAssignment("late-svc", b))
	cp.waitACK(t, "v7", []string{edsType}, node)
	eventually(t, "web's new version to reach A", func() bool { s, _ := dialRead(web); return s == "A" })
	eventually(t, "late to get its endpoints", func() bool { return p.stats(t)["cluster.late.membership_total"] == 1 })

	// /config_dump?include_eds shows the assignments in use, with their versions; the
	// dump without it has none.
	_, dump, err := p.get("/config_dump?include_eds")
	if err != nil || !strings.Contains(dump, "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump") ||
		!strings.Contains(dump, `"cluster_name": "web-svc2"`) || !strings.Contains(dump, `"version_info": "v7"`) ||
		strings.Contains(dump, `"cluster_name": "web-svc"`) {
		t.Errorf("config_dump?include_eds (%v):\n%s", err, dump)
	}
	if _, dump, _ := p.get("/config_dump"); strings.Contains(dump, "EndpointsConfigDump") {
		t.Error("config_dump without include_eds has an EndpointsConfigDump")
	}

	stats := p.stats(t)
	for k, want := range map[string]float64{
		"cluster.web.membership_total":        1,
		"cluster_manager.active_clusters":     4, // xds_cluster, static_eds, web, late
		"cluster.static_eds.membership_total": 1,
		"cluster_manager.warming_clusters":    0,
		"cluster.static_eds.update_rejected":  0,
	} {
		if got, ok := stats[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	// static_eds took v1, the five v2s, v3 and v4 (v5's assignment is v4's: a server
	// may or may not resend it, nor v7's).
	if got := stats["cluster.static_eds.update_success"]; got < 8 || stats["cluster.static_eds.update_attempt"] != got {
		t.Errorf("static_eds update_success %v, update_attempt %v", got, stats["cluster.static_eds.update_attempt"])
	}
	if stats["cluster.web.update_success"] < 1 || stats["cluster.web.version"] == 0 {
		t.Errorf("web update_success %v, version %v", stats["cluster.web.update_success"], stats["cluster.web.version"])
	}
	if strings.Contains(p.stderr.String(), "DATA RACE") { // a -race build of the binary
		t.Errorf("portico reported a data race:\n%s", p.stderr.String())
	}
	for k, v := range stats {
		if strings.HasPrefix(k, "cluster.web.update_") || strings.HasPrefix(k, "cluster.static_eds.update_") {
			t.Logf("%s: %v", k, v)
		}
	}
}

// edsFileBootstrap has ads_config for LDS and EDS, and CDS from the file cds.
const edsFileBootstrap = `
node: {id: {{.Node}}, cluster: fleet}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {path_config_source: {path: {{.CDS}}}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: xds_cluster, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{.CP}}}}}}]}]}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: {{.Admin}}}}
`

// edsFileCDS is a CDS file with one EDS cluster, filec, taking service's endpoints.
func edsFileCDS(version, service string) string {
	return fmt.Sprintf(`version_info: %q
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: filec
  type: EDS
  connect_timeout: 1s
  eds_cluster_config: {service_name: %s, eds_config: {ads: {}, resource_api_version: V3}}
`, version, service)
}

// TestXDSEDSClustersFromFile: EDS clusters of a CDS file take their endpoints over the
// ADS stream that LDS uses, and a new version of the file that names another service
// subscribes to it.
func TestXDSEDSClustersFromFile(t *testing.T) {
	cp := startXDSServer(t)
	a, b, c := named(t, "A"), named(t, "B"), named(t, "C")
	const node = "eds-file"
	dir := t.TempDir()
	cds := filepath.Join(dir, "cds.yaml")
	writeCDS := func(body string) {
		tmp := filepath.Join(dir, ".cds.tmp")
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cds); err != nil { // a rename, as Envoy's file watch requires
			t.Fatal(err)
		}
	}
	writeCDS(edsFileCDS("f1", "file-svc"))
	port := freePort(t)
	snap := func(version string, clas ...types.Resource) {
		cp.set(t, version, map[resource.Type][]types.Resource{
			resource.ListenerType: {tcpListener(t, "web", port, "filec")},
			resource.EndpointType: clas,
			// CDS is the file's: a server's clusters must not be asked for (they would
			// replace the file's filec, whose traffic would reach C).
			resource.ClusterType: {staticCluster("filec", c)},
		}, node)
	}
	// go-control-plane's ADS mode answers only a request that names every assignment of
	// the snapshot: each snapshot has only what the proxy asks for by then.
	snap("v1", edsAssignment("file-svc", a))
	admin := freePort(t)
	path := writeConfig(t, edsFileBootstrap, map[string]any{"Node": node, "CP": cp.port(), "Admin": admin, "CDS": cds})
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", admin), "-c", path)
	cp.waitACK(t, "v1", []string{ldsType, edsType}, node)
	if s, err := dialRead(port); s != "A" {
		t.Fatalf("filec: got %q, %v; want A", s, err)
	}
	// A new file version names file-svc2: it warms (the old version serves on) and
	// asks for it.
	writeCDS(edsFileCDS("f2", "file-svc2"))
	eventually(t, "filec's new version to warm", func() bool { return p.stats(t)["cluster_manager.warming_clusters"] == 1 })
	if s, err := dialRead(port); s != "A" {
		t.Fatalf("filec while its new version warms: got %q, %v; want A", s, err)
	}
	snap("v2", edsAssignment("file-svc", a), edsAssignment("file-svc2", b))
	eventually(t, "filec's new version to reach B", func() bool { s, _ := dialRead(port); return s == "B" })
	if w := p.stats(t)["cluster_manager.warming_clusters"]; w != 0 {
		t.Errorf("warming_clusters %v", w)
	}
}

// edsOwnServerClusters are the bootstrap's clusters for TestXDSEDSOwnServer: the EDS
// server's cluster, and a static EDS cluster whose eds_config names it.
const edsOwnServerClusters = `  - name: eds_server
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: eds_server, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]}
  - name: own_static
    type: EDS
    connect_timeout: 1s
    eds_cluster_config:
      service_name: own-svc
      eds_config: {resource_api_version: V3, api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: eds_server}}]}}`

// TestXDSEDSOwnServer: EDS clusters, static and from CDS, whose eds_config is an
// api_config_source of its own get their endpoints from that server (a second
// go-control-plane), not from the ADS one; a CDS cluster's new service name is asked of
// it.
func TestXDSEDSOwnServer(t *testing.T) {
	cp, edsCP := startXDSServer(t), startXDSServer(t)
	a, b := named(t, "A"), named(t, "B")
	const node = "eds-own"
	st, dyn := freePort(t), freePort(t)
	own := func(name, service string) *clusterv3.Cluster {
		c := edsCluster(name, service)
		c.EdsClusterConfig.EdsConfig.ConfigSourceSpecifier = &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType: corev3.ApiConfigSource_GRPC, TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "eds_server"}}}}}}
		return c
	}
	cp.set(t, "v1", map[resource.Type][]types.Resource{
		resource.ClusterType:  {own("own_cds", "own-svc2")},
		resource.ListenerType: {tcpListener(t, "st", st, "own_static"), tcpListener(t, "dyn", dyn, "own_cds")},
		// The ADS server has other endpoints under the same names: they must not be used.
		resource.EndpointType: {},
	}, node)
	edsCP.set(t, "e1", map[resource.Type][]types.Resource{
		resource.EndpointType: {edsAssignment("own-svc", a), edsAssignment("own-svc2", b)},
	}, node)
	p := startXDSProxy(t, cp, xdsBoot{Node: node, Extra: fmt.Sprintf(edsOwnServerClusters, edsCP.port())})
	cp.waitACK(t, "v1", []string{cdsType, ldsType}, node)
	edsCP.waitACK(t, "e1", []string{edsType}, node)
	if s, err := dialRead(st); s != "A" {
		t.Fatalf("own_static: got %q, %v; want A", s, err)
	}
	if s, err := dialRead(dyn); s != "B" {
		t.Fatalf("own_cds: got %q, %v; want B", s, err)
	}
	if got := cp.ackedVersion(node, edsType); got != "" {
		t.Errorf("the ADS server was asked for endpoints (ACKed %q)", got)
	}
	// The CDS cluster moves to a service the EDS server has yet to serve: it warms, and
	// gets its endpoints once the server has them.
	cp.set(t, "v2", map[resource.Type][]types.Resource{
		resource.ClusterType:  {own("own_cds", "own-svc3")},
		resource.ListenerType: {tcpListener(t, "st", st, "own_static"), tcpListener(t, "dyn", dyn, "own_cds")},
		resource.EndpointType: {},
	}, node)
	cp.waitACK(t, "v2", []string{cdsType}, node)
	eventually(t, "own_cds's new version to warm", func() bool { return p.stats(t)["cluster_manager.warming_clusters"] == 1 })
	edsCP.set(t, "e2", map[resource.Type][]types.Resource{
		resource.EndpointType: {edsAssignment("own-svc", a), edsAssignment("own-svc2", b), edsAssignment("own-svc3", a)},
	}, node)
	eventually(t, "own_cds's new version to reach A", func() bool { s, _ := dialRead(dyn); return s == "A" })
}
