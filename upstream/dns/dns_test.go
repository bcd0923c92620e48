package dns_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/upstream/dns"
	"github.com/portico-proxy/portico/upstream/dns/dnstest"
)

// resolver asks only the test's server, with no search domains and an empty hosts file.
func resolver(t *testing.T, srv *dnstest.Server, mod func(*dns.ResolverConfig)) *dns.Resolver {
	t.Helper()
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("# test\n10.9.9.9 pinned.test pinned-alias\n"), 0o644)
	rc := dns.ResolverConfig{
		Servers: []netip.AddrPort{srv.Addr}, NoSearch: true, Timeout: 300 * time.Millisecond, Tries: 2,
		HostsFile: hosts, ResolvConf: filepath.Join(dir, "resolv.conf"),
	}
	if mod != nil {
		mod(&rc)
	}
	return dns.NewResolver(rc)
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func resolve(t *testing.T, r *dns.Resolver, name string, f dns.Family) dns.Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := r.Resolve(ctx, name, f)
	if err != nil {
		t.Fatalf("resolve %s %v: %v", name, f, err)
	}
	return a
}

func TestLookupFamilies(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("both.test", 30, "10.0.0.1", "10.0.0.2", "fd00::1")
	srv.Set("v4.test", 30, "10.0.0.3")
	srv.Set("v6.test", 30, "fd00::2")
	r := resolver(t, srv, nil)
	cases := []struct {
		name string
		f    dns.Family
		want []netip.Addr
	}{
		{"both.test", dns.Auto, addrs("fd00::1")},
		{"v4.test", dns.Auto, addrs("10.0.0.3")}, // AAAA empty: A
		{"both.test", dns.V4Preferred, addrs("10.0.0.1", "10.0.0.2")},
		{"v6.test", dns.V4Preferred, addrs("fd00::2")},
		{"both.test", dns.V4Only, addrs("10.0.0.1", "10.0.0.2")},
		{"v6.test", dns.V4Only, nil},
		{"both.test", dns.V6Only, addrs("fd00::1")},
		{"both.test", dns.All, addrs("fd00::1", "10.0.0.1", "10.0.0.2")},
		{"missing.test", dns.Auto, nil}, // NXDOMAIN: an empty answer, not an error
		{"10.1.2.3", dns.V6Only, addrs("10.1.2.3")},
		{"pinned-alias", dns.Auto, addrs("10.9.9.9")}, // hosts file, no query
		{"localhost", dns.V4Only, addrs("127.0.0.1")},
	}
	for _, c := range cases {
		a := resolve(t, r, c.name, c.f)
		if !slices.Equal(a.Addrs, c.want) {
			t.Errorf("%s %v: got %v, want %v", c.name, c.f, a.Addrs, c.want)
		}
	}
	if n := srv.Queries("v4.test", "AAAA") + srv.Queries("v4.test", "A"); n != 2 {
		t.Errorf("AUTO for a v4-only name: %d queries, want AAAA then A", n)
	}
	if n := srv.Queries("pinned-alias", "A") + srv.Queries("pinned-alias", "AAAA"); n != 0 {
		t.Errorf("a name in the hosts file was asked of DNS %d times", n)
	}
}

func TestTTLAndCNAME(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("real.test", 7, "10.0.0.1", "10.0.0.2")
	srv.CNAME("alias.test", 3, "real.test")
	r := resolver(t, srv, nil)
	a := resolve(t, r, "alias.test", dns.V4Only)
	if !slices.Equal(a.Addrs, addrs("10.0.0.1", "10.0.0.2")) || a.TTL != 3*time.Second {
		t.Fatalf("got %v ttl %v, want both addresses and the CNAME's 3s", a.Addrs, a.TTL)
	}
}

