package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestXDSTables: p50/p99 over the updates of all repetitions per fleet, size
// and kind; the serve check's totals; the steady state per fleet and size; an
// unavailable fleet and a stopped run are said.
func TestXDSTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xds-20260101-000000.json")
	body := `{"scenario":"xds","machine":{},"params":{},"runs":[
{"mode":"xds-meta","labels":{"proxies":"3"},"proxies":3,"elapsed_s":50,"control_plane_cpus":"0","loadavg_start":"1.0","loadavg_end":"2.0","failure":""},
{"mode":"xds-update","labels":{"proxies":"3","rep":"1"},"listeners":1000,"kind":"chain","types":["LDS"],"ack_ms":600,"type_ack_ms":{"LDS":600},"proxy_ack_ms":[500,600,550],"proxy_sent_ms":[10,20,30],"proxy_apply_ms":[490,580,520],"proxy_cpu_ms":[150,160,170],"proxy_run_ms":[151,161,171],"proxy_cpu_window_ms":[150,170,170],"cp_run_ms":20,"other_cpu_ms":100,"serve":{"checked":12,"first_ok":12,"ok":12},"failure":""},
{"mode":"xds-update","labels":{"proxies":"3","rep":"2"},"listeners":1000,"kind":"chain","types":["LDS"],"ack_ms":700,"type_ack_ms":{"LDS":700},"proxy_ack_ms":[700,650,640],"proxy_sent_ms":[10,20,30],"proxy_apply_ms":[690,630,610],"proxy_cpu_ms":[200,160,170],"proxy_run_ms":[201,161,171],"proxy_cpu_window_ms":[210,170,170],"cp_run_ms":30,"other_cpu_ms":300,"serve":{"checked":12,"first_ok":11,"ok":12,"stale":1,"max_late_ms":40},"failure":""},
{"mode":"xds-update","labels":{"proxies":"3","rep":"1"},"listeners":10,"kind":"initial","types":["CDS","LDS"],"ack_ms":30,"proxy_ack_ms":[30],"serve":{"checked":12,"first_ok":12,"ok":12},"failure":""},
{"mode":"xds-steady","labels":{"proxies":"3","rep":"1"},"listeners":1000,"rss_kib":[92160,94208,96256],"hwm_kib":[102400,102400,102400],"pss_kib":[71680,71680,71680],"threads":[10,10,11],"idle_cpu_ms":[0,10,0],"idle_ms":2000,"phase_ms":20000,"phase_updates":10,"phase_cpu_ms":[5000,6000,7000],"phase_cp_cpu_ms":300,"cp_rss_kib":51200,"admin":{"proxy-1":{"listener_manager.lds.update_success":11,"listener_manager.total_listeners_active":1000}},"failure":""},
{"mode":"xds-update","labels":{"proxies":"1","drain_s":"1","rep":"1"},"listeners":10,"kind":"chain","types":["LDS"],"ack_ms":5,"proxy_ack_ms":[5],"failure":""},
{"mode":"xds-update","labels":{"proxies":"1","drain_s":"1","protocol":"delta","rep":"1"},"listeners":10,"kind":"one","types":["LDS"],"ack_ms":4,"proxy_ack_ms":[4],"failure":""},
{"mode":"xds-meta","labels":{"proxies":"1"},"proxies":1,"unavailable":"proxy-1 exited (exit status 1): no ads","note":"stopped at the time bound","failure":""}]}`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := readResult(path)
	if err != nil {
		t.Fatal(err)
	}
	out := proxyTables(f)
	for _, want := range []string{
		"* 3 proxies: the run took 50 s, the control plane on CPU 0; load average 1.0 at the start, 2.0 at the end.",
		"| 3 | 10 | initial (from the previous size's set) | 1 | **30 / 30** |",
		"| 3 | 1000 | filter chains only (LDS) | 2 | **600 / 700** | – / 600 | 620 (700) | 20.0 (30.0) | 595 (690) | 165 (200) | 170 (210) | 25 (30) | 200 (300) | 23 / 24 (1 stale at first) | 0 |",
		"| 3 | 1000 | 92.0 (90.0–94.0) | 70.0 (70.0–70.0) | 100.0 (100.0–100.0) | 10 (10–11) | 0 (0–5) | 600 (500–700) | 30 | 50 | `lds.update_success` 11, `total_listeners_active` 1000 |",
		"* 1 proxy: not available: proxy-1 exited (exit status 1): no ads",
		"* 1 proxy: stopped at the time bound",
		"| 1, drain 1 s | 10 | filter chains only (LDS) | 1 | **5 / 5** |",
		"| 1, delta, drain 1 s | 10 | one listener's chain (LDS) | 1 | **4 / 4** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
