// Command drip is a slow-drip client for a proxy's pre-connection phase (listener
// filters, ssl_preread, tcp-request inspect-delay). It opens -conns TCP connections to
// -addr with TCP_NODELAY and writes the first bytes a real client would send, one byte
// per write (so one byte per TCP segment), spread evenly over -duration D: with one
// connection byte i of n leaves at i·D/n after the start, the last one at D − D/n.
// With N connections their segments are interleaved, connection k's byte i in slot
// i·N + k of n·N evenly spaced slots, so that no two connections' segments arrive
// together (a server then wakes once per segment, not once per N); the slots are
// spaced so that the last byte of every connection still leaves by D − D/n (the
// interval per connection is a little under D/n). With -mode tls the bytes are
// a ClientHello captured from crypto/tls (server name -sni); with -mode http they are an
// HTTP/1.1 request head.
//
// A reader per connection watches for the proxy's answer: a connection whose read
// returns EOF or a reset before its last byte was written was closed early (the proxy
// gave up on it, by a timeout or a read limit). After the drip it waits up to -grace
// for every connection to get a reply (the backend's ServerHello, relayed) or to be
// closed, then closes everything. It is bounded: nothing outlives D + grace + 1 s.
//
// With -pid it reads the server's utime+stime (and context switches, and the threads'
// run time from schedstat, which resolves what 10 ms clock ticks cannot) from /proc
// before the first connect and after the wait, and reports CPU per dripped connection.
// One JSON object is written to -out (or stdout).
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portico-proxy/portico/bench/internal/jsonline"
	"github.com/portico-proxy/portico/bench/internal/procstat"
)

type labels map[string]string

func (l labels) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labels) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value")
	}
	l[k] = v
	return nil
}

type result struct {
	Mode    string             `json:"mode"`
	Labels  labels             `json:"labels"`
	Conns   int                `json:"conns"`
	Metrics map[string]float64 `json:"metrics"`
	Errors  struct {
		Dial int64  `json:"dial"`
		IO   int64  `json:"io"`
		Last string `json:"last"`
	} `json:"errors"`
	ServerExited bool `json:"server_exited"`
}

var (
	addr     = flag.String("addr", "127.0.0.1:10020", "address to drip to")
	conns    = flag.Int("conns", 4, "connections")
	duration = flag.Duration("duration", 15*time.Second, "time over which each connection's bytes are spread")
	grace    = flag.Duration("grace", 2*time.Second, "after the drip: how long to wait for replies or closes")
	mode     = flag.String("mode", "tls", "tls (a ClientHello) | http (a request head)")
	sni      = flag.String("sni", "localhost", "server name in the ClientHello / Host header")
	pid      = flag.Int("pid", 0, "server PID whose CPU time to sample")
	clkTck   = flag.Int("clk-tck", 100, "USER_HZ")
	outPath  = flag.String("out", "", "result file (default stdout)")
	lbl      = labels{}
)

func main() {
	flag.Var(lbl, "label", "key=value tag (repeatable)")
	flag.Parse()
	if *conns < 1 || *duration <= 0 || *grace < 0 {
		fmt.Fprintln(os.Stderr, "drip: -conns ≥ 1, -duration > 0, -grace ≥ 0")
		os.Exit(2)
	}
	data, err := payload(*mode, *sni)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drip:", err)
		os.Exit(2)
	}
	res := run(data)
	if *pid > 0 && !procstat.Alive(*pid) {
		res.ServerExited = true
	}
	if err := jsonline.Write(*outPath, res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// payload returns the bytes each connection drips.
func payload(mode, name string) ([]byte, error) {
	switch mode {
	case "tls":
		return clientHello(name)
	case "http":
		return []byte("GET / HTTP/1.1\r\nHost: " + name + "\r\nUser-Agent: drip\r\nAccept: */*\r\n\r\n"), nil
	}
	return nil, fmt.Errorf("unknown -mode %q", mode)
}

// clientHello captures the first flight of a real crypto/tls client: tls.Client over
// net.Pipe, one TLS record read off the other end (5-byte header, then its length).
func clientHello(name string) ([]byte, error) {
	c, s := net.Pipe()
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	}()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	_, err := io.ReadFull(s, hdr)
	var rec []byte
	if err == nil {
		rec = make([]byte, 5+int(hdr[3])<<8|int(hdr[4]))
		copy(rec, hdr)
		_, err = io.ReadFull(s, rec[5:])
	}
	c.Close() // the handshake fails and its goroutine returns
	<-done
	if err != nil {
		return nil, fmt.Errorf("capturing a ClientHello: %w", err)
	}
	if rec[0] != 0x16 || len(rec) < 6 || rec[5] != 0x01 {
		return nil, fmt.Errorf("captured record is not a ClientHello (% x)", rec[:min(len(rec), 6)])
	}
	return rec, nil
}