func TestFailuresAndTransports(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Fail("broken.test")
	srv.Drop("silent.test")
	srv.Set("ok.test", 30, "10.0.0.1")
	r := resolver(t, srv, nil)
	for _, name := range []string{"broken.test", "silent.test"} {
		if a, err := r.Resolve(context.Background(), name, dns.V4Only); err == nil {
			t.Errorf("%s: no error, answer %v", name, a)
		}
	}
	if n := srv.Queries("broken.test", "A"); n != 2 {
		t.Errorf("SERVFAIL: %d attempts, want query_tries=2", n)
	}
	// A truncated UDP answer is asked again over TCP.
	srv.TruncateUDP.Store(true)
	if a := resolve(t, r, "ok.test", dns.V4Only); !slices.Equal(a.Addrs, addrs("10.0.0.1")) {
		t.Errorf("after truncation: %v", a.Addrs)
	}
	if srv.Queries("ok.test", "A/tcp") != 1 {
		t.Errorf("truncated UDP answer not retried over TCP")
	}
	srv.TruncateUDP.Store(false)
	// use_tcp_for_dns_lookups: TCP only.
	rt := resolver(t, srv, func(c *dns.ResolverConfig) { c.UseTCP = true })
	udp := srv.Queries("ok.test", "A/udp")
	resolve(t, rt, "ok.test", dns.V4Only)
	if srv.Queries("ok.test", "A/udp") != udp || srv.Queries("ok.test", "A/tcp") != 2 {
		t.Errorf("use_tcp: udp %d tcp %d", srv.Queries("ok.test", "A/udp")-udp, srv.Queries("ok.test", "A/tcp"))
	}
}

func TestSearchDomainsAndFallback(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("svc.corp.test", 30, "10.0.0.7")
	dir := t.TempDir()
	rcPath := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rcPath, []byte("nameserver "+srv.Addr.Addr().String()+"\nport "+
		"53\nsearch corp.test\noptions ndots:2\n"), 0o644)
	// The name is asked of the configured server with resolv.conf's search list.
	r := resolver(t, srv, func(c *dns.ResolverConfig) { c.NoSearch = false; c.ResolvConf = rcPath })
	if a := resolve(t, r, "svc", dns.V4Only); !slices.Equal(a.Addrs, addrs("10.0.0.7")) {
		t.Errorf("search domain: %v", a.Addrs)
	}
	r = resolver(t, srv, func(c *dns.ResolverConfig) { c.ResolvConf = rcPath })
	if a := resolve(t, r, "svc", dns.V4Only); len(a.Addrs) != 0 {
		t.Errorf("no_default_search_domain: %v", a.Addrs)
	}
	// use_resolvers_as_fallback with a resolv.conf that has a server: that server (on
	// port 53, where nothing answers here) is used, not ours.
	r = resolver(t, srv, func(c *dns.ResolverConfig) {
		c.ResolvConf, c.FallbackOnly, c.Tries, c.Timeout = rcPath, true, 1, 100*time.Millisecond
	})
	if a, err := r.Resolve(context.Background(), "svc.corp.test", dns.V4Only); err == nil {
		t.Errorf("fallback resolvers used although resolv.conf has a server: %v", a)
	}
	// Without a server in resolv.conf, they are.
	os.WriteFile(rcPath, []byte("search corp.test\n"), 0o644)
	if a := resolve(t, r, "svc.corp.test", dns.V4Only); !slices.Equal(a.Addrs, addrs("10.0.0.7")) {
		t.Errorf("fallback: %v", a.Addrs)
	}
}

