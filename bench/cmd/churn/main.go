// Command churn is the client of the reload scenario: new TCP connections at a bounded
// aggregate rate while a controller (scripts/lib-bench-reload.sh) restarts or
// reconfigures the proxy under it, and every connection that fails is counted by class.
//
// It is its own command rather than a mode of connload because what it measures is
// different: connload counts throughput and per-worker balance with a fixed number of
// connections in flight; churn paces connection attempts on the clock (open loop, so a
// stall shows up as failures or missed slots instead of slowing the client down),
// classifies each failure, keeps a timeline to see gaps, runs long-lived keep-alive
// streams alongside, and splits everything by the controller's events.
//
// Each of -conc goroutines takes the next slot of a global schedule (slot i is due at
// start + i/rate), dials, sends one request (HTTP/1.1 GET with Connection: close, or a
// line for an echo server), reads the whole response, then closes with RST (SO_LINGER
// 0) so that no TIME_WAIT piles up on the client's ports. A slot more than -late behind
// its time is skipped and counted (the load CPU could not keep up). Failures:
// refused (ECONNREFUSED), reset (ECONNRESET, EPIPE), closed (EOF before a whole
// response), timeout (connect, or the response, beyond -timeout), bad (not a 200, or
// an echo that differs), other.
//
// -streams connections each send one keep-alive request every -stream-interval for the
// whole run; a request that fails is a break (same classes) and the stream redials. A
// response that carries "Connection: close" ends its connection cleanly, and so does a
// server's close of the connection while it is idle, seen (by a non-blocking peek)
// before the next request is written: both are counted, not breaks, as an HTTP client's
// pool would redial without an error. A close that races the request is a break.
//
// The controller writes -events-file while the run goes on, one line per action:
// "NAME START_UNIX_NS END_UNIX_NS [VERSION]"; END is when the action took effect from
// the controller's side (the rename done, the new process listening, the reload
// signalled and the new worker up). It is read once the run ends, and each event's
// window (from its START to the next event's START, or to the run's end) gets its own
// failure counts, stream breaks and longest gap between successful connections. With
// VERSION (and -version-header), the update latency is the time from END to the first
// response that carries that version.
//
// -pids-file names the processes of the system under test (one PID a line, rewritten
// by the controller as processes come and go); they and their descendants are sampled
// every 200 ms, and cpu_s is the CPU they used during the run (a process's last
// ≤ 200 ms before it exits are missed).
//
// Everything is bounded: the run lasts -duration, every I/O has a deadline, and no
// dial starts after the end. One JSON object is written to -out (or stdout).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portico-proxy/portico/bench/internal/jsonline"
)

// labels is the -label flag (key=value, repeatable).
type labels = jsonline.Labels

type options struct {
	addr, mode, host, versionHeader string
	rate                            float64
	conc, streams                   int
	duration, timeout, late         time.Duration
	streamInterval, bucket          time.Duration
	eventsFile, pidsFile, out       string
	clkTck                          int
	labels                          labels
}

// Failure classes, in the order they are reported.
const (
	cRefused = iota
	cReset
	cClosed
	cTimeout
	cBad
	cOther
	nClasses
)

var classNames = [nClasses]string{"refused", "reset", "closed", "timeout", "bad", "other"}

func classify(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return cRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return cReset
	case errors.As(err, &ne) && ne.Timeout():
		return cTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return cClosed
	}
	return cOther
}

// failure is one failed connection or stream request, at t (ns since the run's start).
type failure struct {
	t      int64
	class  uint8
	stream bool
}

// recorder collects what the goroutines saw. okMS counts successful churn connections
// per millisecond of the run (by completion time), for the timeline and the gaps.
type recorder struct {
	start time.Time
	okMS  []atomic.Int32
	// startMS counts connection attempts per millisecond (by dial start): a gap here is
	// the client's own stall (the load CPU taken by others), not the server's.
	startMS  []atomic.Int32
	mu       sync.Mutex
	fails    []failure
	lastErr  [nClasses]string
	attempts atomic.Int64
	missed   atomic.Int64
	streamOK atomic.Int64
	graceful atomic.Int64
	redials  atomic.Int64
	// redialFail: redials of a broken stream that failed (retried every 50 ms).
	redialFail atomic.Int64
	// idleClose: stream connections the server closed while idle, seen before a request.
	idleClose atomic.Int64
	// firstSeen/lastSeen: ns since start of the first and last response carrying
	// version v (math.MaxInt64 / -1: never).
	firstSeen, lastSeen []atomic.Int64
	p                   *options
}

