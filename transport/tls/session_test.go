package tls

import (
	"bufio"
	ctls "crypto/tls"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// serveFactory serves an echo chain behind f on one worker (startTLS, for a factory the
// test adjusted before any connection).
func serveFactory(t *testing.T, f *Factory) *rig {
	t.Helper()
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

// fakeClock is a settable server clock for ticket ages.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }
func newFactory(t *testing.T, cfg DownstreamConfig) *Factory {
	t.Helper()
	f, err := NewDownstream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// resumes dials with the client's cache and reports whether the handshake resumed. The
// echo is read back, so a TLS 1.3 ticket (sent after the handshake) reaches the cache.
func resumes(t *testing.T, r *rig, c *ctls.Config) bool {
	t.Helper()
	conn, err := r.dial(t, c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip(t, conn)
	return conn.ConnectionState().DidResume
}

func clientConfig(ca *testCA, v uint16) *ctls.Config {
	return &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, MinVersion: v, MaxVersion: v,
		ClientSessionCache: ctls.NewLRUClientSessionCache(8)}
}

func testKeys(seed byte, n int) [][]byte {
	var keys [][]byte
	for i := 0; i < n; i++ {
		k := make([]byte, EnvoyTicketKeyLen)
		for j := range k {
			k[j] = seed + byte(i*31+j)
		}
		keys = append(keys, k)
	}
	return keys
}

// TestSessionResumption: a crypto/tls client with a session cache resumes on TLS 1.2 and
// 1.3, with crypto/tls's own keys and with configured ones, and ssl.session_reused counts
// it.
func TestSessionResumption(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "srv", false, "srv.test")
	for _, keys := range [][][]byte{nil, testKeys(1, 2)} {
		r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{cert}, SessionTicketKeys: keys})
		for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
			c := clientConfig(ca, v)
			if resumes(t, r, c) {
				t.Fatalf("%s keys %d: first handshake resumed", ctls.VersionName(v), len(keys))
			}
			for i := 0; i < 2; i++ {
				if !resumes(t, r, c) {
					t.Fatalf("%s keys %d: no resumption %d", ctls.VersionName(v), len(keys), i)
				}
			}
		}
		waitFor(t, func() bool { return r.f.Stats.Handshake.Load() == 6 })
		if n := r.f.Stats.SessionReused.Load(); n != 4 {
			t.Fatalf("keys %d: session_reused %d, want 4", len(keys), n)
		}
	}
}

// TestSessionTicketKeysShared: two factories (two processes, as far as tickets go) with
// the same key list resume each other's tickets, also when the ticket was sealed with a
// key that is only the second of the other's list (rotation); different keys do not.
func TestSessionTicketKeysShared(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "srv", false, "srv.test")
	keys := testKeys(7, 2)
	a := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{cert}, SessionTicketKeys: keys})
	b := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{cert}, SessionTicketKeys: keys})
	rotated := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{cert},
		SessionTicketKeys: append(testKeys(99, 1), keys[0])})
	other := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{cert}, SessionTicketKeys: testKeys(50, 1)})
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		name := ctls.VersionName(v)
		c := clientConfig(ca, v)
		resumes(t, a, c)
		if !resumes(t, b, c) {
			t.Fatalf("%s: b did not resume a's ticket", name)
		}
		// b's new ticket is sealed with keys[0] too: the rotated list still opens it.
		if !resumes(t, rotated, c) {
			t.Fatalf("%s: a list with the key second did not resume", name)
		}
		if resumes(t, other, c) {
			t.Fatalf("%s: other keys resumed", name)
		}
	}
	if _, err := NewDownstream(DownstreamConfig{Certificates: []ctls.Certificate{cert}, SessionTicketKeys: [][]byte{make([]byte, 48)}}); err == nil ||
		!strings.Contains(err.Error(), "session_ticket_keys.keys[0]: 48 bytes") {
		t.Fatalf("48-byte key: %v", err)
	}
}

// TestDisableStatelessSessionResumption: no tickets, so no resumption on either version.
func TestDisableStatelessSessionResumption(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		DisableStatelessSessionResumption: true, DisableStatefulSessionResumption: true})
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		c := clientConfig(ca, v)
		for i := 0; i < 3; i++ {
			if resumes(t, r, c) {
				t.Fatalf("%s: resumed with tickets disabled", ctls.VersionName(v))
			}
		}
	}
	if n := r.f.Stats.SessionReused.Load(); n != 0 {
		t.Fatalf("session_reused %d", n)
	}
}

