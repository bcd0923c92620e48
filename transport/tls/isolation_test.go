package tls

import (
	"bytes"
	ctls "crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// clientHello is the first flight of a crypto/tls client limited to version v.
func clientHello(t *testing.T, v uint16) []byte {
	t.Helper()
	var hello bytes.Buffer
	cc := ctls.Client(&captureConn{w: &hello}, &ctls.Config{ServerName: "srv.test", InsecureSkipVerify: true,
		MinVersion: v, MaxVersion: v})
	cc.Handshake() // fails at the first read; the ClientHello is in hello
	return bytes.Clone(hello.Bytes())
}

// goroutineSampler records the most goroutines seen until stopped.
type goroutineSampler struct {
	max  atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func sampleGoroutines() *goroutineSampler {
	s := &goroutineSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			if n := int64(runtime.NumGoroutine()); n > s.max.Load() {
				s.max.Store(n)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return s
}

func (s *goroutineSampler) done() int {
	close(s.stop)
	s.wg.Wait()
	return int(s.max.Load())
}

// TestHandshakeFlood: 300 connections that each send half a ClientHello and stall, on
// one worker with a cap of 16 handshakes: 16 hold a slot (and a goroutine), the other
// 284 are refused and counted in ssl.handshake_overflow, the process never has more than
// the cap's goroutines above its baseline (plus a few), and an established connection
// echoes after every 25 new ones.
func TestHandshakeFlood(t *testing.T) {
	const capacity, flood = 16, 300
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		HandshakeTimeout: time.Hour, MaxHandshakes: capacity})
	est, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()
	roundTrip(t, est)
	waitFor(t, func() bool { return inFlight(r) == 0 })

	half := clientHello(t, ctls.VersionTLS13)
	half = half[:len(half)/2]
	runtime.GC()
	base := runtime.NumGoroutine()
	s := sampleGoroutines()
	conns := make([]net.Conn, 0, flood)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < flood; i++ {
		c, err := net.DialTimeout("tcp", r.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.Write(half) // a refused connection may already be closed: its error does not matter
		if i%25 == 24 {
			roundTrip(t, est)
		}
	}
	waitFor(t, func() bool { return r.f.Stats.HandshakeOverflow.Load() == flood-capacity })
	if n := inFlight(r); n != capacity {
		t.Fatalf("%d handshakes in flight, want the cap %d", n, capacity)
	}
	roundTrip(t, est)
	peak := s.done()
	t.Logf("goroutines: baseline %d, peak %d (cap %d)", base, peak, capacity)
	// The sampler is one of the baseline's; the handshakes add at most the cap.
	if peak > base+capacity+8 {
		t.Fatalf("%d goroutines at the peak, baseline %d, cap %d", peak, base, capacity)
	}
	if n := r.f.Stats.HandshakeOverflow.Load(); n != flood-capacity {
		t.Fatalf("handshake_overflow %d, want %d", n, flood-capacity)
	}
	// The refused ones were closed by the server.
	conns[flood-1].SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(conns[flood-1]); err != nil && !isReset(err) {
		t.Fatalf("a refused connection: %v", err)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestGarbageAfterClientHello: a real ClientHello followed by bytes that are no TLS
// record fails the handshake: ssl.connection_error counts it, the slot is returned, and
// the client sees the server's flight (and alert) end in a clean close (FIN, not RST).
// The same for garbage in place of the ClientHello.
func TestGarbageAfterClientHello(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		HandshakeTimeout: time.Hour})
	garbage := bytes.Repeat([]byte{0xff, 0x03, 0x03, 0x00, 0x10}, 40)
	for i, first := range [][]byte{
		append(clientHello(t, ctls.VersionTLS12), garbage...),
		append(clientHello(t, ctls.VersionTLS13), garbage...),
		[]byte("GET / HTTP/1.1\r\nHost: srv.test\r\n\r\n"),
		garbage,
	} {
		before := r.f.Stats.ConnectionError.Load()
		c, err := net.DialTimeout("tcp", r.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(first); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("case %d: not a clean close after %d bytes: %v", i, len(got), err)
		}
		if i < 2 && (len(got) < 5 || got[0] != 0x16) {
			t.Fatalf("case %d: no server handshake flight before the close (%d bytes)", i, len(got))
		}
		waitFor(t, func() bool { return r.f.Stats.ConnectionError.Load() == before+1 })
		waitFor(t, func() bool { return inFlight(r) == 0 })
	}
	// The server still serves.
	conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	conn.Close()
}
