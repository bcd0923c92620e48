// Command connload drives the connection-oriented benchmark scenarios that
// wrk cannot: TLS handshakes per request through SNI passthrough proxies
// (-mode tls), connect/echo/close churn (-mode churn) and long-lived
// connections doing ping-pong (-mode hold) against Portico's echo filter for
// the worker-balance scenario. Every mode is bounded in time and count.
//
// It samples the server under test (-pid) from /proc: whole-process CPU over
// the measured window and, with -workers K, the CPU of each thread (the K
// busiest are Portico's workers: each is a goroutine locked to its own OS
// thread). With -admin it reads Portico's /stats for connections per worker.
// One JSON object is written to -out (or stdout).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
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
	Mode      string             `json:"mode"`
	Labels    labels             `json:"labels"`
	Conns     int                `json:"conns"`
	Metrics   map[string]float64 `json:"metrics"`
	PerWorker *perWorker         `json:"per_worker,omitempty"`
	Errors    struct {
		Dial int64  `json:"dial"`
		IO   int64  `json:"io"`
		Last string `json:"last"`
	} `json:"errors"`
	ServerExited bool `json:"server_exited"`
}

type perWorker struct {
	Conns []float64 `json:"conns"` // downstream_cx_total per worker, from /stats
	CPU   []float64 `json:"cpu_s"` // CPU seconds of the K busiest threads over the window
	Other float64   `json:"other_threads_cpu_s"`
}

var (
	mode     = flag.String("mode", "tls", "tls | churn | hold")
	addr     = flag.String("addr", "127.0.0.1:10020", "server address")
	names    = flag.String("names", "localhost", "tls: comma-separated SNI names, used in turn")
	conc     = flag.Int("conc", 50, "concurrent connections (tls, churn) or connections held (hold)")
	total    = flag.Int("total", 0, "churn: connections in all; tls: upper bound on handshakes in the window (0: none)")
	warmup   = flag.Duration("warmup", time.Second, "tls: unmeasured warm-up")
	duration = flag.Duration("duration", 5*time.Second, "tls, hold: measured window; churn: upper bound")
	pid      = flag.Int("pid", 0, "server PID to sample")
	clkTck   = flag.Int("clk-tck", 100, "USER_HZ")
	workers  = flag.Int("workers", 0, "report CPU of the K busiest threads of -pid")
	admin    = flag.String("admin", "", "Portico admin address host:port for /stats")
	listener = flag.String("listener", "", "listener name in /stats")
	outPath  = flag.String("out", "", "result file (default stdout)")
	drain    = flag.Bool("drain", false, "tls: connections started inside the window run to their end (up to 5 s) and count; for per-handshake counts such as system calls, where a connection cut at the window's end would be paid for and not counted")
	lbl      = labels{}
)

func main() {
	flag.Var(lbl, "label", "key=value tag (repeatable)")
	flag.Parse()
	res := result{Mode: *mode, Labels: lbl, Conns: *conc, Metrics: map[string]float64{}}
	switch *mode {
	case "tls":
		runTLS(&res)
	case "churn":
		runChurn(&res)
	case "hold":
		runHold(&res)
	default:
		fmt.Fprintln(os.Stderr, "unknown -mode")
		os.Exit(2)
	}
	if *pid > 0 && !procstat.Alive(*pid) {
		res.ServerExited = true
	}
	if err := jsonline.Write(*outPath, res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// window samples process and per-thread CPU at its start and end.
type window struct {
	t0   time.Time
	cpu0 procstat.CPU
	th0  map[string]uint64
}

func startWindow() *window {
	w := &window{t0: time.Now()}
	if *pid > 0 {
		w.cpu0, _ = procstat.ReadCPU(*pid)
		w.th0 = threadTicks(*pid)
	}
	return w
}

// end fills cpu_s, sut_util and cpu_us_per_op (for ops operations) and
// per-worker CPU; returns elapsed seconds.
func (w *window) end(res *result, ops float64) float64 {
	el := time.Since(w.t0).Seconds()
	if *pid <= 0 {
		return el
	}
	c1, err := procstat.ReadCPU(*pid)
	if err != nil {
		return el
	}
	tick := 1 / float64(*clkTck)
	cpu := float64(c1.UserTicks+c1.SysTicks-w.cpu0.UserTicks-w.cpu0.SysTicks) * tick
	res.Metrics["cpu_s"] = cpu
	res.Metrics["sut_util"] = cpu / el
	res.Metrics["user_frac"] = 0
	if cpu > 0 {
		res.Metrics["user_frac"] = float64(c1.UserTicks-w.cpu0.UserTicks) * tick / cpu
	}
	if ops > 0 {
		res.Metrics["cpu_us_per_op"] = cpu / ops * 1e6
	}
	if *workers > 0 {
		th1 := threadTicks(*pid)
		var d []float64
		for tid, t := range th1 {
			d = append(d, float64(t-w.th0[tid])*tick)
		}
		sort.Sort(sort.Reverse(sort.Float64Slice(d)))
		if res.PerWorker == nil {
			res.PerWorker = &perWorker{}
		}
		k := min(*workers, len(d))
		res.PerWorker.CPU = d[:k]
		for _, x := range d[k:] {
			res.PerWorker.Other += x
		}
	}
	return el
}

// threadTicks maps TID to utime+stime of every thread of pid.
func threadTicks(pid int) map[string]uint64 {
	m := map[string]uint64{}
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return m
	}
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, d.Name()))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseUint(f[11], 10, 64)
		s, _ := strconv.ParseUint(f[12], 10, 64)
		m[d.Name()] = u + s
	}
	return m
}

