package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ldsBootstrap is a bootstrap whose listeners come from an LDS file; its static cluster
// "echo" is the backend.
const ldsBootstrap = `
node: {id: test, cluster: test}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{.Admin}}}}}
static_resources:
  clusters:
  - name: echo
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{.Backend}}}}}}]}]
dynamic_resources:
  lds_config: {path_config_source: {path: {{.LDS}}}, resource_api_version: V3}
`

// edgeListener is the LDS listener of the update tests: three chains chosen by the
// client's source address, 127.0.0.1 (churn), .2 (stable: never changes) and .3
// (changing: its stat_prefix changes with every version, so every update drops it).
func edgeListener(port int, version string) string {
	chain := func(name, src, prefix string) string {
		return fmt.Sprintf(`
  - name: %s
    filter_chain_match: {source_prefix_ranges: [{address_prefix: %s, prefix_len: 32}]}
    filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: %s, cluster: echo}`,
			name, src, prefix)
	}
	return fmt.Sprintf(`- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: edge
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
  filter_chains:%s%s%s
`, port, chain("churn", "127.0.0.1", "churn"), chain("stable", "127.0.0.2", "stable"), chain("changing", "127.0.0.3", "changing_"+version))
}

// writeLDS replaces the LDS file by a rename, as Envoy requires (an edit in place is not
// seen).
func writeLDS(t *testing.T, path, version, resources string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".lds.tmp")
	body := fmt.Sprintf("version_info: %q\nresources:\n%s", version, resources)
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// stream is a long-lived connection from a given source address that ping-pongs until it
// breaks or the test says stop.
type stream struct {
	opened, closed time.Time
	err            error // why it ended; nil if it was stopped
	// byPeer: the proxy closed it, with a FIN or (when the close found a ping unread, as
	// any close(2) with unread data does) a reset; not a timeout or a refusal.
	byPeer bool
}

func runStream(addr, src string, stop <-chan struct{}) *stream {
	s := &stream{}
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	s.opened = time.Now()
	if err != nil {
		s.err, s.closed = err, time.Now()
		return s
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		select {
		case <-stop:
			s.closed = time.Now()
			return s
		case <-time.After(50 * time.Millisecond):
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		_, err := c.Write([]byte("ping\n"))
		if err == nil {
			var line string
			line, err = r.ReadString('\n')
			if err == nil && line != "ping\n" {
				err = fmt.Errorf("echo %q", line)
			}
		}
		if err != nil {
			s.err, s.closed = err, time.Now()
			s.byPeer = errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
			return s
		}
	}
}

// churnLoad opens short connections from 127.0.0.1 at about rate per second until stop:
// each sends a line and reads it back. It counts successes and failures by kind.
type churnLoad struct {
	ok                               atomic.Int64
	refused, reset, timedOut, broken atomic.Int64
	mu                               sync.Mutex
	firstErrs                        []string
}

func (l *churnLoad) failed() int64 {
	return l.refused.Load() + l.reset.Load() + l.timedOut.Load() + l.broken.Load()
}

func (l *churnLoad) note(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		l.refused.Add(1)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		l.reset.Add(1)
	case errors.As(err, &ne) && ne.Timeout():
		l.timedOut.Add(1)
	default:
		l.broken.Add(1)
	}
	l.mu.Lock()
	if len(l.firstErrs) < 5 {
		l.firstErrs = append(l.firstErrs, err.Error())
	}
	l.mu.Unlock()
}

func (l *churnLoad) String() string {
	return fmt.Sprintf("%d ok, %d refused, %d reset, %d timed out, %d broken %v", l.ok.Load(), l.refused.Load(),
		l.reset.Load(), l.timedOut.Load(), l.broken.Load(), l.firstErrs)
}

