package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hrTmpl is an HTTP proxy to one backend; each generation of a hot-restart test points at
// its own backend, which answers with the generation's number.
const hrTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Port}} } }
    enable_reuse_port: {{.ReusePort}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
{{- if .Extra}}
  - name: extra
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Extra}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
{{- end}}
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{.Backend}} } } }
`

// Load of the hot-restart tests: new connections per second (one request each), and
// long-lived keep-alive streams of slow requests. The rate is what this test's 2-core box
// sustains next to the proxy processes; the 10,000/s needs a bigger one.
const (
	hrRate      = 2500
	hrStreams   = 100
	hrSlow      = 300 * time.Millisecond
	hrIOTimeout = 5 * time.Second
)

// hrBackend serves "gen N" (after hrSlow on /slow) until the test ends; it returns its port.
func hrBackend(t *testing.T, gen int) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			time.Sleep(hrSlow)
		}
		if strings.HasPrefix(r.URL.Path, "/hang") {
			select { // bounded: the test's hanging request outlives the parent, not the test
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
		}
		fmt.Fprintf(w, "gen %d\n", gen)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// hrProc is one portico process of a hot-restart test.
type hrProc struct {
	epoch  int
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

func startHR(t *testing.T, epoch int, args ...string) *hrProc {
	t.Helper()
	p := &hrProc{epoch: epoch, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(porticoBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("epoch %d (pid %d) stderr:\n%s", epoch, p.cmd.Process.Pid, p.stderr.String())
		}
	})
	return p
}

// startWrapper runs `portico restart ARGS`; at the end of the test, the children it
// started (from its log) are killed too, by pid: they are in their own process group and
// would outlive a wrapper killed by the test's cleanup.
func startWrapper(t *testing.T, args ...string) *hrProc {
	t.Helper()
	w := startHR(t, 0, append([]string{"restart"}, args...)...)
	t.Cleanup(func() {
		for _, pid := range w.childPIDs() {
			if syscall.Kill(pid, 0) == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return w
}

// childPIDs lists the children a wrapper logged as started.
func (p *hrProc) childPIDs() []int {
	var pids []int
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if i := strings.Index(line, "started epoch "); i >= 0 {
			if _, rest, ok := strings.Cut(line[i:], "(pid "); ok {
				if pid, err := strconv.Atoi(strings.TrimSuffix(rest, ")")); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

func (p *hrProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// noKeepAlive is an admin client whose every request is a new connection, so that each
// poll shows which process accepted it.
var noKeepAlive = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func adminGet(admin, path string) (int, string, error) {
	resp, err := noKeepAlive.Get("http://" + admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitEpoch waits until the admin address answers from epoch's process (only it reports
// that epoch), which serves admin once its workers run and just before it asks its parent
// to drain. p is the process started for it (or the wrapper), which must not exit.
func waitEpoch(t *testing.T, admin string, epoch int, p *hrProc) {
	t.Helper()
	want := fmt.Sprintf("server.hot_restart_epoch: %d\n", epoch)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.exited() {
			t.Fatalf("epoch %d exited before serving (%v)\n%s", epoch, p.cmd.ProcessState, p.stderr.String())
		}
		if _, body, err := adminGet(admin, "/stats"); err == nil && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("epoch %d not serving after 15s\n%s", epoch, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitExit(t *testing.T, p *hrProc, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("epoch %d still running %v after its child took over\n%s", p.epoch, within, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// hrLoad counts what the clients saw.
type hrLoad struct {
	ok, refused, reset, timeout, other, badStatus, staleGen atomic.Int64
	streamOK, streamConns, streamFail, streamGenMix         atomic.Int64
	// streamIdleRace counts requests written to a kept-alive connection that the server
	// had just closed while idle (a drain closes idle connections): the write or the read
	// finds the connection closed before any byte of a response. HTTP/1.1 clients retry
	// these (Go's net/http does for idempotent requests), and so does this one, on a new
	// connection; it is reported, not counted as a failure.
	streamIdleRace atomic.Int64
	mu             sync.Mutex
	errs           []string
}

func (l *hrLoad) note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

func (l *hrLoad) fail(err error, where string) {
	switch classify(err) {
	case "refused":
		l.refused.Add(1)
	case "reset":
		l.reset.Add(1)
	case "timeout":
		l.timeout.Add(1)
	default:
		l.other.Add(1)
	}
	l.note("%s: %v", where, err)
}

// parseGen reads "gen N" from a response body.
func parseGen(body string) (int, bool) {
	s, ok := strings.CutPrefix(strings.TrimSpace(body), "gen ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// oneShot is one new connection with one request (Connection: close).
func (l *hrLoad) oneShot(addr string, minGen int) {
	c, err := net.DialTimeout("tcp", addr, hrIOTimeout)
	if err != nil {
		l.fail(err, "dial")
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(hrIOTimeout))
	if _, err := io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: hr\r\nConnection: close\r\n\r\n"); err != nil {
		l.fail(err, "write")
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		l.fail(err, "read response")
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		l.fail(err, "read body")
		return
	}
	gen, ok := parseGen(string(body))
	switch {
	case resp.StatusCode != 200 || !ok:
		l.badStatus.Add(1)
		l.note("status %d body %q", resp.StatusCode, body)
	case gen < minGen:
		l.staleGen.Add(1)
		l.note("gen %d answered a request started after gen %d took over alone", gen, minGen)
	default:
		l.ok.Add(1)
	}
}

// stream is a keep-alive connection of slow requests, reconnecting when the server says
// Connection: close (a drain). Every response on one connection must come from one
// generation: a request that started on the old process finishes there.
func (l *hrLoad) stream(ctx context.Context, addr string) {
	var c net.Conn
	var br *bufio.Reader
	gen, reqs := -1, 0
	closeConn := func() {
		if c != nil {
			c.Close()
			c = nil
		}
	}
	defer closeConn()
	for ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", addr, hrIOTimeout); err != nil {
				l.streamFail.Add(1)
				l.fail(err, "stream dial")
				c = nil
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.streamConns.Add(1)
			br, gen, reqs = bufio.NewReader(c), -1, 0
		}
		c.SetDeadline(time.Now().Add(hrIOTimeout))
		_, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: hr\r\n\r\n")
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(br, nil)
		}
		if err != nil {
			if reqs > 0 && br.Buffered() == 0 && classify(err) == "reset" {
				l.streamIdleRace.Add(1) // see streamIdleRace
			} else {
				l.streamFail.Add(1)
				l.fail(err, "stream request")
			}
			closeConn()
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			l.streamFail.Add(1)
			l.fail(err, "stream body")
			closeConn()
			continue
		}
		g, ok := parseGen(string(body))
		reqs++
		switch {
		case resp.StatusCode != 200 || !ok:
			l.streamFail.Add(1)
			l.badStatus.Add(1)
			l.note("stream status %d body %q", resp.StatusCode, body)
		case gen >= 0 && g != gen:
			l.streamGenMix.Add(1)
			l.note("one connection answered by gen %d then gen %d", gen, g)
		default:
			gen = g
			l.streamOK.Add(1)
		}
		if resp.Close {
			closeConn()
		}
	}
}

// run drives hrRate new connections per second (bounded in flight) and the streams until
// ctx ends; minGen is the oldest generation a new request may reach.
func (l *hrLoad) run(ctx context.Context, addr string, minGen *atomic.Int64) (sent int64, elapsed time.Duration) {
	var wg sync.WaitGroup
	for i := 0; i < hrStreams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.stream(ctx, addr)
		}()
	}
	sem := make(chan struct{}, 512)
	start := time.Now()
	for ctx.Err() == nil {
		due := int64(time.Since(start).Seconds() * hrRate)
		for ; sent < due && ctx.Err() == nil; sent++ {
			sem <- struct{}{}
			wg.Add(1)
			g := int(minGen.Load())
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				l.oneShot(addr, g)
			}()
		}
		time.Sleep(time.Millisecond)
	}
	elapsed = time.Since(start)
	wg.Wait()
	return sent, elapsed
}

// adminPoll asks /ready every 100 ms until ctx ends; it returns the longest time without
// an answer (any HTTP status, for the log: a busy box stretches it), how many answers were
// not 200 LIVE, the polls admin was silent for (the connection refused, or nothing in
// 10 s), with the first such error: admin must never go silent across a restart; and
// the polls whose connection was closed without an answer (an exiting parent's, for the
// log).
func adminPoll(ctx context.Context, admin string) (maxGap time.Duration, notLive, polls, failed, dropped int, firstErr error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	last := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return max(maxGap, time.Since(last)), notLive, polls, failed, dropped, firstErr
		case <-t.C:
		}
		resp, err := client.Get("http://" + admin + "/ready")
		polls++
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			var ne net.Error
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &ne) && ne.Timeout():
				failed++
				if firstErr == nil {
					firstErr = err
				}
			default:
				dropped++
			}
			continue
		}
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "LIVE" {
			notLive++
		}
		maxGap = max(maxGap, time.Since(last))
		last = time.Now()
	}
}

type hrScenario struct {
	reusePort bool
	restarts  int
	// concurrency gives each epoch's --concurrency.
	concurrency func(epoch int) int
	// badAt, if > 0, tries a child with a broken configuration before epoch badAt.
	badAt int
	// drain is --drain-time-s and --drain-strategy.
	drainTime, strategy string
}

func runHotRestart(t *testing.T, sc hrScenario) {
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	base := 1 + rand.IntN(1<<30)
	dir := t.TempDir()
	config := func(gen int) string {
		p := writeConfig(t, hrTmpl, map[string]any{"Admin": strings.Split(admin, ":")[1], "Port": port,
			"ReusePort": sc.reusePort, "Backend": hrBackend(t, gen)})
		dst := filepath.Join(dir, fmt.Sprintf("gen%d.yaml", gen))
		if err := os.Rename(p, dst); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	args := func(epoch int, cfg string) []string {
		return []string{"-c", cfg, "--concurrency", strconv.Itoa(sc.concurrency(epoch)), "--base-id", strconv.Itoa(base),
			"--restart-epoch", strconv.Itoa(epoch), "--drain-time-s", sc.drainTime, "--drain-strategy", sc.strategy,
			"--parent-shutdown-time-s", "20", "--log-level", "warning"}
	}
	cur := startHR(t, 0, args(0, config(0))...)
	waitEpoch(t, admin, 0, cur)

	var load hrLoad
	var minGen atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var sent int64
	var elapsed, maxGap time.Duration
	var notLive, polls, adminFailed, adminDropped int
	var adminErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sent, elapsed = load.run(ctx, addr, &minGen) }()
	go func() {
		defer wg.Done()
		maxGap, notLive, polls, adminFailed, adminDropped, adminErr = adminPoll(ctx, admin)
	}()
	time.Sleep(300 * time.Millisecond) // the load is on before the first restart

	badTried := false
	for epoch := 1; epoch <= sc.restarts; epoch++ {
		if epoch == sc.badAt {
			// A configuration that does not load, and one that loads but cannot bind (a new
			// listener on a port in use): the second child fails after it took the parent's
			// sockets.
			bad := filepath.Join(dir, "bad.yaml")
			os.WriteFile(bad, []byte("static_resources: { listeners: [ { name: x, address: 7 } ] }\n"), 0o644)
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			unbindable := writeConfig(t, hrTmpl, map[string]any{"Admin": strings.Split(admin, ":")[1], "Port": port,
				"ReusePort": sc.reusePort, "Backend": hrBackend(t, epoch), "Extra": taken.Addr().(*net.TCPAddr).Port})
			for _, cfg := range []string{bad, unbindable} {
				p := startHR(t, epoch, args(epoch, cfg)...)
				if code := waitExit(t, p, 10*time.Second); code == 0 {
					t.Fatalf("a child with a bad config (%s) exited 0", cfg)
				}
				time.Sleep(300 * time.Millisecond) // traffic on the parent after the failed child
				if cur.exited() {
					t.Fatalf("the parent exited after its child failed\n%s", cur.stderr.String())
				}
			}
			badTried = true
		}
		t0 := time.Now()
		next := startHR(t, epoch, args(epoch, config(epoch))...)
		waitEpoch(t, admin, epoch, next)
		t1 := time.Now()
		code := waitExit(t, cur, 15*time.Second)
		if os.Getenv("HR_DEBUG") != "" {
			t.Logf("epoch %d serving after %v, parent exited %v later", epoch, t1.Sub(t0), time.Since(t1))
		}
		if code != 0 {
			t.Fatalf("epoch %d exited %d after handing over\n%s", cur.epoch, code, cur.stderr.String())
		}
		minGen.Store(int64(epoch))
		cur = next
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()

	ok := load.ok.Load()
	t.Logf("%d restarts in %v: %d new connections (%.0f/s), ok %d, refused %d, reset %d, timed out %d, other %d, bad status %d, stale generation %d; "+
		"streams: %d responses on %d connections, %d failed, %d mixed generations, %d idle-close races retried; "+
		"admin: %d polls, longest gap %v, %d not LIVE, %d closed without an answer",
		sc.restarts, elapsed.Round(time.Millisecond), sent, float64(sent)/elapsed.Seconds(), ok, load.refused.Load(), load.reset.Load(),
		load.timeout.Load(), load.other.Load(), load.badStatus.Load(), load.staleGen.Load(),
		load.streamOK.Load(), load.streamConns.Load(), load.streamFail.Load(), load.streamGenMix.Load(), load.streamIdleRace.Load(),
		polls, maxGap.Round(time.Millisecond), notLive, adminDropped)
	if ok != sent || load.streamFail.Load() != 0 || load.streamGenMix.Load() != 0 {
		t.Errorf("failures under hot restart; first: %v", load.errs)
	}
	if adminFailed > 0 {
		t.Errorf("admin gave no answer to %d of %d polls; first: %v", adminFailed, polls, adminErr)
	}
	if sc.badAt > 0 && !badTried {
		t.Errorf("the bad child was not tried")
	}

	// Counters carry over: the last process's count of downstream connections includes
	// every one its ancestors served (each process's last snapshot reaches its child).
	want := ok + load.streamConns.Load()
	var got float64
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body, err := adminGet(admin, "/stats")
		if err == nil {
			for _, line := range strings.Split(body, "\n") {
				if v, found := strings.CutPrefix(line, "listener.ingress.downstream_cx_total: "); found {
					got, _ = strconv.ParseFloat(v, 64)
				}
			}
		}
		if int64(got) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if int64(got) < want {
		t.Errorf("listener.ingress.downstream_cx_total %v after %d restarts, want at least the %d connections the clients made", got, sc.restarts, want)
	}
	_, body, _ := adminGet(admin, "/stats")
	if !strings.Contains(body, fmt.Sprintf("server.hot_restart_generation: %d\n", sc.restarts+1)) {
		t.Errorf("server.hot_restart_generation is not %d:\n%s", sc.restarts+1, grepLines(body, "hot_restart"))
	}
	cur.cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, cur, 10*time.Second); code != 0 {
		t.Errorf("the last epoch exited %d on SIGTERM", code)
	}
}

func grepLines(body, sub string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHotRestart: 20 hot restarts in a row under new connections and slow keep-alive
// streams, each generation on its own backend: no connection refused, reset or timed out,
// each slow response from the generation its connection started on, new requests on the
// new one, admin answering throughout, counters carried over. A child with a bad
// configuration fails and its parent serves on.
func TestHotRestart(t *testing.T) {
	restarts := 20
	if testing.Short() {
		restarts = 5
	}
	runHotRestart(t, hrScenario{reusePort: true, restarts: restarts, concurrency: func(int) int { return 2 }, badAt: 3,
		drainTime: "5", strategy: "immediate"})
}

// TestHotRestartDupFd: the same with one shared listen socket (enable_reuse_port: false).
func TestHotRestartDupFd(t *testing.T) {
	restarts := 10
	if testing.Short() {
		restarts = 3
	}
	runHotRestart(t, hrScenario{reusePort: false, restarts: restarts, concurrency: func(int) int { return 2 },
		drainTime: "5", strategy: "immediate"})
}

// TestHotRestartConcurrency: the worker count alternates 4 → 2 → 4 ...: a child with fewer
// workers steers the SO_REUSEPORT group to its sockets and serves the parent's others until
// they are empty; a child with more binds extra sockets into the group. The parents drain
// gradually (Envoy's default strategy) over 1 s.
func TestHotRestartConcurrency(t *testing.T) {
	restarts := 10
	if testing.Short() {
		restarts = 4
	}
	runHotRestart(t, hrScenario{reusePort: true, restarts: restarts, concurrency: func(e int) int {
		if e%2 == 0 {
			return 4
		}
		return 2
	}, drainTime: "1", strategy: "gradual"})
}

// TestHotRestartNoParent: epoch 1 with no epoch 0 running fails, as in Envoy.
func TestHotRestartNoParent(t *testing.T) {
	cfg := writeConfig(t, hrTmpl, map[string]any{"Admin": freePort(t), "Port": freePort(t), "ReusePort": true, "Backend": freePort(t)})
	p := startHR(t, 1, "-c", cfg, "--base-id", strconv.Itoa(1+rand.IntN(1<<30)), "--restart-epoch", "1")
	if code := waitExit(t, p, 10*time.Second); code == 0 {
		t.Fatal("epoch 1 without a parent exited 0")
	}
	if !strings.Contains(p.stderr.String(), "no parent") {
		t.Errorf("stderr does not say there is no parent:\n%s", p.stderr.String())
	}
}

// TestRestartWrapper: `portico restart` starts epoch 0, a new epoch on each SIGHUP (with the
// configuration file as it is then), keeps the old process when a new one fails, forwards
// SIGTERM and exits 0 when its last child has.
func TestRestartWrapper(t *testing.T) {
	adminPort, port := freePort(t), freePort(t)
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(t.TempDir(), "portico.yaml")
	write := func(gen int) {
		p := writeConfig(t, hrTmpl, map[string]any{"Admin": adminPort, "Port": port, "ReusePort": true, "Backend": hrBackend(t, gen)})
		if err := os.Rename(p, cfg); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	w := startWrapper(t, "-c", cfg, "--concurrency", "2", "--base-id", strconv.Itoa(1+rand.IntN(1<<30)),
		"--drain-time-s", "5", "--log-level", "warning")
	waitEpoch(t, admin, 0, w)
	get := func() {
		t.Helper()
		var l hrLoad
		l.oneShot(addr, 0)
		if l.ok.Load() != 1 {
			t.Fatalf("request failed: %v", l.errs)
		}
	}
	for epoch := 1; epoch <= 3; epoch++ {
		write(epoch)
		w.cmd.Process.Signal(syscall.SIGHUP)
		waitEpoch(t, admin, epoch, w)
		get()
	}
	// A broken file: the new epoch fails, epoch 3 serves on, the wrapper stays.
	os.WriteFile(cfg, []byte("static_resources: [\n"), 0o644)
	w.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the wrapper logs the failed restart", func() bool {
		return strings.Contains(w.stderr.String(), "before taking over")
	})
	if w.exited() {
		t.Fatalf("the wrapper exited after a failed restart\n%s", w.stderr.String())
	}
	get()
	write(4)
	w.cmd.Process.Signal(syscall.SIGHUP)
	waitEpoch(t, admin, 4, w)
	get()
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, w, 15*time.Second); code != 0 {
		t.Fatalf("the wrapper exited %d after SIGTERM\n%s", code, w.stderr.String())
	}
	if _, _, err := adminGet(admin, "/ready"); err == nil {
		t.Fatal("admin still answers after the wrapper exited")
	}
}

// TestHotRestartParentShutdownTime: a connection that outlives the drain time keeps the
// parent alive (Envoy's parent keeps what is left until it is told to go) until the child
// says parent-shutdown-time is over; then the parent exits and that connection ends.
func TestHotRestartParentShutdownTime(t *testing.T) {
	adminPort, port := freePort(t), freePort(t)
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	base := strconv.Itoa(1 + rand.IntN(1<<30))
	cfg := func(gen int) string {
		return writeConfig(t, hrTmpl, map[string]any{"Admin": adminPort, "Port": port, "ReusePort": true, "Backend": hrBackend(t, gen)})
	}
	args := func(epoch int, c string) []string {
		return []string{"-c", c, "--concurrency", "1", "--base-id", base, "--restart-epoch", strconv.Itoa(epoch),
			"--drain-time-s", "1", "--parent-shutdown-time-s", "3", "--log-level", "info"}
	}
	p0 := startHR(t, 0, args(0, cfg(0))...)
	waitEpoch(t, admin, 0, p0)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /hang HTTP/1.1\r\nHost: hr\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the hanging request reaches the backend", func() bool {
		_, body, err := adminGet(admin, "/stats")
		return err == nil && strings.Contains(body, "cluster.backend.upstream_rq_active: 1\n")
	})
	start := time.Now()
	p1 := startHR(t, 1, args(1, cfg(1))...)
	waitEpoch(t, admin, 1, p1)
	// Past the drain time (1 s) the parent still serves the hanging request...
	time.Sleep(1500 * time.Millisecond)
	if p0.exited() {
		t.Fatalf("the parent exited %v after the hand-over, before parent-shutdown-time\n%s", time.Since(start), p0.stderr.String())
	}
	// ...until parent-shutdown-time (3 s from the child's start of serving).
	if code := waitExit(t, p0, 10*time.Second); code != 0 {
		t.Fatalf("the parent exited %d", code)
	}
	if !strings.Contains(p0.stderr.String(), "parent-shutdown-time is over") {
		t.Errorf("the parent did not exit on the child's terminate:\n%s", p0.stderr.String())
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && classify(err) == "timeout" {
		t.Errorf("the parent's connection still open after it exited: %v", err)
	}
}

func TestRestartArgs(t *testing.T) {
	got := stripEpoch([]string{"-c", "x.yaml", "--restart-epoch", "3", "--base-id", "2", "-restart-epoch=4", "--concurrency", "2"})
	if want := "-c x.yaml --base-id 2 --concurrency 2"; strings.Join(got, " ") != want {
		t.Errorf("stripEpoch: %q, want %q", strings.Join(got, " "), want)
	}
	for args, want := range map[string]bool{"-c x": true, "--config-path x": true, "-c=x": true, "--concurrency 2": false} {
		if hasConfig(strings.Fields(args)) != want {
			t.Errorf("hasConfig(%q) != %v", args, want)
		}
	}
}

// TestRestartWrapperChildDies: as in hot-restarter.py, a child that dies (here the only
// one, killed) ends the wrapper with exit code 1.
func TestRestartWrapperChildDies(t *testing.T) {
	adminPort := freePort(t)
	cfg := writeConfig(t, hrTmpl, map[string]any{"Admin": adminPort, "Port": freePort(t), "ReusePort": true, "Backend": hrBackend(t, 0)})
	w := startWrapper(t, "-c", cfg, "--concurrency", "1", "--base-id", strconv.Itoa(1+rand.IntN(1<<30)), "--log-level", "warning")
	waitEpoch(t, fmt.Sprintf("127.0.0.1:%d", adminPort), 0, w)
	pids := w.childPIDs()
	if len(pids) != 1 {
		t.Fatalf("children in the wrapper's log: %v\n%s", pids, w.stderr.String())
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, w, 10*time.Second); code != 1 {
		t.Fatalf("the wrapper exited %d after its only child was killed, want 1\n%s", code, w.stderr.String())
	}
}
