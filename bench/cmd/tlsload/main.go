// Command tlsload is the client of the tls benchmark scenario: TLS termination by the
// system under test (SUT) in front of a plaintext backend. Every mode is bounded in time
// and count, and writes one JSON object to -out (or stdout).
//
//   - handshake: -conc goroutines each loop: dial, TLS handshake (full, or resumed with
//     -resume), one keep-alive GET, read the response, close. The TLS version, key
//     exchange group and (TLS 1.2) cipher suites are fixed by flags, and every
//     negotiated (version, cipher, group) is counted so a run proves what it measured.
//   - idle: open -conns TLS connections (handshake + one GET each), keep them open and
//     idle, and report the SUT's RSS growth per connection.
//   - probe: -conns keep-alive TLS connections, each sending one GET every -interval
//     (open loop: the next send is due at a fixed time, whether or not the last reply
//     was late), and report the latency distribution. Run beside a handshake flood it
//     shows what the flood does to established connections.
//
// The SUT (-pid) is sampled from /proc: utime+stime over the measured window.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-proxy/portico/bench/internal/hist"
	"github.com/portico-proxy/portico/bench/internal/jsonline"
	"github.com/portico-proxy/portico/bench/internal/procstat"
)

// labels is the -label flag (key=value, repeatable).
type labels = jsonline.Labels

type result struct {
	Mode    string             `json:"mode"`
	Labels  labels             `json:"labels"`
	Conns   int                `json:"conns"`
	Metrics map[string]float64 `json:"metrics"`
	// Negotiated counts "version cipher group" over the measured window, "resumed"
	// appended for resumed handshakes.
	Negotiated map[string]int64 `json:"negotiated,omitempty"`
	Errors     struct {
		Dial int64  `json:"dial"`
		IO   int64  `json:"io"`
		Last string `json:"last"`
	} `json:"errors"`
	ServerExited bool   `json:"server_exited"`
	Failure      string `json:"failure,omitempty"`
}

type options struct {
	mode, addr, sni, path string
	conc, conns, total    int
	warmup, duration      time.Duration
	settle, interval      time.Duration
	version               uint16
	curves                []tls.CurveID
	resume                bool
	pid, clkTck, loadCPU  int
}

