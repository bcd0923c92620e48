package config

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
)

// rdsBootstrap is a bootstrap with ads_config (its HTTP/2 cluster), a static cluster
// "backend" and a static listener whose HCM has the given route specifier (YAML at the
// HCM's indentation).
func rdsBootstrap(ads bool, spec string) string {
	s := "node: {id: n1, cluster: c1}\n"
	if ads {
		s += `dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
`
	}
	return s + `static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: xds_cluster, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}
  - name: backend
    type: STATIC
    load_assignment: {cluster_name: backend, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}
  listeners:
  - name: web
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
` + spec
}

func TestRDSAccepted(t *testing.T) {
	cfg, err := ParseWith([]byte(rdsBootstrap(true, `          rds:
            config_source: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 2s}
            route_config_name: r1
`)), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	p := cfg.RouteProviders.Lookup("r1")
	if p == nil {
		t.Fatalf("no provider for r1; have %v", cfg.RouteProviders.Names())
	}
	if p.InitialFetchTimeout.Seconds() != 2 || p.Table() != nil {
		t.Errorf("provider: timeout %v table %v", p.InitialFetchTimeout, p.Table())
	}
	if got := cfg.StaticListeners[0].RouteConfigNames(); len(got) != 1 || got[0] != "r1" {
		t.Errorf("RouteConfigNames = %v", got)
	}
	var hcm *httpconnmgr.Factory
	for _, src := range cfg.StatsSources {
		if f, ok := src.(*httpconnmgr.Factory); ok {
			hcm = f
		}
	}
	if hcm == nil || hcm.Config().RDS != p || hcm.Config().Routes != nil {
		t.Fatalf("the HCM does not read the provider: %+v", hcm)
	}
}

func TestRDSRefused(t *testing.T) {
	cases := []struct{ name, ads, spec, want string }{
		{"file", "ads", `          rds: {config_source: {path_config_source: {path: /tmp/r.yaml}}, route_config_name: r1}
`, "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.rds.config_source: RDS from a file"},
		{"api_config_source", "ads", `          rds:
            route_config_name: r1
            config_source:
              api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}
`, "typed_config.rds.config_source.api_config_source: RDS from a management server of its own is not supported"},
		{"no ads_config", "", `          rds: {config_source: {ads: {}}, route_config_name: r1}
`, "typed_config.rds.config_source.ads: ADS requires dynamic_resources.ads_config"},
		{"no name", "ads", `          rds: {config_source: {ads: {}}}
`, "typed_config.rds.route_config_name: required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseWith([]byte(rdsBootstrap(c.ads != "", c.spec)), 1, Options{CheckOnly: true})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v\nwant %q", err, c.want)
			}
		})
	}
}

