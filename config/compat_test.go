package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// TestCompatFields: the accepted-and-ignored fields load; those honoured reach the
// engine, the others are warned about by path, and those ignoring which is what Envoy
// does here too say nothing.
func TestCompatFields(t *testing.T) {
	data, err := os.ReadFile("testdata/lenient/compat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseWith(data, 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	c := cfg.Clusters[0].Config()
	if c.LBPolicy != engine.LeastRequest {
		t.Errorf("load_balancing_policy: %v, want least request (the first policy Portico has)", c.LBPolicy)
	}
	if c.KeepAlive == nil || *c.KeepAlive != (engine.KeepAlive{Probes: 3, Idle: 300 * time.Second}) {
		t.Errorf("keepalive %+v", c.KeepAlive)
	}
	want := []string{
		"layered_runtime.layers[0].static_layer: Portico reads no runtime keys; ignored: overload.global_downstream_max_connections",
		"stats_config: stat tags and matchers are not applied",
		"overload_manager: the overload manager is not implemented",
		"static_resources.clusters[0].alt_stat_name: stats stay under cluster.backend",
		"static_resources.clusters[0].track_cluster_stats: the extra cluster stats are not kept",
		"static_resources.clusters[0].common_lb_config.locality_weighted_lb_config: localities are not weighted",
	}
	got := strings.Join(cfg.Warnings, "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing warning %q", w)
		}
	}
	if len(cfg.Warnings) != len(want) {
		t.Errorf("%d warnings, want %d:\n%s", len(cfg.Warnings), len(want), got)
	}
}

// TestCompatFieldsThatChangeTraffic: the same fields with values that would change
// traffic are errors naming them.
func TestCompatFieldsThatChangeTraffic(t *testing.T) {
	const y = `
layered_runtime:
  layers:
  - name: rtds
    rtds_layer: { name: rt, rtds_config: { ads: {} } }
static_resources:
  clusters:
  - name: c
    common_lb_config: { healthy_panic_threshold: { value: 10 } }
    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.ring_hash
          typed_config: { "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash }
    upstream_connection_options: { set_local_interface_name_on_upstream_connections: true }
  - name: d
    load_assignment:
      cluster_name: d
      endpoints: [{ priority: 1, lb_endpoints: [] }]
`
	_, err := Parse([]byte(y), 1)
	checkErrors(t, err, []want{
		{"layered_runtime.layers[0].rtds_layer", "not supported by Portico"},
		{"static_resources.clusters[0].common_lb_config.healthy_panic_threshold", "10% is not supported by Portico"},
		{"static_resources.clusters[0].load_balancing_policy.policies", "none of the policies is one Portico implements (envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash"},
		{"static_resources.clusters[0].upstream_connection_options.set_local_interface_name_on_upstream_connections", "not supported by Portico"},
		{"static_resources.clusters[1].load_assignment.endpoints[0].priority", "not supported by Portico"},
	})
}

// TestOptionalHTTPFilters: an optional HTTP filter Portico lacks is skipped with a
// warning, whether its type is one Portico knows (CORS) or not (a contrib one).
func TestOptionalHTTPFilters(t *testing.T) {
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
          route_config: { virtual_hosts: { name: all, domains: "*", routes: { match: { prefix: / }, direct_response: { status: 200 } } } }
          http_filters:
          - name: envoy.filters.http.cors
            is_optional: true
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }
          - name: envoy.filters.http.golang
            is_optional: true
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config, library_id: x }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	got := strings.Join(cfg.Warnings, "\n")
	if len(cfg.Warnings) != 2 || !strings.Contains(got, `http_filters[0]: optional HTTP filter "envoy.filters.http.cors"`) ||
		!strings.Contains(got, `http_filters[1]: optional HTTP filter "envoy.filters.http.golang"`) {
		t.Errorf("warnings:\n%s", got)
	}
}