func main() {
	var o options
	var version, curves, outPath string
	lbl := labels{}
	flag.StringVar(&o.mode, "mode", "handshake", "handshake | idle | probe")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:443", "SUT address")
	flag.StringVar(&o.sni, "sni", "localhost", "server name (SNI and Host)")
	flag.StringVar(&o.path, "path", "/", "request path (handshake: -path= for none, close after the handshake)")
	flag.IntVar(&o.conc, "conc", 32, "handshake: concurrent connections")
	flag.IntVar(&o.conns, "conns", 100, "idle: connections held; probe: keep-alive connections")
	flag.IntVar(&o.total, "total", 0, "handshake: upper bound on handshakes in the window (0: none)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up (handshake, probe)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured window (handshake, probe)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "idle: pause before each RSS reading")
	flag.DurationVar(&o.interval, "interval", 10*time.Millisecond, "probe: time between one connection's requests")
	flag.StringVar(&version, "version", "1.3", "TLS version: 1.2 or 1.3")
	flag.StringVar(&curves, "curves", "x25519", "key exchange groups offered: x25519, p256, or default (Go's: X25519MLKEM768 first)")
	flag.BoolVar(&o.resume, "resume", false, "handshake: resume sessions (one session cache per goroutine; its first handshake, full, is not counted)")
	flag.IntVar(&o.pid, "pid", 0, "SUT PID to sample")
	flag.IntVar(&o.clkTck, "clk-tck", 100, "USER_HZ")
	flag.IntVar(&o.loadCPU, "load-cpu", -1, "report how busy this CPU was over the window (the one the client is pinned to; -1: not)")
	gc := flag.Int("gc", 400, "GOGC of the client (it allocates per handshake; fewer collections leave more of its CPU for the load)")
	flag.StringVar(&outPath, "out", "", "result file (default stdout)")
	flag.Var(lbl, "label", "key=value tag (repeatable)")
	flag.Parse()
	debug.SetGCPercent(*gc)

	res := result{Mode: o.mode, Labels: lbl, Metrics: map[string]float64{}}
	var err error
	if o.version, err = parseVersion(version); err == nil {
		o.curves, err = parseCurves(curves)
	}
	if err == nil {
		switch o.mode {
		case "handshake":
			res.Conns = o.conc
			runHandshakes(&o, &res)
		case "idle":
			res.Conns = o.conns
			err = runIdle(&o, &res)
		case "probe":
			res.Conns = o.conns
			err = runProbe(&o, &res)
		default:
			err = fmt.Errorf("unknown -mode %q", o.mode)
		}
	}
	if err != nil {
		res.Failure = err.Error()
		fmt.Fprintln(os.Stderr, "tlsload:", err)
	}
	if o.pid > 0 && !procstat.Alive(o.pid) {
		res.ServerExited = true
	}
	if werr := jsonline.Write(outPath, res); werr != nil {
		fmt.Fprintln(os.Stderr, werr)
		os.Exit(1)
	}
}

func parseVersion(s string) (uint16, error) {
	switch s {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("-version %q: want 1.2 or 1.3", s)
}

func parseCurves(s string) ([]tls.CurveID, error) {
	switch s {
	case "x25519":
		return []tls.CurveID{tls.X25519}, nil
	case "p256":
		return []tls.CurveID{tls.CurveP256}, nil
	case "default":
		return nil, nil // crypto/tls's default: X25519MLKEM768, X25519, P-256, ...
	}
	return nil, fmt.Errorf("-curves %q: want x25519, p256 or default", s)
}

// tlsConfig is the client's configuration. The certificate chain is not verified
// (InsecureSkipVerify): that is client-only work (an extra signature check per
// handshake) the SUT never sees, and the client's CPU is the scarce one on this box.
// The server's handshake signature is still checked, as always in crypto/tls.
func (o *options) tlsConfig(cache tls.ClientSessionCache) *tls.Config {
	c := &tls.Config{
		ServerName:         o.sni,
		InsecureSkipVerify: true,
		MinVersion:         o.version,
		MaxVersion:         o.version,
		CurvePreferences:   o.curves,
		ClientSessionCache: cache,
	}
	if o.version == tls.VersionTLS12 {
		// ECDHE with AES-128-GCM, the suite every server picks first (the harness
		// configures HAProxy and nginx so, and Go's server prefers it).
		c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		// TLS 1.2 ties an ECDSA certificate to the client's supported groups (RFC 8422
		// 5.1): OpenSSL refuses a P-256 certificate to a client offering X25519 only.
		// P-256 is listed second; every server here picks X25519 (see Negotiated).
		if len(o.curves) == 1 && o.curves[0] == tls.X25519 {
			c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
		}
	}
	return c
}

// window samples the SUT's CPU and the client's own at its start and end.
type window struct {
	t0          time.Time
	cpu0, self0 procstat.CPU
	lcpu        int
	lbusy0      uint64
}

func startWindow(o *options) *window {
	pid := o.pid
	w := &window{t0: time.Now(), lcpu: o.loadCPU}
	w.self0, _ = procstat.ReadCPU(os.Getpid())
	if w.lcpu >= 0 {
		w.lbusy0, _ = cpuBusyTicks(w.lcpu)
	}
	if pid > 0 {
		w.cpu0, _ = procstat.ReadCPU(pid)
	}
	return w
}

// end records cpu_s, sut_util and user_frac of the SUT, and client_util: the share of
// a CPU this client used (near 1 means the client, not the SUT, set the pace).
func (w *window) end(o *options, res *result) {
	el := time.Since(w.t0).Seconds()
	tick := 1 / float64(o.clkTck)
	if s1, err := procstat.ReadCPU(os.Getpid()); err == nil {
		res.Metrics["client_util"] = float64(s1.UserTicks+s1.SysTicks-w.self0.UserTicks-w.self0.SysTicks) * tick / el
	}
	if w.lcpu >= 0 {
		if b, err := cpuBusyTicks(w.lcpu); err == nil {
			res.Metrics["load_cpu_busy"] = float64(b-w.lbusy0) * tick / el
		}
	}
	if o.pid <= 0 {
		return
	}
	c1, err := procstat.ReadCPU(o.pid)
	if err != nil {
		return
	}
	cpu := float64(c1.UserTicks+c1.SysTicks-w.cpu0.UserTicks-w.cpu0.SysTicks) * tick
	res.Metrics["cpu_s"] = cpu
	res.Metrics["sut_util"] = cpu / el
	if cpu > 0 {
		res.Metrics["user_frac"] = float64(c1.UserTicks-w.cpu0.UserTicks) * tick / cpu
	}
}

type counters struct {
	ok, resumed, dialErr, ioErr atomic.Int64
	allOK, allResumed           atomic.Int64 // warm-up included: to compare with server counters
	last                        atomic.Value
	mu                          sync.Mutex
	h                           hist.H
	neg                         map[string]int64
}

func (c *counters) fail(dial bool, err error) {
	if dial {
		c.dialErr.Add(1)
	} else {
		c.ioErr.Add(1)
	}
	c.last.Store(err.Error())
}

func (c *counters) fill(res *result) {
	res.Errors.Dial = c.dialErr.Load()
	res.Errors.IO = c.ioErr.Load()
	if s, ok := c.last.Load().(string); ok {
		res.Errors.Last = s
	}
}

func negotiated(st tls.ConnectionState) string {
	s := tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite) + " " + st.CurveID.String()
	if st.DidResume {
		s += " resumed"
	}
	return s
}

// request is one keep-alive GET; the client closes after the response, so its
// TIME_WAIT stays on the client side. An empty -path sends none: the connection
// closes right after the handshake (a flood that should not load the backend).
func (o *options) request() []byte {
	if o.path == "" {
		return nil
	}
	return []byte("GET " + o.path + " HTTP/1.1\r\nHost: " + o.sni + "\r\n\r\n")
}

// exchange dials and handshakes one connection and, when req is set, sends it and reads
// one response. The connection is returned open.
func exchange(ctx context.Context, o *options, cfg *tls.Config, req, buf []byte, ioEnd time.Time) (*tls.Conn, bool, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, true, err
	}
	raw.SetDeadline(minTime(time.Now().Add(5*time.Second), ioEnd))
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, false, fmt.Errorf("handshake: %w", err)
	}
	if req != nil {
		if _, err := c.Write(req); err != nil {
			c.Close()
			return nil, false, err
		}
		n, err := readResponse(c, buf)
		if err == nil && !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200")) {
			err = fmt.Errorf("bad response %q", buf[:min(n, 40)])
		}
		if err != nil {
			c.Close()
			return nil, false, err
		}
	}
	return c, false, nil
}

