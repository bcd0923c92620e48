package manager

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
)

const edsBoot = `node: {id: n1, cluster: c1}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: xds_cluster, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}
  - name: static_eds
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}}, service_name: svc}
`

func anys(t *testing.T, docs ...string) []*anypb.Any {
	t.Helper()
	var out []*anypb.Any
	for _, d := range docs {
		a := &anypb.Any{}
		if err := protojson.Unmarshal([]byte(d), a); err != nil {
			t.Fatalf("%v: %s", err, d)
		}
		out = append(out, a)
	}
	return out
}

func claJSON(name string, ports ...int) string {
	var eps []string
	for _, p := range ports {
		eps = append(eps, fmt.Sprintf(`{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}}}}`, p))
	}
	return fmt.Sprintf(`{"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": %q,
		"endpoints": [{"lb_endpoints": [%s]}]}`, name, strings.Join(eps, ","))
}

func edsClusterJSON(name, service, timeout string) string {
	return fmt.Sprintf(`{"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": %q, "type": "EDS", "connect_timeout": "1s",
		"eds_cluster_config": {"service_name": %q, "eds_config": {"ads": {}, "initial_fetch_timeout": %q}}}`, name, service, timeout)
}

func ports(c *engine.Cluster) []int {
	if c == nil {
		return nil
	}
	var out []int
	for _, h := range c.Hosts() {
		out = append(out, int(h.Address().Port()))
	}
	slices.Sort(out)
	return out
}

