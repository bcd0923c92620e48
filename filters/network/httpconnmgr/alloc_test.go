package httpconnmgr_test

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/portico-proxy/portico/http/route"
)

// fixedBackend answers every request on a connection with the same response, reading
// requests by their blank line (GETs without bodies only).
func fixedBackend(t *testing.T, resp string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := []byte(resp)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						have = copy(buf, buf[i+4:have])
						if _, err := c.Write(out); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestSteadyStateAllocs: once pools, buffers and header maps have grown, a proxied
// keep-alive request costs the proxy no allocation (the whole process is measured, so the
// test's client and backend are written not to allocate per request either).
func TestSteadyStateAllocs(t *testing.T) {
	be := fixedBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
	addr, f, _ := proxy(t, []string{be}, route.Config{}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1.0\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
	buf := make([]byte, 4096)
	do := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		got := 0
		for !bytes.HasSuffix(buf[:got], []byte("hello")) {
			n, err := c.Read(buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	for i := 0; i < 200; i++ {
		do()
	}
	const n = 2000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		do()
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.3f allocations per request (whole process)", per)
	if per > 0.5 {
		t.Fatalf("%.2f allocations per proxied request", per)
	}
	// The last response's stats land just after its bytes left.
	for i := 0; i < 100 && f.Stats(0).DownstreamRq2xx.Value() != n+200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if f.Stats(0).DownstreamRq2xx.Value() != n+200 {
		t.Fatalf("2xx %d", f.Stats(0).DownstreamRq2xx.Value())
	}
}

// TestConnectionAllocs reports (and bounds) the allocations of a proxied request on its
// own connection: the connection manager and router reuse a closed connection's state,
// so what is left is the engine's accept and the test client's dial.
func TestConnectionAllocs(t *testing.T) {
	be := fixedBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	addr, _, _ := proxy(t, []string{be}, route.Config{}, nil)
	req := []byte("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 4096)
	do := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(req)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
	}
	for i := 0; i < 100; i++ {
		do()
	}
	const n = 500
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		do()
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.1f allocations per connection (whole process, the client's dial included)", per)
	if per > 40 {
		t.Fatalf("%.1f allocations per proxied connection", per)
	}
}
