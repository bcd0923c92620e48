package main

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestClientHello(t *testing.T) {
	b, err := clientHello("drip.example.test")
	if err != nil {
		t.Fatal(err)
	}
	// Record header: handshake (22), TLS 1.x, length covering the rest exactly.
	if b[0] != 0x16 || b[1] != 3 {
		t.Fatalf("header % x", b[:5])
	}
	if n := int(b[3])<<8 | int(b[4]); n != len(b)-5 {
		t.Fatalf("record length %d, have %d bytes after the header", n, len(b)-5)
	}
	// Handshake header: ClientHello (1), its 24-bit length is the record's rest.
	if b[5] != 1 {
		t.Fatalf("handshake type %d", b[5])
	}
	if n := int(b[6])<<16 | int(b[7])<<8 | int(b[8]); n != len(b)-9 {
		t.Fatalf("handshake length %d, have %d", n, len(b)-9)
	}
	if !bytes.Contains(b, []byte("drip.example.test")) {
		t.Fatal("server name not in the ClientHello")
	}
}

func TestOffsetSpreadsEvenly(t *testing.T) {
	const n, conns = 1501, 4
	d := 15 * time.Second
	slot := float64(d) * (n - 1) / n / (n*conns - 1)
	for k := range conns {
		prev := time.Duration(-1)
		for i := range n {
			o := offset(i, n, k, conns, d)
			if o <= prev || o > d-d/n {
				t.Fatalf("conn %d byte %d at %v (previous %v; last allowed %v)", k, i, o, prev, d-d/n)
			}
			// One connection's bytes are conns slots apart.
			if gap := float64(o - prev); i > 0 && (gap < conns*slot-2 || gap > conns*slot+2) {
				t.Fatalf("conn %d byte %d: gap %v, want %v", k, i, o-prev, time.Duration(conns*slot))
			}
			// Interleaved: between connection 0's byte i and its byte i+1.
			if k > 0 && i+1 < n && (o <= offset(i, n, 0, conns, d) || o >= offset(i+1, n, 0, conns, d)) {
				t.Fatalf("conn %d byte %d at %v is not between conn 0's bytes %d and %d", k, i, o, i, i+1)
			}
			prev = o
		}
	}
	if o := offset(0, n, 0, conns, d); o != 0 {
		t.Fatalf("first byte at %v", o)
	}
	if o := offset(n-1, n, conns-1, conns, d); o < d-d/n-1 || o > d-d/n {
		t.Fatalf("last byte at %v, want %v", o, d-d/n)
	}
	// One connection: byte i at i·D/n exactly (to the nanosecond).
	for _, i := range []int{0, 1, 700, n - 1} {
		if o, want := offset(i, n, 0, 1, d), d*time.Duration(i)/n; o < want-1 || o > want+1 {
			t.Fatalf("one connection, byte %d at %v, want %v", i, o, want)
		}
	}
	if o := offset(0, 1, 0, 1, d); o != 0 {
		t.Fatalf("a one-byte drip starts at %v", o)
	}
}

func withFlags(t *testing.T, a string, c int, dur, gr time.Duration) {
	t.Helper()
	oa, oc, od, og, op := *addr, *conns, *duration, *grace, *pid
	t.Cleanup(func() { *addr, *conns, *duration, *grace, *pid = oa, oc, od, og, op })
	*addr, *conns, *duration, *grace, *pid = a, c, dur, gr, 0
}

// listen serves each connection with handle, in the test process.
func listen(t *testing.T, handle func(net.Conn)) string {
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
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String()
}

// TestRunReplied: a server that answers once the whole request is there; every byte
// arrives, one per read, and every connection is counted as completed and replied.
func TestRunReplied(t *testing.T) {
	data, _ := payload("http", "x")
	reads := make(chan int, 8)
	a := listen(t, func(c net.Conn) {
		buf := make([]byte, 512)
		got, n := 0, 0
		for got < len(data) {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			got += k
			n++
		}
		reads <- n
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
		c.Read(buf) // until the client closes
	})
	withFlags(t, a, 2, 300*time.Millisecond, time.Second)
	t0 := time.Now()
	res := run(data)
	if el := time.Since(t0); el > 2*time.Second {
		t.Errorf("took %v", el)
	}
	m := res.Metrics
	if m["completed"] != 2 || m["replied"] != 2 || m["closed_early"] != 0 || m["bytes_sent"] != float64(2*len(data)) {
		t.Fatalf("metrics %v", m)
	}
	for range 2 {
		// One segment per byte: nearly one read each (a read may find two if the
		// server was slow to run).
		if n := <-reads; n < len(data)*3/4 {
			t.Errorf("server needed only %d reads for %d bytes: segments were merged", n, len(data))
		}
	}
}

// TestRunClosedEarly: a server that gives up after 100 ms; the drip notices, stops,
// and says when.
func TestRunClosedEarly(t *testing.T) {
	data, _ := payload("http", "x")
	a := listen(t, func(c net.Conn) { time.Sleep(100 * time.Millisecond) })
	withFlags(t, a, 3, time.Second, time.Second)
	t0 := time.Now()
	res := run(data)
	if el := time.Since(t0); el > 900*time.Millisecond {
		t.Errorf("took %v; should stop once every connection is closed", el)
	}
	m := res.Metrics
	if m["closed_early"] != 3 || m["completed"] != 0 || m["closed_early_eof"]+m["closed_early_reset"] != 3 {
		t.Fatalf("metrics %v", m)
	}
	if s := m["median_close_s"]; s < 0.05 || s > 0.5 {
		t.Fatalf("closed at %v s, want ~0.1", s)
	}
}