// offset is when byte i of n leaves on connection k of conns: slot i·conns + k of
// n·conns evenly spaced ones, the first at 0 and the last at d·(n−1)/n.
func offset(i, n, k, conns int, d time.Duration) time.Duration {
	slots := int64(n)*int64(conns) - 1
	if slots <= 0 {
		return 0
	}
	s := int64(i)*int64(conns) + int64(k)
	// d·(n−1)/n spread over the slots; in float64, as d·s·(n−1) overflows int64 for
	// long drips of large payloads (ns precision is far below the timer's).
	return time.Duration(float64(d) * float64(n-1) / float64(n) * float64(s) / float64(slots))
}

// connState is one connection's outcome, written by its writer and reader.
type connState struct {
	mu          sync.Mutex
	sent        int
	dripDone    bool          // the last byte was written
	closedEarly bool          // EOF/reset (read or write) before dripDone
	closed      bool          // the peer closed or reset, at any time
	closeAt     time.Duration // since the start
	kind        string        // eof | reset | other
	replied     bool          // bytes came back
	replyAt     time.Duration
	ioErr       string
	settled     chan struct{} // closed once replied or closed
	settleOnce  sync.Once
}

func (c *connState) settle() { c.settleOnce.Do(func() { close(c.settled) }) }

func errKind(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	}
	return "other"
}

// peerGone records a close seen by the reader or a failed write; our own close at the
// end (net.ErrClosed, deadline) is not the peer's doing and is ignored.
func (c *connState) peerGone(err error, at time.Duration) {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.closed, c.closeAt, c.kind = true, at, errKind(err)
		if c.kind == "other" {
			c.ioErr = err.Error()
		}
		if !c.dripDone {
			c.closedEarly = true
		}
	}
	c.mu.Unlock()
	c.settle()
}

