package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// fakeControl records what the admin asked of it.
type fakeControl struct {
	mu       sync.Mutex
	drains   []DrainOptions
	hc       []bool
	queries  []url.Values
	dump     []byte
	dumpErr  error
	drainErr error
}

func (c *fakeControl) DrainListeners(o DrainOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drains = append(c.drains, o)
	return c.drainErr
}

func (c *fakeControl) SetHealthCheckFailed(failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hc = append(c.hc, failed)
}

func (c *fakeControl) ConfigDump(q url.Values) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, q)
	return c.dump, c.dumpErr
}

// statusError is an error with an HTTP status, as config's dump errors are.
type statusError struct{ code int }

func (e statusError) Error() string   { return fmt.Sprintf("error %d", e.code) }
func (e statusError) HTTPStatus() int { return e.code }

func do(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func startControlled(t *testing.T, c Control) (*Admin, string) {
	t.Helper()
	a, addr := startAdmin(t, Options{Control: c})
	return a, "http://" + addr
}

// The endpoints that change the server answer anything but POST with Envoy's 405, and do
// nothing.
func TestControlRequiresPost(t *testing.T) {
	c := &fakeControl{}
	_, base := startControlled(t, c)
	for _, path := range []string{"/healthcheck/fail", "/healthcheck/ok", "/drain_listeners?graceful"} {
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			code, h, body := do(t, m, base+path)
			if code != 405 || body != "Method "+m+" not allowed, POST required." || h.Get("Allow") != "POST" {
				t.Errorf("%s %s: %d %q Allow=%q", m, path, code, body, h.Get("Allow"))
			}
		}
	}
	if len(c.drains) != 0 || len(c.hc) != 0 {
		t.Errorf("a refused request reached the hook: drains %v, healthcheck %v", c.drains, c.hc)
	}
}

// Each of /drain_listeners' parameters reaches the hook, by its presence as in Envoy;
// skip_exit without graceful is refused as Envoy refuses it.
func TestDrainListenersParameters(t *testing.T) {
	c := &fakeControl{}
	_, base := startControlled(t, c)
	for _, tc := range []struct {
		query string
		want  DrainOptions
	}{
		{"", DrainOptions{}},
		{"?graceful", DrainOptions{Graceful: true}},
		{"?inboundonly", DrainOptions{InboundOnly: true}},
		{"?graceful&skip_exit", DrainOptions{Graceful: true, SkipExit: true}},
		{"?inboundonly&graceful&skip_exit", DrainOptions{Graceful: true, InboundOnly: true, SkipExit: true}},
		{"?graceful=false", DrainOptions{Graceful: true}}, // presence is what counts
	} {
		c.drains = nil
		code, _, body := do(t, "POST", base+"/drain_listeners"+tc.query)
		if code != 200 || body != "OK\n" {
			t.Errorf("%q: %d %q", tc.query, code, body)
		}
		if len(c.drains) != 1 || c.drains[0] != tc.want {
			t.Errorf("%q: hook got %+v, want %+v", tc.query, c.drains, tc.want)
		}
	}

	c.drains = nil
	if code, _, body := do(t, "POST", base+"/drain_listeners?skip_exit"); code != 400 || !strings.Contains(body, "skip_exit requires graceful") {
		t.Errorf("skip_exit alone: %d %q", code, body)
	}
	if len(c.drains) != 0 {
		t.Errorf("skip_exit alone reached the hook: %v", c.drains)
	}

	c.drainErr = errors.New("no listeners to drain")
	if code, _, body := do(t, "POST", base+"/drain_listeners"); code != 500 || !strings.Contains(body, "no listeners to drain") {
		t.Errorf("hook error: %d %q", code, body)
	}
}

