package chain

import (
	"fmt"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// istioLike is a listener shaped like an Istio sidecar's: per-service VIP chains split by
// ALPN (HTTP connection manager for http/1.1 and h2c, tcp_proxy otherwise), mTLS chains
// keyed by SNI with Istio's ALPN, wildcard SNI, source-CIDR and source-port chains, a
// direct-source chain behind a PROXY-protocol load balancer, an IPv6 VIP, BlackHole on the
// outbound capture port and a PassthroughCluster catch-all. 50 chains.
func istioLike() []Chain {
	var cs []Chain
	add := func(name string, m Match) { cs = append(cs, named(name, m)) }
	for i := range 15 {
		vip := pfx(fmt.Sprintf("10.96.0.%d/32", 10+i))
		add(fmt.Sprintf("vip-%d-http", i), Match{DestinationPort: 8080, PrefixRanges: vip, ApplicationProtocols: []string{"http/1.1", "h2c"}})
		add(fmt.Sprintf("vip-%d-tcp", i), Match{DestinationPort: 8080, PrefixRanges: vip})
	}
	for i := range 10 {
		add(fmt.Sprintf("svc-%d", i), Match{
			DestinationPort:      443,
			ServerNames:          []string{fmt.Sprintf("svc-%d.ns.svc.cluster.local", i)},
			TransportProtocol:    "tls",
			ApplicationProtocols: []string{"istio-peer-exchange", "istio"},
		})
	}
	add("wild", Match{DestinationPort: 443, ServerNames: []string{"*.example.com"}, TransportProtocol: "tls"})
	add("wild-corp", Match{DestinationPort: 443, ServerNames: []string{"*.corp.example.com"}, TransportProtocol: "tls"})
	add("pod-metrics", Match{DestinationPort: 9090, SourcePrefixRanges: pfx("10.244.0.0/16")})
	add("node-metrics", Match{DestinationPort: 9090, SourcePrefixRanges: pfx("192.168.0.0/16", "fd01::/64")})
	add("ssh-bastion", Match{DestinationPort: 22, SourcePrefixRanges: pfx("10.0.0.5/32")})
	add("ssh-bastion-port", Match{DestinationPort: 22, SourcePrefixRanges: pfx("10.0.0.5/32"), SourcePorts: []uint32{40000, 40001}})
	add("lb-proxied", Match{DestinationPort: 8443, DirectSourcePrefixRanges: pfx("172.16.0.0/12")})
	add("vip6", Match{DestinationPort: 8080, PrefixRanges: pfx("fd00:10:96::/112")})
	add("BlackHoleCluster", Match{DestinationPort: 15001})
	add("PassthroughCluster", Match{})
	return chains(cs...)
}

// istioLookups are representative connections to istioLike and the chain each must get.
func istioLookups() []lookup {
	return []lookup{
		{"SNI exact + ALPN", conn{dst: "10.0.0.9:443", sni: "svc-3.ns.svc.cluster.local", transport: "tls", alpn: []string{"istio-peer-exchange", "istio"}, src: "10.244.1.2:50000"}, "svc-3"},
		{"SNI exact, upper-case", conn{dst: "10.0.0.9:443", sni: "SVC-7.NS.svc.cluster.local", transport: "tls", alpn: []string{"istio"}, src: "10.244.1.2:50000"}, "svc-7"},
		{"SNI wildcard, longest", conn{dst: "10.0.0.9:443", sni: "www.corp.example.com", transport: "tls", alpn: []string{"h2", "http/1.1"}, src: "10.244.1.2:50000"}, "wild-corp"},
		{"SNI wildcard", conn{dst: "10.0.0.9:443", sni: "api.example.com", transport: "tls", src: "10.244.1.2:50000"}, "wild"},
		{"VIP + ALPN", conn{dst: "10.96.0.17:8080", transport: "raw_buffer", alpn: []string{"http/1.1"}, src: "10.244.1.2:50000"}, "vip-7-http"},
		{"VIP TCP", conn{dst: "10.96.0.17:8080", transport: "raw_buffer", src: "10.244.1.2:50000"}, "vip-7-tcp"},
		{"IPv6 VIP", conn{dst: "[fd00:10:96::5]:8080", transport: "raw_buffer", src: "[fd01::7]:50000"}, "vip6"},
		{"source CIDR", conn{dst: "10.0.0.9:9090", transport: "raw_buffer", src: "10.244.3.3:50000"}, "pod-metrics"},
		{"source port", conn{dst: "10.0.0.9:22", transport: "raw_buffer", src: "10.0.0.5:40001"}, "ssh-bastion-port"},
		{"direct source", conn{dst: "10.0.0.9:8443", transport: "tls", src: "203.0.113.9:6000", direct: "172.17.0.2:41000"}, "lb-proxied"},
		{"passthrough", conn{dst: "8.8.8.8:5432", transport: "raw_buffer", src: "10.244.1.2:50000"}, "PassthroughCluster"},
		{"unknown SNI on 443 falls to the default", conn{dst: "10.0.0.9:443", sni: "other.org", transport: "tls", src: "10.244.1.2:50000"}, "default"},
	}
}

func buildIstioLike(tb testing.TB) (*Manager, []*engine.SocketInfo) {
	tb.Helper()
	m, err := Build(istioLike(), &engine.FilterChain{Name: "default"})
	if err != nil {
		tb.Fatal(err)
	}
	var infos []*engine.SocketInfo
	for _, l := range istioLookups() {
		info := l.c.info(tb)
		if got, _ := m.FindChainName(info); got != l.want {
			tb.Fatalf("%s: chain %q, want %q", l.what, got, l.want)
		}
		infos = append(infos, info)
	}
	return m, infos
}

// TestFindFilterChainDoesNotAllocate proves the lookup path allocation-free over SNI (exact,
// upper-case, wildcard), ALPN, destination and source CIDRs (v4 and v6), direct source,
// source ports and the default chain.
func TestFindFilterChainDoesNotAllocate(t *testing.T) {
	m, infos := buildIstioLike(t)
	allocs := testing.AllocsPerRun(100, func() {
		for _, info := range infos {
			if m.FindFilterChain(info) == nil {
				panic("no chain")
			}
			if _, ok := m.FindChainName(info); !ok {
				panic("no name")
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("lookup allocates: %v allocs per %d lookups", allocs, 2*len(infos))
	}
}

// BenchmarkFindFilterChain cycles through the representative connections on a 50-chain
// Istio-like listener; ns/op is per lookup.
func BenchmarkFindFilterChain(b *testing.B) {
	m, infos := buildIstioLike(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if m.FindFilterChain(infos[i%len(infos)]) == nil {
			b.Fatal("no chain")
		}
	}
}

// BenchmarkFindFilterChainCases reports each representative connection on its own.
func BenchmarkFindFilterChainCases(b *testing.B) {
	m, infos := buildIstioLike(b)
	for i, l := range istioLookups() {
		info := infos[i]
		b.Run(l.what, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.FindFilterChain(info)
			}
		})
	}
}

// BenchmarkFindFilterChainManyVIPs checks the CIDR level at scale: 500 /32 VIPs plus a few
// wider ranges, as a large mesh's outbound listener has.
func BenchmarkFindFilterChainManyVIPs(b *testing.B) {
	var cs []Chain
	for i := range 500 {
		cs = append(cs, named(fmt.Sprintf("vip-%d", i), Match{PrefixRanges: pfx(fmt.Sprintf("10.%d.%d.%d/32", 96+i/65536, (i/256)%256, i%256))}))
	}
	for _, p := range []string{"10.0.0.0/8", "10.96.0.0/12", "10.96.1.0/24", "172.16.0.0/12", "192.168.0.0/16"} {
		cs = append(cs, named("range-"+p, Match{PrefixRanges: pfx(p)}))
	}
	cs = append(cs, named("catch-all", Match{}))
	m, err := Build(chains(cs...), nil)
	if err != nil {
		b.Fatal(err)
	}
	infos := []*engine.SocketInfo{
		conn{dst: "10.96.1.44:80", src: "10.244.0.1:5"}.info(b),  // a /32 VIP
		conn{dst: "10.96.1.200:80", src: "10.244.0.1:5"}.info(b), // a /32 VIP
		conn{dst: "10.97.0.1:80", src: "10.244.0.1:5"}.info(b),   // 10.96.0.0/12
		conn{dst: "8.8.8.8:80", src: "10.244.0.1:5"}.info(b),     // catch-all
	}
	want := []string{"vip-300", "vip-456", "range-10.96.0.0/12", "catch-all"}
	for i, info := range infos {
		if got, _ := m.FindChainName(info); got != want[i] {
			b.Fatalf("lookup %d: %q, want %q", i, got, want[i])
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.FindFilterChain(infos[i%len(infos)])
	}
}

// TestConcurrentLookups runs lookups from several goroutines, as workers do; run with -race.
func TestConcurrentLookups(t *testing.T) {
	m, infos := buildIstioLike(t)
	want := istioLookups()
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for n := range 1000 {
				i := (g + n) % len(infos)
				if got, _ := m.FindChainName(infos[i]); got != want[i].want {
					t.Errorf("%s: %q, want %q", want[i].what, got, want[i].want)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}