func routeAny(t *testing.T, rc *routev3.RouteConfiguration) *anypb.Any {
	t.Helper()
	a, err := anypb.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func simpleRoutes(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

// TestParseRouteResources: each RouteConfiguration alone, errors prefixed by the
// resource, validate_clusters false by default (an unknown cluster is fine) and checked
// against the registry when true, unrequested names ignored, Unchanged against prev.
func TestParseRouteResources(t *testing.T) {
	reg := engine.NewClusterRegistry()
	c, err := engine.NewCluster(engine.ClusterConfig{Name: "known", ConnectTimeout: engine.DefaultConnectTimeout, PerConnectionBufferLimit: engine.DefaultBufferLimit}, 1)
	if err != nil {
		t.Fatal(err)
	}
	reg.Put(c)
	good := simpleRoutes("good", "nowhere") // unknown, but validate_clusters defaults to false
	bad := simpleRoutes("bad", "known")
	bad.VirtualHosts[0].Routes[0].Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{}}
	strict := simpleRoutes("strict", "nope")
	strict.ValidateClusters = wrapperspb.Bool(true)
	strictOK := simpleRoutes("strict_ok", "known")
	strictOK.ValidateClusters = wrapperspb.Bool(true)
	other := simpleRoutes("other", "known")
	o := Options{Clusters: reg}
	wanted := map[string]bool{"good": true, "bad": true, "strict": true, "strict_ok": true}
	u, err := ParseRouteResources("rds", "v1", []*anypb.Any{routeAny(t, good), routeAny(t, bad), routeAny(t, strict), routeAny(t, strictOK), routeAny(t, other)}, o, wanted, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Routes) != 2 || u.Routes[0].Name != "good" || u.Routes[1].Name != "strict_ok" {
		t.Fatalf("routes = %+v", u.Routes)
	}
	if u.Routes[0].Table == nil || u.Routes[0].Change != Added || u.Routes[0].Version != "v1" {
		t.Errorf("good: %+v", u.Routes[0])
	}
	if len(u.Ignored) != 1 || u.Ignored[0] != "other" {
		t.Errorf("ignored = %v", u.Ignored)
	}
	if len(u.Errors) != 2 {
		t.Fatalf("errors = %v", u.Errors)
	}
	e0, e1 := u.Errors[0].Error(), u.Errors[1].Error()
	if !strings.HasPrefix(e0, `resources[1] (route_configuration "bad"): virtual_hosts[0].routes[0].match`) {
		t.Errorf("bad: %s", e0)
	}
	if want := `resources[2] (route_configuration "strict"): virtual_hosts[0].routes[0].route.cluster: route: unknown cluster 'nope'`; !strings.HasPrefix(e1, want) {
		t.Errorf("strict: %s\nwant %s", e1, want)
	}
	// The same resource again is Unchanged and keeps its table.
	prev := map[string]*RouteResource{"good": u.Routes[0]}
	u2, err := ParseRouteResources("rds", "v2", []*anypb.Any{routeAny(t, good)}, o, wanted, prev)
	if err != nil || len(u2.Routes) != 1 {
		t.Fatalf("%v %+v", err, u2)
	}
	if r := u2.Routes[0]; r.Change != Unchanged || r.Table != u.Routes[0].Table || r.Version != "v2" {
		t.Errorf("unchanged: %+v", r)
	}
	changed := simpleRoutes("good", "known")
	u3, _ := ParseRouteResources("rds", "v3", []*anypb.Any{routeAny(t, changed)}, o, wanted, prev)
	if len(u3.Routes) != 1 || u3.Routes[0].Change != Full {
		t.Errorf("changed: %+v", u3)
	}
	// A resource of another type is that resource's error.
	l, _ := anypb.New(&listenerv3.Listener{Name: "x"})
	u4, _ := ParseRouteResources("rds", "v4", []*anypb.Any{l}, o, nil, nil)
	if len(u4.Errors) != 1 || !strings.Contains(u4.Errors[0].Error(), "want \"type.googleapis.com/envoy.config.route.v3.RouteConfiguration\"") {
		t.Errorf("listener in RDS: %v", u4.Errors)
	}
}

// An LDS listener's HCM may use rds with ads when the bootstrap has ads_config.
func TestListenerResourceRDS(t *testing.T) {
	cfg, err := ParseWith([]byte(rdsBootstrap(true, `          route_config: {name: local}
`)), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "dyn",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: "dyn_routes",
			ConfigSource: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				InitialFetchTimeout:   durationpb.New(0)},
		}},
	}
	tc, _ := anypb.New(hcm)
	l := &listenerv3.Listener{
		Name: "dyn",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tc}}}}},
	}
	la, _ := anypb.New(l)
	u, err := ParseListenerResources("lds", "1", []*anypb.Any{la}, 1, Options{Static: cfg, CheckOnly: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Errors) > 0 || len(u.Listeners) != 1 {
		t.Fatalf("errors %v", u.Errors)
	}
	if got := u.Listeners[0].RouteConfigNames(); len(got) != 1 || got[0] != "dyn_routes" {
		t.Errorf("names %v", got)
	}
	if p := cfg.RouteProviders.Lookup("dyn_routes"); p == nil || p.InitialFetchTimeout != 0 {
		t.Errorf("provider %+v", p)
	}
}

// The RoutesConfigDump: inline route configurations of the listeners as
// static_route_configs, RDS ones with their version, failure, or REQUESTED status.
func TestRoutesConfigDump(t *testing.T) {
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "s", RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: simpleRoutes("inline", "c")}}
	tc, _ := anypb.New(hcm)
	l := &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tc}}}}}}
	bad := simpleRoutes("r2", "c")
	st := &DumpState{HasRDS: true, RouteListeners: []DumpEntry{{Name: "l", Resource: l}},
		DynamicRoutes: []RouteDumpEntry{
			{Name: "r1", Version: "7", Resource: simpleRoutes("r1", "c")},
			{Name: "r2", Failure: &DumpFailure{Name: "r2", Details: "resources[0] (route_configuration \"r2\"): bad", Failed: bad}},
			{Name: "r3"},
		}}
	out, err := RenderConfigDump(nil, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"`, `"static_route_configs"`, `"name": "inline"`,
		`"version_info": "7"`, `"name": "r1"`, `"error_state"`, `route_configuration \"r2\"): bad`, `"client_status": "REQUESTED"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dump lacks %s:\n%s", want, out)
		}
	}
	// Without RDS the dump has no RoutesConfigDump (as before).
	out, _ = RenderConfigDump(nil, &DumpState{}, nil)
	if strings.Contains(string(out), "RoutesConfigDump") {
		t.Errorf("RoutesConfigDump without RDS:\n%s", out)
	}
}
