package tls

import (
	"bytes"
	"crypto/sha256"
	ctls "crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// seen is what the test filter saw of a connection when its filters were built.
type seen struct {
	sni, tp, next string
	alpn          []string
}

// probe is an echo filter that reports the connection's info and the most its write
// buffer held.
type probe struct {
	c      *engine.Connection
	seen   chan<- seen
	maxBuf *maxInt
}

type maxInt struct {
	mu sync.Mutex
	v  int
}

func (m *maxInt) note(v int) {
	m.mu.Lock()
	m.v = max(m.v, v)
	m.mu.Unlock()
}

func (m *maxInt) get() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v
}

type probeFactory struct {
	seen   chan seen
	maxBuf *maxInt
}

func (probeFactory) Name() string { return "probe" }
func (f probeFactory) CreateFilter(c *engine.Connection) engine.ReadFilter {
	p := &probe{c: c, seen: f.seen, maxBuf: f.maxBuf}
	c.AddCallbacks(p)
	return p
}

func (p *probe) OnNewConnection() engine.FilterStatus {
	st, _ := State(p.c)
	s := seen{sni: p.c.Info.ServerName, tp: p.c.Info.TransportProtocol, next: st.NegotiatedProtocol,
		alpn: append([]string(nil), p.c.Info.ApplicationProtocols()...)}
	select {
	case p.seen <- s:
	default:
	}
	return engine.Continue
}

func (p *probe) OnData(data []byte, endStream bool) engine.FilterStatus {
	p.c.Write(data, endStream)
	p.maxBuf.note(p.c.BufferedBytes())
	return engine.StopIteration
}

func (p *probe) OnEvent(engine.ConnectionEvent) {}
func (p *probe) OnAboveWriteBufferHighWatermark() {
	p.c.ReadDisable(true)
}
func (p *probe) OnBelowWriteBufferLowWatermark() { p.c.ReadDisable(false) }

type rig struct {
	addr   string
	f      *Factory
	seen   chan seen
	maxBuf *maxInt
	srv    *engine.Server
}

const bufLimit = 64 << 10

// startTLS serves an echo chain behind TLS on one worker.
func startTLS(t *testing.T, cfg DownstreamConfig) *rig {
	t.Helper()
	f, err := NewDownstream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{f: f, seen: make(chan seen, 64), maxBuf: &maxInt{}}
	chain := &engine.FilterChain{Name: "tls", TransportSocket: f,
		Filters: []engine.NetworkFilterFactory{probeFactory{seen: r.seen, maxBuf: r.maxBuf}}}
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
	r.addr, r.srv = l.Address().String(), s
	return r
}

func (r *rig) dial(t *testing.T, c *ctls.Config) (*ctls.Conn, error) {
	return r.dialBuf(t, c, 0)
}

