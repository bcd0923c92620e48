package engine_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// BenchmarkIdleConnMemory reports the heap one idle echo connection holds in the engine
// (heap-bytes/conn): open N connections, exchange one message on each, GC, compare.
// The client side lives in the same process, so its share is measured the same way on a
// plain Go net echo baseline and subtracted.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 4000 // below somaxconn, so the baseline's never-accepting listener holds them all
	for i := 0; i < b.N; i++ {
		base := idleHeap(b, n, nil)
		s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
		if err != nil {
			b.Fatal(err)
		}
		l, err := s.AddListener(echoListener("idle", true, false))
		if err != nil {
			b.Fatal(err)
		}
		s.Start()
		withEngine := idleHeap(b, n, l)
		s.Close()
		b.ReportMetric(float64(withEngine-base)/n, "heap-bytes/conn")
	}
}

// idleHeap opens n connections to l and returns the heap in use. With l nil they go to a
// listen socket that never accepts: the kernel completes the handshakes, so only the
// client side's memory is counted.
func idleHeap(b *testing.B, n int, l *engine.Listener) uint64 {
	b.Helper()
	var addr string
	var held []net.Conn
	if l == nil {
		ln, err := listenBacklog(4096)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		addr = ln.Addr().String()
	} else {
		addr = l.Address().String()
	}
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			b.Fatal(fmt.Errorf("dial %d: %w", i, err))
		}
		held = append(held, c)
		c.Write(make([]byte, 64))
		if l != nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 64)); err != nil {
				b.Fatal(err)
			}
		}
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, c := range held {
		c.Close()
	}
	return ms.HeapAlloc
}
