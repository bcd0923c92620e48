package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
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
		{"ads", testNode, "  ads_config: {api_type: GRPC}\n  lds_config: {ads: {}}\n", "dynamic_resources.lds_config.ads: not supported by Portico"},
		{"api_config_source", testNode, "  cds_config: {api_config_source: {api_type: GRPC}}\n", "dynamic_resources.cds_config.api_config_source: not supported by Portico"},
		{"watched directory missing", testNode, fmt.Sprintf("  lds_config: {path_config_source: {path: %s, watched_directory: {path: %s}}}\n", lds, missing), "watched_directory.path: must be an existing directory"},
		{"empty", testNode, "  lds_config: {}\n", "dynamic_resources.lds_config: a path_config_source is required"},
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
