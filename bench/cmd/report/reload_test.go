package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReloadTables: totals over repetitions, the per-event median and worst, an
// unavailable cell with its reason, and a run that did not complete.
func TestReloadTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reload-20260101-000000.json")
	body := `{"scenario":"reload","machine":{},"params":{},"runs":[
{"mode":"churn","labels":{"test":"portico-cold","rep":"1"},"metrics":{"rate":13000,"failed":30,"stream_breaks":2,"missed_slots":0,"sut_util":0.5},
 "by_class":{"refused":28,"reset":2},"events":[
  {"name":"portico-cold-1","action_ms":250,"failed":10,"by_class":{"refused":10},"max_gap_ms":90},
  {"name":"portico-cold-2","action_ms":300,"failed":20,"by_class":{"refused":18,"reset":2},"max_gap_ms":120,"max_attempt_gap_ms":30}],"failure":""},
{"mode":"churn","labels":{"test":"portico-cold","rep":"2"},"metrics":{"rate":13400,"failed":12,"stream_breaks":0,"missed_slots":4,"sut_util":0.6},
 "by_class":{"refused":12},"events":[
  {"name":"portico-cold-1","action_ms":200,"failed":12,"by_class":{"refused":12},"max_gap_ms":100},
  {"name":"portico-cold-2-failed","action_ms":10000,"failed":0,"by_class":{},"max_gap_ms":0}],"failure":"event 2: the new process or version did not come up"},
{"mode":"churn","labels":{"test":"portico-lds","rep":"1"},"metrics":{},"unavailable":"portico has no LDS","failure":""},
{"mode":"churn","labels":{"test":"haproxy-mw","rep":"1"},"metrics":{"rate":13500,"failed":0,"stream_idle_closes":5},
 "by_class":{},"events":[{"name":"haproxy-mw-1","action_ms":190,"failed":0,"by_class":{},"max_gap_ms":8,"latency_ms":12}],"failure":""}]}`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := readResult(path)
	if err != nil {
		t.Fatal(err)
	}
	out := proxyTables(f)
	for _, want := range []string{
		"| Portico: SIGTERM, wait for the exit, start again | 3 | **42** | 12 (20) | 40 refused, 2 reset | 100 (120) | 30 | 2 | 0 / 0 | – | 13200 (13000–13400) | 2 (0–4) | 55 % |",
		"| Portico in-place LDS update (lds.yaml renamed into place; filter-chain-only change) | not available: portico has no LDS |",
		"| 12 / 12 (1 updates) |",
		"| portico-cold | 10 20 · 12 (failed) | 250 (300) | – |",
		"* portico-cold, rep 2: event 2: the new process or version did not come up",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
