package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/portico-proxy/portico/bench/internal/procstat"
)

// runIdle measures what idle connections cost the server. Each connection
// exchanges one message first: that proves the server accepted it and
// registered it with its poller, and charges whatever per-connection state a
// server builds on first traffic (typical for keep-alive connections).
//
// Before the baseline RSS is read, -warm connections are opened, used once and
// closed: the first connection a fresh server sees pages in code and data it
// never touched at start-up, and starts runtime threads. That is a one-time
// cost, which would otherwise be divided among the measured connections and
// weigh more at 10,000 than at 19,000. (The few objects the warm-up frees may be
// reused by the measured connections; 64 of them are under 1 % of 10,000.)
func runIdle(o *opts, res *result) error {
	if o.pid <= 0 {
		return fmt.Errorf("idle mode needs -pid")
	}
	deadline := time.Now().Add(2*o.dialTimeout + 2*o.settle + o.hold + o.grace)
	ping := func(i int, c *net.TCPConn) error {
		_ = c.SetDeadline(deadline)
		if o.size <= 0 {
			return nil
		}
		msg := make([]byte, o.size)
		for j := range msg {
			msg[j] = byte(i + j)
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, msg)
		return err
	}
	if o.warm > 0 {
		w := newDialer(o.addr, o.warm, o.sources, o.dialPar, o.dialTimeout)
		warm := w.dialAll(context.Background(), o.warm, ping)
		ok := countOK(warm)
		closeAll(warm)
		if ok < o.warm {
			return fmt.Errorf("warm-up: %d of %d connections failed", o.warm-ok, o.warm)
		}
		time.Sleep(o.settle) // let the server see the closes and free what they held
	}
	before, err := procstat.ReadMem(o.pid)
	if err != nil {
		return err
	}
	d := newDialer(o.addr, o.conns, o.sources, o.dialPar, o.dialTimeout)
	start := time.Now()
	conns := d.dialAll(context.Background(), o.conns, ping)
	defer closeAll(conns)
	res.ConnsOK = countOK(conns)
	res.DialSeconds = time.Since(start).Seconds()
	res.Errors.Dial = d.failed.Load()
	if s, ok := d.lastErr.Load().(string); ok {
		res.Errors.Last = s
	}
	fmt.Fprintf(os.Stderr, "loadgen: %d/%d idle connections in %.1fs\n", res.ConnsOK, o.conns, res.DialSeconds)
	time.Sleep(o.settle)
	with, err := procstat.ReadMem(o.pid)
	if err != nil {
		return err
	}
	res.Mem = &memOut{RSSBefore: before.RSS, RSSWith: with.RSS, HWM: with.HWM}
	if res.ConnsOK > 0 {
		res.Mem.BytesPerConn = float64(with.RSS-before.RSS) / float64(res.ConnsOK)
	}
	if cpu, err := procstat.ReadCPU(o.pid); err == nil {
		res.Server.Threads = cpu.Threads
	}
	time.Sleep(o.hold)
	if res.ConnsOK == 0 {
		return fmt.Errorf("no connection could be opened")
	}
	return nil
}