func runChurn(addr string, rate int, stop <-chan struct{}) (*churnLoad, func()) {
	l := &churnLoad{}
	var wg sync.WaitGroup
	const workers = 16
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for n := 0; n < 1_000_000; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err != nil {
					l.note(err)
					continue
				}
				c.SetDeadline(time.Now().Add(3 * time.Second))
				_, err = c.Write([]byte("x\n"))
				var line string
				if err == nil {
					line, err = bufio.NewReader(c).ReadString('\n')
				}
				c.Close()
				if err == nil && line != "x\n" {
					err = fmt.Errorf("echo %q", line)
				}
				if err != nil {
					l.note(err)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l, wg.Wait
}

// TestLDSInPlaceUpdatesUnderLoad: 50 updates of an LDS file that change one filter chain
// of a listener, under a churn of new connections and 100 long-lived tcp_proxy streams.
// No new connection fails; the 50 streams on the unchanged chain live through all of
// them; the streams on the changing chain are closed by the proxy at the drain deadline
// of the update that dropped their chain (never before it), and reconnect to the new
// chain; and the listener manager's stats add up.
func TestLDSInPlaceUpdatesUnderLoad(t *testing.T) {
	const (
		updates  = 50
		interval = 300 * time.Millisecond
		drain    = time.Second
		perChain = 50
		rate     = 2000 // new connections per second: what this 2-core box sustains beside the proxy
	)
	dir := t.TempDir()
	lds := filepath.Join(dir, "lds.yaml")
	port := freePort(t)
	writeLDS(t, lds, "0", edgeListener(port, "0"))
	params := map[string]any{"Admin": freePort(t), "Backend": echoBackend(t), "LDS": lds}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, ldsBootstrap, params),
		"--concurrency", "2", "--drain-time-s", "1", "--log-level", "warning")
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	stop := make(chan struct{})
	var mu sync.Mutex
	var stable, changing []*stream
	var wg sync.WaitGroup
	for i := 0; i < perChain; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			s := runStream(addr, "127.0.0.2", stop)
			mu.Lock()
			stable = append(stable, s)
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			// A changing-chain stream that the proxy closes reconnects (to the chain's
			// newest version) until the test stops.
			for {
				s := runStream(addr, "127.0.0.3", stop)
				mu.Lock()
				changing = append(changing, s)
				mu.Unlock()
				if s.err == nil || !s.byPeer {
					return
				}
			}
		}()
	}
	churn, waitChurn := runChurn(addr, rate, stop)
	start := time.Now()
	for v := 1; v <= updates; v++ {
		time.Sleep(interval)
		writeLDS(t, lds, fmt.Sprint(v), edgeListener(port, fmt.Sprint(v)))
	}
	eventually(t, "all updates applied", func() bool { return p.stats(t)["listener_manager.lds.update_success"] == updates+1 })
	updatesDone := time.Now()
	// The streams on the last version must outlive two drain times.
	time.Sleep(2*drain + 500*time.Millisecond)
	close(stop)
	waitChurn()
	wg.Wait()
	elapsed := time.Since(start)

	t.Logf("%d updates in %v; churn %s (%.0f/s)", updates, updatesDone.Sub(start).Round(time.Millisecond), churn,
		float64(churn.ok.Load())/elapsed.Seconds())
	if churn.failed() != 0 || churn.ok.Load() == 0 {
		t.Errorf("new connections failed during the updates: %s", churn)
	}
	for _, s := range stable {
		if s.err != nil {
			t.Errorf("a stream on the unchanged chain broke after %v: %v", s.closed.Sub(s.opened).Round(time.Millisecond), s.err)
		}
	}
	closedByProxy, early, late := 0, 0, 0
	for _, s := range changing {
		if s.err == nil {
			continue
		}
		if !s.byPeer {
			t.Errorf("a changing-chain stream broke other than by the proxy's close: %v", s.err)
			continue
		}
		closedByProxy++
		life := s.closed.Sub(s.opened)
		// Dropped by the first update applied after it opened, closed a drain time later:
		// never sooner than the drain time, and within it plus the update interval (and
		// scheduling slack) while the updates go on.
		if life < drain-100*time.Millisecond {
			early++
		}
		if life > drain+interval+3*time.Second {
			late++
		}
	}
	if closedByProxy < perChain || early > 0 || late > 0 {
		t.Errorf("changing-chain streams: %d closed by the proxy, %d before the drain time, %d long after it", closedByProxy, early, late)
	}
	t.Logf("changing-chain streams: %d closed at their drain deadline and reconnected", closedByProxy)

	st := p.stats(t)
	for name, want := range map[string]float64{
		"listener_manager.lds.update_success":           updates + 1,
		"listener_manager.lds.update_rejected":          0,
		"listener_manager.lds.update_failure":           0,
		"listener_manager.listener_added":               1,
		"listener_manager.listener_modified":            updates,
		"listener_manager.listener_in_place_updated":    updates,
		"listener_manager.listener_removed":             0,
		"listener_manager.total_listeners_active":       1,
		"listener_manager.total_listeners_draining":     0,
		"listener_manager.total_filter_chains_draining": 0,
	} {
		if st[name] != want {
			t.Errorf("%s = %v, want %v", name, st[name], want)
		}
	}
	if got := st["tcp.churn.downstream_cx_total"]; got < float64(churn.ok.Load()) {
		t.Errorf("tcp.churn.downstream_cx_total %v < %d connections served", got, churn.ok.Load())
	}
	if got := st["tcp.stable.downstream_cx_total"]; got != perChain {
		t.Errorf("tcp.stable.downstream_cx_total %v, want %d (no stable stream reconnected)", got, perChain)
	}
}

