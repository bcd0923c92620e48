package dns_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/upstream/dns"
	"github.com/portico-proxy/portico/upstream/dns/dnstest"
)

// backends serves HTTP on each loopback address, all on one port: each answers with its
// address and counts the connections it accepted.
type backends struct {
	port    int
	accepts map[string]*atomic.Int64
}

func startBackends(t *testing.T, ips ...string) *backends {
	t.Helper()
	b := &backends{accepts: map[string]*atomic.Int64{}}
	for try := 0; try < 20 && b.port == 0; try++ {
		var lns []net.Listener
		port := "0"
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				break
			}
			port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			lns = append(lns, ln)
		}
		if len(lns) != len(ips) {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		b.port, _ = strconv.Atoi(port)
		for i, ln := range lns {
			name := ips[i]
			n := &atomic.Int64{}
			b.accepts[name] = n
			hs := &http.Server{
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("X-Seen-Host", r.Host)
					io.WriteString(w, name)
				}),
				ConnState: func(_ net.Conn, s http.ConnState) {
					if s == http.StateNew {
						n.Add(1)
					}
				},
			}
			go hs.Serve(ln)
			t.Cleanup(func() { hs.Close() })
		}
	}
	if b.port == 0 {
		t.Fatal("no common free port")
	}
	return b
}

// proxy builds and starts a server from YAML the way the binary does: runners first,
// warm-up, then the workers.
func proxy(t *testing.T, yaml string) (*engine.Server, *config.Config, []*engine.Listener) {
	t.Helper()
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(yaml), srv.Concurrency())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		if err := srv.AddCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range cfg.StatsSources {
		srv.AddStatsSource(s)
	}
	var ls []*engine.Listener
	for _, lc := range cfg.Listeners {
		l, err := srv.AddListener(lc)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range cfg.Runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Run(ctx)
		}()
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	if cold := cfg.WaitWarm(wctx); len(cold) > 0 {
		t.Fatalf("not warm: %v", cold)
	}
	wcancel()
	srv.Start()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
		cfg.Close()
	})
	return srv, cfg, ls
}

func dnsStats(cfg *config.Config, cluster string) *dns.Stats {
	for _, r := range cfg.Runners {
		if d, ok := r.(*dns.Cluster); ok && d.Cluster().Name() == cluster {
			return d.Stats()
		}
	}
	return nil
}

const proxyYAML = `
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/logical" }
                route: { cluster: logical, auto_host_rewrite: true }
              - match: { prefix: "/" }
                route: { cluster: strict }
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: strict
  clusters:
  - name: strict
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 0.02s
    dns_resolvers: [{ socket_address: { address: 127.0.0.1, port_value: %[1]d } }]
    load_assignment:
      cluster_name: strict
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: strict.test, port_value: %[2]d } } }
  - name: logical
    type: LOGICAL_DNS
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 0.02s
    dns_resolvers: [{ socket_address: { address: 127.0.0.1, port_value: %[1]d } }]
    load_assignment:
      cluster_name: logical
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: logical.test, port_value: %[2]d } } }
`

func httpGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestProxyThroughDNSClusters sends HTTP and tcp_proxy traffic through STRICT_DNS and
// LOGICAL_DNS clusters while the test's DNS server changes its answers.
func TestProxyThroughDNSClusters(t *testing.T) {
	ns := dnstest.Start(t)
	ns.Set("strict.test", 1, "127.0.0.2")
	ns.Set("logical.test", 1, "127.0.0.2")
	be := startBackends(t, "127.0.0.2", "127.0.0.3")
	_, cfg, ls := proxy(t, fmt.Sprintf(proxyYAML, ns.Addr.Port(), be.port))
	base := "http://" + ls[0].Address().String()
	tcpAddr := ls[1].Address().String()
	client := &http.Client{Timeout: 5 * time.Second} // keep-alive to the proxy

	// Warm: the first request finds the host. Then many refreshes with the same answer:
	// the upstream connection (in the router's pool, kept per host) is reused throughout.
	if code, body := httpGet(t, client, base+"/"); code != 200 || body != "127.0.0.2" {
		t.Fatalf("first request: %d %q", code, body)
	}
	st := dnsStats(cfg, "strict")
	rebuilds := st.UpdateNoRebuild.Value()
	waitFor(t, "refreshes", func() bool { return st.UpdateNoRebuild.Value() >= rebuilds+10 })
	for i := 0; i < 5; i++ {
		httpGet(t, client, base+"/")
	}
	if n := be.accepts["127.0.0.2"].Load(); n != 1 {
		t.Errorf("%d upstream connections across unchanged refreshes, want the pooled one", n)
	}

	// tcp_proxy: a connection open across a change keeps its backend.
	held, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	hr := bufio.NewReader(held)
	roundTrip := func() string {
		held.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(held, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(hr, nil)
		if err != nil {
			t.Fatalf("held connection: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if got := roundTrip(); got != "127.0.0.2" {
		t.Fatalf("held: %q", got)
	}

	ns.Set("strict.test", 1, "127.0.0.3")
	waitFor(t, "HTTP to the new address", func() bool {
		_, body := httpGet(t, client, base+"/")
		return body == "127.0.0.3"
	})
	if got := roundTrip(); got != "127.0.0.2" {
		t.Errorf("held tcp_proxy connection after the change: %q, want the old backend", got)
	}

	// NXDOMAIN empties the cluster: 503 (UH) and a closed tcp_proxy connection; the
	// name coming back brings traffic back.
	ns.Remove("strict.test")
	waitFor(t, "no healthy upstream", func() bool {
		code, body := httpGet(t, client, base+"/")
		return code == 503 && strings.Contains(body, "no healthy upstream")
	})
	c, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Error("tcp_proxy to an empty cluster: data instead of a close")
	}
	c.Close()
	ns.Set("strict.test", 1, "127.0.0.2", "127.0.0.3")
	waitFor(t, "both addresses", func() bool {
		seen := map[string]bool{}
		for i := 0; i < 6; i++ {
			_, body := httpGet(t, client, base+"/")
			seen[body] = true
		}
		return seen["127.0.0.2"] && seen["127.0.0.3"]
	})

	// LOGICAL_DNS: requests go to the latest first address; auto_host_rewrite uses the
	// endpoint's name.
	resp, err := client.Get(base + "/logical")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "127.0.0.2" || resp.Header.Get("X-Seen-Host") != "logical.test" {
		t.Fatalf("logical: %q, Host %q", b, resp.Header.Get("X-Seen-Host"))
	}
	ns.Set("logical.test", 1, "127.0.0.3")
	waitFor(t, "logical on the new address", func() bool {
		_, body := httpGet(t, client, base+"/logical")
		return body == "127.0.0.3"
	})
}