// dialBuf dials with a receive buffer of rcvbuf bytes (0: the kernel's default), so a
// client that does not read pushes back on the server soon.
func (r *rig) dialBuf(t *testing.T, c *ctls.Config, rcvbuf int) (*ctls.Conn, error) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
		}
	}
	nc, err := d.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	tc := ctls.Client(nc, c)
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// roundTrip checks that the echo answers through tc.
func roundTrip(t *testing.T, tc *ctls.Conn) {
	t.Helper()
	if _, err := tc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(tc, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
}

func TestCertificateBySNI(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{
		ca.leaf(t, "default", false, "default.test"),
		ca.leaf(t, "exact", false, "a.test"),
		ca.leaf(t, "wild", false, "*.wild.test"),
		ca.leaf(t, "both-rsa", true, "both.test"),
		ca.leaf(t, "both-ecdsa", false, "both.test"),
	}})
	for _, tc := range []struct {
		sni, want string
		rsaOnly   bool
	}{
		{"a.test", "exact", false},
		{"A.Test", "exact", false},
		{"x.wild.test", "wild", false},
		{"y.x.wild.test", "default", false}, // one level only
		{"other.test", "default", false},
		{"", "default", false},
		{"both.test", "both-ecdsa", false}, // ECDSA first whatever the order
		{"both.test", "both-rsa", true},    // a client without ECDSA gets RSA
	} {
		c := &ctls.Config{ServerName: tc.sni, InsecureSkipVerify: true}
		if tc.rsaOnly {
			c.MaxVersion = ctls.VersionTLS12
			c.CipherSuites = []uint16{ctls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		}
		conn, err := r.dial(t, c)
		if err != nil {
			t.Fatalf("%q: %v", tc.sni, err)
		}
		if got := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tc.want {
			t.Errorf("SNI %q (rsa only %v): certificate %q, want %q", tc.sni, tc.rsaOnly, got, tc.want)
		}
		roundTrip(t, conn)
		conn.Close()
		s := <-r.seen
		if want := lowerASCII(tc.sni); s.sni != want || s.tp != engine.TransportTLS {
			t.Errorf("SNI %q: SocketInfo server name %q transport %q", tc.sni, s.sni, s.tp)
		}
	}
	// Verification against the CA works for the exact name.
	conn, err := r.dial(t, &ctls.Config{ServerName: "a.test", RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

func lowerASCII(s string) string { return string(bytes.ToLower([]byte(s))) }

func TestALPNAndVersions(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		ALPN: []string{"h2", "http/1.1"}})
	for _, tc := range []struct {
		offer []string
		want  string
		vers  uint16
	}{
		{[]string{"http/1.1"}, "http/1.1", ctls.VersionTLS13},
		{[]string{"http/1.1", "h2"}, "h2", ctls.VersionTLS13}, // server preference
		{[]string{"h2"}, "h2", ctls.VersionTLS12},
		{[]string{"foo"}, "", ctls.VersionTLS13}, // no overlap: no ALPN, not a refusal
		{nil, "", ctls.VersionTLS12},
	} {
		conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, NextProtos: tc.offer,
			MinVersion: tc.vers, MaxVersion: tc.vers})
		if err != nil {
			t.Fatalf("offer %v: %v", tc.offer, err)
		}
		st := conn.ConnectionState()
		if st.NegotiatedProtocol != tc.want || st.Version != tc.vers {
			t.Errorf("offer %v: client negotiated %q %x", tc.offer, st.NegotiatedProtocol, st.Version)
		}
		roundTrip(t, conn)
		conn.Close()
		s := <-r.seen
		if s.next != tc.want || len(s.alpn) != len(tc.offer) {
			t.Errorf("offer %v: server saw next %q, client list %v", tc.offer, s.next, s.alpn)
		}
	}
	// Below the TLS 1.2 minimum: refused and counted.
	before := r.f.Stats.ConnectionError.Load()
	if _, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, MinVersion: ctls.VersionTLS10, MaxVersion: ctls.VersionTLS11}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	waitFor(t, func() bool { return r.f.Stats.ConnectionError.Load() > before })
	if r.f.Stats.Version(ctls.VersionTLS12) != 2 || r.f.Stats.Version(ctls.VersionTLS13) != 3 {
		t.Errorf("version counters 1.2=%d 1.3=%d", r.f.Stats.Version(ctls.VersionTLS12), r.f.Stats.Version(ctls.VersionTLS13))
	}
}

// waitFor polls cond (the server's counters move on its worker after the client returns).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition never held")
}

