package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dynBootstrap is a bootstrap with a static cluster and listener, node, and the given
// dynamic_resources.
func dynBootstrap(node, dynamic string) string {
	return node + `
static_resources:
  clusters:
  - name: static_c
    type: STATIC
    load_assignment:
      cluster_name: static_c
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}
  listeners:
  - name: static_l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: s
          cluster: from_cds
dynamic_resources:
` + dynamic
}

const testNode = "node: {id: n1, cluster: c1}\n"

func TestDynamicResourcesBootstrap(t *testing.T) {
	dir := t.TempDir()
	lds := writeFile(t, dir, "lds.yaml", discovery("l1",
		tcpListener("dyn", 0, "from_cds"),
		echoListener("static_l", 0, echoChain("c", 0))))
	cds := writeFile(t, dir, "cds.yml", discovery("c1", staticCluster("from_cds", 2), staticCluster("static_c", 3)))
	watched := t.TempDir()
	for _, form := range []string{
		// Envoy's quick-start form.
		fmt.Sprintf("  lds_config: {resource_api_version: V3, path: %s}\n  cds_config: {path: %s}\n", lds, cds),
		fmt.Sprintf("  lds_config:\n    resource_api_version: AUTO\n    path_config_source: {path: %s, watched_directory: {path: %s}}\n  cds_config:\n    path_config_source: {path: %s}\n", lds, watched, cds),
	} {
		cfg, err := ParseWith([]byte(dynBootstrap(testNode, form)), 2, Options{CheckOnly: true})
		if err != nil {
			t.Fatalf("%s: %v", form, err)
		}
		defer cfg.Close()
		if cfg.Node != (Node{ID: "n1", Cluster: "c1"}) || cfg.LDS == nil || cfg.CDS == nil || cfg.LDS.Path != lds || cfg.CDS.Path != cds {
			t.Errorf("node %+v, LDS %+v, CDS %+v", cfg.Node, cfg.LDS, cfg.CDS)
		}
		if strings.Contains(form, "watched") && (cfg.LDS.WatchedDirectory != watched || cfg.LDS.Field != "dynamic_resources.lds_config") {
			t.Errorf("LDS %+v", cfg.LDS)
		}
		// The static listener refers to a CDS cluster; the CDS file's static_c clashes.
		if cfg.InitialCDS == nil || len(cfg.InitialCDS.Clusters) != 1 || len(cfg.InitialCDS.Errors) != 1 ||
			!strings.Contains(cfg.InitialCDS.Errors[0].Error(), `resources[1] (cluster "static_c"): name: cluster "static_c" is already defined`) {
			t.Fatalf("InitialCDS %+v", cfg.InitialCDS)
		}
		if cfg.InitialLDS == nil || len(cfg.InitialLDS.Listeners) != 1 || cfg.InitialLDS.Listeners[0].Name != "dyn" || len(cfg.InitialLDS.Errors) != 1 ||
			!strings.Contains(cfg.InitialLDS.Errors[0].Error(), `resources[1] (listener "static_l"): name: listener "static_l" is already defined`) {
			t.Fatalf("InitialLDS %+v", cfg.InitialLDS)
		}
		if cfg.InitialLDS.Version != "l1" || cfg.InitialCDS.Version != "c1" {
			t.Errorf("versions %q %q", cfg.InitialLDS.Version, cfg.InitialCDS.Version)
		}
		if len(cfg.StaticListeners) != 1 || len(cfg.StaticClusters) != 1 || cfg.StaticListeners[0].Message() == nil ||
			cfg.StaticClusters[0].Cluster != cfg.Clusters[0] || len(cfg.StaticListeners[0].StatsSources) == 0 {
			t.Errorf("static resources %+v %+v", cfg.StaticListeners, cfg.StaticClusters)
		}
	}
}

