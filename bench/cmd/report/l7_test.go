package main

import (
	"strings"
	"testing"
)

func l7Run(srv, test string, m map[string]float64, failure string) run {
	var r run
	r.Labels = map[string]string{"server": srv, "test": test, "rep": "1"}
	r.Metrics = m
	r.Failure = failure
	return r
}

func TestL7TablesRatiosReuseAndTargets(t *testing.T) {
	f := &resultFile{Scenario: "l7-proxy", Params: []byte(`{}`), Machine: []byte(`{}`)}
	f.Runs = []run{
		l7Run("haproxy", "keepalive", map[string]float64{"rps": 40000, "p50_us": 900, "p99_us": 2000, "cpu_us_per_req": 20,
			"upstream_conns": 50, "upstream_requests": 100000}, ""),
		l7Run("nginx", "keepalive", map[string]float64{"rps": 50000, "p50_us": 800, "p99_us": 1000, "cpu_us_per_req": 25,
			"upstream_conns": 5000, "upstream_requests": 100000}, ""),
		l7Run("portico", "keepalive", map[string]float64{"rps": 50000, "p50_us": 700, "p99_us": 1000, "cpu_us_per_req": 18,
			"upstream_conns": 50, "upstream_requests": 100000}, ""),
		l7Run("haproxy", "body1m", map[string]float64{"rps": 1000, "p99_us": 9000, "cpu_us_per_req": 500, "body_bytes": 1 << 20,
			"upstream_conns": 10, "upstream_requests": 2000}, ""),
		l7Run("nginx", "body1m", map[string]float64{"rps": 500, "p99_us": 18000, "cpu_us_per_req": 1000, "body_bytes": 1 << 20,
			"upstream_conns": 10, "upstream_requests": 1000}, ""),
		l7Run("portico", "body1m", nil, "did not start: type HttpConnectionManager is not supported by Portico here"),
	}
	out := proxyTables(f)
	for _, want := range []string{
		"(a) Keep-alive GET",
		// rate 1.25× / 1.00×, p99 0.50× / 1.00×, CPU 0.90× / 0.72×, 2000 requests per connection, 99.95 %.
		"| portico | 50000 | 1.25× | 1.00× | 700 | 1000 | 0.50× | 1.00× | 18.0 | 0.90× | 0.72× | – | – | – | 50 | 2000 | 99.95 % | 0 |",
		"| nginx (proxy_pass) | 50000 | 1.25× | 1.00× | 800 | 1000 | 0.50× | 1.00× | 25.0 | 1.25× | 1.00× | – | – | – | 5000 | 20 | 95.00 % | 0 |",
		"(b) Keep-alive GET of a 1 MiB response body",
		"| Proxy | MB/s median (min–max) |",
		// 1000 × 1 MiB/s = 1049 MB/s; 500 µs per MiB = 477 µs per MB.
		"| haproxy (mode http) | 1049 | 1.00× | 2.00× |",
		"| 476.8 | 1.00× | 0.50× |",
		"portico: 1 of 1 runs failed: did not start: type HttpConnectionManager is not supported by Portico here.",
		"| rate ≥ HAProxy's and nginx's (vs HAProxy / vs nginx) | 1.25× / 1.00×: **met** | no Portico result |",
		"| CPU per request (per MB) ≤ 0.9× HAProxy's and nginx's | 0.90× / 0.72×: **met** |",
		"| upstream reuse ≥ 99 % | 99.95 %: **met** |",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q:\n%s", want, out)
		}
	}
}

func TestL7TargetNotMet(t *testing.T) {
	f := &resultFile{Scenario: "l7-proxy", Params: []byte(`{}`), Machine: []byte(`{}`)}
	f.Runs = []run{
		l7Run("haproxy", "close", map[string]float64{"rps": 20000, "p99_us": 3000, "cpu_us_per_req": 30}, ""),
		l7Run("nginx", "close", map[string]float64{"rps": 20000, "p99_us": 3000, "cpu_us_per_req": 30}, ""),
		l7Run("portico", "close", map[string]float64{"rps": 19000, "p99_us": 3100, "cpu_us_per_req": 28,
			"upstream_conns": 2000, "upstream_requests": 100000, "non2xx": 3}, ""),
	}
	f.Runs = append(f.Runs, l7Run("net", "close", map[string]float64{"rps": 9000, "upstream_conns": 1010, "upstream_requests": 1000}, ""))
	l7Derive(f)
	if v := f.Runs[3].Metrics["reuse_pct"]; v != 0 {
		t.Fatalf("more connections than requests: reuse %v, want 0", v)
	}
	out := l7TargetTable(f, []string{"close"})
	for _, want := range []string{
		"| 0.95× / 0.95×: not met |", "| 1.03× / 1.03×: not met |", "| 0.93× / 0.93×: not met |",
		"| 98.00 %: not met |", "| 3: not met |",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q:\n%s", want, out)
		}
	}
}
