package config

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// edsBootstrap is a bootstrap with ads_config, its xDS cluster, and the given clusters
// (YAML list items, indented for static_resources.clusters).
func edsBootstrap(clusters string) string {
	return `node: {id: n1, cluster: c1}
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
` + clusters
}

func TestEDSStaticCluster(t *testing.T) {
	cfg, err := ParseWith([]byte(edsBootstrap(`  - name: web
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 3s}, service_name: web-svc}
  - name: api
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}}}
  - name: own
    type: EDS
    eds_cluster_config: {eds_config: {api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: eds_server}}]}}}
  - name: eds_server
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: eds_server, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}
`)), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*EDSConfig{}
	for _, r := range cfg.StaticClusters {
		got[r.Name] = r.EDS
		if r.EDS != nil && len(r.Cluster.Hosts()) != 0 {
			t.Errorf("%s: an EDS cluster starts with no hosts, has %d", r.Name, len(r.Cluster.Hosts()))
		}
	}
	if got["xds_cluster"] != nil {
		t.Errorf("xds_cluster is STATIC, got EDS %+v", got["xds_cluster"])
	}
	web, api := got["web"], got["api"]
	if web == nil || web.ServiceName != "web-svc" || web.Source == nil || web.Source.Server != cfg.ADS || web.Source.InitialFetchTimeout.Seconds() != 3 {
		t.Errorf("web: %+v", web)
	}
	// No service_name: the cluster's name (Envoy), and the default initial_fetch_timeout.
	if api == nil || api.ServiceName != "api" || api.Source == nil || api.Source.InitialFetchTimeout != defaultInitialFetchTimeout {
		t.Errorf("api: %+v", api)
	}
	// An api_config_source of its own: a server for EDS alone (the cluster it names may
	// speak HTTP/2).
	if own := got["own"]; own == nil || own.Source == nil || own.Source.Server.Aggregated || own.Source.Server.Cluster != "eds_server" {
		t.Errorf("own: %+v", own)
	}
}

func TestEDSClusterErrors(t *testing.T) {
	cases := []struct{ name, clusters, want string }{
		{"path", "  - name: e\n    type: EDS\n    eds_cluster_config: {eds_config: {path: /tmp/eds.yaml}}\n",
			"static_resources.clusters[1].eds_cluster_config.eds_config: Portico reads EDS over xDS only: use `ads: {}`"},
		{"path_config_source", "  - name: e\n    type: EDS\n    eds_cluster_config: {eds_config: {path_config_source: {path: /tmp/eds.yaml}}}\n",
			"static_resources.clusters[1].eds_cluster_config.eds_config: Portico reads EDS over xDS only"},
		{"api_config_source without HTTP/2", "  - name: plain\n    load_assignment: {cluster_name: plain}\n  - name: e\n    type: EDS\n    eds_cluster_config: {eds_config: {api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: nosuch}}]}}}\n",
			"static_resources.clusters[2].eds_cluster_config.eds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: gRPC service cluster \"nosuch\" must be a static cluster"},
		{"no eds_config", "  - name: e\n    type: EDS\n",
			"static_resources.clusters[1].eds_cluster_config.eds_config: required: an EDS cluster reads its endpoints from a config source"},
		{"load_assignment", "  - name: e\n    type: EDS\n    eds_cluster_config: {eds_config: {ads: {}}}\n    load_assignment: {cluster_name: e, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}\n",
			"static_resources.clusters[1].load_assignment: an EDS cluster takes its endpoints from EDS: remove load_assignment"},
		{"V2", "  - name: e\n    type: EDS\n    eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V2}}\n",
			"static_resources.clusters[1].eds_cluster_config.eds_config.resource_api_version: V2 is not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseWith([]byte(edsBootstrap(c.clusters)), 1, Options{CheckOnly: true})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v\nwant %q", err, c.want)
			}
		})
	}
	// ads without ads_config.
	_, err := ParseWith([]byte(`node: {id: n1, cluster: c1}
static_resources:
  clusters:
  - name: e
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}}}
`), 1, Options{CheckOnly: true})
	if want := "static_resources.clusters[0].eds_cluster_config.eds_config.ads: ADS requires dynamic_resources.ads_config"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v\nwant %q", err, want)
	}
}