// runHandshakes: the window is judged by the clock, never by ctx.Err() (see connload's
// runTLS for why: on one P a context's timer fires late and dials fail instantly in
// between). A connection counts when its response is read inside
// [warm-up end, warm-up end + duration); no dial starts after the window and no I/O
// outlives it.
func runHandshakes(o *options, res *result) {
	var c counters
	c.neg = map[string]int64{}
	var started atomic.Int64
	begin := time.Now()
	winStart := begin.Add(o.warmup)
	winEnd := winStart.Add(o.duration)
	inWindow := func(t time.Time) bool { return !t.Before(winStart) && t.Before(winEnd) }
	ctx, cancel := context.WithDeadline(context.Background(), winEnd)
	defer cancel()
	req := o.request()
	var wg sync.WaitGroup
	for g := 0; g < o.conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cache tls.ClientSessionCache
			if o.resume {
				cache = tls.NewLRUClientSessionCache(1)
			}
			cfg := o.tlsConfig(cache)
			primed := !o.resume
			buf := make([]byte, 4096)
			var h hist.H
			neg := map[string]int64{}
			for {
				t0 := time.Now()
				if !t0.Before(winEnd) {
					break
				}
				if o.total > 0 && !t0.Before(winStart) && started.Add(1) > int64(o.total) {
					break
				}
				conn, dialFail, err := exchange(ctx, o, cfg, req, buf, winEnd)
				t1 := time.Now()
				var st tls.ConnectionState
				if conn != nil {
					st = conn.ConnectionState()
					conn.Close()
				}
				if err == nil {
					c.allOK.Add(1)
					if st.DidResume {
						c.allResumed.Add(1)
					}
				}
				// With -resume a goroutine's first handshake only fills its cache: it is
				// never counted, even when a slow start puts it inside the window.
				if err == nil && !primed {
					primed = true
					continue
				}
				if !inWindow(t1) {
					continue
				}
				if err != nil {
					c.fail(dialFail, err)
					continue
				}
				c.ok.Add(1)
				if st.DidResume {
					c.resumed.Add(1)
				}
				neg[negotiated(st)]++
				h.Record(t1.Sub(t0).Microseconds())
			}
			c.mu.Lock()
			c.h.Merge(&h)
			for k, v := range neg {
				c.neg[k] += v
			}
			c.mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	time.Sleep(time.Until(winStart))
	w := startWindow(o)
	span := o.duration
	t := time.NewTimer(time.Until(winEnd))
	select {
	case <-t.C:
	case <-done: // -total reached
		t.Stop()
		span = min(span, time.Since(winStart))
	}
	w.end(o, res)
	<-done
	ops := float64(c.ok.Load())
	if cpu, ok := res.Metrics["cpu_s"]; ok && ops > 0 {
		res.Metrics["cpu_us_per_op"] = cpu / ops * 1e6
	}
	res.Metrics["ops"] = ops
	res.Metrics["resumed"] = float64(c.resumed.Load())
	res.Metrics["ops_all"] = float64(c.allOK.Load())
	res.Metrics["resumed_all"] = float64(c.allResumed.Load())
	res.Metrics["rate"] = ops / span.Seconds()
	res.Metrics["p50_us"] = float64(c.h.Quantile(0.50))
	res.Metrics["p99_us"] = float64(c.h.Quantile(0.99))
	res.Negotiated = c.neg
	c.fill(res)
	if ops == 0 {
		res.Failure = "no handshake completed: " + res.Errors.Last
	}
}