func run(data []byte) *result {
	res := &result{Mode: "drip", Labels: lbl, Conns: *conns, Metrics: map[string]float64{}}
	n := len(data)
	var cpu0 procstat.CPU
	var vol0, inv0, run0 uint64
	sampled := false
	if *pid > 0 {
		var err error
		cpu0, err = procstat.ReadCPU(*pid)
		sampled = err == nil
		vol0, inv0, _ = procstat.CtxSwitches(*pid)
		run0, _ = procstat.RunTime(*pid)
	}
	t0 := time.Now()
	fence := t0.Add(*duration + *grace + time.Second) // no I/O beyond this
	var cs []*net.TCPConn
	d := net.Dialer{Timeout: 5 * time.Second}
	for i := 0; i < *conns; i++ {
		c, err := d.Dial("tcp", *addr)
		if err != nil {
			res.Errors.Dial++
			res.Errors.Last = err.Error()
			continue
		}
		tc := c.(*net.TCPConn)
		tc.SetNoDelay(true) // one write, one segment
		tc.SetDeadline(fence)
		cs = append(cs, tc)
	}
	start := time.Now()
	states := make([]*connState, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		k := i
		st := &connState{settled: make(chan struct{})}
		states[i] = st
		wg.Add(2)
		go func() { // reader
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				k, err := c.Read(buf)
				if k > 0 {
					st.mu.Lock()
					if !st.replied {
						st.replied, st.replyAt = true, time.Since(start)
					}
					st.mu.Unlock()
					st.settle()
				}
				if err != nil {
					st.peerGone(err, time.Since(start))
					return
				}
			}
		}()
		go func() { // writer
			defer wg.Done()
			for j := 0; j < n; j++ {
				at := start.Add(offset(j, n, k, len(cs), *duration))
				time.Sleep(time.Until(at))
				st.mu.Lock()
				gone := st.closed
				st.mu.Unlock()
				if gone || time.Now().After(fence) {
					return
				}
				if _, err := c.Write(data[j : j+1]); err != nil {
					st.peerGone(err, time.Since(start))
					return
				}
				st.mu.Lock()
				st.sent++
				st.dripDone = st.sent == n
				st.mu.Unlock()
			}
		}()
	}
	// The drip ends at D − D/n; then every connection gets up to -grace to be answered
	// or closed.
	waitEnd := make(chan struct{})
	t := time.AfterFunc(time.Until(start.Add(*duration+*grace)), func() { close(waitEnd) })
	for _, st := range states {
		select {
		case <-st.settled:
		case <-waitEnd:
		}
	}
	t.Stop()
	// A connection settled by a reply may still be dripping (a proxy that routes on a
	// partial ClientHello); let every writer finish before the window closes.
	writers := make(chan struct{})
	go func() {
		for _, st := range states {
			for {
				st.mu.Lock()
				fin := st.dripDone || st.closed
				st.mu.Unlock()
				if fin || time.Now().After(fence) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		close(writers)
	}()
	<-writers
	elapsed := time.Since(t0)
	if sampled {
		if c1, err := procstat.ReadCPU(*pid); err == nil {
			tick := 1 / float64(*clkTck)
			cpu := float64(c1.UserTicks+c1.SysTicks-cpu0.UserTicks-cpu0.SysTicks) * tick
			res.Metrics["cpu_s"] = cpu
			res.Metrics["sut_util"] = cpu / elapsed.Seconds()
			if len(cs) > 0 {
				res.Metrics["cpu_ms_per_conn"] = cpu / float64(len(cs)) * 1e3
			}
			if vol1, inv1, err := procstat.CtxSwitches(*pid); err == nil && len(cs) > 0 {
				res.Metrics["ctxsw_per_conn"] = float64(vol1+inv1-vol0-inv0) / float64(len(cs))
			}
			if run1, err := procstat.RunTime(*pid); err == nil && run0 > 0 && len(cs) > 0 {
				res.Metrics["sched_cpu_s"] = float64(run1-run0) / 1e9
				res.Metrics["sched_cpu_ms_per_conn"] = float64(run1-run0) / 1e6 / float64(len(cs))
			}
		}
	}
	for _, c := range cs {
		c.SetLinger(0)
		c.Close()
	}
	wg.Wait()

	var closeAts []float64
	var early, eof, reset, completed, replied, sent int
	for _, st := range states {
		if st.closedEarly {
			early++
			closeAts = append(closeAts, st.closeAt.Seconds())
			switch st.kind {
			case "eof":
				eof++
			case "reset":
				reset++
			}
		}
		if st.dripDone {
			completed++
		}
		if st.replied {
			replied++
		}
		sent += st.sent
		if st.ioErr != "" {
			res.Errors.IO++
			res.Errors.Last = st.ioErr
		}
	}
	m := res.Metrics
	m["bytes_per_conn"] = float64(n)
	m["duration_s"] = duration.Seconds()
	m["last_byte_s"] = offset(n-1, n, max(len(cs)-1, 0), max(len(cs), 1), *duration).Seconds()
	m["elapsed_s"] = elapsed.Seconds()
	m["conns_open"] = float64(len(cs))
	m["completed"] = float64(completed)
	m["closed_early"] = float64(early)
	m["closed_early_eof"] = float64(eof)
	m["closed_early_reset"] = float64(reset)
	m["replied"] = float64(replied)
	m["bytes_sent"] = float64(sent)
	if len(closeAts) > 0 {
		slices.Sort(closeAts)
		m["first_close_s"] = closeAts[0]
		m["median_close_s"] = closeAts[len(closeAts)/2]
	}
	return res
}
