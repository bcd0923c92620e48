package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// hammer sends n GETs to url from conc keep-alive clients and checks every answer is a
// 200 whose body satisfies ok.
func hammer(t *testing.T, url string, n, conc int, ok func(string) bool) {
	t.Helper()
	cl := hcmClient()
	defer cl.CloseIdleConnections()
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				resp, err := cl.Get(fmt.Sprintf("%s?i=%d", url, i))
				if err != nil {
					mu.Lock()
					bad++
					mu.Unlock()
					t.Errorf("request %d: %v", i, err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !ok(string(b)) {
					mu.Lock()
					bad++
					mu.Unlock()
					t.Errorf("request %d: %d %q", i, resp.StatusCode, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	if bad > 0 {
		t.Fatalf("%d of %d requests failed", bad, n)
	}
}

// TestHCMUpstreamKeepAlive: 5000 requests from 8 keep-alive clients through portico (2
// workers) reach nginx and the Go backend over a handful of connections (each worker
// keeps at most one per client in flight), and the cluster stats say so.
func TestHCMUpstreamKeepAlive(t *testing.T) {
	const n, conc = 5000, 8
	// At most one upstream connection per concurrent downstream request per worker,
	// and a few spare for the keep-alive race.
	const maxConns = 2*conc + 2

	t.Run("nginx", func(t *testing.T) {
		ng := nginxEcho(t)
		h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "nginx", Ports: []int{ng}}}})
		before := nginxAccepts(t, ng)
		re := regexp.MustCompile(`^GET /ka\?i=\d+ 127\.0\.0\.1:\d+ \n$`)
		hammer(t, "http://"+h.Addr+"/ka", n, conc, re.MatchString)
		accepts := nginxAccepts(t, ng) - before - 1 // the stub_status request itself
		s := h.stats(t)
		t.Logf("nginx accepts %d, upstream_cx_total %v, upstream_rq_total %v", accepts, s["cluster.nginx.upstream_cx_total"], s["cluster.nginx.upstream_rq_total"])
		if accepts < 1 || accepts > maxConns {
			t.Errorf("nginx accepted %d connections for %d requests, want 1..%d", accepts, n, maxConns)
		}
		if got := s["cluster.nginx.upstream_cx_total"]; got != float64(accepts) {
			t.Errorf("cluster.nginx.upstream_cx_total %v, nginx accepted %d", got, accepts)
		}
		if got := s["cluster.nginx.upstream_rq_total"]; got != n {
			t.Errorf("cluster.nginx.upstream_rq_total %v, want %d", got, n)
		}
		if got := s["cluster.nginx.upstream_rq_2xx"]; got != n {
			t.Errorf("cluster.nginx.upstream_rq_2xx %v, want %d", got, n)
		}
		if got := s["http.ingress_http.downstream_rq_2xx"]; got != n {
			t.Errorf("http.ingress_http.downstream_rq_2xx %v, want %d", got, n)
		}
	})

	t.Run("go backend", func(t *testing.T) {
		be := newEchoBackend(t, "a")
		h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}})
		hammer(t, "http://"+h.Addr+"/ka", n, conc, func(b string) bool { return strings.Contains(b, `"backend":"a"`) })
		conns := be.conns.Load()
		s := h.stats(t)
		t.Logf("backend connections %d, requests %d, upstream_cx_total %v", conns, be.reqs.Load(), s["cluster.a.upstream_cx_total"])
		if conns < 1 || conns > maxConns || be.reqs.Load() != n {
			t.Errorf("backend saw %d connections and %d requests, want 1..%d and %d", conns, be.reqs.Load(), maxConns, n)
		}
		if got := s["cluster.a.upstream_cx_total"]; got != float64(conns) {
			t.Errorf("cluster.a.upstream_cx_total %v, backend accepted %d", got, conns)
		}
		if got := s["cluster.a.upstream_rq_total"]; got != n {
			t.Errorf("cluster.a.upstream_rq_total %v, want %d", got, n)
		}
		if got := s["cluster.a.upstream_rq_reused"]; got < n-maxConns {
			t.Errorf("cluster.a.upstream_rq_reused %v, want >= %d", got, n-maxConns)
		}
	})
}

