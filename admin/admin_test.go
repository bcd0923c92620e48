package admin

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// fakeSource is a StatsSource with one counter per worker.
type fakeSource struct{ v float64 }

func (fakeSource) StatsFamily() string      { return "tcp" }
func (fakeSource) StatsLabels() [][2]string { return [][2]string{{"stat_prefix", "shared"}} }
func (f fakeSource) VisitStats(w int, v engine.StatVisitor) {
	v("downstream_cx_total", engine.KindCounter, f.v+float64(w))
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := srv.AddListener(engine.ListenerConfig{Name: "l1", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{}}); err != nil {
		t.Fatal(err)
	}
	// A listener's stat_prefix replaces its name as the scope of its stats.
	if _, err := srv.AddListener(engine.ListenerConfig{Name: "l2", StatPrefix: "ingress", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{}}); err != nil {
		t.Fatal(err)
	}
	// Two filters sharing one stat_prefix show as one series.
	srv.AddStatsSource(fakeSource{1})
	srv.AddStatsSource(fakeSource{10})
	a := New(srv, Options{})
	addr, err := a.Start(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base := "http://" + addr.String()

	if code, body := get(t, base+"/ready"); code != 503 || strings.TrimSpace(body) != "PRE_INITIALIZING" {
		t.Errorf("/ready before start: %d %q", code, body)
	}
	a.SetState(Live)
	if code, body := get(t, base+"/ready"); code != 200 || strings.TrimSpace(body) != "LIVE" {
		t.Errorf("/ready: %d %q", code, body)
	}
	_, prom := get(t, base+"/stats/prometheus")
	for _, want := range []string{
		"# TYPE portico_listener_downstream_cx_total counter",
		`portico_listener_downstream_cx_active{listener="l1",address="127.0.0.1:`,
		`portico_listener_downstream_cx_active{listener="ingress",address="127.0.0.1:`,
		`portico_tcp_downstream_cx_total{stat_prefix="shared",worker="0"} 11`,
		`portico_tcp_downstream_cx_total{stat_prefix="shared",worker="1"} 13`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q:\n%s", want, prom)
		}
	}
	_, text := get(t, base+"/stats")
	for _, want := range []string{"tcp.shared.downstream_cx_total: 24\n", "tcp.shared.worker_1.downstream_cx_total: 13\n",
		"listener.l1.worker_0.downstream_cx_total: 0\n", "listener.ingress.downstream_cx_total: 0\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("/stats lacks %q:\n%s", want, text)
		}
	}
	if _, body := get(t, base+"/listeners"); !strings.HasPrefix(body, "l1::127.0.0.1:") {
		t.Errorf("/listeners: %q", body)
	}
}
