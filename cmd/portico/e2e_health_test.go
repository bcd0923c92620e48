package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// hcBackend is an HTTP backend whose /healthz answer and whose traffic answer can be
// switched: it answers its name with the configured status.
type hcBackend struct {
	name    string
	port    int
	health  atomic.Int32 // /healthz status
	status  atomic.Int32 // every other path's status
	checks  atomic.Int64
	traffic atomic.Int64
}

func newHCBackend(t *testing.T, name string) *hcBackend {
	t.Helper()
	b := &hcBackend{name: name}
	b.health.Store(200)
	b.status.Store(200)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			b.checks.Add(1)
			w.WriteHeader(int(b.health.Load()))
			return
		}
		b.traffic.Add(1)
		w.WriteHeader(int(b.status.Load()))
		io.WriteString(w, b.name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// get sends n requests and returns the bodies of the 200s by backend name and the count
// of other statuses.
func getN(t *testing.T, c *http.Client, url string, n int) (map[string]int, int) {
	t.Helper()
	by, bad := map[string]int{}, 0
	for i := 0; i < n; i++ {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			by[string(body)]++
		} else {
			bad++
		}
	}
	return by, bad
}

// TestE2EHealthCheckHTTP: an HTTP health check through the binary. Both backends pass;
// one starts failing its checks and the traffic moves to the other (membership_healthy
// 1); it passes again and the traffic comes back. Stats follow.
func TestE2EHealthCheckHTTP(t *testing.T) {
	a, b := newHCBackend(t, "a"), newHCBackend(t, "b")
	events := filepath.Join(t.TempDir(), "hc-events.log")
	p := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "web", Ports: []int{a.port, b.port}, Extra: fmt.Sprintf(`
health_checks:
- timeout: 1s
  interval: 0.05s
  no_traffic_interval: 0.05s
  unhealthy_threshold: 2
  healthy_threshold: 2
  event_log_path: %s
  http_health_check: { path: /healthz, host: web.internal }
`, events)}}})
	c := hcmClient()
	url := "http://" + p.Addr + "/"
	p.statEventually(t, "cluster.web.membership_healthy", 2)
	by, bad := getN(t, c, url, 10)
	if by["a"] == 0 || by["b"] == 0 || bad != 0 {
		t.Fatalf("both healthy: %v, %d failed", by, bad)
	}
	a.health.Store(503)
	p.statEventually(t, "cluster.web.membership_healthy", 1)
	by, bad = getN(t, c, url, 10)
	if by["a"] != 0 || by["b"] != 10 || bad != 0 {
		t.Fatalf("a failing its checks: %v, %d failed", by, bad)
	}
	a.health.Store(200)
	p.statEventually(t, "cluster.web.membership_healthy", 2)
	by, _ = getN(t, c, url, 10)
	if by["a"] == 0 {
		t.Fatalf("a healthy again but served nothing: %v", by)
	}
	s := p.stats(t)
	if s["cluster.web.health_check.attempt"] < 4 || s["cluster.web.health_check.failure"] < 1 ||
		s["cluster.web.health_check.success"] < 3 || s["cluster.web.health_check.healthy"] != 2 ||
		s["cluster.web.membership_total"] != 2 {
		t.Errorf("stats: %v", s)
	}
	if a.checks.Load() == 0 {
		t.Error("backend a saw no check")
	}
	log, _ := os.ReadFile(events)
	if !strings.Contains(string(log), `"eject_unhealthy_event":{"failure_type":"ACTIVE"}`) ||
		!strings.Contains(string(log), `"add_healthy_event":{"first_check":false}`) {
		t.Errorf("event log:\n%s", log)
	}
}

// TestE2EOutlier5xx: outlier detection on the router's responses. A backend answering
// 503 is ejected after consecutive_5xx of them; the others then get every request.
func TestE2EOutlier5xx(t *testing.T) {
	a, b, c3 := newHCBackend(t, "a"), newHCBackend(t, "b"), newHCBackend(t, "c")
	a.status.Store(503)
	p := startHCM(t, hcmSetup{Concurrency: 2, Clusters: []hcmCluster{{Name: "web", Ports: []int{a.port, b.port, c3.port}, Extra: `
outlier_detection:
  consecutive_5xx: 3
  max_ejection_percent: 34
  base_ejection_time: 300s
`}}})
	c := hcmClient()
	url := "http://" + p.Addr + "/"
	// Round robin per worker: a gets a third of each worker's requests.
	for i := 0; i < 60 && p.stats(t)["cluster.web.outlier_detection.ejections_active"] == 0; i++ {
		getN(t, c, url, 3)
	}
	p.statEventually(t, "cluster.web.outlier_detection.ejections_active", 1)
	before := a.traffic.Load()
	by, bad := getN(t, c, url, 20)
	if bad != 0 || by["a"] != 0 || a.traffic.Load() != before {
		t.Fatalf("after the ejection: %v, %d failed, a served %d more", by, bad, a.traffic.Load()-before)
	}
	s := p.stats(t)
	if s["cluster.web.outlier_detection.ejections_enforced_consecutive_5xx"] != 1 ||
		s["cluster.web.outlier_detection.ejections_enforced_total"] != 1 || s["cluster.web.membership_healthy"] != 2 {
		t.Errorf("stats: %v", s)
	}
}

// TestOriginalDstCluster: Istio's PassthroughCluster. An iptables REDIRECT brings the
// application's connections to a virtualOutbound listener whose original_dst filter
// restores their destination; an ORIGINAL_DST cluster connects each to that destination,
// whatever port it was.
func TestOriginalDstCluster(t *testing.T) {
	client, backend := makeHosts(t)
	startNginxIn(t, backend, 8080, 9090)
	cfg := filepath.Join(t.TempDir(), "passthrough.yaml")
	os.WriteFile(cfg, []byte(`
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 15000 } }
static_resources:
  listeners:
  - name: virtualOutbound
    address: { socket_address: { address: 0.0.0.0, port_value: 15001 } }
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst }
    filter_chains:
    - name: PassthroughFilterChain
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: PassthroughCluster, cluster: PassthroughCluster }
  clusters:
  - name: PassthroughCluster
    type: ORIGINAL_DST
    connect_timeout: 10s
    lb_policy: CLUSTER_PROVIDED
    cleanup_interval: 1s
    circuit_breakers: { thresholds: [{ max_connections: 4294967295, max_pending_requests: 4294967295, max_requests: 4294967295, max_retries: 4294967295 }] }
`), 0o644)
	p := startPorticoIn(t, client, "127.0.0.1:15000", "-c", cfg, "--concurrency", "2")
	curl := func(port int) string {
		out, err := exec.Command("ip", "netns", "exec", client, "curl", "-sS", "--max-time", "10",
			"--interface", nsAppIP, fmt.Sprintf("http://%s:%d/", nsBackendIP, port)).CombinedOutput()
		if err != nil {
			t.Fatalf("curl :%d from the app address: %v\n%s\nportico:\n%s", port, err, out, p.stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	for i := 0; i < 2; i++ {
		if got := curl(8080); got != "backend-8080" {
			t.Errorf(":8080 got %q", got)
		}
		if got := curl(9090); got != "backend-9090" {
			t.Errorf(":9090 got %q", got)
		}
	}
	s := p.stats(t)
	if s["tcp.PassthroughCluster.downstream_cx_total"] != 4 || s["cluster.PassthroughCluster.upstream_cx_total"] != 4 ||
		s["cluster.PassthroughCluster.upstream_cx_none_healthy"] != 0 {
		t.Errorf("stats: %v", s)
	}
}
