package config

import (
	"strings"
	"testing"
)

// TestListenerNames: a listener without a name gets ADDRESS_PORT, as Istio names them,
// unique against the names written and in the order of the file.
func TestListenerNames(t *testing.T) {
	const y = `
static_resources:
  listeners:
  - address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
  - name: 127.0.0.1_0
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
  - address: { socket_address: { address: "::1", port_value: 8080 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
`
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	var names []string
	for _, l := range cfg.Listeners {
		names = append(names, l.Name)
		if cfg.Chains[l.Name] == nil {
			t.Errorf("no Chains entry for %s", l.Name)
		}
	}
	if got, want := strings.Join(names, " "), "0.0.0.0_10000 127.0.0.1_0_2 127.0.0.1_0 127.0.0.1_0_3 ::1_8080"; got != want {
		t.Errorf("names %q, want %q", got, want)
	}
}

// TestDefaultChainEmptyMatch: `filter_chain_match: {}` on the default chain (as Istio
// writes it) matches nothing more than no match at all: accepted. A match that says
// something stays an error, since Envoy ignores it there.
func TestDefaultChainEmptyMatch(t *testing.T) {
	const y = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains: [{ filter_chain_match: {}, filters: [{ name: envoy.filters.network.echo }] }]
    default_filter_chain:
      filter_chain_match: {}
      filters: [{ name: envoy.filters.network.echo }]
`
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Close()
	_, err = Parse([]byte(strings.Replace(y, "      filter_chain_match: {}", "      filter_chain_match: { destination_port: 80 }", 1)), 1)
	checkErrors(t, err, []want{{"static_resources.listeners[0].default_filter_chain.filter_chain_match", "has no effect on the default filter chain"}})
}

// TestHCMWithoutHTTPFilters: a connection manager that lists no HTTP filter gets the
// router, as in Envoy.
func TestHCMWithoutHTTPFilters(t *testing.T) {
	const y = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h
          route_config:
            virtual_hosts: { name: all, domains: "*", routes: { match: { prefix: / }, route: { cluster: c } } }
  clusters:
  - name: c
    load_assignment: { cluster_name: c, endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } } } }
`
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Close()
}

// TestClusterWithoutEndpoints: a STATIC cluster without load_assignment (Istio's
// BlackHoleCluster) or with none in it is a cluster without hosts. A cluster of a type
// Portico lacks is refused for its type alone, whatever its endpoints; v2's hosts points
// to load_assignment.
func TestClusterWithoutEndpoints(t *testing.T) {
	const y = `
static_resources:
  clusters:
  - name: BlackHoleCluster
    type: STATIC
    connect_timeout: 10s
  - name: empty
    load_assignment: { cluster_name: empty }
`
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if len(cfg.Clusters) != 2 || len(cfg.Clusters[0].Hosts()) != 0 || len(cfg.Clusters[1].Hosts()) != 0 {
		t.Fatalf("clusters %v, want two without hosts", cfg.Clusters)
	}

	const bad = `
static_resources:
  clusters:
  - name: eds
    type: EDS
    eds_cluster_config: { eds_config: { ads: {} } }
  - name: v2
    hosts: [{ socket_address: { address: 127.0.0.1, port_value: 80 } }]
`
	_, err = Parse([]byte(bad), 1)
	checkErrors(t, err, []want{
		{"static_resources.clusters[0].eds_cluster_config.eds_config.ads", "ADS requires dynamic_resources.ads_config"},
		{"static_resources.clusters[1].hosts", "unknown field (v2's hosts; v3 lists a cluster's endpoints in load_assignment"},
	})
}

// TestConfigDump: a config dump given where a bootstrap is expected says so.
func TestConfigDump(t *testing.T) {
	_, err := Parse([]byte("configs:\n- '@type': type.googleapis.com/envoy.admin.v3.BootstrapConfigDump\n"), 1)
	checkErrors(t, err, []want{{"configs", "unknown field (this looks like a config dump"}})
}

// TestTypedStructNamesWrappedType: a TypedStruct is refused naming the type it wraps, and
// that type is the error's Feature; an unknown type (a contrib extension) is a feature too.
func TestTypedStructNamesWrappedType(t *testing.T) {
	const y = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: x
      typed_config:
        "@type": type.googleapis.com/xds.type.v3.TypedStruct
        type_url: type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc
        value: { mark: 1 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.postgres_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.postgres_proxy.v3alpha.PostgresProxy
          stat_prefix: pg
`
	_, err := Parse([]byte(y), 1)
	checkErrors(t, err, []want{
		{"static_resources.listeners[0].listener_filters[0].typed_config", `type "type.googleapis.com/xds.type.v3.TypedStruct" wrapping "type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc" is not supported by Portico here`},
		{"static_resources.listeners[0].filter_chains[0].filters[0].typed_config", `type "type.googleapis.com/envoy.extensions.filters.network.postgres_proxy.v3alpha.PostgresProxy" is not supported by Portico (a type it does not know`},
	})
	var es Errors
	asErrors(err, &es)
	for _, e := range es {
		if !strings.HasSuffix(e.Feature, "=envoy.extensions.filters.listener.original_src.v3.OriginalSrc") &&
			!strings.HasSuffix(e.Feature, "=envoy.extensions.filters.network.postgres_proxy.v3alpha.PostgresProxy") {
			t.Errorf("%v: Feature %q", e, e.Feature)
		}
	}
}

// TestEmptyTypedConfig: `typed_config: {}` (no "@type") means the filter is found by its
// name, as in Envoy.
func TestEmptyTypedConfig(t *testing.T) {
	const y = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {}
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo, typed_config: {} }] }]
`
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if got := filterNames(cfg.Listeners[0].ListenerFilters); got != "envoy.filters.listener.tls_inspector" {
		t.Errorf("listener filters %s", got)
	}
}