const maxVersion = 4096

func newRecorder(p *options) *recorder {
	r := &recorder{start: time.Now(), p: p,
		okMS:      make([]atomic.Int32, p.duration.Milliseconds()+int64(p.timeout/time.Millisecond)+1000),
		startMS:   make([]atomic.Int32, p.duration.Milliseconds()+int64(p.timeout/time.Millisecond)+1000),
		firstSeen: make([]atomic.Int64, maxVersion), lastSeen: make([]atomic.Int64, maxVersion)}
	for i := range r.firstSeen {
		r.firstSeen[i].Store(math.MaxInt64)
		r.lastSeen[i].Store(-1)
	}
	return r
}

func (r *recorder) since(t time.Time) int64 { return t.Sub(r.start).Nanoseconds() }

func (r *recorder) fail(t time.Time, err error, stream bool) {
	c := classify(err)
	r.failClass(t, c, err.Error(), stream)
}

func (r *recorder) failClass(t time.Time, c int, msg string, stream bool) {
	r.mu.Lock()
	r.fails = append(r.fails, failure{r.since(t), uint8(c), stream})
	r.lastErr[c] = msg
	r.mu.Unlock()
}

func (r *recorder) ok(t time.Time, version int) {
	ns := r.since(t)
	if ms := ns / 1e6; ms >= 0 && ms < int64(len(r.okMS)) {
		r.okMS[ms].Add(1)
	}
	r.seen(version, ns)
}

func (r *recorder) seen(v int, ns int64) {
	if v < 0 || v >= maxVersion {
		return
	}
	for {
		f := r.firstSeen[v].Load()
		if ns >= f || r.firstSeen[v].CompareAndSwap(f, ns) {
			break
		}
	}
	for {
		l := r.lastSeen[v].Load()
		if ns <= l || r.lastSeen[v].CompareAndSwap(l, ns) {
			break
		}
	}
}

func main() {
	p := &options{labels: labels{}}
	flag.StringVar(&p.addr, "addr", "127.0.0.1:10000", "target host:port")
	flag.StringVar(&p.mode, "mode", "http", "http (GET, Connection: close) | echo (a line, echoed)")
	flag.StringVar(&p.host, "host", "bench", "http: Host header")
	flag.StringVar(&p.versionHeader, "version-header", "x-bench-version", "http: response header whose integer value is the config version (empty: none)")
	flag.Float64Var(&p.rate, "rate", 13500, "target new connections per second, all goroutines together")
	flag.IntVar(&p.conc, "conc", 64, "goroutines making connections (bounds the connections in flight)")
	flag.IntVar(&p.streams, "streams", 100, "long-lived keep-alive connections")
	flag.DurationVar(&p.streamInterval, "stream-interval", 100*time.Millisecond, "one request per stream every this long")
	flag.DurationVar(&p.duration, "duration", 10*time.Second, "length of the run")
	flag.DurationVar(&p.timeout, "timeout", 2*time.Second, "connect timeout, and the deadline of each request's I/O")
	flag.DurationVar(&p.late, "late", 50*time.Millisecond, "a slot further behind its time than this is skipped (missed)")
	flag.DurationVar(&p.bucket, "bucket", 100*time.Millisecond, "timeline bucket")
	flag.StringVar(&p.eventsFile, "events-file", "", "the controller's events, read at the end (see the package doc)")
	flag.StringVar(&p.pidsFile, "pids-file", "", "PIDs of the system under test, one a line, re-read every 200 ms")
	flag.IntVar(&p.clkTck, "clk-tck", 100, "USER_HZ")
	flag.StringVar(&p.out, "out", "", "result file (default stdout)")
	flag.Var(p.labels, "label", "key=value tag (repeatable)")
	flag.Parse()
	if p.rate <= 0 || p.conc <= 0 || p.duration <= 0 || (p.mode != "http" && p.mode != "echo") {
		fmt.Fprintln(os.Stderr, "churn: need -rate > 0, -conc > 0, -duration > 0, -mode http|echo")
		os.Exit(2)
	}
	res := run(p)
	if err := jsonline.Write(p.out, res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(p *options) *result {
	r := newRecorder(p)
	end := r.start.Add(p.duration)
	cpu := newCPUSampler(p.pidsFile, p.clkTck)
	stopCPU := make(chan struct{})
	cpuDone := make(chan struct{})
	go func() { cpu.loop(stopCPU); close(cpuDone) }()

	var wg sync.WaitGroup
	var slot atomic.Int64
	interval := float64(time.Second) / p.rate
	for g := 0; g < p.conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				i := slot.Add(1) - 1
				due := r.start.Add(time.Duration(float64(i) * interval))
				if !due.Before(end) {
					return
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				} else if -d > p.late {
					r.missed.Add(1)
					continue
				}
				r.attempts.Add(1)
				if ms := r.since(time.Now()) / 1e6; ms >= 0 && ms < int64(len(r.startMS)) {
					r.startMS[ms].Add(1)
				}
				oneConn(r, buf)
			}
		}()
	}
	for s := 0; s < p.streams; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			// Spread the streams' requests over the interval.
			stream(r, end, time.Duration(s)*p.streamInterval/time.Duration(max(p.streams, 1)))
		}(s)
	}
	wg.Wait()
	close(stopCPU)
	<-cpuDone
	return r.result(time.Since(r.start), cpu)
}