// halfHello opens n sockets that each send the first half of a real ClientHello and stop.
func halfHello(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var hello bytes.Buffer
	cc := ctls.Client(&captureConn{w: &hello}, &ctls.Config{ServerName: "srv.test", InsecureSkipVerify: true})
	cc.Handshake() // fails at the first read; the ClientHello is in hello
	half := hello.Bytes()[:hello.Len()/2]
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(half); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// captureConn records writes and fails reads.
type captureConn struct {
	memConn
	w *bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *captureConn) Read([]byte) (int, error)    { return 0, io.EOF }

// TestStalledHandshakesDoNotDelayOthers: 48 clients that send half a ClientHello and stop
// hold 48 handshakes on the one worker; new clients still complete theirs (count-based: all
// 48 are still in flight afterwards, and the timeout is far away).
func TestStalledHandshakesDoNotDelayOthers(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		HandshakeTimeout: time.Hour})
	stalled := halfHello(t, r.addr, 48)
	for i := 0; i < 10; i++ {
		conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, conn)
		conn.Close()
	}
	if h, e := r.f.Stats.Handshake.Load(), r.f.Stats.ConnectionError.Load(); h != 10 || e != 0 {
		t.Fatalf("handshakes %d errors %d", h, e)
	}
	// The stalled ones are still stalled, not timed out or failed.
	inflight := make(chan int, 1)
	r.srv.Workers()[0].Post(func() { inflight <- r.srv.Workers()[0].HandshakesInFlight() })
	if n := <-inflight; n != len(stalled) {
		t.Fatalf("%d handshakes in flight, want %d", n, len(stalled))
	}
}

// TestHandshakeCap: over the per-worker cap a connection is refused and counted; closing
// stalled clients frees their slots.
func TestHandshakeCap(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		HandshakeTimeout: time.Hour, MaxHandshakes: 4})
	stalled := halfHello(t, r.addr, 4)
	waitFor(t, func() bool { return inFlight(r) == 4 })
	if _, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool}); err == nil {
		t.Fatal("a fifth handshake was accepted over a cap of 4")
	}
	if n := r.f.Stats.HandshakeOverflow.Load(); n != 1 {
		t.Fatalf("overflow %d", n)
	}
	for _, c := range stalled {
		c.Close()
	}
	waitFor(t, func() bool { return inFlight(r) == 0 })
	conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	conn.Close()
}

// TestHandshakeTimeout: a stalled handshake is cut by the timeout and its slot returned.
func TestHandshakeTimeout(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		HandshakeTimeout: 50 * time.Millisecond})
	c := halfHello(t, r.addr, 1)[0]
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Logf("read after timeout: %v", err)
	}
	waitFor(t, func() bool { return inFlight(r) == 0 })
	if r.f.Stats.HandshakeTimeout.Load() != 1 {
		t.Fatalf("timeouts %d", r.f.Stats.HandshakeTimeout.Load())
	}
}

func inFlight(r *rig) int {
	ch := make(chan int, 1)
	w := r.srv.Workers()[0]
	w.Post(func() { ch <- w.HandshakesInFlight() })
	return <-ch
}

// TestBulkEchoBounded: 4 MiB each way, sha256-checked, TLS 1.2 and 1.3; the client writes
// it all before reading, so the echo's write buffer hits its watermark, and it never holds
// much more than the limit.
func TestBulkEchoBounded(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}})
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		conn, err := r.dialBuf(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, MinVersion: v, MaxVersion: v}, 16<<10)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, 4<<20)
		for i := range msg {
			msg[i] = byte(i*7 + i>>9)
		}
		want := sha256.Sum256(msg)
		written := make(chan error, 1)
		go func() {
			_, err := conn.Write(msg)
			written <- err
		}()
		// Let the writer run ahead until the echo's buffer has passed its watermark.
		waitFor(t, func() bool { return r.maxBuf.get() > bufLimit })
		h := sha256.New()
		if _, err := io.CopyN(h, conn, int64(len(msg))); err != nil {
			t.Fatal(err)
		}
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Fatal("sha256 mismatch")
		}
		// One read (64 KiB of ciphertext) can land after the watermark: the bound is the
		// limit plus what one read decodes, plus TLS framing.
		if m := r.maxBuf.get(); m > bufLimit+2*(64<<10) {
			t.Fatalf("write buffer held %d bytes, limit %d", m, bufLimit)
		}
		conn.Close()
	}
}

