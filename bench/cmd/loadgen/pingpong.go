package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-proxy/portico/bench/internal/hist"
)

// shard keeps the counters of a slice of connections on their own cache
// lines; when the load generator is not pinned to one core, a single shared
// counter would be a measurable bottleneck of its own.
type shard struct {
	msgs atomic.Uint64
	h    hist.H
	_    [64]byte
}

type pingPong struct {
	size      int
	stop      atomic.Bool
	measuring atomic.Bool
	shards    []shard
	ioErrs    atomic.Int64
	mismatch  atomic.Int64
	lastErr   atomic.Value
}

func (p *pingPong) messages() uint64 {
	var n uint64
	for i := range p.shards {
		n += p.shards[i].msgs.Load()
	}
	return n
}

// loop is one connection's closed loop: send size bytes, wait for all of
// them to come back, check them, repeat until told to stop.
func (p *pingPong) loop(i int, c *net.TCPConn) {
	sh := &p.shards[i%len(p.shards)]
	msg := make([]byte, p.size)
	for j := range msg {
		msg[j] = byte(i + j)
	}
	resp := make([]byte, p.size)
	for !p.stop.Load() {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			p.fail(err)
			return
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			p.fail(err)
			return
		}
		d := time.Since(t0)
		if !bytes.Equal(msg, resp) {
			p.mismatch.Add(1)
			p.lastErr.Store(fmt.Sprintf("conn %d: echoed bytes differ", i))
			return
		}
		sh.msgs.Add(1)
		if p.measuring.Load() {
			sh.h.Record(int64(d))
		}
	}
}

func (p *pingPong) fail(err error) {
	// Errors caused by our own shutdown are not the server's fault.
	if p.stop.Load() {
		return
	}
	p.ioErrs.Add(1)
	p.lastErr.Store(err.Error())
}

func runPingPong(o *opts, res *result) error {
	p := &pingPong{size: o.size, shards: make([]shard, 16)}
	d := newDialer(o.addr, o.conns, o.sources, o.dialPar, o.dialTimeout)
	start := time.Now()
	conns := d.dialAll(context.Background(), o.conns, nil)
	res.ConnsOK = countOK(conns)
	res.DialSeconds = time.Since(start).Seconds()
	res.Errors.Dial = d.failed.Load()
	if s, ok := d.lastErr.Load().(string); ok {
		res.Errors.Last = s
	}
	fmt.Fprintf(os.Stderr, "loadgen: %d/%d connections in %.1fs\n", res.ConnsOK, o.conns, res.DialSeconds)
	if res.ConnsOK == 0 {
		return fmt.Errorf("no connection could be opened")
	}

	// Deadlines bound every blocking call, so a hung server cannot keep the
	// load generator alive past warmup+duration+grace.
	hardStop := time.Now().Add(o.warmup + o.duration + o.grace)
	var wg sync.WaitGroup
	for i, c := range conns {
		if c == nil {
			continue
		}
		_ = c.SetDeadline(hardStop)
		wg.Add(1)
		go func() { defer wg.Done(); p.loop(i, c) }()
	}

	time.Sleep(o.warmup)
	w0 := sampleWindow(o.pid)
	m0 := p.messages()
	p.measuring.Store(true)
	time.Sleep(o.duration)
	w1 := sampleWindow(o.pid)
	m1 := p.messages()
	p.measuring.Store(false)
	p.stop.Store(true)

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(o.grace):
		res.Errors.Stuck = true
	}
	closeAll(conns)

	var h hist.H
	for i := range p.shards {
		h.Merge(&p.shards[i].h)
	}
	res.Messages = m1 - m0
	res.fillWindow(w0, w1, o.clkTck)
	if res.MeasuredSeconds > 0 {
		res.MsgsPerSec = float64(res.Messages) / res.MeasuredSeconds
		res.MBPerSec = res.MsgsPerSec * float64(2*o.size) / 1e6
	}
	res.LatencyUS = latency{
		P50:  us(h.Quantile(0.50)),
		P99:  us(h.Quantile(0.99)),
		P999: us(h.Quantile(0.999)),
		Max:  us(h.Max()),
	}
	res.Errors.IO = p.ioErrs.Load()
	res.Errors.Mismatch = p.mismatch.Load()
	if s, ok := p.lastErr.Load().(string); ok {
		res.Errors.Last = s
	}
	if res.Messages == 0 {
		return fmt.Errorf("no message completed in the measured window")
	}
	return nil
}

func us(ns int64) float64 { return float64(ns) / 1e3 }
