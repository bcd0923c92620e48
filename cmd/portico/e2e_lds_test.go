package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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