// TestFinishedThenFIN: a client whose Finished, first data and FIN arrive together (it
// writes and closes at once, as `openssl s_client </dev/null` does) completes its handshake
// and has its data served: the FIN waits for the handshake instead of cutting it.
func TestFinishedThenFIN(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}})
	// TLS 1.3 only: in TLS 1.2 the client's Finished cannot come with data, it waits for
	// the server's.
	for i, v := range []uint16{ctls.VersionTLS13, ctls.VersionTLS13} {
		nc, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		// A client that buffers its flights until it is done: the server then reads the
		// Finished, the data and the FIN in one go.
		held := &heldConn{Conn: nc}
		tc := ctls.Client(held, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, MaxVersion: v})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		held.flush()
		nc.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(tc)
		if string(b) != "ping" {
			t.Fatalf("TLS %x: got %q %v", v, b, err)
		}
		nc.Close()
		waitFor(t, func() bool { return r.f.Stats.Handshake.Load() == uint64(i+1) })
	}
	if e := r.f.Stats.ConnectionError.Load(); e != 0 {
		t.Fatalf("connection errors %d", e)
	}
}

// heldConn holds writes once the first flight is out (the ClientHello goes at once, the
// client's second flight and what follows wait for flush).
type heldConn struct {
	net.Conn
	n    int
	hold bytes.Buffer
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.n++
	if h.n == 1 {
		return h.Conn.Write(p)
	}
	return h.hold.Write(p)
}

func (h *heldConn) flush() { h.Conn.Write(h.hold.Bytes()); h.hold.Reset() }

// TestHandshakeInputBounded: bytes a peer sends while its handshake is busy elsewhere (here
// held in the certificate choice) are not all read into memory: past maxHandshakeInput the
// worker stops reading and the rest waits in the kernel; once the handshake takes them,
// reading resumes (here the junk then fails the handshake, which closes the connection).
func TestHandshakeInputBounded(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}})
	release := make(chan struct{})
	// Set on the worker, which makes the sockets (and starts their handshakes) after it.
	set := make(chan struct{})
	r.srv.Workers()[0].Post(func() {
		orig := r.f.cfg.GetConfigForClient
		r.f.cfg.GetConfigForClient = func(h *ctls.ClientHelloInfo) (*ctls.Config, error) {
			<-release
			return orig(h)
		}
		close(set)
	})
	<-set
	var hello bytes.Buffer
	cc := ctls.Client(&captureConn{w: &hello}, &ctls.Config{ServerName: "srv.test", InsecureSkipVerify: true})
	cc.Handshake()
	nc, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(hello.Bytes()); err != nil {
		t.Fatal(err)
	}
	// Write junk until the kernel's buffers are full (the writes block), for at most 2 s.
	junk := make([]byte, 64<<10)
	written := 0
	nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	for written < 64<<20 {
		n, err := nc.Write(junk)
		written += n
		if err != nil {
			break
		}
	}
	rx := func() uint64 {
		ch := make(chan uint64, 1)
		r.srv.Workers()[0].Post(func() {
			ch <- r.srv.Listeners()[0].Stats(0).DownstreamCxRxBytesTotal.Value()
		})
		return <-ch
	}
	got := rx()
	if limit := uint64(hello.Len() + maxHandshakeInput + 2*scratchReadSize); got > limit || uint64(written) < 2*got {
		t.Fatalf("the worker read %d bytes of the %d written (limit %d)", got, written, limit)
	}
	close(release)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, nc); err != nil && !isReset(err) {
		t.Fatalf("after the release: %v", err)
	}
	waitFor(t, func() bool { return r.f.Stats.ConnectionError.Load() == 1 && inFlight(r) == 0 })
}

// scratchReadSize is the engine's read size (its scratch buffer).
const scratchReadSize = 64 << 10
