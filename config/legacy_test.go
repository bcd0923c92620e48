package config

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// TestLenientForms loads a file that uses each of Envoy's lenient forms and checks that
// every value arrives as Envoy would read it.
func TestLenientForms(t *testing.T) {
	data, err := os.ReadFile("testdata/lenient/envoy_forms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseWith(data, 1, Options{CheckOnly: true})
	if err == nil {
		defer cfg.Close()
	}
	var es Errors
	// The null endpoint is read as an empty LbEndpoint, which Envoy then rejects too
	// (its endpoint is required): the only error.
	if !asErrors(err, &es) || len(es) != 1 || es[0].Path != "static_resources.clusters[0].load_assignment.endpoints.lb_endpoints[1]" {
		t.Fatalf("want only the null endpoint's error, got %v", err)
	}
	y := strings.Replace(string(data), "        - null ", "        # - null", 1)
	cfg, err = ParseWith([]byte(y), 1, Options{CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if len(cfg.Listeners) != 1 || len(cfg.Clusters) != 1 {
		t.Fatalf("%d listeners, %d clusters; want 1 and 1", len(cfg.Listeners), len(cfg.Clusters))
	}
	l := cfg.Listeners[0]
	if l.Name != "one_listener" || l.Address != netip.MustParseAddrPort("127.0.0.1:10000") ||
		l.PerConnectionBufferLimit != 4096 || l.ListenerFiltersTimeout != 2500*time.Millisecond ||
		l.Transparent || !l.Freebind {
		t.Errorf("listener: %+v", l)
	}
	c := cfg.Clusters[0].Config()
	want := []engine.Endpoint{{Address: netip.MustParseAddrPort("127.0.0.1:20001"), Weight: 3}}
	if c.LBPolicy != engine.LeastRequest || c.ConnectTimeout != 250*time.Millisecond ||
		len(c.Endpoints) != 1 || c.Endpoints[0] != want[0] {
		t.Errorf("cluster: %+v", c)
	}
}

// TestLenientFormsKeepPaths: an error inside a value written in a lenient form is reported
// at the path the user wrote (no [0] for a list written as its single element).
func TestLenientFormsKeepPaths(t *testing.T) {
	const y = `
static_resources:
  listeners:
    name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
      filters:
        name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          statPrefix: p
          cluster: nowhere
          bogus: 1
  clusters:
    name: c
    type: Strict_Dnss
    connect_timeout: { seconds: 1, nanos: -5 }
    load_assignment: { cluster_name: c, endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 2 } } } } } }
`
	_, err := Parse([]byte(y), 1)
	checkErrors(t, err, []want{
		{"static_resources.listeners.filter_chains.filters.typed_config.bogus", "unknown field"},
		{"static_resources.listeners.filter_chains.filters.typed_config.cluster", `cluster "nowhere" is not defined`},
		{"static_resources.clusters.type", `unknown value "Strict_Dnss"`},
		{"static_resources.clusters.connect_timeout", "invalid duration: seconds 1 and nanos -5"},
	})
}

func asErrors(err error, es *Errors) bool {
	e, ok := err.(Errors)
	*es = e
	return ok
}
