package engine_test

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/chain"
	"github.com/portico-proxy/portico/filters/listener/tlsinspector"
	"golang.org/x/sys/unix"
)

// clientHello captures the first flight of a real crypto/tls client.
func clientHello(t testing.TB, sni string, alpn ...string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go tls.Client(c, &tls.Config{ServerName: sni, NextProtos: alpn}).Handshake()
	buf := make([]byte, 4096)
	n, err := s.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Close()
	return buf[:n]
}

// filledSocket returns the fd of an accepted loopback socket whose receive queue holds
// data, and a refill that sends data again (the listener filters consume what they read)
// and waits until it is queued.
func filledSocket(t testing.TB, data []byte) (int, netip.AddrPort, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := srv.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); srv.Close(); f.Close(); cf.Close() })
	fd, cfd := int(f.Fd()), int(cf.Fd())
	refill := func() {
		unix.Write(cfd, data)
		for queued(fd) < len(data) {
		}
	}
	refill()
	return fd, netip.MustParseAddrPort(c.LocalAddr().String()), refill
}

// queued is SIOCINQ without an allocation.
func queued(fd int) int {
	var n int32
	unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
	return int(n)
}

// sniPhase builds the pre-connection path of a TLS-routing listener: tls_inspector and a
// filter-chain index with exact, wildcard and ALPN chains.
func sniPhase(t testing.TB) *engine.FilterPhase {
	t.Helper()
	mk := func(name string) *engine.FilterChain { return &engine.FilterChain{Name: name} }
	var chains []chain.Chain
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		chains = append(chains,
			chain.Chain{Name: n + "_h2", Chain: mk(n + "_h2"), Match: chain.Match{ServerNames: []string{n + ".example.com"}, ApplicationProtocols: []string{"h2"}}},
			chain.Chain{Name: n, Chain: mk(n), Match: chain.Match{ServerNames: []string{n + ".example.com"}}},
			chain.Chain{Name: n + "_wild", Chain: mk(n + "_wild"), Match: chain.Match{ServerNames: []string{"*." + n + ".example.com"}}})
	}
	m, err := chain.Build(chains, nil)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := engine.NewFilterPhase(engine.ListenerConfig{Name: "sni",
		Address:         netip.MustParseAddrPort("127.0.0.1:443"),
		ListenerFilters: []engine.ListenerFilter{tlsinspector.New(tlsinspector.Config{})},
		FilterChains:    m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fp.Close)
	return fp
}

// TestFilterPhaseNoAllocs: after warm-up, an accepted socket goes through tls_inspector and
// chain selection without allocating.
func TestFilterPhaseNoAllocs(t *testing.T) {
	fp := sniPhase(t)
	fd, remote, refill := filledSocket(t, clientHello(t, "x.c.example.com", "h2", "http/1.1"))
	if c := fp.Run(fd, remote); c == nil || c.Name != "c_wild" {
		t.Fatalf("chain %v, want c_wild (info %+v)", c, fp.Info)
	}
	if fp.Info.TransportProtocol != "tls" || fp.Info.ServerName != "x.c.example.com" {
		t.Fatalf("info %+v", fp.Info)
	}
	if allocs := testing.AllocsPerRun(1000, func() { refill(); fp.Run(fd, remote) }); allocs != 0 {
		t.Errorf("%v allocations per socket, want 0", allocs)
	}
}

// BenchmarkListenerFilterPhase: the cost of the pre-connection path per socket (the read
// of the ClientHello, its parse, SNI/ALPN interning, chain lookup), plus the client's
// write that puts the ClientHello back in the queue for the next run.
func BenchmarkListenerFilterPhase(b *testing.B) {
	fp := sniPhase(b)
	fd, remote, refill := filledSocket(b, clientHello(b, "d.example.com", "h2", "http/1.1"))
	if c := fp.Run(fd, remote); c == nil || c.Name != "d_h2" {
		b.Fatalf("chain %v", c)
	}
	b.ReportAllocs()
	for b.Loop() {
		refill()
		fp.Run(fd, remote)
	}
}
