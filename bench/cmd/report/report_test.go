package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2})
	if s.Med != 2 || s.Min != 1 || s.Max != 3 || s.N != 3 {
		t.Fatalf("%+v", s)
	}
	if m := summarize([]float64{1, 2, 3, 10}).Med; m != 2.5 {
		t.Fatalf("even median %v", m)
	}
	if summarize(nil).fmtRange("%.0f") != "–" {
		t.Fatal("empty spread should print a dash")
	}
}

func TestRewriteKeepsProse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "B.md")
	in := "intro\n<!-- bench:echo:begin -->\nold\n<!-- bench:echo:end -->\noutro\n"
	if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(p, map[string]string{"echo": "new\n", "idle-mem": "x"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "intro\n<!-- bench:echo:begin -->\nnew\n<!-- bench:echo:end -->\noutro\n"
	if string(b) != want {
		t.Fatalf("got %q", b)
	}
}

func TestEchoTableMarksFailures(t *testing.T) {
	f := &resultFile{Scenario: "echo", Runs: []run{
		{Mode: "pingpong", Labels: map[string]string{"server": "net"}, Size: 64, Conns: 10, Msgs: 100, MsgsPS: 1000},
		{Mode: "pingpong", Labels: map[string]string{"server": "portico"}, Size: 64, Conns: 10, Failure: "server did not start"},
	}}
	tab := echoTable(f, "net")
	if !strings.Contains(tab, "1/1 runs failed: server did not start") {
		t.Fatalf("failure not shown:\n%s", tab)
	}
	if !strings.Contains(tab, "| 64 B | 10 | net | 1000 | 1.00× |") {
		t.Fatalf("reference row wrong:\n%s", tab)
	}
}

func TestMaxMean(t *testing.T) {
	mm, cv, ok := maxMean([]float64{50, 50})
	if !ok || mm != 1 || cv != 0 {
		t.Fatalf("even split: %v %v %v", mm, cv, ok)
	}
	mm, cv, _ = maxMean([]float64{30, 70})
	if mm != 1.4 || cv < 0.399 || cv > 0.401 {
		t.Fatalf("30/70: max/mean %v cv %v", mm, cv)
	}
	if _, _, ok := maxMean([]float64{0, 0}); ok {
		t.Fatal("all-zero vector has no max/mean")
	}
}

func TestProxyTablesFromQuickShape(t *testing.T) {
	f := &resultFile{Scenario: "l4-proxy", Params: []byte(`{}`), Machine: []byte(`{}`)}
	for i, s := range []string{"none", "portico", "haproxy"} {
		var r run
		r.Labels = map[string]string{"server": s, "test": "keepalive", "rep": "1"}
		r.Metrics = map[string]float64{"rps": float64(1000 * (i + 1)), "p99_us": 100, "cpu_us_per_req": 10}
		f.Runs = append(f.Runs, r)
	}
	out := proxyTables(f)
	if !strings.Contains(out, "| portico | 2000 | 0.67× |") {
		t.Fatalf("ratio to HAProxy missing:\n%s", out)
	}
}

func TestSyscallHandshakeTable(t *testing.T) {
	f := &resultFile{Scenario: "syscalls", Params: []byte(`{}`), Machine: []byte(`{}`)}
	for _, s := range []string{"portico", "portico-base", "haproxy"} {
		var r run
		r.Labels = map[string]string{"server": s, "test": "handshake", "rep": "1"}
		r.Metrics = map[string]float64{"handshakes": 300, "sys_total": 24, "sys_recvfrom": 5, "sys_sendto": 4, "errors": 0}
		f.Runs = append(f.Runs, r)
	}
	out := proxyTables(f)
	for _, want := range []string{"SNI-routed TLS handshakes", "| Proxy | handshakes traced | syscalls/handshake | recvfrom | sendto | other | errors |",
		"| portico | 300 | 24.00 | 5.00 | 4.00 | 15.00 | 0 |", "| portico-base | 300 |"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q:\n%s", want, out)
		}
	}
	// Without handshake rows (older result files) there is no such table.
	f.Runs = f.Runs[:0]
	if out := proxyTables(f); strings.Contains(out, "SNI-routed") {
		t.Fatalf("empty handshake table printed:\n%s", out)
	}
}

func TestDripTable(t *testing.T) {
	f := &resultFile{Scenario: "drip", Params: []byte(`{"drippers":4,"drip_duration_s":15,"timeouts":"x"}`), Machine: []byte(`{}`)}
	add := func(srv, test string, m map[string]float64) {
		var r run
		r.Labels = map[string]string{"server": srv, "test": test, "rep": "1"}
		r.Metrics = m
		f.Runs = append(f.Runs, r)
	}
	add("haproxy", "drip", map[string]float64{"bytes_per_conn": 1501, "conns_open": 4, "closed_early": 4, "closed_early_eof": 4,
		"median_close_s": 5, "bytes_sent": 2000, "replied": 0, "sched_cpu_ms_per_conn": 3.5, "cpu_ms_per_conn": 2.5, "ctxsw_per_conn": 500})
	add("portico", "drip", map[string]float64{"bytes_per_conn": 1501, "conns_open": 4, "closed_early": 0, "bytes_sent": 6004,
		"replied": 4, "sched_cpu_ms_per_conn": 0.4, "cpu_ms_per_conn": 0, "ctxsw_per_conn": 40})
	add("portico", "keepalive", map[string]float64{"p50_us": 1000, "p99_us": 2000, "rps": 20000})
	add("portico", "keepalive-drip", map[string]float64{"p50_us": 1100, "p99_us": 3000, "rps": 19000})
	add("portico", "drip-bg", map[string]float64{"conns_open": 4, "closed_early": 0})
	out := proxyTables(f)
	for _, want := range []string{
		"4 drippers × 15 s, each a 1501-byte TLS ClientHello",
		"| portico | 0.40 | 0.0 | 40 | 0/4 | 1501 | 4/4 | 1000 | 1100 | 2000 | 3000 | 1.50× | 20000 | 19000 | 0/4 | 0 |",
		"| haproxy | 3.50 | 2.5 | 500 | 4/4 at 5.0 s (4 FIN) | 500 | 0/4 |",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q:\n%s", want, out)
		}
	}
}