var statRe = regexp.MustCompile(`^listener\.(.+)\.worker_(\d+)\.downstream_cx_total: (\d+)`)

// workerConns reads downstream_cx_total per worker of one listener.
func workerConns(res *result) {
	if *admin == "" {
		return
	}
	cl := http.Client{Timeout: 3 * time.Second}
	r, err := cl.Get("http://" + *admin + "/stats")
	if err != nil {
		res.Errors.Last = "stats: " + err.Error()
		return
	}
	defer r.Body.Close()
	byW := map[int]float64{}
	maxW := -1
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		m := statRe.FindStringSubmatch(sc.Text())
		if m == nil || (*listener != "" && m[1] != *listener) {
			continue
		}
		w, _ := strconv.Atoi(m[2])
		v, _ := strconv.ParseFloat(m[3], 64)
		byW[w] += v
		maxW = max(maxW, w)
	}
	if res.PerWorker == nil {
		res.PerWorker = &perWorker{}
	}
	res.PerWorker.Conns = make([]float64, maxW+1)
	for w, v := range byW {
		res.PerWorker.Conns[w] = v
	}
}

type counters struct {
	ok, dialErr, ioErr atomic.Int64
	last               atomic.Value
	mu                 sync.Mutex
	h                  hist.H
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
	if s, ok := c.last.Load().(string); ok && res.Errors.Last == "" {
		res.Errors.Last = s
	}
}

// runTLS: each of -conc goroutines loops tls.Dial (full handshake: no
// session cache), one HTTP/1.1 request, read the response, close. A
// connection counts when its response is read inside the measured window
// [warm-up end, warm-up end + duration); an error counts when it happens
// inside that window.
//
// The window is judged by the clock (time.Now against fixed instants), never
// by ctx.Err(): a context's deadline is enforced by a runtime timer, and that
// timer can fire milliseconds late when every goroutine is busy (GOMAXPROCS=1
// under taskset). Meanwhile ctx.Err() is still nil but ctx.Deadline() has
// passed, so net.Dialer fails every dial at once with "i/o timeout" without
// a syscall (its deadline arithmetic sees no time left); a loop guarded by
// ctx.Err() then spins through thousands of such dials, which were counted as
// errors. Here no dial starts after the window's end, and anything that
// returns at or after it (including everything the context's expiry cuts
// short) is neither an error nor a handshake.
//
// With -drain no dial starts after the window's end either, but the connections
// already started finish (their I/O deadline is 5 s, not the window's end) and count
// when they started inside the window; the window is then over when the last of them
// is, so every connection the server saw in it is counted once.
func runTLS(res *result) {
	sni := strings.Split(*names, ",")
	var c counters
	var started atomic.Int64
	begin := time.Now()
	winStart := begin.Add(*warmup)
	winEnd := winStart.Add(*duration)
	ioEnd := winEnd // no I/O beyond this
	if *drain {
		ioEnd = winEnd.Add(5 * time.Second)
	}
	inWindow := func(t time.Time) bool { return !t.Before(winStart) && t.Before(winEnd) }
	ctx, cancel := context.WithDeadline(context.Background(), ioEnd)
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, 4096)
			var h hist.H
			for i := g; ; i += *conc {
				t0 := time.Now()
				if !t0.Before(winEnd) {
					break
				}
				if *total > 0 && !t0.Before(winStart) && started.Add(1) > int64(*total) {
					break
				}
				name := sni[i%len(sni)]
				d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{ServerName: name, InsecureSkipVerify: true}}
				conn, err := d.DialContext(ctx, "tcp", *addr)
				if err != nil {
					if inWindow(time.Now()) || (*drain && inWindow(t0)) {
						c.fail(true, err)
					}
					continue
				}
				// No I/O outlives the window: a request cut by its end
				// fails after the end and is therefore not counted.
				conn.SetDeadline(minTime(time.Now().Add(5*time.Second), ioEnd))
				// Keep-alive request, read exactly one response, then the
				// client closes first: its TIME_WAIT stays on the client
				// side, where tcp_tw_reuse lets loopback ports be reused.
				// (With Connection: close the server closes first and its
				// TIME_WAIT entries make reused client ports stall.)
				_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+name+"\r\n\r\n")
				n := 0
				if err == nil {
					n, err = readResponse(conn, buf)
				}
				t1 := time.Now()
				conn.Close()
				if err == nil && !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200")) {
					err = fmt.Errorf("bad response %q", buf[:min(n, 40)])
				}
				if !inWindow(t1) && !(*drain && inWindow(t0)) {
					continue
				}
				if err != nil {
					c.fail(false, err)
					continue
				}
				c.ok.Add(1)
				h.Record(t1.Sub(t0).Microseconds())
			}
			c.mu.Lock()
			c.h.Merge(&h)
			c.mu.Unlock()
		}(g)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	time.Sleep(time.Until(winStart))
	w := startWindow()
	// The window ends at winEnd, or earlier once every goroutine has
	// stopped (-total reached).
	// With -drain it ends when the last connection does.
	span := *duration
	t := time.NewTimer(time.Until(winEnd))
	select {
	case <-t.C:
		if *drain {
			<-done
			span = time.Since(winStart)
		}
	case <-done:
		t.Stop()
		span = min(span, time.Since(winStart))
	}
	// CPU is sampled at the window's end; the connections that completed
	// inside it are known once every goroutine has returned (each stops
	// dialling at the end, and no I/O deadline lies beyond it).
	w.end(res, 0)
	<-done
	ops := float64(c.ok.Load())
	if cpu, ok := res.Metrics["cpu_s"]; ok && ops > 0 {
		res.Metrics["cpu_us_per_op"] = cpu / ops * 1e6
	}
	res.Metrics["ops"] = ops
	res.Metrics["rate"] = ops / span.Seconds()
	res.Metrics["p50_us"] = float64(c.h.Quantile(0.50))
	res.Metrics["p99_us"] = float64(c.h.Quantile(0.99))
	c.fill(res)
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