// runIdle opens -conns TLS connections (64 handshakes in flight), each doing one GET,
// and keeps them open. Before the baseline RSS, 64 connections are used and closed:
// a fresh server pages in code and starts runtime threads on its first connections,
// a one-time cost that would otherwise be divided among the measured ones.
func runIdle(o *options, res *result) error {
	if o.pid <= 0 {
		return fmt.Errorf("idle mode needs -pid")
	}
	deadline := time.Now().Add(60*time.Second + 2*o.settle)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var c counters
	openAll := func(n int) []*tls.Conn {
		conns := make([]*tls.Conn, n)
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		for i := range conns {
			sem <- struct{}{}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				buf := make([]byte, 4096)
				conn, dialFail, err := exchange(ctx, o, o.tlsConfig(nil), o.request(), buf, deadline)
				if err != nil {
					c.fail(dialFail, err)
					return
				}
				conns[i] = conn
			}(i)
		}
		wg.Wait()
		return conns
	}
	closeAll := func(cs []*tls.Conn) {
		for _, cn := range cs {
			if cn != nil {
				cn.Close()
			}
		}
	}
	warm := openAll(64)
	closeAll(warm)
	if e := c.dialErr.Load() + c.ioErr.Load(); e > 0 {
		c.fill(res)
		return fmt.Errorf("warm-up: %d of 64 connections failed", e)
	}
	time.Sleep(o.settle)
	before, err := procstat.ReadMem(o.pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	conns := openAll(o.conns)
	defer closeAll(conns)
	res.Metrics["open_s"] = time.Since(t0).Seconds()
	open := 0
	for _, cn := range conns {
		if cn != nil {
			open++
		}
	}
	time.Sleep(o.settle)
	with, err := procstat.ReadMem(o.pid)
	if err != nil {
		return err
	}
	c.fill(res)
	res.Metrics["conns_open"] = float64(open)
	res.Metrics["rss_before"] = float64(before.RSS)
	res.Metrics["rss_with"] = float64(with.RSS)
	if open > 0 {
		res.Metrics["bytes_per_conn"] = float64(with.RSS-before.RSS) / float64(open)
	}
	fmt.Fprintf(os.Stderr, "tlsload: %d/%d idle TLS connections in %.1fs\n", open, o.conns, res.Metrics["open_s"])
	if open == 0 {
		return fmt.Errorf("no connection could be opened: %s", res.Errors.Last)
	}
	return nil
}

