package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestHCMUpstreamFailures: a refused upstream (503 UF), a route timeout (504 UT), an
// upstream reset in the middle of a response (the client's connection ends, UR or UC),
// and a retry on 5xx that succeeds; with the access-log line of each.
func TestHCMUpstreamFailures(t *testing.T) {
	be := newEchoBackend(t, "a")
	refused := refusedPort(t)
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{
		{Name: "a", Ports: []int{be.Port}}, {Name: "refused", Ports: []int{refused}}}, Routes: `
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/refused" }
    route: { cluster: refused }
  - match: { prefix: "/slow" }
    route: { cluster: a, timeout: 0.5s }
  - match: { prefix: "/retry" }
    route:
      cluster: a
      retry_policy: { retry_on: 5xx, num_retries: 2 }
  - match: { prefix: "/" }
    route: { cluster: a }
`})
	cl := hcmClient()
	base := "http://" + h.Addr
	lines := 0

	t.Run("refused", func(t *testing.T) {
		resp, _ := doEcho(t, cl, newReq(t, "GET", base+"/refused", ""))
		if resp.StatusCode != 503 {
			t.Errorf("refused upstream: %d, want 503", resp.StatusCode)
		}
		lines++
		h.expectLog(t, lines, fmt.Sprintf("503 UF 127.0.0.1:%d /refused", refused))
		if s := h.stats(t); s["cluster.refused.upstream_cx_connect_fail"] < 1 {
			t.Errorf("cluster.refused.upstream_cx_connect_fail %v", s["cluster.refused.upstream_cx_connect_fail"])
		}
	})

	t.Run("timeout", func(t *testing.T) {
		resp, err := cl.Do(newReq(t, "GET", base+"/slow?sleep=3000", ""))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 504 || string(b) != "upstream request timeout" {
			t.Errorf("route timeout: %d %q, want 504 \"upstream request timeout\"", resp.StatusCode, b)
		}
		lines++
		h.expectLog(t, lines, fmt.Sprintf("504 UT 127.0.0.1:%d /slow?sleep=3000", be.Port))
		if s := h.stats(t); s["cluster.a.upstream_rq_timeout"] != 1 {
			t.Errorf("cluster.a.upstream_rq_timeout %v, want 1", s["cluster.a.upstream_rq_timeout"])
		}
	})

	t.Run("reset mid-response", func(t *testing.T) {
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, "GET /reset?reset=1 HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.ContentLength != 100000 || string(b) != "0123456789" || err != io.ErrUnexpectedEOF {
			t.Errorf("reset after 10 of 100000 bytes: %d length %d, got %q then %v; want the 10 bytes then the end of the connection",
				resp.StatusCode, resp.ContentLength, b, err)
		}
		lines++
		ls := h.logLines(t, lines)
		re := regexp.MustCompile(fmt.Sprintf(`^200 (UR|UC) 127\.0\.0\.1:%d /reset\?reset=1$`, be.Port))
		found := false
		for _, l := range ls {
			found = found || re.MatchString(l)
		}
		if !found {
			t.Errorf("access log has no line matching %s:\n%s", re, strings.Join(ls, "\n"))
		}
	})

	t.Run("retry", func(t *testing.T) {
		before := h.stats(t)["cluster.a.upstream_rq_retry"]
		resp, seen := doEcho(t, cl, newReq(t, "GET", base+"/retry?failfirst=k1", ""))
		if resp.StatusCode != 200 || seen.Backend != "a" {
			t.Errorf("retry on 5xx after a 503: %d, want 200", resp.StatusCode)
		}
		be.mu.Lock()
		attempts := be.fail["k1"]
		be.mu.Unlock()
		if attempts != 2 {
			t.Errorf("backend saw %d attempts, want 2", attempts)
		}
		s := h.stats(t)
		if s["cluster.a.upstream_rq_retry"]-before != 1 || s["cluster.a.upstream_rq_retry_success"] != 1 {
			t.Errorf("upstream_rq_retry +%v upstream_rq_retry_success %v, want 1 and 1",
				s["cluster.a.upstream_rq_retry"]-before, s["cluster.a.upstream_rq_retry_success"])
		}
		lines++
		h.expectLog(t, lines, fmt.Sprintf("200 - 127.0.0.1:%d /retry?failfirst=k1", be.Port))
		// Without a retry policy the 503 reaches the client.
		resp, _ = doEcho(t, cl, newReq(t, "GET", base+"/noretry?failfirst=k2", ""))
		if resp.StatusCode != 503 {
			t.Errorf("no retry policy: %d, want the backend's 503", resp.StatusCode)
		}
	})
}

// TestHCMCircuitBreaker: max_connections 1 and max_pending_requests 1 with four
// concurrent slow requests: one is served, one waits and is served, the others get 503
// with x-envoy-overloaded: true at once, logged with UO. One worker, so that the
// breakers and the pool are the same for every request.
func TestHCMCircuitBreaker(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Concurrency: 1, Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}, Extra: `
circuit_breakers:
  thresholds:
  - { max_connections: 1, max_pending_requests: 1 }
`}}})
	const n = 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	overloaded := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := hcmClient()
			defer cl.CloseIdleConnections()
			resp, err := cl.Get(fmt.Sprintf("http://%s/cb?sleep=1500&i=%d", h.Addr, i))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			if resp.StatusCode == 503 && resp.Header.Get("X-Envoy-Overloaded") == "true" {
				overloaded++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("status codes %v", codes)
	if codes[200] < 1 || codes[503] < 1 || codes[200]+codes[503] != n || overloaded != codes[503] {
		t.Errorf("codes %v, %d with x-envoy-overloaded: true; want 200s and 503s (all overloaded) adding up to %d", codes, overloaded, n)
	}
	if be.conns.Load() != 1 {
		t.Errorf("backend saw %d connections, want 1 (max_connections)", be.conns.Load())
	}
	s := h.stats(t)
	if s["cluster.a.upstream_rq_pending_overflow"] != float64(codes[503]) {
		t.Errorf("cluster.a.upstream_rq_pending_overflow %v, want %d", s["cluster.a.upstream_rq_pending_overflow"], codes[503])
	}
	ls := h.logLines(t, n)
	uo := 0
	for _, l := range ls {
		if strings.HasPrefix(l, "503 UO ") && strings.Contains(l, " /cb?sleep=1500&i=") {
			uo++
		}
	}
	if uo != codes[503] {
		t.Errorf("%d access-log lines \"503 UO ... /cb?...\", want %d:\n%s", uo, codes[503], strings.Join(ls, "\n"))
	}
}
