package tls

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	ctls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

// needTool finds a tool on PATH; without it the test is skipped, or fails when CI=true
// (CI must not pass by skipping).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required when CI=true: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// clientLeaf signs a client certificate (clientAuth usage) for cn.
func (ca *testCA) clientLeaf(t testing.TB, cn string) ctls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return ctls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// peerSeen is what the TLS backend saw of one connection.
type peerSeen struct {
	sni, alpn, clientCN string
	resumed             bool
	version             uint16
}

// tlsEcho is a crypto/tls server that records each handshake and echoes.
func tlsEcho(t *testing.T, cfg *ctls.Config) (netip.AddrPort, <-chan peerSeen) {
	t.Helper()
	ln, err := ctls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan peerSeen, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*ctls.Conn)
				tc.SetDeadline(time.Now().Add(30 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				st := tc.ConnectionState()
				s := peerSeen{sni: st.ServerName, alpn: st.NegotiatedProtocol, resumed: st.DidResume, version: st.Version}
				if len(st.PeerCertificates) > 0 {
					s.clientCN = st.PeerCertificates[0].Subject.CommonName
				}
				seen <- s
				io.Copy(tc, tc)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), seen
}

// upRig is one worker with a cluster whose connections originate TLS with f.
type upRig struct {
	srv *engine.Server
	cl  *engine.Cluster
	f   *UpstreamFactory
}

func startUpstream(t *testing.T, cfg UpstreamConfig, to netip.AddrPort, timeout time.Duration) *upRig {
	t.Helper()
	f, err := NewUpstream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := engine.NewCluster(engine.ClusterConfig{Name: "up", ConnectTimeout: timeout, TransportSocket: f,
		PerConnectionBufferLimit: bufLimit, Endpoints: []engine.Endpoint{{Address: to, Weight: 1}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddCluster(cl); err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	return &upRig{srv: s, cl: cl, f: f}
}

// upClient is an upstream connection driven from the worker: it writes msg at once
// (before the connect, let alone the handshake) and reads the echo.
type upClient struct {
	conn      *engine.Connection
	want      int
	got       bytes.Buffer
	events    chan string
	state     ctls.ConnectionState
	connected bool
	// above and below count the watermark callbacks; aboveAtConnect is above when
	// Connected came.
	above, below, aboveAtConnect int
}

func (u *upClient) OnEvent(ev engine.ConnectionEvent) {
	if ev == engine.Connected {
		u.connected = true
		u.aboveAtConnect = u.above
		u.state, _ = State(u.conn)
		u.conn.AddReadFilter(u)
		return
	}
	reason := "none"
	switch u.conn.FailureReason() {
	case engine.FailureTransport:
		reason = "transport"
	case engine.FailureConnectTimeout:
		reason = "timeout"
	case engine.FailureConnectRefused:
		reason = "refused"
	case engine.FailureOverflow:
		reason = "overflow"
	}
	u.events <- "closed:" + reason
}
func (u *upClient) OnAboveWriteBufferHighWatermark()     { u.above++ }
func (u *upClient) OnBelowWriteBufferLowWatermark()      { u.below++ }
func (u *upClient) OnNewConnection() engine.FilterStatus { return engine.Continue }
func (u *upClient) OnData(data []byte, _ bool) engine.FilterStatus {
	u.got.Write(data)
	if u.got.Len() >= u.want {
		u.events <- "echo:" + u.got.String()
		u.conn.Close(engine.CloseFlushWrite)
	}
	return engine.StopIteration
}

// exchange connects once with options o, sends msg and returns the first event: "echo:…"
// on success, "closed:<reason>" on failure, and the handshake's state.
func (r *upRig) exchange(t *testing.T, msg string, o *engine.TransportOptions) (string, ctls.ConnectionState) {
	t.Helper()
	u := &upClient{want: len(msg), events: make(chan string, 4)}
	w := r.srv.Workers()[0]
	w.Post(func() {
		u.conn = r.cl.ConnectHostWith(w, r.cl.ChooseHost(w, nil), u, o)
		u.conn.Write([]byte(msg), false)
	})
	var ev string
	select {
	case ev = <-u.events:
	case <-time.After(20 * time.Second):
		t.Fatal("no event from the upstream connection")
	}
	st := make(chan ctls.ConnectionState, 1)
	w.Post(func() { st <- u.state })
	return ev, <-st
}

// TestUpstreamCryptoTLS: against a crypto/tls server, the client sends the configured SNI
// and ALPN, presents its certificate, verifies the chain with trusted_ca only (a name that
// does not match the SNI is fine, as in Envoy), sends what was written before the
// handshake, and resumes the session on the next connection.
func TestUpstreamCryptoTLS(t *testing.T) {
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		t.Run(VersionName(v), func(t *testing.T) { testUpstreamCryptoTLS(t, v) })
	}
}

func testUpstreamCryptoTLS(t *testing.T, version uint16) {
	ca := newTestCA(t)
	addr, seen := tlsEcho(t, &ctls.Config{
		Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "not-the-sni.test")},
		NextProtos:   []string{"h2", "http/1.1"},
		ClientAuth:   ctls.RequireAndVerifyClientCert, ClientCAs: ca.pool,
	})
	r := startUpstream(t, UpstreamConfig{SNI: "srv.test", ALPN: []string{"http/1.1"},
		Certificates: []ctls.Certificate{ca.clientLeaf(t, "portico-client")},
		Validation:   &Validation{TrustedCA: []*x509.Certificate{ca.cert}}, MaxVersion: version}, addr, 10*time.Second)
	for i := 0; i < 2; i++ {
		ev, st := r.exchange(t, "ping over tls", nil)
		if ev != "echo:ping over tls" {
			t.Fatalf("connection %d: %s", i, ev)
		}
		p := <-seen
		if p.sni != "srv.test" || p.alpn != "http/1.1" || p.clientCN != "portico-client" || p.version != version {
			t.Fatalf("connection %d: server saw %+v", i, p)
		}
		if st.NegotiatedProtocol != "http/1.1" || st.DidResume != (i == 1) || p.resumed != (i == 1) {
			t.Fatalf("connection %d: alpn %q resumed %v (server: %v)", i, st.NegotiatedProtocol, st.DidResume, p.resumed)
		}
	}
	if h, re, e := r.f.Stats.Handshake.Load(), r.f.Stats.SessionReused.Load(), r.f.Stats.ConnectionError.Load(); h != 2 || re != 1 || e != 0 {
		t.Fatalf("handshake %d session_reused %d connection_error %d", h, re, e)
	}
	if n := r.f.Stats.Version(version); n != 2 {
		t.Fatalf("ssl.versions.%s = %d", VersionName(version), n)
	}
}