func request(p *options, keepAlive bool) []byte {
	if p.mode == "echo" {
		return []byte("churn ping 0123456789abcdef\n")
	}
	if keepAlive {
		return []byte("GET / HTTP/1.1\r\nHost: " + p.host + "\r\n\r\n")
	}
	return []byte("GET / HTTP/1.1\r\nHost: " + p.host + "\r\nConnection: close\r\n\r\n")
}

// oneConn: dial, one request, the whole response, close with RST.
func oneConn(r *recorder, buf []byte) {
	p := r.p
	c, err := net.DialTimeout("tcp", p.addr, p.timeout)
	if err != nil {
		r.fail(time.Now(), err, false)
		return
	}
	tc := c.(*net.TCPConn)
	defer func() { tc.SetLinger(0); tc.Close() }()
	tc.SetDeadline(time.Now().Add(p.timeout))
	req := request(p, false)
	if _, err := tc.Write(req); err != nil {
		r.fail(time.Now(), err, false)
		return
	}
	v, _, err := readReply(tc, p, req, buf)
	now := time.Now()
	if err != nil {
		if errors.Is(err, errBad) {
			r.failClass(now, cBad, err.Error(), false)
		} else {
			r.fail(now, err, false)
		}
		return
	}
	r.ok(now, v)
}

var errBad = errors.New("bad response")

// readReply reads one whole reply: the echo of req, or an HTTP/1.1 response with a
// Content-Length body. It returns the version the response carries (-1: none) and
// whether it asked to close the connection.
func readReply(c net.Conn, p *options, req, buf []byte) (version int, closing bool, err error) {
	if p.mode == "echo" {
		if _, err := io.ReadFull(c, buf[:len(req)]); err != nil {
			return -1, false, err
		}
		if !bytes.Equal(buf[:len(req)], req) {
			return -1, false, fmt.Errorf("%w: echo differs", errBad)
		}
		return -1, false, nil
	}
	n := 0
	for {
		m, rerr := c.Read(buf[n:])
		n += m
		if h := bytes.Index(buf[:n], []byte("\r\n\r\n")); h >= 0 {
			hdr := string(buf[:h])
			cl := -1
			version, closing = -1, false
			lines := strings.Split(hdr, "\r\n")
			for _, l := range lines[1:] {
				k, val, _ := strings.Cut(l, ":")
				k, val = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val)
				switch {
				case k == "content-length":
					cl, _ = strconv.Atoi(val)
				case k == "connection":
					closing = strings.EqualFold(val, "close")
				case p.versionHeader != "" && k == p.versionHeader:
					if x, e := strconv.Atoi(val); e == nil {
						version = x
					}
				}
			}
			if cl >= 0 && n >= h+4+cl {
				if !strings.HasPrefix(lines[0], "HTTP/1.1 200") {
					return version, closing, fmt.Errorf("%w: %q", errBad, lines[0])
				}
				return version, closing, nil
			}
		}
		if rerr != nil {
			if rerr == io.EOF && n > 0 {
				rerr = io.ErrUnexpectedEOF
			}
			return -1, false, rerr
		}
		if n == len(buf) {
			return -1, false, fmt.Errorf("%w: larger than %d bytes", errBad, len(buf))
		}
	}
}

