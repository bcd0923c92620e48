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
func runIdle(o *opts, res *result) error {
	if o.pid <= 0 {
		return fmt.Errorf("idle mode needs -pid")
	}
	before, err := procstat.ReadMem(o.pid)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.dialTimeout + o.settle + o.hold + o.grace)
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