// runCluster runs a DNS cluster's loop for the test's duration.
func runCluster(t *testing.T, cfg dns.Config, workers int) (*engine.Cluster, *dns.Cluster) {
	t.Helper()
	c, err := engine.NewCluster(engine.ClusterConfig{Name: "svc"}, workers)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dns.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return c, d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hostAddrs(c *engine.Cluster) []string {
	var out []string
	for _, h := range c.Hosts() {
		out = append(out, h.Address().String())
	}
	slices.Sort(out)
	return out
}

func TestStrictKeepsHostsAcrossRefreshes(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("a.test", 30, "10.0.0.1", "10.0.0.2")
	srv.Set("b.test", 30, "10.0.1.1")
	c, d := runCluster(t, dns.Config{
		Kind: dns.Strict, Family: dns.V4Only, RefreshRate: 20 * time.Millisecond, WaitForWarm: true,
		Targets:  []dns.Target{{Name: "a.test", Port: 80, Weight: 3}, {Name: "b.test", Port: 81, Hostname: "b-host"}},
		Resolver: resolver(t, srv, nil),
	}, 2)
	select {
	case <-d.Warm():
	case <-time.After(10 * time.Second):
		t.Fatal("not warm")
	}
	if got := hostAddrs(c); !slices.Equal(got, []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.1.1:81"}) {
		t.Fatalf("hosts after warm-up: %v", got)
	}
	byAddr := map[string]*engine.Host{}
	for _, h := range c.Hosts() {
		byAddr[h.Address().String()] = h
	}
	if h := byAddr["10.0.0.1:80"]; h.Weight() != 3 || h.Hostname() != "a.test" {
		t.Errorf("a.test host: weight %d hostname %q", h.Weight(), h.Hostname())
	}
	if h := byAddr["10.0.1.1:81"]; h.Hostname() != "b-host" {
		t.Errorf("b.test host: hostname %q, want the endpoint's", h.Hostname())
	}
	// Unchanged answers: no rebuild, same hosts.
	waitFor(t, "refreshes without rebuild", func() bool { return d.Stats().UpdateNoRebuild.Value() >= 4 })
	// One address goes, one comes: the one that stays is the same Host.
	srv.Set("a.test", 30, "10.0.0.2", "10.0.0.3")
	waitFor(t, "the new address", func() bool {
		return slices.Equal(hostAddrs(c), []string{"10.0.0.2:80", "10.0.0.3:80", "10.0.1.1:81"})
	})
	for _, h := range c.Hosts() {
		if h.Address().String() == "10.0.0.2:80" && h != byAddr["10.0.0.2:80"] {
			t.Error("a kept address got a new Host")
		}
	}
	if !byAddr["10.0.0.1:80"].Removed() || byAddr["10.0.0.2:80"].Removed() {
		t.Error("Removed flags wrong")
	}
	// A failing server keeps the last good hosts; NXDOMAIN empties the name's hosts.
	srv.Fail("b.test")
	f := d.Stats().UpdateFailure.Value()
	waitFor(t, "failures", func() bool { return d.Stats().UpdateFailure.Value() >= f+2 })
	if got := hostAddrs(c); len(got) != 3 {
		t.Fatalf("hosts after failures: %v", got)
	}
	srv.Remove("b.test")
	waitFor(t, "b.test's hosts gone", func() bool { return len(c.Hosts()) == 2 })
	srv.Set("b.test", 30, "10.0.1.2")
	waitFor(t, "b.test back", func() bool { return len(c.Hosts()) == 3 })
	st := d.Stats()
	if st.UpdateAttempt.Value() < st.UpdateSuccess.Value()+st.UpdateFailure.Value() {
		t.Errorf("attempts %d < success %d + failure %d", st.UpdateAttempt.Value(), st.UpdateSuccess.Value(), st.UpdateFailure.Value())
	}
}

func TestStatsSource(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("a.test", 30, "10.0.0.1", "10.0.0.2")
	c, d := runCluster(t, dns.Config{
		Kind: dns.Strict, Family: dns.V4Only, RefreshRate: time.Hour, WaitForWarm: true,
		Targets: []dns.Target{{Name: "a.test", Port: 80}}, Resolver: resolver(t, srv, nil),
	}, 2)
	<-d.Warm()
	c.Hosts()[0].SetHealthFlag(engine.FailedActiveHealthCheck, true)
	got := map[string]float64{}
	for w := 0; w < 2; w++ {
		d.VisitStats(w, func(name string, _ engine.StatKind, v float64) { got[name] += v })
	}
	want := map[string]float64{"update_attempt": 1, "update_success": 1, "update_failure": 0, "update_no_rebuild": 0,
		"membership_change": 1, "membership_total": 2, "membership_healthy": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if d.StatsFamily() != "cluster" || d.StatsLabels()[0] != [2]string{"cluster", "svc"} {
		t.Errorf("family %q labels %v", d.StatsFamily(), d.StatsLabels())
	}
}

func TestRespectTTLAndBackoff(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("short.test", 1, "10.0.0.1")
	// With respect_dns_ttl the 1 s TTL wins over the hour-long refresh rate.
	_, d := runCluster(t, dns.Config{
		Kind: dns.Strict, Family: dns.V4Only, RefreshRate: time.Hour, RespectTTL: true,
		Targets: []dns.Target{{Name: "short.test", Port: 80}}, Resolver: resolver(t, srv, nil),
	}, 1)
	waitFor(t, "a refresh at the TTL", func() bool { return d.Stats().UpdateAttempt.Value() >= 2 })
	// Without it, there is no second query within the TTL's reach.
	srv.Set("long.test", 1, "10.0.0.2")
	_, d2 := runCluster(t, dns.Config{
		Kind: dns.Strict, Family: dns.V4Only, RefreshRate: time.Hour,
		Targets: []dns.Target{{Name: "long.test", Port: 80}}, Resolver: resolver(t, srv, nil),
	}, 1)
	waitFor(t, "first resolution", func() bool { return d2.Stats().UpdateSuccess.Value() == 1 })
	time.Sleep(1500 * time.Millisecond)
	if n := d2.Stats().UpdateAttempt.Value(); n != 1 {
		t.Errorf("without respect_dns_ttl: %d attempts in 1.5 s with a 1 h refresh rate", n)
	}
	// A failing name is retried at the failure rate, not the hour.
	srv.Fail("down.test")
	_, d3 := runCluster(t, dns.Config{
		Kind: dns.Strict, Family: dns.V4Only, RefreshRate: time.Hour,
		FailureBase: 10 * time.Millisecond, FailureMax: 40 * time.Millisecond,
		Targets: []dns.Target{{Name: "down.test", Port: 80}}, Resolver: resolver(t, srv, func(c *dns.ResolverConfig) { c.Tries = 1 }),
	}, 1)
	waitFor(t, "failure retries", func() bool { return d3.Stats().UpdateFailure.Value() >= 4 })
}

func TestLogical(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("l.test", 30, "10.0.0.1", "10.0.0.2")
	c, d := runCluster(t, dns.Config{
		Kind: dns.Logical, Family: dns.V4Only, RefreshRate: 20 * time.Millisecond, WaitForWarm: true,
		Targets: []dns.Target{{Name: "l.test", Port: 443}}, Resolver: resolver(t, srv, nil),
	}, 1)
	<-d.Warm()
	hs := c.Hosts()
	if len(hs) != 1 || hs[0].Address().String() != "10.0.0.1:443" || hs[0].Hostname() != "l.test" {
		t.Fatalf("logical host: %v", hostAddrs(c))
	}
	first := hs[0]
	// The first address stays first: the same host.
	srv.Set("l.test", 30, "10.0.0.1", "10.0.0.3")
	waitFor(t, "refreshes", func() bool { return d.Stats().UpdateSuccess.Value() >= 4 })
	if c.Hosts()[0] != first {
		t.Fatal("logical host replaced although its address did not change")
	}
	// A new first address: a new host; the old one is removed (its connections stay).
	srv.Set("l.test", 30, "10.0.0.2", "10.0.0.1")
	waitFor(t, "the new address", func() bool { return c.Hosts()[0].Address().String() == "10.0.0.2:443" })
	if !first.Removed() || len(c.Hosts()) != 1 {
		t.Fatal("old logical host not removed")
	}
	// An empty answer keeps the host (Envoy: a failure).
	srv.Remove("l.test")
	f := d.Stats().UpdateFailure.Value()
	waitFor(t, "empty answers", func() bool { return d.Stats().UpdateFailure.Value() >= f+2 })
	if len(c.Hosts()) != 1 {
		t.Fatal("an empty answer removed the logical host")
	}
	if _, err := dns.New(c, dns.Config{Kind: dns.Logical, Targets: []dns.Target{{Name: "a"}, {Name: "b"}}}); err == nil {
		t.Error("LOGICAL_DNS with two endpoints accepted")
	}
}

func TestWarmWithoutWait(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Drop("slow.test")
	c, _ := engine.NewCluster(engine.ClusterConfig{Name: "x"}, 1)
	d, _ := dns.New(c, dns.Config{Targets: []dns.Target{{Name: "slow.test"}}, Resolver: resolver(t, srv, nil)})
	select {
	case <-d.Warm():
	default:
		t.Fatal("wait_for_warm_on_init false: Warm not closed at once")
	}
	d, _ = dns.New(c, dns.Config{WaitForWarm: true, Targets: []dns.Target{{Name: "slow.test"}}, Resolver: resolver(t, srv, nil)})
	select {
	case <-d.Warm():
		t.Fatal("warm before any resolution")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	// The unanswered name fails after its tries: warm-up ends anyway, hosts empty.
	select {
	case <-d.Warm():
	case <-time.After(10 * time.Second):
		t.Fatal("warm-up did not end after a failed resolution")
	}
	if len(c.Hosts()) != 0 {
		t.Error("hosts without an answer")
	}
	cancel()
	<-done
}