// stream keeps one keep-alive connection busy until end: a request every interval,
// redialling after a break or a clean close (a failed redial is counted apart, not as
// another break, and is retried after 50 ms).
func stream(r *recorder, end time.Time, phase time.Duration) {
	p := r.p
	buf := make([]byte, 4096)
	req := request(p, true)
	var c net.Conn
	var err error
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	next := r.start.Add(phase)
	for {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		if !time.Now().Before(end) {
			return
		}
		next = next.Add(p.streamInterval)
		if c == nil {
			c, err = net.DialTimeout("tcp", p.addr, p.timeout)
			if err != nil {
				// Not another break: the stream is already down (cold restart).
				c = nil
				r.redialFail.Add(1)
				next = time.Now().Add(50 * time.Millisecond)
				continue
			}
			r.redials.Add(1)
		}
		if closedWhileIdle(c) {
			// The server closed the idle connection before this request (a reload's
			// old process letting go): a client's pool sees that and redials, as
			// here; not a break.
			r.idleClose.Add(1)
			c.Close()
			if c, err = net.DialTimeout("tcp", p.addr, p.timeout); err != nil {
				c = nil
				r.redialFail.Add(1)
				next = time.Now().Add(50 * time.Millisecond)
				continue
			}
			r.redials.Add(1)
		}
		c.SetDeadline(time.Now().Add(p.timeout))
		_, err = c.Write(req)
		var v int
		var closing bool
		if err == nil {
			v, closing, err = readReply(c, p, req, buf)
		}
		now := time.Now()
		if err != nil {
			if errors.Is(err, errBad) {
				r.failClass(now, cBad, err.Error(), true)
			} else {
				r.fail(now, err, true)
			}
			c.Close()
			c = nil
			continue
		}
		r.streamOK.Add(1)
		r.seen(v, r.since(now))
		if closing {
			r.graceful.Add(1)
			c.Close()
			c = nil
		}
	}
}

// closedWhileIdle peeks at an idle connection without blocking: true if the server has
// closed it (EOF or RST queued) before we send anything.
func closedWhileIdle(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	closed := false
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || errors.Is(err, syscall.ECONNRESET)
		return true // never wait: this is a peek
	})
	return closed
}

// ---------------------------------------------------------------------------
// Result.

type event struct {
	Name        string           `json:"name"`
	StartMS     float64          `json:"start_ms"`  // since the run's start
	ActionMS    float64          `json:"action_ms"` // END - START
	Version     int              `json:"version,omitempty"`
	WindowMS    float64          `json:"window_ms"`
	Failed      int64            `json:"failed"`
	ByClass     map[string]int64 `json:"by_class"`
	StreamBreak int64            `json:"stream_breaks"`
	MaxGapMS    float64          `json:"max_gap_ms"` // longest time without a successful connection in the window
	// The longest time without a connection attempt: when it is about as long as
	// MaxGapMS, the gap was the client's stall, not the server's.
	MaxAttemptGapMS float64 `json:"max_attempt_gap_ms"`
	// Update latency (events with a version): END to the first response with the
	// version; the old version's last response after END (negative: none after END).
	LatencyMS *float64 `json:"latency_ms,omitempty"`
	OldLastMS *float64 `json:"old_last_ms,omitempty"`
	// First and last failure in the window, ms after START.
	FirstFailMS *float64 `json:"first_fail_ms,omitempty"`
	LastFailMS  *float64 `json:"last_fail_ms,omitempty"`
}

type result struct {
	Mode     string             `json:"mode"`
	Labels   labels             `json:"labels"`
	Metrics  map[string]float64 `json:"metrics"`
	ByClass  map[string]int64   `json:"by_class"`
	Streams  map[string]int64   `json:"stream_breaks_by_class"`
	LastErr  map[string]string  `json:"last_error,omitempty"`
	Events   []event            `json:"events"`
	Timeline struct {
		BucketMS float64 `json:"bucket_ms"`
		OK       []int32 `json:"ok"`
		Failed   []int32 `json:"failed"`
	} `json:"timeline"`
	StartUnixNS int64  `json:"start_unix_ns"`
	Failure     string `json:"failure"`
}

type rawEvent struct {
	name       string
	start, end int64 // ns since the run's start
	version    int
}