// TestUpstreamHeldWatermarks: 256 KiB written before the handshake, over the 64 KiB
// limit, raise the high watermark (held bytes count) before Connected, and the low one
// once the handshake sent them; the echo brings every byte back.
func TestUpstreamHeldWatermarks(t *testing.T) {
	ca := newTestCA(t)
	addr, _ := tlsEcho(t, &ctls.Config{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}})
	r := startUpstream(t, UpstreamConfig{SNI: "srv.test", Validation: &Validation{TrustedCA: []*x509.Certificate{ca.cert}}}, addr, 10*time.Second)
	msg := strings.Repeat("held before the handshake ", 256<<10/26+1)
	u := &upClient{want: len(msg), events: make(chan string, 4)}
	w := r.srv.Workers()[0]
	w.Post(func() {
		u.conn = r.cl.ConnectHost(w, r.cl.ChooseHost(w, nil), u)
		u.conn.Write([]byte(msg), false)
	})
	select {
	case ev := <-u.events:
		if ev != "echo:"+msg {
			t.Fatalf("%.60s", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no echo")
	}
	got := make(chan [3]int, 1)
	w.Post(func() { got <- [3]int{u.above, u.below, u.aboveAtConnect} })
	if c := <-got; c[2] != 1 || c[1] < 1 {
		t.Fatalf("above %d (at Connected %d), below %d", c[0], c[2], c[1])
	}
}

// TestUpstreamVerification: a chain from another CA fails the handshake as a connect
// failure (fail_verify_error, connection_error, upstream_cx_connect_fail); without a
// validation context the same server is accepted; a per-connection name check
// (auto_san_validation) fails on a certificate without the name (fail_verify_san).
func TestUpstreamVerification(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	addr, _ := tlsEcho(t, &ctls.Config{Certificates: []ctls.Certificate{other.leaf(t, "srv", false, "srv.test")}})

	r := startUpstream(t, UpstreamConfig{SNI: "srv.test", Validation: &Validation{TrustedCA: []*x509.Certificate{ca.cert}}}, addr, 10*time.Second)
	if ev, _ := r.exchange(t, "x", nil); ev != "closed:transport" {
		t.Fatalf("wrong CA: %s", ev)
	}
	// As Envoy, a refused certificate counts in fail_verify_error only.
	if v, e := r.f.Stats.FailVerifyError.Load(), r.f.Stats.ConnectionError.Load(); v != 1 || e != 0 {
		t.Fatalf("fail_verify_error %d connection_error %d", v, e)
	}
	waitFor(t, func() bool { return r.cl.Stats(0).UpstreamCxConnectFail.Value() == 1 })

	open := startUpstream(t, UpstreamConfig{SNI: "srv.test"}, addr, 10*time.Second)
	if ev, _ := open.exchange(t, "no validation", nil); ev != "echo:no validation" {
		t.Fatalf("no validation_context: %s", ev)
	}

	san := startUpstream(t, UpstreamConfig{Validation: &Validation{TrustedCA: []*x509.Certificate{other.cert}}}, addr, 10*time.Second)
	if ev, st := san.exchange(t, "right name", &engine.TransportOptions{ServerName: "srv.test", VerifyName: "srv.test"}); ev != "echo:right name" || st.ServerName != "srv.test" {
		t.Fatalf("auto san, right name: %s (sni %q)", ev, st.ServerName)
	}
	if ev, _ := san.exchange(t, "x", &engine.TransportOptions{ServerName: "wrong.test", VerifyName: "wrong.test"}); ev != "closed:transport" {
		t.Fatalf("auto san, wrong name: %s", ev)
	}
	if v := san.f.Stats.FailVerifySAN.Load(); v != 1 {
		t.Fatalf("fail_verify_san %d", v)
	}
}

// TestUpstreamHandshakeFailures: a server that accepts and never answers is cut by the
// cluster's connect_timeout (which covers the handshake); one that is not TLS at all fails
// as a transport failure; neither leaves a handshake slot taken.
func TestUpstreamHandshakeFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	mute := startUpstream(t, UpstreamConfig{}, netip.MustParseAddrPort(ln.Addr().String()), 200*time.Millisecond)
	if ev, _ := mute.exchange(t, "x", nil); ev != "closed:timeout" {
		t.Fatalf("mute server: %s", ev)
	}
	if n := mute.f.Stats.HandshakeTimeout.Load(); n != 1 {
		t.Fatalf("handshake_timeout %d", n)
	}
	waitFor(t, func() bool { return mute.cl.Stats(0).UpstreamCxConnectTimeout.Value() == 1 })

	// With a cap of one handshake per worker, a second connection while the first one
	// handshakes with the mute server fails as an overflow.
	capped := startUpstream(t, UpstreamConfig{MaxHandshakes: 1}, netip.MustParseAddrPort(ln.Addr().String()), 10*time.Second)
	w := capped.srv.Workers()[0]
	first := &upClient{events: make(chan string, 4)}
	w.Post(func() { first.conn = capped.cl.ConnectHost(w, capped.cl.ChooseHost(w, nil), first) })
	waitFor(t, func() bool {
		ch := make(chan int, 1)
		w.Post(func() { ch <- w.HandshakesInFlight() })
		return <-ch == 1
	})
	if ev, _ := capped.exchange(t, "x", nil); ev != "closed:overflow" {
		t.Fatalf("over the cap: %s", ev)
	}
	if n := capped.f.Stats.HandshakeOverflow.Load(); n != 1 {
		t.Fatalf("handshake_overflow %d", n)
	}

	plain := backendLines(t, "HTTP/1.1 400 Bad Request\r\n\r\n")
	bad := startUpstream(t, UpstreamConfig{}, plain, 10*time.Second)
	if ev, _ := bad.exchange(t, "x", nil); ev != "closed:transport" {
		t.Fatalf("plaintext server: %s", ev)
	}
	for _, r := range []*upRig{mute, bad} {
		w := r.srv.Workers()[0]
		waitFor(t, func() bool {
			ch := make(chan int, 1)
			w.Post(func() { ch <- w.HandshakesInFlight() })
			return <-ch == 0
		})
	}
}

