package tls

import (
	ctls "crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// benchServer serves the echo probe behind TLS on one worker, for benchmarks of the
// established path (the client runs in the same process: profile with -cpuprofile and
// look at the worker's functions).
func benchServer(b *testing.B) (addr string, pool *ctls.Config) {
	ca := newTestCA(b)
	f, err := NewDownstream(DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(b, "srv", false, "srv.test")}})
	if err != nil {
		b.Fatal(err)
	}
	chain := &engine.FilterChain{Name: "tls", TransportSocket: f,
		Filters: []engine.NetworkFilterFactory{probeFactory{seen: make(chan seen, 1), maxBuf: &maxInt{}}}}
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		b.Fatal(err)
	}
	l, err := s.AddListener(engine.ListenerConfig{Name: "tls", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{Chain: chain}})
	if err != nil {
		b.Fatal(err)
	}
	s.Start()
	b.Cleanup(s.Close)
	return l.Address().String(), &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool}
}

func benchEcho(b *testing.B, size int) {
	addr, cfg := benchServer(b)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	tc := ctls.Client(nc, cfg)
	if err := tc.Handshake(); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, size)
	got := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tc.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(tc, got); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEstablishedEcho: a request and its echo over one established TLS connection.
func BenchmarkEstablishedEcho64(b *testing.B)  { benchEcho(b, 64) }
func BenchmarkEstablishedEcho64K(b *testing.B) { benchEcho(b, 64<<10) }

// BenchmarkHandshake: full handshakes (TLS 1.3, ECDSA P-256, X25519), one at a time.
func BenchmarkHandshake(b *testing.B) {
	addr, cfg := benchServer(b)
	cfg.CurvePreferences = []ctls.CurveID{ctls.X25519}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		tc := ctls.Client(nc, cfg)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		nc.Close()
	}
}
