package config

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portico-proxy/portico/upstream/dns"
)

const dnsClusters = `
static_resources:
  clusters:
  - name: strict
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 2s
    dns_jitter: 0.5s
    dns_failure_refresh_rate: { base_interval: 1s }
    respect_dns_ttl: true
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{ socket_address: { address: 127.0.0.1, port_value: 5353 } }, { socket_address: { address: "::1", port_value: 0 } }]
        dns_resolver_options: { use_tcp_for_dns_lookups: true, no_default_search_domain: true }
        use_resolvers_as_fallback: true
        query_timeout_seconds: 2
        query_tries: 3
        rotate_nameservers: true
        udp_max_queries: 100
    load_assignment:
      cluster_name: strict
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: a.example, port_value: 80 } }, hostname: a-host }
          load_balancing_weight: 3
        - endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: 81 } } }
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: b.example, port_value: 82 } } }
  - name: logical
    type: LOGICAL_DNS
    wait_for_warm_on_init: false
    dns_resolvers: [{ socket_address: { address: 127.0.0.2, port_value: 53 } }]
    use_tcp_for_dns_lookups: true
    load_assignment:
      cluster_name: logical
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: l.example, port_value: 443 } } }
  - name: gai
    type: STRICT_DNS
    dns_lookup_family: ALL
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.getaddrinfo
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.getaddrinfo.v3.GetAddrInfoDnsResolverConfig
        num_retries: 2
    load_assignment:
      cluster_name: gai
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: g.example, port_value: 80 } } }
  - name: resconf
    type: STRICT_DNS
    dns_resolution_config:
      resolvers: [{ socket_address: { address: 127.0.0.3, port_value: 53 } }]
      dns_resolver_options: { no_default_search_domain: true }
    load_assignment:
      cluster_name: resconf
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: r.example, port_value: 80 } } }
`

func TestDNSClusters(t *testing.T) {
	cfg, err := Parse([]byte(dnsClusters), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	byName := map[string]dns.Config{}
	for _, r := range cfg.Runners {
		d := r.(*dns.Cluster)
		byName[d.Cluster().Name()] = d.Config()
		if len(d.Cluster().Hosts()) != 0 {
			t.Errorf("%s: hosts before any resolution", d.Cluster().Name())
		}
	}
	if len(byName) != 4 || len(cfg.Clusters) != 4 {
		t.Fatalf("runners %d clusters %d", len(byName), len(cfg.Clusters))
	}
	var sources int
	for _, s := range cfg.StatsSources {
		if _, ok := s.(*dns.Cluster); ok {
			sources++
		}
	}
	if sources != 4 {
		t.Errorf("%d DNS stats sources", sources)
	}

	s := byName["strict"]
	if s.Kind != dns.Strict || s.Family != dns.V4Only || s.RefreshRate != 2*time.Second || s.Jitter != 500*time.Millisecond ||
		s.FailureBase != time.Second || s.FailureMax != 10*time.Second || !s.RespectTTL || !s.WaitForWarm {
		t.Errorf("strict: %+v", s)
	}
	wantTargets := []dns.Target{
		{Name: "a.example", Port: 80, Weight: 3, Hostname: "a-host"},
		{Name: "10.0.0.1", Port: 81, Weight: 1},
		{Name: "b.example", Port: 82, Weight: 1},
	}
	if !slices.Equal(s.Targets, wantTargets) {
		t.Errorf("strict targets: %+v", s.Targets)
	}
	rc := s.Resolver.Config()
	if !slices.Equal(rc.Servers, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5353"), netip.MustParseAddrPort("[::1]:0")}) ||
		!rc.UseTCP || !rc.NoSearch || !rc.FallbackOnly || rc.Timeout != 2*time.Second || rc.Tries != 3 || !rc.Rotate || rc.System {
		t.Errorf("strict resolver: %+v", rc)
	}

	l := byName["logical"]
	lrc := l.Resolver.Config()
	if l.Kind != dns.Logical || l.WaitForWarm || l.Family != dns.Auto || l.RefreshRate != dns.DefaultRefreshRate ||
		l.FailureBase != 0 || !lrc.UseTCP || lrc.NoSearch || lrc.Timeout != dns.DefaultQueryTimeout || lrc.Tries != dns.DefaultQueryTries ||
		!slices.Equal(lrc.Servers, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:53")}) {
		t.Errorf("logical: %+v resolver %+v", l, lrc)
	}
	g := byName["gai"]
	if grc := g.Resolver.Config(); !grc.System || grc.SystemRetries != 2 || g.Family != dns.All {
		t.Errorf("getaddrinfo: %+v", grc)
	}
	r := byName["resconf"].Resolver.Config()
	if !r.NoSearch || r.UseTCP || !slices.Equal(r.Servers, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.3:53")}) {
		t.Errorf("dns_resolution_config: %+v", r)
	}

	// WaitWarm: the logical cluster (no wait) is warm; the others are not, as nothing runs.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cold := cfg.WaitWarm(ctx)
	slices.Sort(cold)
	if !slices.Equal(cold, []string{"gai", "resconf", "strict"}) {
		t.Errorf("cold clusters: %v", cold)
	}
}
