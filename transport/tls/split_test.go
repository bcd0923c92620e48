package tls

import (
	"bytes"
	ctls "crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// splitFactory wraps a Factory so that the bytes the engine reads reach the TLS socket's
// OnRead in pieces of lengths the test chooses, whatever the kernel delivered at once:
// the adapter and crypto/tls must cope with records and handshake messages cut anywhere.
type splitFactory struct {
	f  *Factory
	mu sync.Mutex
	// pattern is the piece lengths for the next connection, cycled.
	pattern []int
	// pieces and bytes count the OnRead calls made and the bytes they carried.
	pieces, bytes atomic.Int64
}

func (s *splitFactory) Name() string { return s.f.Name() }

func (s *splitFactory) setPattern(p []int) {
	s.mu.Lock()
	s.pattern = p
	s.mu.Unlock()
}

func (s *splitFactory) NewTransportSocket(c *engine.Connection) engine.TransportSocket {
	ts := s.f.NewTransportSocket(c)
	if ts == nil {
		return nil
	}
	s.mu.Lock()
	p := s.pattern
	s.mu.Unlock()
	return &splitSocket{TransportSocket: ts, pattern: p, sf: s}
}

type splitSocket struct {
	engine.TransportSocket
	pattern []int
	next    int
	sf      *splitFactory
}

func (s *splitSocket) OnRead(data []byte) {
	for len(data) > 0 {
		n := len(data)
		if len(s.pattern) > 0 {
			n = min(n, s.pattern[s.next%len(s.pattern)])
			s.next++
		}
		s.sf.pieces.Add(1)
		s.sf.bytes.Add(int64(n))
		s.TransportSocket.OnRead(data[:n])
		data = data[n:]
	}
}

// splitRig serves the echo behind a splitFactory on one worker.
func splitRig(t testing.TB) (*splitFactory, string, *testCA) {
	t.Helper()
	ca := newTestCA(t)
	f, err := NewDownstream(DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}})
	if err != nil {
		t.Fatal(err)
	}
	sf := &splitFactory{f: f}
	chain := &engine.FilterChain{Name: "tls", TransportSocket: sf,
		Filters: []engine.NetworkFilterFactory{probeFactory{seen: make(chan seen, 1), maxBuf: &maxInt{}}}}
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.AddListener(engine.ListenerConfig{Name: "tls", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{Chain: chain}, PerConnectionBufferLimit: bufLimit})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	return sf, l.Address().String(), ca
}

// splitSession runs one TLS session: handshake, payload echoed (both directions), then
// close_notify each way; the echo must come back intact and the close be clean.
func splitSession(t testing.TB, addr string, ca *testCA, v uint16, payload []byte) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	tc := ctls.Client(nc, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, MinVersion: v, MaxVersion: v})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("%s: handshake: %v", ctls.VersionName(v), err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := tc.Write(payload)
		if err == nil {
			err = tc.CloseWrite()
		}
		done <- err
	}()
	got, err := io.ReadAll(tc) // to the server's close_notify
	if werr := <-done; werr != nil {
		t.Fatalf("%s: write: %v", ctls.VersionName(v), werr)
	}
	if err != nil {
		t.Fatalf("%s: read after %d of %d bytes: %v", ctls.VersionName(v), len(got), len(payload), err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("%s: echo of %d bytes differs from the %d sent", ctls.VersionName(v), len(got), len(payload))
	}
}

// splitPattern turns fuzz bytes into piece lengths: below 128, 1 to 128 bytes (cuts
// inside headers and messages); from 128, multiples of 128 up to 16 KiB (whole records
// and runs of them).
func splitPattern(b []byte) []int {
	p := make([]int, 0, len(b))
	for _, x := range b {
		if x < 128 {
			p = append(p, int(x)+1)
		} else {
			p = append(p, int(x-127)*128)
		}
	}
	return p
}

// TestSplitAtEveryByte: the ClientHello, the client's whole handshake and its first
// records reach the socket one byte per OnRead, on TLS 1.2 and 1.3.
func TestSplitAtEveryByte(t *testing.T) {
	sf, addr, ca := splitRig(t)
	sf.setPattern([]int{1})
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		splitSession(t, addr, ca, v, bytes.Repeat([]byte("every byte apart "), 1200)) // 20 KiB: two records
	}
	if n := sf.f.Stats.Handshake.Load(); n != 2 {
		t.Fatalf("handshakes %d", n)
	}
	if p, b := sf.pieces.Load(), sf.bytes.Load(); p != b || b < 2*20400 {
		t.Fatalf("%d OnRead calls for %d bytes", p, b)
	}
}

// FuzzMemConnSplits: any split of the bytes the engine reads into OnRead calls leaves a
// full TLS session (handshake, data both ways, close_notify) intact. The seed corpus is
// in testdata/fuzz/FuzzMemConnSplits.
func FuzzMemConnSplits(f *testing.F) {
	f.Add(false, []byte{0}, []byte("hello"))
	f.Add(true, []byte{0}, []byte("hello"))
	f.Add(true, []byte{4, 200, 0, 130, 60}, bytes.Repeat([]byte{0xa5}, 40000))
	f.Add(false, []byte{255}, bytes.Repeat([]byte("x"), 17000))
	f.Add(true, []byte{}, []byte{})
	sf, addr, ca := splitRig(f)
	f.Fuzz(func(t *testing.T, tls13 bool, splits, payload []byte) {
		if len(payload) > 64<<10 {
			payload = payload[:64<<10]
		}
		v := uint16(ctls.VersionTLS12)
		if tls13 {
			v = ctls.VersionTLS13
		}
		sf.setPattern(splitPattern(splits))
		splitSession(t, addr, ca, v, payload)
	})
}