func readEvents(path string, start time.Time) ([]rawEvent, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	var evs []rawEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		s, e1 := strconv.ParseInt(fs[1], 10, 64)
		e, e2 := strconv.ParseInt(fs[2], 10, 64)
		if e1 != nil || e2 != nil {
			return nil, fmt.Errorf("events: bad line %q", sc.Text())
		}
		ev := rawEvent{name: fs[0], start: s - start.UnixNano(), end: e - start.UnixNano()}
		if len(fs) > 3 {
			ev.version, _ = strconv.Atoi(fs[3])
		}
		evs = append(evs, ev)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].start < evs[j].start })
	return evs, sc.Err()
}

// maxGap: the longest run of milliseconds in [from, to) without a successful
// connection, in ms.
func (r *recorder) maxGap(from, to int64) float64 { return longestEmpty(r.okMS, from, to) }

// maxAttemptGap: the same for connection attempts.
func (r *recorder) maxAttemptGap(from, to int64) float64 { return longestEmpty(r.startMS, from, to) }

func longestEmpty(c []atomic.Int32, from, to int64) float64 {
	a, b := max(from/1e6, 0), min(to/1e6, int64(len(c)))
	best, cur := int64(0), int64(0)
	for ms := a; ms < b; ms++ {
		if c[ms].Load() == 0 {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return float64(best)
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func ptr(x float64) *float64 { return &x }

func (r *recorder) result(elapsed time.Duration, cpu *cpuSampler) *result {
	p := r.p
	res := &result{Mode: "churn", Labels: p.labels, Metrics: map[string]float64{},
		ByClass: map[string]int64{}, Streams: map[string]int64{}, LastErr: map[string]string{},
		StartUnixNS: r.start.UnixNano()}
	for c := 0; c < nClasses; c++ {
		res.ByClass[classNames[c]] = 0
		res.Streams[classNames[c]] = 0
		if r.lastErr[c] != "" {
			res.LastErr[classNames[c]] = r.lastErr[c]
		}
	}
	sort.Slice(r.fails, func(i, j int) bool { return r.fails[i].t < r.fails[j].t })
	var failed, breaks int64
	for _, f := range r.fails {
		if f.stream {
			res.Streams[classNames[f.class]]++
			breaks++
		} else {
			res.ByClass[classNames[f.class]]++
			failed++
		}
	}
	var ok int64
	for i := range r.okMS {
		ok += int64(r.okMS[i].Load())
	}
	el := elapsed.Seconds()
	m := res.Metrics
	m["target_rate"] = p.rate
	m["attempts"] = float64(r.attempts.Load())
	m["ok"] = float64(ok)
	m["failed"] = float64(failed)
	m["missed_slots"] = float64(r.missed.Load())
	// Slots are due within -duration; the last responses land up to -timeout later.
	m["rate"] = float64(ok) / p.duration.Seconds()
	m["attempt_rate"] = float64(r.attempts.Load()) / p.duration.Seconds()
	m["duration_s"] = el
	m["streams"] = float64(p.streams)
	m["stream_requests"] = float64(r.streamOK.Load())
	m["stream_breaks"] = float64(breaks)
	m["stream_graceful_closes"] = float64(r.graceful.Load())
	m["stream_redials"] = float64(r.redials.Load())
	m["stream_redial_failures"] = float64(r.redialFail.Load())
	m["stream_idle_closes"] = float64(r.idleClose.Load())
	m["max_gap_ms"] = r.maxGap(0, p.duration.Nanoseconds())
	m["max_attempt_gap_ms"] = r.maxAttemptGap(0, p.duration.Nanoseconds())
	if cpu.ok {
		m["cpu_s"] = cpu.seconds()
		m["sut_util"] = cpu.seconds() / el
		m["sut_pids_seen"] = float64(len(cpu.first))
	}

	// Timeline.
	bns := p.bucket.Nanoseconds()
	nb := int((p.duration.Nanoseconds() + bns - 1) / bns)
	res.Timeline.BucketMS = ms(bns)
	res.Timeline.OK = make([]int32, nb)
	res.Timeline.Failed = make([]int32, nb)
	for i := range r.okMS {
		if b := int(int64(i) * 1e6 / bns); b < nb {
			res.Timeline.OK[b] += r.okMS[i].Load()
		}
	}
	for _, f := range r.fails {
		if b := int(f.t / bns); !f.stream && b >= 0 && b < nb {
			res.Timeline.Failed[b]++
		}
	}

	evs, err := readEvents(p.eventsFile, r.start)
	if err != nil {
		res.Failure = err.Error()
	}
	var lat []float64
	for i, e := range evs {
		to := p.duration.Nanoseconds()
		if i+1 < len(evs) {
			to = evs[i+1].start
		}
		ev := event{Name: e.name, StartMS: ms(e.start), ActionMS: ms(e.end - e.start), Version: e.version,
			WindowMS: ms(to - e.start), ByClass: map[string]int64{}, MaxGapMS: r.maxGap(e.start, to),
			MaxAttemptGapMS: r.maxAttemptGap(e.start, to)}
		for _, f := range r.fails {
			if f.t < e.start || f.t >= to {
				continue
			}
			if f.stream {
				ev.StreamBreak++
				continue
			}
			ev.Failed++
			ev.ByClass[classNames[f.class]]++
			if ev.FirstFailMS == nil {
				ev.FirstFailMS = ptr(ms(f.t - e.start))
			}
			ev.LastFailMS = ptr(ms(f.t - e.start))
		}
		if e.version > 0 && e.version < maxVersion {
			if f := r.firstSeen[e.version].Load(); f != math.MaxInt64 {
				ev.LatencyMS = ptr(ms(f - e.end))
				lat = append(lat, ms(f-e.end))
			}
			ev.OldLastMS = ptr(ms(r.lastSeen[e.version-1].Load() - e.end))
		}
		res.Events = append(res.Events, ev)
	}
	m["events"] = float64(len(evs))
	if len(evs) > 0 {
		m["baseline_failed"] = 0
		for _, f := range r.fails {
			if !f.stream && f.t < evs[0].start {
				m["baseline_failed"]++
			}
		}
	}
	if len(lat) > 0 {
		sort.Float64s(lat)
		m["latency_p50_ms"] = quantile(lat, 0.5)
		m["latency_p99_ms"] = quantile(lat, 0.99)
		m["latency_max_ms"] = lat[len(lat)-1]
		m["latency_events"] = float64(len(lat))
	}
	return res
}

// quantile of sorted xs, nearest rank.
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// ---------------------------------------------------------------------------
// CPU of the system under test.

type cpuSampler struct {
	path        string
	hz          float64
	ok          bool
	first, last map[int]uint64 // ticks at first sight (0 for a process born during the run) and last
	started     bool
}

func newCPUSampler(path string, hz int) *cpuSampler {
	return &cpuSampler{path: path, hz: float64(hz), first: map[int]uint64{}, last: map[int]uint64{}}
}

func (s *cpuSampler) loop(stop <-chan struct{}) {
	if s.path == "" {
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	s.sample()
	s.started = true
	for {
		select {
		case <-stop:
			s.sample()
			return
		case <-t.C:
			s.sample()
		}
	}
}

// sample reads the PIDs file and the CPU ticks of those processes and of all their
// descendants (HAProxy's master-worker and a hot-restart wrapper fork the processes
// that do the work).
func (s *cpuSampler) sample() {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return
	}
	roots := map[int]bool{}
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			roots[n] = true
		}
	}
	procs := allProcs()
	in := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if in[pid] {
			return
		}
		in[pid] = true
		for _, c := range procs[pid].children {
			walk(c)
		}
	}
	for pid := range roots {
		if _, ok := procs[pid]; ok {
			walk(pid)
		}
	}
	for pid := range in {
		t := procs[pid].ticks
		if _, seen := s.first[pid]; !seen {
			s.first[pid] = 0
			if !s.started {
				s.first[pid] = t
			}
		}
		s.last[pid] = t
		s.ok = true
	}
}

func (s *cpuSampler) seconds() float64 {
	var t uint64
	for pid, l := range s.last {
		t += l - min(s.first[pid], l)
	}
	return float64(t) / s.hz
}

type procInfo struct {
	ticks    uint64
	children []int
}

// allProcs: every process's CPU ticks and children, from /proc/*/stat.
func allProcs() map[int]*procInfo {
	m := map[int]*procInfo{}
	ds, err := os.ReadDir("/proc")
	if err != nil {
		return m
	}
	type pp struct{ pid, ppid int }
	var links []pp
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		u, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		m[pid] = &procInfo{ticks: u + st}
		links = append(links, pp{pid, ppid})
	}
	for _, l := range links {
		if p, ok := m[l.ppid]; ok {
			p.children = append(p.children, l.pid)
		}
	}
	return m
}
