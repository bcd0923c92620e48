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