func TestDynamicResourcesBootstrapErrors(t *testing.T) {
	dir := t.TempDir()
	lds := writeFile(t, dir, "lds.yaml", discovery("1"))
	missing := filepath.Join(dir, "nosuch.yaml")
	cases := []struct{ name, node, dynamic, want string }{
		{"no node", "", fmt.Sprintf("  lds_config: {path: %s}\n", lds), "node.id: required when dynamic_resources configures a subscription"},
		{"no node cluster", "node: {id: x}\n", fmt.Sprintf("  lds_config: {path: %s}\n", lds), "node.cluster: required"},
		{"missing file", testNode, fmt.Sprintf("  lds_config: {path_config_source: {path: %s}}\n", missing), "dynamic_resources.lds_config.path_config_source.path: file must exist: stat " + missing},
		{"missing file, path form", testNode, fmt.Sprintf("  cds_config: {path: %s}\n", missing), "dynamic_resources.cds_config.path: file must exist"},
		{"V2", testNode, fmt.Sprintf("  lds_config: {resource_api_version: V2, path: %s}\n", lds), "dynamic_resources.lds_config.resource_api_version: V2 is not supported"},
		{"ads AUTO", testNode, "  ads_config: {api_type: GRPC}\n  lds_config: {ads: {}}\n", "dynamic_resources.ads_config.transport_api_version: AUTO: V2 (and AUTO) xDS transport protocol versions are deprecated"},
		{"ads no service", testNode, "  ads_config: {api_type: GRPC, transport_api_version: V3}\n  lds_config: {ads: {}}\n", "dynamic_resources.ads_config.grpc_services: exactly one gRPC service is required"},
		{"api_config_source AUTO", testNode, "  cds_config: {api_config_source: {api_type: GRPC}}\n", "dynamic_resources.cds_config.api_config_source.transport_api_version: AUTO"},
		{"watched directory missing", testNode, fmt.Sprintf("  lds_config: {path_config_source: {path: %s, watched_directory: {path: %s}}}\n", lds, missing), "watched_directory.path: must be an existing directory"},
		{"empty", testNode, "  lds_config: {}\n", "dynamic_resources.lds_config: one of path, path_config_source, api_config_source, ads, self is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseWith([]byte(dynBootstrap(c.node, c.dynamic)), 1, Options{CheckOnly: true})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// A bootstrap whose LDS file cannot be read as a whole still loads (Envoy starts and
// counts an update_failure); the caller sees LDSError.
func TestDynamicResourcesBadFile(t *testing.T) {
	dir := t.TempDir()
	lds := writeFile(t, dir, "lds.yaml", "resources: {}\n")
	cds := writeFile(t, dir, "cds.yaml", discovery("1", staticCluster("from_cds", 2)))
	cfg, err := ParseWith([]byte(dynBootstrap(testNode, fmt.Sprintf("  lds_config: {path: %s}\n  cds_config: {path: %s}\n", lds, cds))), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if cfg.InitialLDS != nil || cfg.LDSError == nil || !strings.Contains(cfg.LDSError.Error(), "resources: expected a list") {
		t.Errorf("InitialLDS %v, LDSError %v", cfg.InitialLDS, cfg.LDSError)
	}
}

// xdsBootstrap is a bootstrap whose listeners and clusters come over ADS from the static
// cluster xds (cluster is its YAML), with ads_config's fields ads.
func xdsBootstrap(node, ads, cluster, subs string) string {
	return node + `
dynamic_resources:
  ads_config:
` + ads + subs + `
static_resources:
  clusters:
` + cluster
}

const (
	goodADS = `    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
`
	adsSubs = `  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, initial_fetch_timeout: 2s}
`
	h2Cluster = `  - name: xds
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]}
`
	// Envoy Gateway's form: the older cluster-level http2_protocol_options.
	oldH2Cluster = `  - name: xds
    type: STRICT_DNS
    http2_protocol_options: {}
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: localhost, port_value: 18000}}}}]}]}
`
	plainCluster = `  - name: xds
    type: STATIC
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]}
`
)

func TestXDSBootstrap(t *testing.T) {
	node := "node: {id: n1, cluster: c1, metadata: {ISTIO_VERSION: \"1.24\"}}\n"
	for _, cl := range []string{h2Cluster, oldH2Cluster} {
		ads := goodADS + "    set_node_on_first_message_only: true\n    rate_limit_settings: {max_tokens: 5, fill_rate: 2.5}\n"
		cfg, err := ParseWith([]byte(xdsBootstrap(node, ads, cl, adsSubs)), 1, Options{CheckOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		a := cfg.ADS
		if a == nil || a.Cluster != "xds" || a.Delta || !a.Aggregated || a.NodeOnEveryRequest ||
			a.RateLimit == nil || a.RateLimit.MaxTokens != 5 || a.RateLimit.FillRate != 2.5 {
			t.Fatalf("ADS %+v", a)
		}
		if cfg.LDSXDS == nil || cfg.LDSXDS.Server != a || cfg.LDSXDS.InitialFetchTimeout != 15*time.Second ||
			cfg.CDSXDS == nil || cfg.CDSXDS.InitialFetchTimeout != 2*time.Second || cfg.LDS != nil || cfg.CDS != nil {
			t.Fatalf("LDS %+v CDS %+v", cfg.LDSXDS, cfg.CDSXDS)
		}
		if cfg.NodeProto.GetMetadata().GetFields()["ISTIO_VERSION"].GetStringValue() != "1.24" {
			t.Fatalf("node %v", cfg.NodeProto)
		}
		cfg.Close()
	}
	// Delta, and an api_config_source of its own.
	sub := "  lds_config:\n    api_config_source: {api_type: DELTA_GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}\n"
	cfg, err := ParseWith([]byte(xdsBootstrap(node, goodADS, h2Cluster, sub)), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.LDSXDS; s == nil || s.Server == cfg.ADS || !s.Server.Delta || s.Server.Aggregated || !s.Server.NodeOnEveryRequest {
		t.Fatalf("LDS %+v", cfg.LDSXDS)
	}
	cfg.Close()
}

func TestXDSBootstrapErrors(t *testing.T) {
	cases := []struct{ name, node, ads, cluster, subs, want string }{
		{"REST", testNode, "    api_type: REST\n    transport_api_version: V3\n    cluster_names: [xds]\n", h2Cluster, adsSubs, "dynamic_resources.ads_config.api_type: REST is not supported by Portico: use GRPC or DELTA_GRPC"},
		{"V2", testNode, "    api_type: GRPC\n    transport_api_version: V2\n    grpc_services: [{envoy_grpc: {cluster_name: xds}}]\n", h2Cluster, adsSubs, "transport_api_version: V2: V2 (and AUTO)"},
		{"two services", testNode, goodADS + "    grpc_services: [{envoy_grpc: {cluster_name: xds}}, {envoy_grpc: {cluster_name: xds}}]\n", h2Cluster, adsSubs, "only one gRPC service is supported"},
		{"google_grpc", testNode, "    api_type: GRPC\n    transport_api_version: V3\n    grpc_services: [{google_grpc: {target_uri: x, stat_prefix: x}}]\n", h2Cluster, adsSubs, "grpc_services[0].google_grpc: google_grpc is not supported by Portico"},
		{"cluster_names", testNode, goodADS + "    cluster_names: [xds]\n", h2Cluster, adsSubs, "dynamic_resources.ads_config.cluster_names: must not be set with api_type GRPC"},
		{"unknown cluster", testNode, "    api_type: GRPC\n    transport_api_version: V3\n    grpc_services: [{envoy_grpc: {cluster_name: nope}}]\n", h2Cluster, adsSubs, `envoy_grpc.cluster_name: gRPC service cluster "nope" must be a static cluster`},
		{"HTTP/1 cluster", testNode, goodADS, plainCluster, adsSubs, `static_resources.clusters[0]: cluster "xds" is the gRPC service of dynamic_resources.ads_config.grpc_services[0].envoy_grpc and must speak HTTP/2`},
		{"ads without ads_config", testNode, "", h2Cluster, "", "dynamic_resources.lds_config.ads: ADS requires dynamic_resources.ads_config"},
		{"no node", "", goodADS, h2Cluster, adsSubs, "node.id: required"},
		{"self", testNode, goodADS, h2Cluster, "  lds_config: {self: {}}\n", "dynamic_resources.lds_config.self: not supported by Portico"},
		{"initial_metadata", testNode, goodADS + "    grpc_services: [{envoy_grpc: {cluster_name: xds}, initial_metadata: [{key: a, value: b}]}]\n", h2Cluster, adsSubs, "initial_metadata: not supported by Portico"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := xdsBootstrap(c.node, c.ads, c.cluster, c.subs)
			if c.name == "ads without ads_config" {
				doc = strings.Replace(doc, "  ads_config:\n", "  lds_config: {ads: {}}\n", 1)
			}
			if c.name == "two services" || c.name == "initial_metadata" {
				doc = strings.Replace(doc, "    grpc_services: [{envoy_grpc: {cluster_name: xds}}]\n", "", 1)
			}
			_, err := ParseWith([]byte(doc), 1, Options{CheckOnly: true})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q\n%s", err, c.want, doc)
			}
		})
	}
	// Only the management server's cluster may speak HTTP/2.
	doc := xdsBootstrap(testNode, goodADS, h2Cluster+strings.ReplaceAll(oldH2Cluster, "name: xds", "name: other"), adsSubs)
	_, err := ParseWith([]byte(doc), 1, Options{CheckOnly: true})
	if err == nil || !strings.Contains(err.Error(), "static_resources.clusters[1].http2_protocol_options: HTTP/2 upstreams are not supported by Portico yet") {
		t.Errorf("err = %v", err)
	}
}
