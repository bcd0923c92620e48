package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/upstream/dns/dnstest"
)

// nameBackends runs a TCP server on each of the given loopback addresses, all on one port
// (a DNS cluster's addresses share the endpoint's port). Each answers an HTTP request
// with its address, and anything else by echoing it prefixed with its address.
func nameBackends(t *testing.T, ips ...string) int {
	t.Helper()
	for try := 0; try < 20; try++ {
		first, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for _, ip := range ips[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) != len(ips) {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		for i, ln := range lns {
			name := ips[i]
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go serveNamed(c, name)
				}
			}()
		}
		return port
	}
	t.Fatal("no common free port on the backend addresses")
	return 0
}

func serveNamed(c net.Conn, name string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "GET ") {
			// An HTTP request: skip its headers, answer with the backend's name.
			for {
				h, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if h == "\r\n" {
					break
				}
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(name), name)
			continue
		}
		fmt.Fprintf(c, "%s %s", name, line)
	}
}

const dnsE2EConfig = `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: {{.TCP}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: strict
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {{.TCPLog}}
              log_format: { text_format_source: { inline_string: "%RESPONSE_FLAGS% %UPSTREAM_HOST%\n" } }
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: {{.HTTP}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {{.HTTPLog}}
              log_format: { text_format_source: { inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST%\n" } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/missing" }
                route: { cluster: missing }
              - match: { prefix: "/logical" }
                route: { cluster: logical }
              - match: { prefix: "/" }
                route: { cluster: strict }
  clusters:
  - name: strict
    type: STRICT_DNS
    connect_timeout: 1s
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 0.1s
    dns_resolvers: [{ socket_address: { address: 127.0.0.1, port_value: {{.DNS}} } }]
    load_assignment:
      cluster_name: strict
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: backend.portico.test, port_value: {{.Port}} } } }
  - name: missing
    type: STRICT_DNS
    connect_timeout: 1s
    dns_refresh_rate: 0.1s
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{ socket_address: { address: 127.0.0.1, port_value: {{.DNS}} } }]
        dns_resolver_options: { no_default_search_domain: true }
    load_assignment:
      cluster_name: missing
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: later.portico.test, port_value: {{.Port}} } } }
  - name: logical
    type: LOGICAL_DNS
    connect_timeout: 1s
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 0.1s
    dns_resolvers: [{ socket_address: { address: 127.0.0.1, port_value: {{.DNS}} } }]
    load_assignment:
      cluster_name: logical
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: logical.portico.test, port_value: {{.Port}} } } }
`

// TestE2EDNSClusters runs the binary with STRICT_DNS and LOGICAL_DNS clusters resolved by
// a DNS server the test runs, whose answers change while traffic flows.
func TestE2EDNSClusters(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Set("backend.portico.test", 1, "127.0.0.2")
	srv.Set("logical.portico.test", 1, "127.0.0.2", "127.0.0.3")
	port := nameBackends(t, "127.0.0.2", "127.0.0.3")
	dir := t.TempDir()
	data := map[string]any{
		"Admin": freePort(t), "TCP": freePort(t), "HTTP": freePort(t), "DNS": srv.Addr.Port(), "Port": port,
		"TCPLog": filepath.Join(dir, "tcp.log"), "HTTPLog": filepath.Join(dir, "http.log"),
	}
	cfg := writeConfig(t, dnsE2EConfig, data)
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", data["Admin"]), "-c", cfg, "--concurrency", "2", "--drain-time-s", "0")
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", data["TCP"])
	httpURL := fmt.Sprintf("http://127.0.0.1:%d", data["HTTP"])
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		resp, err := client.Get(httpURL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Warm-up: the very first request, right after /ready, finds the resolved host.
	if code, body := get("/"); code != 200 || body != "127.0.0.2" {
		t.Fatalf("first request: %d %q, want 200 from 127.0.0.2 (warm-up)", code, body)
	}
	// A tcp_proxy connection held open across the change keeps its backend.
	held, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	hr := bufio.NewReader(held)
	echo := func(line string) string {
		held.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(held, "%s\n", line)
		got, err := hr.ReadString('\n')
		if err != nil {
			t.Fatalf("held connection: %v", err)
		}
		return strings.TrimSpace(got)
	}
	if got := echo("one"); got != "127.0.0.2 one" {
		t.Fatalf("held connection: %q", got)
	}

	srv.Set("backend.portico.test", 1, "127.0.0.3")
	eventually(t, "HTTP traffic on the new address", func() bool {
		_, body := get("/")
		return body == "127.0.0.3"
	})
	if got := echo("two"); got != "127.0.0.2 two" {
		t.Fatalf("held connection after the change: %q, want the old backend still", got)
	}
	eventually(t, "tcp_proxy traffic on the new address", func() bool {
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "x\n")
		got, _ := bufio.NewReader(c).ReadString('\n')
		return got == "127.0.0.3 x\n"
	})

	// A name that does not resolve: 503 UH, then traffic once it does.
	if code, _ := get("/missing"); code != 503 {
		t.Fatalf("/missing before the name exists: %d, want 503", code)
	}
	srv.Set("later.portico.test", 1, "127.0.0.3")
	eventually(t, "the late name", func() bool {
		code, body := get("/missing")
		return code == 200 && body == "127.0.0.3"
	})
	// The strict name vanishes (NXDOMAIN): tcp_proxy closes with UH.
	srv.Remove("backend.portico.test")
	eventually(t, "tcp close with UH", func() bool {
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "x\n") // answered while the host is still there
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			return false
		}
		b, _ := os.ReadFile(data["TCPLog"].(string))
		return strings.Contains(string(b), "UH -")
	})

	// LOGICAL_DNS: the first address of the latest answer.
	if _, body := get("/logical"); body != "127.0.0.2" {
		t.Fatalf("logical: %q, want the first address", body)
	}
	srv.Set("logical.portico.test", 1, "127.0.0.3", "127.0.0.2")
	eventually(t, "the logical host's new address", func() bool {
		_, body := get("/logical")
		return body == "127.0.0.3"
	})

	st := p.stats(t)
	for _, k := range []string{"cluster.strict.update_attempt", "cluster.strict.update_success", "cluster.strict.update_no_rebuild", "cluster.logical.update_success"} {
		if st[k] < 1 {
			t.Errorf("%s = %v", k, st[k])
		}
	}
	if st["cluster.missing.membership_total"] != 1 || st["cluster.strict.membership_total"] != 0 || st["cluster.logical.membership_total"] != 1 {
		t.Errorf("membership_total: missing %v strict %v logical %v", st["cluster.missing.membership_total"],
			st["cluster.strict.membership_total"], st["cluster.logical.membership_total"])
	}
	if code := p.stop(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	b, _ := os.ReadFile(data["HTTPLog"].(string))
	if !strings.Contains(string(b), "503 UH -") {
		t.Errorf("HTTP access log has no 503 UH line:\n%s", b)
	}
}