// TestEDS: assignments reach the static and CDS EDS clusters that take their service
// names; a CDS cluster warms until its first assignment (or its initial_fetch_timeout)
// while the version it replaces serves; a new version gets the kept assignment at once; a
// bad assignment is NACKed by name while the good ones apply; a missing one keeps its
// hosts; the kept assignment goes with the last cluster that needs it.
func TestEDS(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2, DrainTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseWith([]byte(edsBoot), 2, config.Options{Clusters: srv.ClusterRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		if err := srv.AddCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	m := New(srv, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), 100*time.Millisecond)
	srv.Start()
	m.Start()
	t.Cleanup(func() { m.Stop(); srv.Close() })
	if got := m.endpointNames(); !slices.Equal(got, []string{"svc"}) {
		t.Fatalf("names %v", got)
	}
	cds := func(version string, clusters ...string) {
		t.Helper()
		u, err := config.ParseClusterResources("cds", version, anys(t, clusters...), 2, m.opts, m.currentClusters())
		if err != nil {
			t.Fatal(err)
		}
		if err := m.ApplyClusters(u); err != nil {
			t.Fatal(err)
		}
	}
	eds := func(version string, clas ...string) error {
		t.Helper()
		return m.applyEndpoints(version, anys(t, clas...))
	}

	// A CDS EDS cluster warms: not in the registry until its assignment.
	cds("1", edsClusterJSON("web", "web-svc", "0s"))
	if srv.Cluster("web") != nil || m.warmingClusters() != 1 {
		t.Fatalf("web published before its endpoints (warming %d)", m.warmingClusters())
	}
	if got := m.endpointNames(); !slices.Equal(got, []string{"svc", "web-svc"}) {
		t.Fatalf("names %v", got)
	}
	if d := m.dumpState(); len(d.WarmingClusters) != 1 || d.WarmingClusters[0].Name != "web" || len(d.ActiveClusters) != 0 {
		t.Fatalf("dump: warming %+v active %+v", d.WarmingClusters, d.ActiveClusters)
	}
	// The same version again goes on warming.
	cds("1", edsClusterJSON("web", "web-svc", "0s"))
	if m.warmingClusters() != 1 {
		t.Fatalf("warming %d", m.warmingClusters())
	}
	if err := eds("e1", claJSON("svc", 9001, 9002), claJSON("web-svc", 9101), claJSON("other", 1)); err != nil {
		t.Fatal(err)
	}
	if got := ports(srv.Cluster("static_eds")); !slices.Equal(got, []int{9001, 9002}) {
		t.Fatalf("static_eds hosts %v", got)
	}
	web1 := srv.Cluster("web")
	if got := ports(web1); !slices.Equal(got, []int{9101}) || m.warmingClusters() != 0 {
		t.Fatalf("web hosts %v, warming %d", got, m.warmingClusters())
	}
	kept := srv.Cluster("static_eds").Hosts()[0]

	// A bad assignment is rejected by name; the good one applies; static_eds keeps the
	// host it had (the same *Host).
	bad := strings.Replace(claJSON("web-svc", 9102), `"lb_endpoints"`, `"priority": 2, "lb_endpoints"`, 1)
	err = eds("e2", claJSON("svc", 9001, 9003), bad)
	if err == nil || !strings.Contains(err.Error(), `resources[1] (cluster_load_assignment "web-svc"): endpoints[0].priority: not supported by Portico`) {
		t.Fatalf("NACK: %v", err)
	}
	if got := ports(srv.Cluster("static_eds")); !slices.Equal(got, []int{9001, 9003}) || srv.Cluster("static_eds").Hosts()[0] != kept {
		t.Fatalf("static_eds hosts %v", got)
	}
	if got := ports(srv.Cluster("web")); !slices.Equal(got, []int{9101}) {
		t.Fatalf("web hosts after a rejected assignment %v", got)
	}
	st := m.eds.stats["web"]
	if st.attempt.Value() != 2 || st.success.Value() != 1 || st.rejected.Value() != 1 {
		t.Fatalf("web stats attempt %d success %d rejected %d", st.attempt.Value(), st.success.Value(), st.rejected.Value())
	}
	// Missing from a response: kept (EDS is not state of the world for removal).
	if err := eds("e3", claJSON("svc", 9001)); err != nil {
		t.Fatal(err)
	}
	if got := ports(srv.Cluster("web")); !slices.Equal(got, []int{9101}) {
		t.Fatalf("web hosts after a response without it %v", got)
	}

	// The same assignment again (a state-of-the-world resend) leaves the hosts alone.
	watch := srv.Cluster("static_eds").WatchHosts()
	if err := eds("e3-again", claJSON("svc", 9001)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watch:
		t.Fatal("an unchanged assignment replaced the host set")
	default:
	}

	// A new version of web gets the kept assignment at once, without warming.
	cds("2", strings.Replace(edsClusterJSON("web", "web-svc", "0s"), `"1s"`, `"2s"`, 1))
	if web2 := srv.Cluster("web"); web2 == web1 || !slices.Equal(ports(web2), []int{9101}) || m.warmingClusters() != 0 {
		t.Fatalf("web v2: %v hosts %v, warming %d", web2 == web1, ports(web2), m.warmingClusters())
	}

	// A version with a service name nothing is kept for warms while the old one serves.
	web2 := srv.Cluster("web")
	cds("2b", edsClusterJSON("web", "web-svc2", "0s"))
	if srv.Cluster("web") != web2 || m.warmingClusters() != 1 {
		t.Fatalf("web v3 did not warm behind v2 (warming %d)", m.warmingClusters())
	}
	if err := eds("e3b", claJSON("web-svc2", 9111)); err != nil {
		t.Fatal(err)
	}
	if web3 := srv.Cluster("web"); web3 == web2 || !slices.Equal(ports(web3), []int{9111}) || m.warmingClusters() != 0 {
		t.Fatalf("web v3 hosts %v warming %d", ports(web3), m.warmingClusters())
	}
	if m.eds.cache["web-svc"] != nil {
		t.Fatal("web-svc's kept assignment outlived the last cluster that took it")
	}
	cds("2c", edsClusterJSON("web", "web-svc", "0s")) // back to web-svc: warms again
	if err := eds("e3c", claJSON("web-svc", 9101)); err != nil {
		t.Fatal(err)
	}

	// Removed: its kept assignment goes; re-added, it warms again.
	cds("3")
	if srv.Cluster("web") != nil || m.eds.cache["web-svc"] != nil || m.eds.stats["web"] != nil {
		t.Fatal("web, or its kept assignment or stats, still there after its removal")
	}
	if got := m.endpointNames(); !slices.Equal(got, []string{"svc"}) {
		t.Fatalf("names %v", got)
	}
	cds("4", edsClusterJSON("web", "web-svc", "0s"))
	if srv.Cluster("web") != nil || m.warmingClusters() != 1 {
		t.Fatal("re-added web did not warm")
	}
	// Removed while warming.
	cds("5")
	if m.warmingClusters() != 0 || srv.Cluster("web") != nil {
		t.Fatal("a removed warming cluster stayed")
	}

	// An empty assignment is a success that empties the cluster (update_empty).
	if err := eds("e4", `{"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": "svc"}`); err != nil {
		t.Fatal(err)
	}
	if got := ports(srv.Cluster("static_eds")); len(got) != 0 || m.eds.stats["static_eds"].empty.Value() != 1 {
		t.Fatalf("static_eds hosts %v after an empty assignment", got)
	}

	// initial_fetch_timeout: published without hosts.
	cds("6", edsClusterJSON("late", "late-svc", "0.2s"))
	waitFor(t, "late published without endpoints", func() bool { return srv.Cluster("late") != nil })
	if m.warmingClusters() != 0 || len(srv.Cluster("late").Hosts()) != 0 {
		t.Fatalf("late: warming %d hosts %d", m.warmingClusters(), len(srv.Cluster("late").Hosts()))
	}
	if err := eds("e5", claJSON("late-svc", 9201)); err != nil {
		t.Fatal(err)
	}
	if got := ports(srv.Cluster("late")); !slices.Equal(got, []int{9201}) {
		t.Fatalf("late hosts %v", got)
	}
}