// TestLDSBadUpdates: updates with an unknown filter, an inline route to an unknown
// cluster or a bad address are rejected resource by resource: the listener keeps serving
// its last good version, the good resources of the same file apply, the error is counted
// (update_rejected), logged with Envoy's words and shown in /config_dump's error_state; a
// file that does not parse is update_failure; an edit in place is not seen; the next good
// update applies and clears the error.
func TestLDSBadUpdates(t *testing.T) {
	dir := t.TempDir()
	lds := filepath.Join(dir, "lds.yaml")
	port, extra := freePort(t), freePort(t)
	writeLDS(t, lds, "1", edgeListener(port, "1"))
	params := map[string]any{"Admin": freePort(t), "Backend": echoBackend(t), "LDS": lds}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, ldsBootstrap, params),
		"--concurrency", "2", "--drain-time-s", "1")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	serving := func() {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatalf("the listener stopped serving: %v", err)
		}
		defer c.Close()
		roundTrip(t, c, "still here\n")
	}
	extraListener := fmt.Sprintf(`- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: extra
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: extra, cluster: echo}
`, extra)
	good := edgeListener(port, "1")
	bad := map[string]struct{ edge, want string }{
		"unknown filter": {strings.Replace(good, "envoy.filters.network.tcp_proxy\n      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: churn",
			"envoy.filters.network.nope\n      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope, stat_prefix: churn", 1), "nope"},
		"bad address": {strings.Replace(good, "address: 127.0.0.1, port_value", "address: 999.0.0.1, port_value", 1), "999.0.0.1"},
		"route to an unknown cluster": {fmt.Sprintf(`- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: edge
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: web
        http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
        route_config:
          virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: nowhere}}]}]
`, port), "nowhere"},
	}
	rejected := 0.0
	version := 1
	for name, b := range bad {
		version++
		writeLDS(t, lds, fmt.Sprint(version), b.edge+extraListener)
		rejected++
		eventually(t, name+" rejected", func() bool { return p.stats(t)["listener_manager.lds.update_rejected"] == rejected })
		serving()
		// stderr is copied from a pipe: the line may land after the count is seen.
		logged := func() bool {
			return strings.Contains(p.stderr.String(), "Error adding/updating listener(s)") && strings.Contains(p.stderr.String(), b.want)
		}
		if !waitUntil(5*time.Second, logged) {
			t.Errorf("%s: the log does not give the error:\n%s", name, p.stderr.String())
		}
		code, dump, err := p.get("/config_dump?resource=dynamic_listeners")
		if err != nil || code != 200 || !strings.Contains(dump, `"error_state"`) || !strings.Contains(dump, b.want) || !strings.Contains(dump, `"active_state"`) {
			t.Errorf("%s: /config_dump (%d, %v) has no error_state beside the active one:\n%.2000s", name, code, err, dump)
		}
		// The good resource of the same file applied.
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", extra), 3*time.Second)
		if err != nil {
			t.Fatalf("%s: the good listener of the file was not added: %v", name, err)
		}
		roundTrip(t, c, "extra\n")
		c.Close()
	}
	// A file that does not parse: nothing applies.
	version++
	writeLDS(t, lds, fmt.Sprint(version), "  - [this is not\n")
	eventually(t, "update_failure", func() bool { return p.stats(t)["listener_manager.lds.update_failure"] == 1 })
	serving()
	// An edit in place is not seen (Envoy watches for renames only).
	if err := os.WriteFile(lds, []byte("version_info: \"x\"\nresources: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	serving()
	st := p.stats(t)
	if st["listener_manager.lds.update_attempt"] != 1+rejected+1 || st["listener_manager.listener_removed"] != 0 {
		t.Errorf("after an edit in place: update_attempt %v, listener_removed %v", st["listener_manager.lds.update_attempt"], st["listener_manager.listener_removed"])
	}
	// The next good update applies and clears the error; extra is removed.
	version++
	writeLDS(t, lds, fmt.Sprint(version), edgeListener(port, "2"))
	eventually(t, "the good update", func() bool { return p.stats(t)["listener_manager.lds.update_success"] == 2 })
	serving()
	st = p.stats(t)
	if st["listener_manager.listener_removed"] != 1 || st["listener_manager.listener_in_place_updated"] != 1 || st["listener_manager.listener_added"] != 2 {
		t.Errorf("after the good update: removed %v, in place %v, added %v", st["listener_manager.listener_removed"],
			st["listener_manager.listener_in_place_updated"], st["listener_manager.listener_added"])
	}
	if _, dump, _ := p.get("/config_dump?resource=dynamic_listeners"); strings.Contains(dump, `"error_state"`) {
		t.Errorf("the error stays after a good update:\n%.2000s", dump)
	}
	eventually(t, "extra closed", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", extra), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// cdsBootstrap takes its clusters from a CDS file and its listener from an LDS file.
const cdsBootstrap = `
node: {id: test, cluster: test}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{.Admin}}}}}
dynamic_resources:
  cds_config: {path_config_source: {path: {{.CDS}}}, resource_api_version: V3}
  lds_config: {path_config_source: {path: {{.LDS}}}, resource_api_version: V3}
`

func cdsCluster(name string, port int) string {
	return fmt.Sprintf(`- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: %s
  connect_timeout: 1s
  load_assignment:
    cluster_name: %s
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
`, name, name, port)
}

// TestCDSUpdates: a listener may name a cluster that arrives later (its connections fail
// as no-route meanwhile, counted); a CDS update swaps the cluster for new connections; a
// bad cluster is rejected and the last good one stays; a removed cluster fails new
// connections as no-route again.
func TestCDSUpdates(t *testing.T) {
	dir := t.TempDir()
	lds, cds := filepath.Join(dir, "lds.yaml"), filepath.Join(dir, "cds.yaml")
	tagged := func(tag string) int {
		return serveTCP(t, func(c net.Conn) { io.WriteString(c, tag+"\n") })
	}
	a, b := tagged("A"), tagged("B")
	port := freePort(t)
	writeLDS(t, lds, "1", fmt.Sprintf(`- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: p
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: p, cluster: late}
`, port))
	writeLDS(t, cds, "1", cdsCluster("other", a))
	params := map[string]any{"Admin": freePort(t), "LDS": lds, "CDS": cds}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, cdsBootstrap, params), "--concurrency", "2")
	get := func() string {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	if got := get(); got != "" {
		t.Fatalf("before the cluster exists: %q", got)
	}
	eventually(t, "no_route counted", func() bool { return p.stats(t)["tcp.p.downstream_cx_no_route"] == 1 })
	writeLDS(t, cds, "2", cdsCluster("other", a)+cdsCluster("late", a))
	eventually(t, "the cluster added", func() bool { return get() == "A" })
	writeLDS(t, cds, "3", cdsCluster("other", a)+cdsCluster("late", b))
	eventually(t, "the cluster updated", func() bool { return get() == "B" })
	// A bad version of the cluster is rejected: the last good one stays.
	writeLDS(t, cds, "4", cdsCluster("other", a)+strings.Replace(cdsCluster("late", a), "address: 127.0.0.1", "address: 999.1.1.1", 1))
	eventually(t, "cds update_rejected", func() bool { return p.stats(t)["cluster_manager.cds.update_rejected"] == 1 })
	if got := get(); got != "B" {
		t.Fatalf("after a bad update: %q", got)
	}
	writeLDS(t, cds, "5", cdsCluster("other", a))
	eventually(t, "the cluster removed", func() bool { return p.stats(t)["cluster_manager.cluster_removed"] == 1 })
	if got := get(); got != "" {
		t.Fatalf("after the removal: %q", got)
	}
	st := p.stats(t)
	// Polls for the add may have found it missing once or twice more.
	if n := st["tcp.p.downstream_cx_no_route"]; n < 2 {
		t.Errorf("tcp.p.downstream_cx_no_route = %v, want at least 2", n)
	}
	for name, want := range map[string]float64{
		"cluster_manager.cluster_added":       2,
		"cluster_manager.cluster_modified":    1,
		"cluster_manager.cluster_removed":     1,
		"cluster_manager.active_clusters":     1,
		"cluster_manager.cds.update_success":  4,
		"cluster_manager.cds.update_rejected": 1,
	} {
		if st[name] != want {
			t.Errorf("%s = %v, want %v", name, st[name], want)
		}
	}
}

// TestExplainLDSListener: `portico explain` finds a listener of the LDS file and picks its
// chain as a worker would.
func TestExplainLDSListener(t *testing.T) {
	dir := t.TempDir()
	lds := filepath.Join(dir, "lds.yaml")
	writeLDS(t, lds, "1", edgeListener(freePort(t), "1"))
	cfg := writeConfig(t, ldsBootstrap, map[string]any{"Admin": freePort(t), "Backend": freePort(t), "LDS": lds})
	out, err := exec.Command(porticoBin, "explain", "-c", cfg, "--listener", "edge", "--dst", "127.0.0.1:1", "--src", "127.0.0.3:4000").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "listener=edge chain=changing\n") {
		t.Fatalf("explain: %v\n%s", err, out)
	}
}

// TestLDSFullUpdatesKeepSockets: updates that change more than the filter chains (here
// the per-connection buffer limit) replace the listener with its bound sockets carried
// over, in both port-sharing modes: no new connection fails while 20 of them apply, a
// stream of the old version is closed at its drain deadline, and changing
// enable_reuse_port is rejected with the listener left serving.
func TestLDSFullUpdatesKeepSockets(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		t.Run(fmt.Sprintf("reuse_port=%v", reuse), func(t *testing.T) {
			dir := t.TempDir()
			lds := filepath.Join(dir, "lds.yaml")
			port := freePort(t)
			listener := func(limit int, reusePort bool) string {
				return strings.Replace(edgeListener(port, "0"), "  filter_chains:",
					fmt.Sprintf("  per_connection_buffer_limit_bytes: %d\n  enable_reuse_port: %v\n  filter_chains:", limit, reusePort), 1)
			}
			writeLDS(t, lds, "0", listener(1<<20, reuse))
			params := map[string]any{"Admin": freePort(t), "Backend": echoBackend(t), "LDS": lds}
			p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, ldsBootstrap, params),
				"--concurrency", "2", "--drain-time-s", "1", "--log-level", "warning")
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			stop := make(chan struct{})
			old := make(chan *stream, 1)
			go func() { old <- runStream(addr, "127.0.0.2", stop) }()
			churn, wait := runChurn(addr, 1000, stop)
			for v := 1; v <= 20; v++ {
				time.Sleep(150 * time.Millisecond)
				writeLDS(t, lds, fmt.Sprint(v), listener(1<<20+v, reuse))
			}
			eventually(t, "all updates applied", func() bool { return p.stats(t)["listener_manager.lds.update_success"] == 21 })
			time.Sleep(1500 * time.Millisecond)
			close(stop)
			wait()
			if churn.failed() != 0 || churn.ok.Load() == 0 {
				t.Errorf("new connections failed during 20 full updates: %s", churn)
			}
			if s := <-old; s.err == nil || !s.byPeer {
				t.Errorf("the first version's stream was not closed by its drain: %v", s.err)
			}
			st := p.stats(t)
			if st["listener_manager.listener_modified"] != 20 || st["listener_manager.listener_in_place_updated"] != 0 ||
				st["listener_manager.listener_create_success"] != 21*2 {
				t.Errorf("modified %v, in place %v, create_success %v", st["listener_manager.listener_modified"],
					st["listener_manager.listener_in_place_updated"], st["listener_manager.listener_create_success"])
			}
			writeLDS(t, lds, "21", listener(1<<20, !reuse))
			eventually(t, "the reuse_port change rejected", func() bool { return p.stats(t)["listener_manager.lds.update_rejected"] == 1 })
			// The resource is named where the file has it, as the reading errors name it.
			eventually(t, "the rejection logged", func() bool { return strings.Contains(p.stderr.String(), "enable_reuse_port") })
			if want := `resources[0] (listener \"edge\"): `; !strings.Contains(p.stderr.String(), want) { // as slog quotes it
				t.Errorf("the rejection does not say %s:\n%s", want, p.stderr.String())
			}
			c, err := net.DialTimeout("tcp", addr, 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, "still serving\n")
			c.Close()
			t.Logf("20 full updates under %s", churn)
		})
	}
}