// /healthcheck/fail makes /ready answer 503 DRAINING and server.live 0, server.state 1
// (Envoy's numbers); /healthcheck/ok undoes it; the hook hears both.
func TestHealthcheckFailAndOK(t *testing.T) {
	c := &fakeControl{}
	a, base := startControlled(t, c)
	a.SetState(Live)
	stateLines := func() (string, string) {
		_, body := get(t, base+"/stats")
		var live, state string
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, "server.live: "); ok {
				live = v
			}
			if v, ok := strings.CutPrefix(l, "server.state: "); ok {
				state = v
			}
		}
		return live, state
	}
	if code, body := get(t, base+"/ready"); code != 200 || body != "LIVE\n" {
		t.Fatalf("/ready: %d %q", code, body)
	}
	if live, state := stateLines(); live != "1" || state != "0" {
		t.Errorf("live: server.live %q server.state %q", live, state)
	}

	if code, _, body := do(t, "POST", base+"/healthcheck/fail"); code != 200 || body != "OK\n" {
		t.Fatalf("POST /healthcheck/fail: %d %q", code, body)
	}
	if code, body := get(t, base+"/ready"); code != 503 || body != "DRAINING\n" {
		t.Errorf("/ready after healthcheck/fail: %d %q", code, body)
	}
	if live, state := stateLines(); live != "0" || state != "1" {
		t.Errorf("failed: server.live %q server.state %q", live, state)
	}
	_, prom := get(t, base+"/stats/prometheus")
	for _, want := range []string{"# TYPE portico_server_live gauge\nportico_server_live 0\n", "# TYPE portico_server_state gauge\nportico_server_state 1\n"} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q", want)
		}
	}
	if !a.HealthCheckFailed() {
		t.Error("HealthCheckFailed is false after /healthcheck/fail")
	}

	if code, _, body := do(t, "POST", base+"/healthcheck/ok"); code != 200 || body != "OK\n" {
		t.Fatalf("POST /healthcheck/ok: %d %q", code, body)
	}
	if code, body := get(t, base+"/ready"); code != 200 || body != "LIVE\n" {
		t.Errorf("/ready after healthcheck/ok: %d %q", code, body)
	}
	if live, state := stateLines(); live != "1" || state != "0" {
		t.Errorf("ok again: server.live %q server.state %q", live, state)
	}
	if len(c.hc) != 2 || !c.hc[0] || c.hc[1] {
		t.Errorf("hook calls %v, want [true false]", c.hc)
	}

	// A server shutting down stays DRAINING whatever the health checks say, and one not
	// started yet stays PRE_INITIALIZING (server.state 2).
	a.SetState(Draining)
	if code, body := get(t, base+"/ready"); code != 503 || body != "DRAINING\n" {
		t.Errorf("/ready draining: %d %q", code, body)
	}
	a.SetState(PreInitializing)
	do(t, "POST", base+"/healthcheck/fail")
	if code, body := get(t, base+"/ready"); code != 503 || body != "PRE_INITIALIZING\n" {
		t.Errorf("/ready pre-initializing, health checks failed: %d %q", code, body)
	}
	if _, state := stateLines(); state != "2" {
		t.Errorf("pre-initializing: server.state %q", state)
	}
}

// /config_dump passes its query to the hook and serves what it renders as JSON; the
// hook's errors are 400, or the status they carry.
func TestConfigDumpEndpoint(t *testing.T) {
	c := &fakeControl{dump: []byte(`{"configs":[]}`)}
	_, base := startControlled(t, c)
	code, h, body := do(t, "GET", base+"/config_dump?resource=dynamic_listeners&name_regex=a.*&mask=name")
	if code != 200 || h.Get("Content-Type") != "application/json" || body != `{"configs":[]}` {
		t.Errorf("/config_dump: %d %q %q", code, h.Get("Content-Type"), body)
	}
	q := c.queries[0]
	if q.Get("resource") != "dynamic_listeners" || q.Get("name_regex") != "a.*" || q.Get("mask") != "name" {
		t.Errorf("hook got query %v", q)
	}

	c.dumpErr = errors.New("bad name_regex")
	if code, h, body := do(t, "GET", base+"/config_dump?name_regex=("); code != 400 || !strings.Contains(body, "bad name_regex") ||
		!strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("error: %d %q %q", code, h.Get("Content-Type"), body)
	}
	c.dumpErr = fmt.Errorf("dump: %w", statusError{404})
	if code, _, body := do(t, "GET", base+"/config_dump?resource=nothing"); code != 404 || !strings.Contains(body, "error 404") {
		t.Errorf("error with a status: %d %q", code, body)
	}
	if code, _, _ := do(t, "POST", base+"/config_dump"); code != 405 {
		t.Errorf("POST /config_dump: %d", code)
	}
}

// Without a Control, draining and dumping answer 501; the health check endpoints still
// change /ready.
func TestNoControl(t *testing.T) {
	a, addr := startAdmin(t, Options{})
	base := "http://" + addr
	a.SetState(Live)
	if code, _, _ := do(t, "POST", base+"/drain_listeners"); code != 501 {
		t.Errorf("/drain_listeners: %d", code)
	}
	if code, _, _ := do(t, "GET", base+"/config_dump"); code != 501 {
		t.Errorf("/config_dump: %d", code)
	}
	do(t, "POST", base+"/healthcheck/fail")
	if code, _ := get(t, base+"/ready"); code != 503 {
		t.Errorf("/ready after healthcheck/fail: %d", code)
	}
}