// TestSessionTimeout: with a fake server clock, a TLS 1.2 session resumes within
// session_timeout and not after, counted from its full handshake even though every
// resumption re-issues a ticket; TLS 1.3 tickets live BoringSSL's 2 days each, chained at
// most 7 days from the full handshake.
func TestSessionTimeout(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "srv", false, "srv.test")
	clock := &fakeClock{}
	f := newFactory(t, DownstreamConfig{Certificates: []ctls.Certificate{cert}, SessionTimeout: time.Minute})
	f.sess.now = clock.now
	r := serveFactory(t, f)

	c := clientConfig(ca, ctls.VersionTLS12)
	resumes(t, r, c)
	clock.advance(40 * time.Second)
	if !resumes(t, r, c) {
		t.Fatal("TLS 1.2: no resumption at 40s of 60s")
	}
	clock.advance(40 * time.Second) // 80s after the full handshake, 40s after the re-issue
	if resumes(t, r, c) {
		t.Fatal("TLS 1.2: resumed 80s after the full handshake with session_timeout 60s")
	}
	if !resumes(t, r, c) {
		t.Fatal("TLS 1.2: the new full handshake's session did not resume")
	}

	c = clientConfig(ca, ctls.VersionTLS13)
	resumes(t, r, c)
	for i := 1; i <= 3; i++ { // 47h, 94h, 141h: each within its ticket's 2 days
		clock.advance(47 * time.Hour)
		if !resumes(t, r, c) {
			t.Fatalf("TLS 1.3: no resumption at step %d (%dh)", i, 47*i)
		}
	}
	clock.advance(47 * time.Hour) // 188h: past 7 days since the full handshake
	if resumes(t, r, c) {
		t.Fatal("TLS 1.3: resumed 188h after the full handshake")
	}
	resumes(t, r, c) // fresh ticket from that full handshake
	clock.advance(49 * time.Hour)
	if resumes(t, r, c) {
		t.Fatal("TLS 1.3: a 49h-old ticket resumed")
	}
}

// sClientEcho runs openssl s_client (not -quiet: it prints the session) against addr
// with args, sends a line, waits for its echo and ends; it returns everything s_client
// printed.
func sClientEcho(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	cmd := command(t, bin, append([]string{"s_client", "-connect", addr, "-servername", "srv.test", "-no_ign_eof"}, args...)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("ping over tls\n"))
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "ping over tls" {
			break
		}
	}
	stdin.Close()
	rest, _ := io.ReadAll(stdout)
	out.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("s_client %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

// TestOpenSSLSessionResumption: s_client -sess_out, then -sess_in, shows "Reused" on TLS
// 1.2 and 1.3.
func TestOpenSSLSessionResumption(t *testing.T) {
	bin := needTool(t, "openssl")
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}})
	for _, v := range []string{"-tls1_2", "-tls1_3"} {
		sess := filepath.Join(t.TempDir(), "sess.pem")
		out := sClientEcho(t, bin, r.addr, v, "-sess_out", sess)
		if !strings.Contains(out, "New, TLSv1.") {
			t.Fatalf("%s: first handshake not new:\n%s", v, out)
		}
		out = sClientEcho(t, bin, r.addr, v, "-sess_in", sess)
		if !strings.Contains(out, "Reused, TLSv1.") {
			t.Fatalf("%s: not reused:\n%s", v, out)
		}
	}
	waitFor(t, func() bool { return r.f.Stats.SessionReused.Load() == 2 })
}

// TestSessionTimeoutUnderASecond: Envoy's session_timeout 0s (whole seconds) means TLS
// 1.2 sessions never resume; TLS 1.3 tickets keep their own lifetime.
func TestSessionTimeoutUnderASecond(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		SessionTimeout: time.Nanosecond})
	c := clientConfig(ca, ctls.VersionTLS12)
	resumes(t, r, c)
	if resumes(t, r, c) {
		t.Fatal("TLS 1.2 resumed with a session_timeout under a second")
	}
	c = clientConfig(ca, ctls.VersionTLS13)
	resumes(t, r, c)
	if !resumes(t, r, c) {
		t.Fatal("TLS 1.3 did not resume")
	}
}