func dialTCP(ctx context.Context) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	cn, err := d.DialContext(ctx, "tcp", *addr)
	if err != nil {
		return nil, err
	}
	return cn.(*net.TCPConn), nil
}

func echoOnce(cn *net.TCPConn, msg, buf []byte) error {
	if _, err := cn.Write(msg); err != nil {
		return err
	}
	_, err := io.ReadFull(cn, buf[:len(msg)])
	return err
}

// runChurn: -total connections, -conc at a time, each connect, one 64-byte
// echo, close with RST (no TIME_WAIT piles up on the client).
// The bound is checked on the clock, not with ctx.Err(), for the reason
// given at runTLS: dials that fail because it has passed are not errors.
func runChurn(res *result) {
	deadline := time.Now().Add(*duration)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var c counters
	var next atomic.Int64
	msg := bytes.Repeat([]byte("x"), 64)
	w := startWindow()
	var wg sync.WaitGroup
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for time.Now().Before(deadline) && next.Add(1) <= int64(*total) {
				cn, err := dialTCP(ctx)
				if err != nil {
					if time.Now().Before(deadline) {
						c.fail(true, err)
					}
					continue
				}
				cn.SetDeadline(time.Now().Add(5 * time.Second))
				err = echoOnce(cn, msg, buf)
				cn.SetLinger(0)
				cn.Close()
				if err != nil {
					c.fail(false, err)
					continue
				}
				c.ok.Add(1)
			}
		}()
	}
	wg.Wait()
	ops := float64(c.ok.Load())
	el := w.end(res, ops)
	res.Metrics["ops"] = ops
	res.Metrics["rate"] = ops / el
	time.Sleep(100 * time.Millisecond) // let the workers count the last closes
	workerConns(res)
	c.fill(res)
}

// runHold: open -conc connections (128 handshakes in flight), then every
// connection ping-pongs 64 bytes for -duration, then per-worker figures are
// read while all connections are still open.
func runHold(res *result) {
	ctx, cancel := context.WithTimeout(context.Background(), *duration+60*time.Second)
	defer cancel()
	var c counters
	conns := make([]*net.TCPConn, *conc)
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			cn, err := dialTCP(ctx)
			if err != nil {
				c.fail(true, err)
				return
			}
			conns[i] = cn
		}(i)
	}
	wg.Wait()
	msg := bytes.Repeat([]byte("x"), 64)
	stop := time.Now().Add(*duration)
	w := startWindow()
	for _, cn := range conns {
		if cn == nil {
			continue
		}
		wg.Add(1)
		go func(cn *net.TCPConn) {
			defer wg.Done()
			buf := make([]byte, 64)
			cn.SetDeadline(stop.Add(5 * time.Second))
			for time.Now().Before(stop) {
				if err := echoOnce(cn, msg, buf); err != nil {
					c.fail(false, err)
					return
				}
				c.ok.Add(1)
			}
		}(cn)
	}
	wg.Wait()
	ops := float64(c.ok.Load())
	el := w.end(res, ops)
	res.Metrics["ops"] = ops
	res.Metrics["rate"] = ops / el
	open := 0
	for _, cn := range conns {
		if cn != nil {
			open++
		}
	}
	res.Metrics["conns_open"] = float64(open)
	workerConns(res)
	for _, cn := range conns {
		if cn != nil {
			cn.SetLinger(0)
			cn.Close()
		}
	}
	c.fill(res)
}
