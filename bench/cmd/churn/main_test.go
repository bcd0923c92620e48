package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// versionServer answers every HTTP/1.1 request with a 200 carrying x-bench-version: the
// current value of v; it honours Connection: close and keeps other connections open.
func versionServer(t *testing.T, v *atomic.Int64) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					closing := false
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if strings.EqualFold(strings.TrimSpace(l), "connection: close") {
							closing = true
						}
						if l == "\r\n" {
							break
						}
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nx-bench-version: %d\r\n\r\nok\n", v.Load())
					if closing {
						return
					}
				}
			}(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

func testOptions(addr string) *options {
	return &options{addr: addr, mode: "http", host: "t", versionHeader: "x-bench-version", rate: 500, conc: 8,
		streams: 4, streamInterval: 20 * time.Millisecond, duration: 1500 * time.Millisecond, timeout: time.Second,
		late: 50 * time.Millisecond, bucket: 100 * time.Millisecond, clkTck: 100, labels: labels{}}
}

// TestVersionLatency: an "update" at 500 ms that the server applies 100 ms later shows
// as one event with an update latency of about 100 ms, and nothing fails.
func TestVersionLatency(t *testing.T) {
	var v atomic.Int64
	ln := versionServer(t, &v)
	p := testOptions(ln.Addr().String())
	p.eventsFile = filepath.Join(t.TempDir(), "events")
	go func() {
		time.Sleep(500 * time.Millisecond)
		t0 := time.Now()
		time.Sleep(100 * time.Millisecond)
		v.Store(1)
		line := fmt.Sprintf("upd-1 %d %d 1\n", t0.UnixNano(), t0.UnixNano())
		os.WriteFile(p.eventsFile, []byte(line), 0o644)
	}()
	res := run(p)
	if len(res.Events) != 1 {
		t.Fatalf("events: %+v", res.Events)
	}
	e := res.Events[0]
	if e.LatencyMS == nil || *e.LatencyMS < 95 || *e.LatencyMS > 200 {
		t.Errorf("latency %v, want ~100 ms", e.LatencyMS)
	}
	if res.Metrics["failed"] != 0 || res.Metrics["stream_breaks"] != 0 {
		t.Errorf("failures: %v %v", res.ByClass, res.Streams)
	}
	if r := res.Metrics["rate"]; r < 400 || r > 520 {
		t.Errorf("rate %v, want ~500", r)
	}
}

// TestRefusedAndGap: a target that stops listening for a while yields refused
// connections in that event's window and a gap about as long.
func TestRefusedAndGap(t *testing.T) {
	var v atomic.Int64
	ln := versionServer(t, &v)
	addr := ln.Addr().String()
	p := testOptions(addr)
	p.eventsFile = filepath.Join(t.TempDir(), "events")
	go func() {
		time.Sleep(400 * time.Millisecond)
		t0 := time.Now()
		ln.Close()
		time.Sleep(300 * time.Millisecond)
		ln2, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { ln2.Close() })
		go func() {
			for {
				c, err := ln2.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					br := bufio.NewReader(c)
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if l == "\r\n" {
							fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
							return
						}
					}
				}()
			}
		}()
		os.WriteFile(p.eventsFile, []byte(fmt.Sprintf("restart-1 %d %d\n", t0.UnixNano(), time.Now().UnixNano())), 0o644)
	}()
	res := run(p)
	if len(res.Events) != 1 {
		t.Fatalf("events: %+v", res.Events)
	}
	e := res.Events[0]
	if e.ByClass["refused"] < 100 {
		t.Errorf("refused %d in the window, want ~150 (%+v)", e.ByClass["refused"], e)
	}
	if e.MaxGapMS < 250 || e.MaxGapMS > 450 {
		t.Errorf("gap %v ms, want ~300", e.MaxGapMS)
	}
	if res.Metrics["baseline_failed"] != 0 {
		t.Errorf("failures before the event: %v", res.Metrics["baseline_failed"])
	}
}
