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