// /listeners lists the engine's listeners as they are when asked, in Envoy's text and
// JSON (envoy.admin.v3.Listeners) forms; the index names the new endpoints.
func TestListenersLiveAndJSON(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	l1, err := srv.AddListener(engine.ListenerConfig{Name: "l1", Address: netip.MustParseAddrPort("127.0.0.1:0"), FilterChains: engine.SingleChain{}})
	if err != nil {
		t.Fatal(err)
	}
	a := New(srv, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	addr, err := a.Start(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	base := "http://" + addr.String()

	// Added after the admin started: it must show.
	if _, err := srv.AddListener(engine.ListenerConfig{Name: "l2", Address: netip.MustParseAddrPort("[::1]:10444"), NoBindToPort: true, FilterChains: engine.SingleChain{}}); err != nil {
		t.Fatal(err)
	}
	_, text := get(t, base+"/listeners")
	want := fmt.Sprintf("l1::%s\nl2::[::1]:10444 (bind_to_port: false)\n", l1.Address())
	if text != want {
		t.Errorf("/listeners: %q, want %q", text, want)
	}

	code, h, body := do(t, "GET", base+"/listeners?format=json")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("/listeners?format=json: %d %q", code, h.Get("Content-Type"))
	}
	var got struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue uint16 `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	if len(got.ListenerStatuses) != 2 {
		t.Fatalf("listener_statuses: %s", body)
	}
	s0, s1 := got.ListenerStatuses[0], got.ListenerStatuses[1]
	if s0.Name != "l1" || s0.LocalAddress.SocketAddress.Address != "127.0.0.1" || s0.LocalAddress.SocketAddress.PortValue != l1.Address().Port() {
		t.Errorf("first status %+v", s0)
	}
	if s1.Name != "l2" || s1.LocalAddress.SocketAddress.Address != "::1" || s1.LocalAddress.SocketAddress.PortValue != 10444 {
		t.Errorf("second status %+v", s1)
	}
	if !strings.Contains(body, "\n \"listener_statuses\": [") {
		t.Errorf("not pretty-printed with Envoy's one-space indent:\n%s", body)
	}

	_, index := get(t, base+"/")
	for _, p := range []string{"/config_dump", "/healthcheck/fail (POST)", "/healthcheck/ok (POST)", "/drain_listeners (POST)", "inboundonly", "skip_exit", "format"} {
		if !strings.Contains(index, p) {
			t.Errorf("index lacks %q", p)
		}
	}
}

// listenerManagerStats stands in for the lead's listener_manager source: process-wide,
// no labels.
type listenerManagerStats struct{}

func (listenerManagerStats) StatsFamily() string      { return "listener_manager" }
func (listenerManagerStats) StatsLabels() [][2]string { return nil }
func (listenerManagerStats) StatsProcessWide() bool   { return true }
func (listenerManagerStats) VisitStats(w int, v engine.StatVisitor) {
	v("listener_added", engine.KindCounter, 2)
	v("lds.update_success", engine.KindCounter, 3)
	v("total_listeners_active", engine.KindGauge, 1)
}

// A process-wide source with family listener_manager and no labels shows by Envoy's
// names, once, without a worker (the engine here has two workers); a plain source with
// that family shows per worker and summed.
func TestListenerManagerStatsNames(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.AddStatsSource(listenerManagerStats{})
	srv.AddStatsSource(&labelSource{family: "cluster_manager", stats: []fakeStat{{"cds.update_success", engine.KindCounter, 1}}})
	a := New(srv, Options{})
	text := scrape(t, a.stats)
	for _, want := range []string{
		"listener_manager.lds.update_success: 3\n",
		"listener_manager.listener_added: 2\n",
		"listener_manager.total_listeners_active: 1\n",
		"cluster_manager.cds.update_success: 3\n", // 1 + 2: worker w reports (w+1)
		"cluster_manager.worker_0.cds.update_success: 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/stats lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "listener_manager.worker_") {
		t.Errorf("/stats has per-worker lines of a process-wide source:\n%s", text)
	}
	prom := scrape(t, a.prometheus)
	for _, want := range []string{
		"# TYPE portico_listener_manager_lds_update_success counter\nportico_listener_manager_lds_update_success{} 3\n",
		"# TYPE portico_listener_manager_listener_added counter\nportico_listener_manager_listener_added{} 2\n",
		"# TYPE portico_listener_manager_total_listeners_active gauge\nportico_listener_manager_total_listeners_active{} 1\n",
		`portico_cluster_manager_cds_update_success{worker="1"} 2` + "\n",
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q:\n%s", want, prom)
		}
	}
	sameAsReference(t, a, "listener_manager")
}

// The commands as an operator types them with curl: a plain curl is a GET and is
// refused; curl -X POST drains, with the query as Envoy's docs write it.
func TestControlWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	c := &fakeControl{}
	_, base := startControlled(t, c)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-s", "-w", " %{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		return string(out)
	}
	if got := run(base + "/drain_listeners?graceful"); got != "Method GET not allowed, POST required. 405" {
		t.Errorf("curl GET: %q", got)
	}
	if got := run("-X", "POST", base+"/drain_listeners?inboundonly&graceful&skip_exit"); got != "OK\n 200" {
		t.Errorf("curl -X POST: %q", got)
	}
	if len(c.drains) != 1 || c.drains[0] != (DrainOptions{Graceful: true, InboundOnly: true, SkipExit: true}) {
		t.Errorf("hook got %+v", c.drains)
	}
	if got := run("-X", "POST", base+"/healthcheck/fail"); got != "OK\n 200" {
		t.Errorf("curl -X POST /healthcheck/fail: %q", got)
	}
}
