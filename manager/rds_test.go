package manager

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
)

func anyOf(t *testing.T, j string) *anypb.Any {
	t.Helper()
	a := &anypb.Any{}
	if err := protojson.Unmarshal([]byte(j), a); err != nil {
		t.Fatal(err)
	}
	return a
}

func rdsListenerJSON(name string, port int, route string) string {
	return fmt.Sprintf(`{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": %q,
		"address": {"socket_address": {"address": "127.0.0.1", "port_value": %d}},
		"filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
			"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
			"stat_prefix": %q,
			"rds": {"route_config_name": %q, "config_source": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}}}}]}]}`,
		name, port, name, route)
}

func routeJSON(name, cluster, prefix string) string {
	return fmt.Sprintf(`{"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": %q,
		"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": %q}, "route": {"cluster": %q}}]}]}`,
		name, prefix, cluster)
}

// TestRDSWarmApplyNack: an LDS listener naming a route configuration that has not come
// warms (not in the server); the route configuration's arrival starts it and fills its
// provider; a bad version is NACKed in the resource's words and keeps the table; once no
// listener names it the provider goes. Run under -race.
func TestRDSWarmApplyNack(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1, DrainTime: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`node: {id: node1, cluster: cluster1}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
static_resources:
  clusters:
  - name: xds
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}
`), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := New(srv, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), 100*time.Millisecond)
	srv.Start()
	m.Start()
	t.Cleanup(func() { m.Stop(); srv.Close() })
	port := freePort(t)
	o := config.Options{Clusters: srv.ClusterRegistry(), Static: cfg}
	u, err := config.ParseListenerResources("lds", "1", []*anypb.Any{anyOf(t, rdsListenerJSON("web", port, "r"))}, 1, o, nil)
	if err != nil || len(u.Errors) > 0 {
		t.Fatal(err, u.Errors)
	}
	if err := m.ApplyListeners(u); err != nil {
		t.Fatal(err)
	}
	if names := m.routeNames(); len(names) != 1 || names[0] != "r" {
		t.Fatalf("routeNames = %v", names)
	}
	if len(srv.Listeners()) != 0 || m.warmingCount() != 1 {
		t.Fatalf("before its routes: %d listeners, %d warming", len(srv.Listeners()), m.warmingCount())
	}
	if st := m.dumpState(); len(st.WarmingListeners) != 1 || len(st.ActiveListeners) != 0 || !st.HasRDS {
		t.Fatalf("dump while warming: %+v", st)
	}
	p := cfg.RouteProviders.Lookup("r")
	if p == nil || p.Table() != nil {
		t.Fatalf("provider %+v", p)
	}

	// The route configuration arrives (with one nobody asked for, ignored): the
	// listener starts.
	if err := m.applyRoutes("1", []*anypb.Any{anyOf(t, routeJSON("r", "a", "/")), anyOf(t, routeJSON("other", "a", "/"))}); err != nil {
		t.Fatal(err)
	}
	if len(srv.Listeners()) != 1 || m.warmingCount() != 0 {
		t.Fatalf("after its routes: %d listeners, %d warming", len(srv.Listeners()), m.warmingCount())
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("the warmed listener does not accept: %v", err)
	}
	c.Close()
	tbl := p.Table()
	if tbl == nil || p.Stats.UpdateSuccess.Value() != 1 || p.Stats.ConfigReload.Value() != 1 {
		t.Fatalf("table %v, success %d, reload %d", tbl, p.Stats.UpdateSuccess.Value(), p.Stats.ConfigReload.Value())
	}

	// A bad version: NACKed naming it, the table stays.
	bad := strings.Replace(routeJSON("r", "a", "/"), `"prefix": "/"`, `"safe_regex": {"regex": "("}`, 1)
	err = m.applyRoutes("2", []*anypb.Any{anyOf(t, bad)})
	if err == nil || !strings.HasPrefix(err.Error(), `resources[0] (route_configuration "r"): virtual_hosts[0].routes[0].match.safe_regex`) {
		t.Fatalf("NACK: %v", err)
	}
	if p.Table() != tbl || p.Stats.UpdateRejected.Value() != 1 {
		t.Fatalf("after the NACK: table changed %v, rejected %d", p.Table() != tbl, p.Stats.UpdateRejected.Value())
	}
	st := m.dumpState()
	if len(st.DynamicRoutes) != 1 || st.DynamicRoutes[0].Version != "1" || st.DynamicRoutes[0].Failure == nil {
		t.Fatalf("dump routes: %+v", st.DynamicRoutes)
	}
	// The same good version again changes nothing (no reload).
	if err := m.applyRoutes("3", []*anypb.Any{anyOf(t, routeJSON("r", "a", "/"))}); err != nil || p.Table() != tbl || p.Stats.ConfigReload.Value() != 1 {
		t.Fatalf("unchanged: %v, reload %d", err, p.Stats.ConfigReload.Value())
	}

	// A response without it (RDS is not wildcard) removes nothing: the one name asked for
	// counts an empty update.
	if err := m.applyRoutes("4", nil); err != nil || p.Table() != tbl || p.Stats.UpdateEmpty.Value() != 1 {
		t.Fatalf("empty response: %v, table kept %v, update_empty %d", err, p.Table() == tbl, p.Stats.UpdateEmpty.Value())
	}

	// The listener goes: so does the route configuration.
	u, _ = config.ParseListenerResources("lds", "2", nil, 1, o, m.currentListeners())
	if err := m.ApplyListeners(u); err != nil {
		t.Fatal(err)
	}
	if names := m.routeNames(); len(names) != 0 || cfg.RouteProviders.Lookup("r") != nil {
		t.Fatalf("after the removal: names %v, provider %v", names, cfg.RouteProviders.Lookup("r"))
	}
}
