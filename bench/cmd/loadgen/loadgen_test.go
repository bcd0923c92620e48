package main

import (
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer is a minimal in-process peer so the load generator can be
// tested without the harness.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func testOpts(addr string) *opts {
	return &opts{
		addr: addr, conns: 8, size: 100, warmup: 100 * time.Millisecond,
		duration: 300 * time.Millisecond, grace: 2 * time.Second, settle: 50 * time.Millisecond,
		pid: os.Getpid(), clkTck: 100, sources: 2, dialPar: 4, dialTimeout: 5 * time.Second,
	}
}

func TestPingPong(t *testing.T) {
	o := testOpts(echoServer(t))
	res := &result{Server: &serverCPU{PID: o.pid}}
	if err := runPingPong(o, res); err != nil {
		t.Fatal(err)
	}
	if res.ConnsOK != 8 || res.Messages == 0 || res.MsgsPerSec <= 0 {
		t.Fatalf("implausible result %+v", res)
	}
	if res.Errors.IO != 0 || res.Errors.Mismatch != 0 || res.Errors.Dial != 0 {
		t.Fatalf("errors %+v", res.Errors)
	}
	if res.LatencyUS.P50 <= 0 || res.LatencyUS.P99 < res.LatencyUS.P50 {
		t.Fatalf("latency %+v", res.LatencyUS)
	}
}

func TestIdle(t *testing.T) {
	o := testOpts(echoServer(t))
	o.idle = true
	res := &result{Server: &serverCPU{PID: o.pid}}
	if err := runIdle(o, res); err != nil {
		t.Fatal(err)
	}
	if res.ConnsOK != 8 || res.Mem == nil || res.Mem.RSSWith <= 0 {
		t.Fatalf("implausible result %+v", res)
	}
}

func TestDeadServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o := testOpts(addr)
	o.dialTimeout = time.Second
	res := &result{}
	if err := runPingPong(o, res); err == nil || res.Errors.Dial != 8 {
		t.Fatalf("want dial failures, got err=%v %+v", err, res.Errors)
	}
}