// eds_cluster_config on a cluster of another type is ignored, with a warning.
func TestEDSConfigOnStaticCluster(t *testing.T) {
	cfg, err := ParseWith([]byte(edsBootstrap(`  - name: s
    type: STATIC
    eds_cluster_config: {service_name: x}
`)), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "static_resources.clusters[1].eds_cluster_config: ignored: the cluster is STATIC, not EDS"
	if !strings.Contains(strings.Join(cfg.Warnings, "\n"), want) {
		t.Errorf("warnings %q, want %q", cfg.Warnings, want)
	}
	for _, r := range cfg.StaticClusters {
		if r.EDS != nil {
			t.Errorf("%s: EDS %+v", r.Name, r.EDS)
		}
	}
}

// A CDS cluster of type EDS takes the bootstrap's ads_config (Options.Static).
func TestEDSClusterFromCDS(t *testing.T) {
	cfg, err := ParseWith([]byte(edsBootstrap("")), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	cl := `{"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "c1", "type": "EDS",
  "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}}`
	f, err := resourceDoc([]byte(`{"version_info": "1", "resources": [`+cl+`]}`), "cds")
	if err != nil {
		t.Fatal(err)
	}
	u := clustersOf(f, 1, Options{CheckOnly: true, Static: cfg}, nil, nil, nil)
	if len(u.Errors) > 0 || len(u.Clusters) != 1 {
		t.Fatalf("clusters %v errors %v", u.Clusters, u.Errors)
	}
	if e := u.Clusters[0].EDS; e == nil || e.ServiceName != "c1" || e.Source == nil || e.Source.Server != cfg.ADS {
		t.Fatalf("EDS %+v", e)
	}
	// One naming the static xds_cluster as a server of its own.
	own := `{"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "c2", "type": "EDS",
  "eds_cluster_config": {"eds_config": {"api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]}}}}`
	f, err = resourceDoc([]byte(`{"version_info": "1", "resources": [`+own+`]}`), "cds")
	if err != nil {
		t.Fatal(err)
	}
	u = clustersOf(f, 1, Options{CheckOnly: true, Static: cfg}, nil, nil, nil)
	if len(u.Errors) > 0 || len(u.Clusters) != 1 {
		t.Fatalf("clusters %v errors %v", u.Clusters, u.Errors)
	}
	if e := u.Clusters[0].EDS; e == nil || e.Source == nil || e.Source.Server.Aggregated || e.Source.Server.Cluster != "xds_cluster" {
		t.Fatalf("EDS %+v", e)
	}
}

func cla(name string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

func lbEndpoint(ip string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}}}
}

func TestParseEndpointResources(t *testing.T) {
	good := cla("a", lbEndpoint("127.0.0.1", 8001), lbEndpoint("127.0.0.2", 8002), lbEndpoint("127.0.0.1", 8001))
	good.Endpoints[0].Locality = &corev3.Locality{Zone: "z1"}
	good.Endpoints[0].LbEndpoints[1].LoadBalancingWeight = wrapperspb.UInt32(5)
	good.Policy = &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(140)}
	drained := lbEndpoint("127.0.0.3", 8003)
	drained.HealthStatus = corev3.HealthStatus_DRAINING
	good.Endpoints[0].LbEndpoints = append(good.Endpoints[0].LbEndpoints, drained)
	badAddr := cla("b", lbEndpoint("127.0.0.1", 1), lbEndpoint("not-an-ip", 80))
	prio := cla("c", lbEndpoint("127.0.0.1", 1))
	prio.Endpoints = append(prio.Endpoints, &endpointv3.LocalityLbEndpoints{Priority: 1, LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("127.0.0.1", 2)}})
	stale := cla("d")
	stale.Policy = &endpointv3.ClusterLoadAssignment_Policy{EndpointStaleAfter: durationpb.New(1)}
	empty := cla("e")
	empty.Endpoints = nil
	var rs []*anypb.Any
	for _, m := range []*endpointv3.ClusterLoadAssignment{good, badAddr, prio, stale, empty, cla("a")} {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, a)
	}
	u, err := ParseEndpointResources("eds", "v7", rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Endpoints) != 2 || u.Endpoints[0].Name != "a" || u.Endpoints[1].Name != "e" {
		t.Fatalf("endpoints %+v", u.Endpoints)
	}
	a := u.Endpoints[0]
	// The repeated address keeps its first endpoint; the DRAINING one is left out.
	if a.Version != "v7" || len(a.Endpoints) != 2 || a.Endpoints[0].Address.String() != "127.0.0.1:8001" ||
		a.Endpoints[1].Address.String() != "127.0.0.2:8002" || a.Endpoints[1].Weight != 5 {
		t.Errorf("a: %+v", a)
	}
	if len(u.Endpoints[1].Endpoints) != 0 {
		t.Errorf("e: %+v", u.Endpoints[1])
	}
	if len(u.Warnings) != 1 || !strings.Contains(u.Warnings[0], `resources[0] (cluster_load_assignment "a"): endpoints[0].lb_endpoints[3].health_status: DRAINING: the endpoint is left out`) {
		t.Errorf("warnings %q", u.Warnings)
	}
	wants := []string{
		`resources[1] (cluster_load_assignment "b"): endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address: "not-an-ip" is not an IP address`,
		`resources[2] (cluster_load_assignment "c"): endpoints[1].priority: not supported by Portico`,
		`resources[3] (cluster_load_assignment "d"): policy.endpoint_stale_after: not supported`,
		`resources[5] (cluster_load_assignment "a"): cluster_name: duplicate cluster_load_assignment "a" (also resources[0])`,
	}
	if len(u.Errors) != len(wants) {
		t.Fatalf("errors: %v", u.Errors)
	}
	for i, w := range wants {
		if got := u.Errors[i].Error(); !strings.Contains(got, w) {
			t.Errorf("error %d = %q\nwant %q", i, got, w)
		}
	}
	if err := EndpointsError(u.Errors); err == nil || strings.Count(err.Error(), "\n") != 3 {
		t.Errorf("EndpointsError = %v", err)
	}
}