// runProbe: -conns keep-alive connections; connection i sends its k-th request at
// start + offset_i + k·interval (offsets spread over one interval) and records the time
// from that due instant to the full response, so a late reply delays nothing it should
// not and a stall shows in the tail (no coordinated omission).
func runProbe(o *options, res *result) error {
	deadline := time.Now().Add(10*time.Second + o.warmup + o.duration)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var c counters
	conns := make([]*tls.Conn, o.conns)
	for i := range conns {
		conn, dialFail, err := exchange(ctx, o, o.tlsConfig(nil), nil, nil, deadline)
		if err != nil {
			c.fail(dialFail, err)
			c.fill(res)
			for _, cn := range conns[:i] {
				cn.Close()
			}
			return fmt.Errorf("probe connection %d: %w", i, err)
		}
		conns[i] = conn
	}
	start := time.Now().Add(50 * time.Millisecond)
	winStart := start.Add(o.warmup)
	winEnd := winStart.Add(o.duration)
	req := o.request()
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Add(1)
		go func(i int, conn *tls.Conn) {
			defer wg.Done()
			defer conn.Close()
			conn.SetDeadline(winEnd.Add(5 * time.Second))
			buf := make([]byte, 4096)
			var h hist.H
			var ok int64
			due := start.Add(o.interval * time.Duration(i) / time.Duration(len(conns)))
			for due.Before(winEnd) {
				time.Sleep(time.Until(due))
				_, err := conn.Write(req)
				n := 0
				if err == nil {
					n, err = readResponse(conn, buf)
				}
				if err == nil && !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200")) {
					err = fmt.Errorf("bad response %q", buf[:min(n, 40)])
				}
				if err != nil {
					c.fail(false, err)
					return
				}
				if !due.Before(winStart) {
					h.Record(time.Since(due).Microseconds())
					ok++
				}
				due = due.Add(o.interval)
				// Behind by whole intervals (a stall): skip the missed slots rather
				// than send a burst; the stall is already in the recorded latency.
				if late := time.Since(due); late > o.interval {
					due = due.Add(late.Truncate(o.interval))
				}
			}
			c.ok.Add(ok)
			c.mu.Lock()
			c.h.Merge(&h)
			c.mu.Unlock()
		}(i, conn)
	}
	time.Sleep(time.Until(winStart))
	w := startWindow(o)
	wg.Wait()
	w.end(o, res)
	ops := float64(c.ok.Load())
	res.Metrics["requests"] = ops
	res.Metrics["rps"] = ops / o.duration.Seconds()
	if cpu, ok := res.Metrics["cpu_s"]; ok && ops > 0 {
		res.Metrics["cpu_us_per_req"] = cpu / ops * 1e6
	}
	for _, q := range []struct {
		k string
		q float64
	}{{"p50_us", 0.5}, {"p90_us", 0.9}, {"p99_us", 0.99}, {"p999_us", 0.999}} {
		res.Metrics[q.k] = float64(c.h.Quantile(q.q))
	}
	res.Metrics["max_us"] = float64(c.h.Max())
	c.fill(res)
	if ops == 0 {
		return fmt.Errorf("no probe request completed: %s", res.Errors.Last)
	}
	return nil
}

// cpuBusyTicks is the non-idle time of one CPU (its /proc/stat line: user, nice,
// system, irq, softirq, steal): with the client, the backend and anyone else's work on
// the load CPU, near 1 per second means that CPU, not the SUT, set the pace.
func cpuBusyTicks(n int) (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	want := "cpu" + strconv.Itoa(n) + " "
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, want) {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 9 {
			break
		}
		var sum uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	}
	return 0, fmt.Errorf("no %q line in /proc/stat", strings.TrimSpace(want))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// readResponse reads one HTTP/1.1 response with a Content-Length body.
func readResponse(c net.Conn, buf []byte) (int, error) {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if h := bytes.Index(buf[:n], []byte("\r\n\r\n")); h >= 0 {
			hdr := strings.ToLower(string(buf[:h]))
			if i := strings.Index(hdr, "content-length:"); i >= 0 {
				v := strings.TrimSpace(strings.SplitN(hdr[i+15:], "\r\n", 2)[0])
				if cl, e := strconv.Atoi(v); e == nil && n >= h+4+cl {
					return n, nil
				}
			}
		}
		if err != nil {
			return n, err
		}
		if n == len(buf) {
			return n, fmt.Errorf("response larger than %d bytes", len(buf))
		}
	}
}
