package main

import (
	"strings"
	"testing"
)

func l4Run(server, test string, m map[string]float64) run {
	return run{Labels: map[string]string{"server": server, "test": test, "rep": "1"}, Metrics: m}
}

func TestL4MachineColumnsAndPathFlag(t *testing.T) {
	f := &resultFile{Scenario: "l4-proxy", Params: []byte(`{}`), Machine: []byte(`{}`), Runs: []run{
		l4Run("none", "keepalive", map[string]float64{"rps": 3000, "machine_cpu_us_per_req": 10, "bench_cpu_us_per_req": 9}),
		l4Run("portico", "keepalive", map[string]float64{"rps": 2000, "cpu_us_per_req": 10, "machine_cpu_us_per_req": 30,
			sockmapKey: 0, userspaceKey: 100}),
		l4Run("portico-sockmap", "keepalive", map[string]float64{"rps": 2000, "cpu_us_per_req": 1, "machine_cpu_us_per_req": 25, "bench_cpu_us_per_req": 24,
			sockmapKey: 0, userspaceKey: 100}),
		l4Run("haproxy", "keepalive", map[string]float64{"rps": 2000, "cpu_us_per_req": 12, "machine_cpu_us_per_req": 50, "bench_cpu_us_per_req": 48}),
		l4Run("portico-sockmap", "bulk", map[string]float64{"mb_per_s": 3000, "machine_cpu_us_per_mb": 100, sockmapKey: 1, userspaceKey: 0}),
		l4Run("haproxy", "bulk", map[string]float64{"mb_per_s": 1500, "machine_cpu_us_per_mb": 400}),
	}}
	out := proxyTables(f)
	for _, want := range []string{
		"machine CPU µs/req median (min–max) | machine CPU/req vs HAProxy |",
		"| portico-sockmap | 2000 | 1.00× | – | – | – | 1.0 | 0.08× | 25.0 | 0.50× |",
		"| portico-sockmap | 3000 | – | 2.00× | – | 100 | 0.25× |",
		"**!! Wrong path:** portico-sockmap keepalive rep 1: 0 sockmap (100 userspace).",
		"| keep-alive, per request | portico-sockmap | 1.0 | 25.0 | 0.50× | 24.0 | 0.50× | 15.0 |",
		"0 / 100 **!! rep 1: 0 sockmap (100 userspace)**",
		"| bulk, per MB | portico-sockmap | – | 100.0 | 0.25× | – | – | – |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "portico bulk") || strings.Contains(out, "portico-sockmap bulk rep") {
		t.Errorf("a run on its right path is flagged:\n%s", out)
	}
}

func TestL4OldFilesKeepTheirColumns(t *testing.T) {
	f := &resultFile{Scenario: "l4-proxy", Params: []byte(`{}`), Machine: []byte(`{}`), Runs: []run{
		l4Run("portico", "keepalive", map[string]float64{"rps": 2000, "cpu_us_per_req": 10}),
	}}
	out := proxyTables(f)
	if strings.Contains(out, "machine") || strings.Contains(out, "Wrong path") {
		t.Fatalf("a file without machine figures grew their columns:\n%s", out)
	}
}

func TestPathProblemUserspaceRow(t *testing.T) {
	r := l4Run("portico", "close", map[string]float64{sockmapKey: 3, userspaceKey: 10})
	if p := pathProblem(&r); p != "3 on sockmap" {
		t.Fatalf("userspace row on sockmap: %q", p)
	}
	r = l4Run("portico-sockmap", "close", map[string]float64{"rps": 1})
	if p := pathProblem(&r); p != "no path count" {
		t.Fatalf("uncounted sockmap row: %q", p)
	}
}