// backendLines answers every connection with reply and closes it.
func backendLines(t *testing.T, reply string) netip.AddrPort {
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
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestUpstreamTCPProxyBulk: tcp_proxy from a plain listener to a TLS upstream carries 4 MiB
// each way intact (sha256).
func TestUpstreamTCPProxyBulk(t *testing.T) {
	ca := newTestCA(t)
	addr, _ := tlsEcho(t, &ctls.Config{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}})
	f, err := NewUpstream(UpstreamConfig{SNI: "srv.test", Validation: &Validation{TrustedCA: []*x509.Certificate{ca.cert}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := engine.NewCluster(engine.ClusterConfig{Name: "up", TransportSocket: f, PerConnectionBufferLimit: bufLimit,
		Endpoints: []engine.Endpoint{{Address: addr, Weight: 1}}}, 1)
	s.AddCluster(cl)
	tp, err := tcpproxy.NewFactory(tcpproxy.Config{StatPrefix: "tp", MaxConnectAttempts: 1,
		Clusters: []tcpproxy.WeightedCluster{{Cluster: cl, Weight: 1}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.AddListener(engine.ListenerConfig{Name: "tp", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		PerConnectionBufferLimit: bufLimit,
		FilterChains:             engine.SingleChain{Chain: &engine.FilterChain{Name: "tp", Filters: []engine.NetworkFilterFactory{tp}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	c, err := net.Dial("tcp", l.Address().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	msg := make([]byte, 4<<20)
	for i := range msg {
		msg[i] = byte(i*13 + i>>11)
	}
	go func() { c.Write(msg) }()
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(len(msg))); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(msg); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("sha256 mismatch")
	}
	if n := f.Stats.Handshake.Load(); n != 1 {
		t.Fatalf("handshakes %d", n)
	}
}

// TestUpstreamOpenSSLServer: against openssl s_server (-www, which reports the session),
// the chain verifies with the CA, the client certificate is verified by openssl, and the
// second connection resumes the first one's session.
func TestUpstreamOpenSSLServer(t *testing.T) {
	bin := needTool(t, "openssl")
	ca := newTestCA(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := ca.leaf(t, "srv", false, "srv.test")
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile := write("srv.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}))
	keyFile := write("srv.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	caFile := write("ca.pem", ca.pem)
	cmd := exec.Command(bin, "s_server", "-accept", "127.0.0.1:0", "-cert", certFile, "-key", keyFile,
		"-Verify", "1", "-CAfile", caFile, "-verify_return_error", "-www")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// s_server prints "ACCEPT 127.0.0.1:<port>" once it listens.
	lines := bufio.NewScanner(stdout)
	port := 0
	re := regexp.MustCompile(`ACCEPT .*:(\d+)`)
	for port == 0 && lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			port, _ = strconv.Atoi(m[1])
		}
	}
	if port == 0 {
		t.Fatal("openssl s_server did not report its port")
	}
	go io.Copy(io.Discard, stdout)
	r := startUpstream(t, UpstreamConfig{SNI: "srv.test", Certificates: []ctls.Certificate{ca.clientLeaf(t, "portico-client")},
		Validation: &Validation{TrustedCA: []*x509.Certificate{ca.cert}}}, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), 10*time.Second)
	for i := 0; i < 2; i++ {
		u := &upClient{want: 1 << 30, events: make(chan string, 4)}
		w := r.srv.Workers()[0]
		w.Post(func() {
			u.conn = r.cl.ConnectHost(w, r.cl.ChooseHost(w, nil), u)
			u.conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"), false)
		})
		var ev string
		select {
		case ev = <-u.events:
		case <-time.After(20 * time.Second):
			t.Fatal("no event")
		}
		body := make(chan string, 1)
		w.Post(func() { body <- u.got.String() })
		page := <-body
		if ev != "closed:none" || !strings.Contains(page, "Protocol  : TLSv1.2") {
			t.Fatalf("connection %d: %s\n%s", i, ev, page)
		}
		if !strings.Contains(page, "CN=portico-client") && !strings.Contains(page, "CN = portico-client") {
			t.Fatalf("connection %d: openssl did not report the client certificate:\n%s", i, page)
		}
		if reused := strings.Contains(page, "Reused, "); reused != (i == 1) {
			t.Fatalf("connection %d: reused=%v:\n%s", i, reused, page)
		}
	}
	if re := r.f.Stats.SessionReused.Load(); re != 1 {
		t.Fatalf("session_reused %d", re)
	}
}
