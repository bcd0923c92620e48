package engine_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/listener/httpinspector"
	"github.com/portico-proxy/portico/filters/listener/tlsinspector"
)

// TestSlowDripClientHello: a client drips its ClientHello one byte per TCP segment for
// 15 s. The listener filters read each byte from the kernel once and, told by
// tls_inspector how long the record is, sleep in the kernel (SO_RCVLOWAT) instead of
// waking per segment: a handful of reads for the whole connection, not one (or, with
// MSG_PEEK, one of the whole queue) per byte. The ClientHello then reaches the chain.
func TestSlowDripClientHello(t *testing.T) {
	if testing.Short() {
		t.Skip("drips for 15 s")
	}
	s, ls := startServer(t, 1, nil, func(*engine.Server) []engine.ListenerConfig {
		lc := echoListener("tls", true, false)
		lc.ListenerFilters = []engine.ListenerFilter{tlsinspector.New(tlsinspector.Config{})}
		lc.ListenerFiltersTimeout = time.Minute
		return []engine.ListenerConfig{lc}
	})
	w := s.Workers()[0]
	hello := clientHello(t, "drip.example", "h2")
	c := dial(t, ls[0].Address())
	c.SetNoDelay(true)
	before := w.ListenerFilterReads()
	gap := 15 * time.Second / time.Duration(len(hello))
	for i := range hello {
		if _, err := c.Write(hello[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("echo of the dripped ClientHello: %v", err)
	}
	reads := w.ListenerFilterReads() - before
	t.Logf("%d bytes in %d segments: %d listener-filter reads", len(hello), len(hello), reads)
	// The first byte, the record header, the rest: a few reads, where reading every
	// segment would be one per byte.
	if reads > 8 {
		t.Fatalf("%d reads for %d dripped bytes", reads, len(hello))
	}
}

// TestSlowDripReadLimit: a filter that cannot say how much it needs (http_inspector waits
// for the end of the request line) reads each segment as it comes, but a socket still
// undecided after the read limit is closed and counted.
func TestSlowDripReadLimit(t *testing.T) {
	_, ls := startServer(t, 1, nil, func(*engine.Server) []engine.ListenerConfig {
		lc := echoListener("http", true, false)
		lc.ListenerFilters = []engine.ListenerFilter{httpinspector.New(httpinspector.Config{})}
		lc.ListenerFiltersTimeout = time.Minute
		return []engine.ListenerConfig{lc}
	})
	c := dial(t, ls[0].Address())
	c.SetNoDelay(true)
	line := []byte("GET /" + string(bytes.Repeat([]byte("a"), 200)))
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	for i := range line {
		if _, err := c.Write(line[i : i+1]); err != nil {
			break // closed by the proxy: what the test wants
		}
		time.Sleep(2 * time.Millisecond)
	}
	readAllWithin(t, c, 10*time.Second)
	waitFor(t, "the read limit counted", func() bool {
		return ls[0].Stats(0).DownstreamListenerFilterReadLimit.Value() == 1
	})
}