// TestHCMStats: /stats has the connection manager's counters under
// http.<stat_prefix>., per worker and summed, and /stats/prometheus exposes the same
// numbers as portico_http_<stat>{stat_prefix=...,worker=...} (the response-code class
// as Envoy's envoy_response_code_class tag), with valid metric names.
func TestHCMStats(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}, Routes: `
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/direct" }
    direct_response: { status: 200, body: { inline_string: "direct\n" } }
  - match: { prefix: "/redirect" }
    redirect: { path_redirect: "/" }
  - match: { prefix: "/nocluster" }
    route: { cluster_header: x-cluster }
  - match: { prefix: "/" }
    route: { cluster: a }
- name: narrow
  domains: ["narrow.example"]
  routes:
  - match: { prefix: "/only" }
    route: { cluster: a }
`})
	cl := hcmClient()
	do := func(path, host string, hdrs ...string) int {
		resp, err := cl.Do(newReq(t, "GET", "http://"+h.Addr+path, host, hdrs...))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 3; i++ {
		do("/ok", "")
	}
	do("/ok?status=404", "")
	do("/ok?status=500", "")
	do("/direct", "")
	do("/redirect", "")
	if code := do("/nocluster", "", "X-Cluster: missing"); code != 503 {
		t.Errorf("route to a cluster that does not exist: %d, want 503", code)
	}
	if code := do("/else", "narrow.example"); code != 404 {
		t.Errorf("no route: %d, want 404", code)
	}
	cl.CloseIdleConnections()

	const p = "http.ingress_http."
	want := map[string]float64{
		"downstream_rq_total":  9,
		"downstream_rq_2xx":    4,
		"downstream_rq_3xx":    1,
		"downstream_rq_4xx":    2,
		"downstream_rq_5xx":    2,
		"rq_direct_response":   1,
		"rq_redirect":          1,
		"no_route":             1,
		"no_cluster":           1,
		"downstream_rq_active": 0,
	}
	eventually(t, "downstream_rq_completed", func() bool { return h.stats(t)[p+"downstream_rq_completed"] == 9 })
	s := h.stats(t)
	for k, v := range want {
		if s[p+k] != v {
			t.Errorf("%s%s = %v, want %v", p, k, s[p+k], v)
		}
		if s[p+"worker_0."+k]+s[p+"worker_1."+k] != s[p+k] {
			t.Errorf("%s%s = %v is not the sum of the workers' %v + %v", p, k, s[p+k], s[p+"worker_0."+k], s[p+"worker_1."+k])
		}
	}
	if s["cluster.a.upstream_rq_404"] != 1 || s["cluster.a.upstream_rq_500"] != 1 || s["cluster.a.upstream_rq_2xx"] != 3 {
		t.Errorf("cluster.a upstream_rq_404 %v upstream_rq_500 %v upstream_rq_2xx %v",
			s["cluster.a.upstream_rq_404"], s["cluster.a.upstream_rq_500"], s["cluster.a.upstream_rq_2xx"])
	}

	_, prom, err := h.get("/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	// Envoy's tag extraction applies: downstream_rq_2xx is
	// portico_http_downstream_rq_xx{stat_prefix="ingress_http",worker="0",envoy_response_code_class="2"}.
	sum := map[string]float64{}
	re := regexp.MustCompile(`(?m)^portico_http_(\w+)\{stat_prefix="ingress_http",worker="\d+"(?:,envoy_response_code_class="(\d)")?\} (\d+)$`)
	for _, m := range re.FindAllStringSubmatch(prom, -1) {
		var v float64
		fmt.Sscan(m[3], &v)
		name := m[1]
		if m[2] != "" {
			name = strings.TrimSuffix(name, "xx") + m[2] + "xx"
		}
		sum[name] += v
	}
	for k, v := range want {
		if sum[k] != v {
			t.Errorf("/stats/prometheus: http %s summed over workers = %v, want %v", k, sum[k], v)
		}
	}
	if !strings.Contains(prom, "# TYPE portico_http_downstream_rq_xx counter") ||
		!strings.Contains(prom, "# TYPE portico_http_downstream_rq_active gauge") {
		t.Errorf("/stats/prometheus lacks the TYPE lines of the http family")
	}
	// Every metric name is a valid Prometheus name.
	name := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	bad := 0
	for _, l := range strings.Split(prom, "\n") {
		f := strings.Fields(l)
		var n string
		switch {
		case len(f) >= 3 && f[0] == "#" && f[1] == "TYPE":
			n = f[2]
		case len(f) >= 1 && f[0] != "#":
			n, _, _ = strings.Cut(f[0], "{")
		default:
			continue
		}
		if !name.MatchString(n) {
			if bad++; bad <= 5 {
				t.Errorf("/stats/prometheus: invalid metric name %q", n)
			}
		}
	}
}
