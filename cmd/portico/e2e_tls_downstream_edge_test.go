package main

import (
	"crypto/tls"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/internal/testpki"
)

// TestTLSDownAlerts: a refused handshake tells the client why with the alert Envoy
// (BoringSSL) sends — protocol_version, handshake_failure — instead of a bare close;
// require_sni and ecdh_curves are enforced; the cipher and curve a handshake used are
// counted under the names openssl reports.
func TestTLSDownAlerts(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "a", "a.example.com")
	p := startTLSDown(t, tlsDownSetup{Listeners: []tlsListener{
		{Name: "only13", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML,
			Params: "tls_minimum_protocol_version: TLSv1_3"}}},
		{Name: "ciphers", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML,
			Params: "tls_maximum_protocol_version: TLSv1_2\ncipher_suites: [ECDHE-ECDSA-AES256-GCM-SHA384]"}}},
		{Name: "sni", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML, Context: "require_sni: true"}}},
		{Name: "p256", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML,
			Params: "ecdh_curves: [P-256]"}}},
		{Name: "default", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML}}},
	}})
	cfg := func(mod func(*tls.Config)) *tls.Config {
		c := &tls.Config{ServerName: "a.example.com", RootCAs: pki.ca.Pool}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sni := []string{"-servername", "a.example.com"}

	t.Run("protocol_version", func(t *testing.T) {
		r := runSClient(t, p.Addr["only13"], append(sni, "-tls1_2")...)
		if r.Err == nil || !strings.Contains(r.Out, "alert protocol version") {
			t.Errorf("openssl -tls1_2 against a TLS 1.3-only server: %v\n%s", r.Err, r.Out)
		}
		_, err := dialTLS(t, p.Addr["only13"], cfg(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }))
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: protocol version not supported") {
			t.Errorf("crypto/tls TLS 1.2 client: %v", err)
		}
		p.sslStatEventually(t, "only13", "connection_error", 2)
	})
	t.Run("handshake_failure", func(t *testing.T) {
		r := runSClient(t, p.Addr["ciphers"], append(sni, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")...)
		if r.Err == nil || !strings.Contains(r.Out, "alert handshake failure") {
			t.Errorf("openssl with a cipher the server does not have: %v\n%s", r.Err, r.Out)
		}
		_, err := dialTLS(t, p.Addr["ciphers"], cfg(func(c *tls.Config) {
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}))
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: handshake failure") {
			t.Errorf("crypto/tls with a cipher the server does not have: %v", err)
		}
		p.sslStatEventually(t, "ciphers", "connection_error", 2)
	})
	t.Run("require_sni", func(t *testing.T) {
		if _, err := dialTLS(t, p.Addr["sni"], cfg(func(c *tls.Config) { c.ServerName, c.InsecureSkipVerify = "", true })); err == nil {
			t.Error("a client without SNI was served with require_sni")
		}
		if r := runSClient(t, p.Addr["sni"], "-noservername"); r.Err == nil || r.Leaf != nil {
			t.Errorf("openssl -noservername was served with require_sni:\n%s", r.Out)
		}
		p.sslStatEventually(t, "sni", "connection_error", 2)
		echoTLS(t, mustDialTLS(t, p.Addr["sni"], cfg(nil)), "with SNI\n")
	})
	t.Run("ecdh_curves", func(t *testing.T) {
		if r := runSClient(t, p.Addr["p256"], append(sni, "-groups", "X25519")...); r.Err == nil || r.Leaf != nil {
			t.Errorf("a client with X25519 only was served by a P-256 server:\n%s", r.Out)
		}
		p.sslStatEventually(t, "p256", "connection_error", 1)
		for _, flag := range []string{"-tls1_2", "-tls1_3"} {
			if r := runSClient(t, p.Addr["p256"], append(sni, flag, "-groups", "X25519:P-256")...); r.Err != nil || r.Leaf == nil {
				t.Errorf("%s with X25519:P-256: %v\n%s", flag, r.Err, r.Out)
			}
		}
		p.sslStatEventually(t, "p256", "curves.P-256", 2)
		if n := p.sslStat(t, "p256", "curves.X25519"); n != 0 {
			t.Errorf("curves.X25519 = %v on a P-256-only server", n)
		}
	})
	t.Run("client-rejects-certificate", func(t *testing.T) {
		// curl without the CA refuses the chain and says so with an alert: the server's
		// handshake fails and is counted, as in Envoy.
		before := p.sslStat(t, "default", "connection_error")
		port := strings.TrimPrefix(p.Addr["default"], "127.0.0.1:")
		_, verbose, err := runCurl(t, "-sS", "--resolve", "a.example.com:"+port+":127.0.0.1", "https://a.example.com:"+port+"/")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 60 {
			t.Fatalf("curl without the CA: %v (want exit 60, peer certificate not verified)\n%s", err, verbose)
		}
		p.sslStatEventually(t, "default", "connection_error", before+1)
	})
	t.Run("cipher-names", func(t *testing.T) {
		// The counter named after what openssl reports moves, one per handshake.
		for _, args := range [][]string{
			{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"},
			{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"},
			{"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"},
			{"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"},
		} {
			r := runSClient(t, p.Addr["default"], append(sni, args...)...)
			name := r.field("Cipher")
			if r.Err != nil || name == "" {
				t.Fatalf("%v: %v\n%s", args, r.Err, r.Out)
			}
			if name != args[2] {
				t.Errorf("%v negotiated %s", args, name)
			}
			p.sslStatEventually(t, "default", "ciphers."+name, 1)
		}
		p.sslStatEventually(t, "default", "curves.X25519", 4)
	})
}

// TestTLSDownCorruptRecord: a record that fails authentication on an established
// connection ends that connection with bad_record_mac (ssl.connection_error), and leaves
// the other connections of the worker alone.
func TestTLSDownCorruptRecord(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "c", "c.example.com")
	p := startTLSDown(t, tlsDownSetup{Concurrency: 1, Listeners: []tlsListener{
		{Name: "echo", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML}}},
	}})
	cfg := &tls.Config{ServerName: "c.example.com", RootCAs: pki.ca.Pool}
	other := mustDialTLS(t, p.Addr["echo"], cfg)
	echoTLS(t, other, "bystander\n")
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		raw, err := net.Dial("tcp", p.Addr["echo"])
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		c := tls.Client(raw, &tls.Config{ServerName: "c.example.com", RootCAs: pki.ca.Pool, MaxVersion: v})
		echoTLS(t, c, "fine so far\n")
		// An application_data record of random bytes: it cannot authenticate.
		bogus := append([]byte{0x17, 0x03, 0x03, 0x00, 0x30}, make([]byte, 0x30)...)
		for i := range bogus[5:] {
			bogus[5+i] = byte(i*7 + 3)
		}
		raw.Write(bogus)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		if err == nil || !strings.Contains(err.Error(), "bad record MAC") {
			t.Errorf("%s: after a forged record the client read %v, want the server's bad_record_mac alert", tls.VersionName(v), err)
		}
		echoTLS(t, other, "still here\n")
	}
	p.sslStatEventually(t, "echo", "connection_error", 2)
	echoTLS(t, mustDialTLS(t, p.Addr["echo"], cfg), "new\n")
}

// trickleConn writes what a TLS client sends a few bytes at a time, with a pause between,
// so that the server reads the ClientHello in many pieces.
type trickleConn struct {
	net.Conn
	chunk int
}

func (c *trickleConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(c.chunk, len(p))
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		time.Sleep(time.Millisecond)
	}
	return n, nil
}

// TestTLSDownTrickledHandshake: a client whose ClientHello (and Finished) arrive in
// 7-byte pieces completes its handshake, with and without the tls_inspector in front (which
// must wait for the whole ClientHello before the chain is chosen by its server name).
func TestTLSDownTrickledHandshake(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	a := pki.leaf(testpki.ECDSA, "a", "a.example.com")
	b := pki.leaf(testpki.ECDSA, "b", "b.example.com")
	p := startTLSDown(t, tlsDownSetup{Concurrency: 1, Listeners: []tlsListener{
		{Name: "plain", Chains: []tlsChain{{Certs: []tlsLeaf{a, b}, Filters: echoFilterYAML}}},
		{Name: "inspect", Inspector: true, Chains: []tlsChain{
			{ServerNames: []string{"a.example.com"}, Certs: []tlsLeaf{a}, Filters: echoFilterYAML},
			{ServerNames: []string{"b.example.com"}, Certs: []tlsLeaf{b}, Filters: echoFilterYAML},
		}},
	}})
	for _, l := range []string{"plain", "inspect"} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			raw, err := net.Dial("tcp", p.Addr[l])
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			c := tls.Client(&trickleConn{Conn: raw, chunk: 7}, &tls.Config{ServerName: "b.example.com", RootCAs: pki.ca.Pool, MaxVersion: v})
			c.SetDeadline(time.Now().Add(20 * time.Second))
			if err := c.Handshake(); err != nil {
				t.Fatalf("%s %s: trickled handshake: %v", l, tls.VersionName(v), err)
			}
			if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "b.example.com" {
				t.Errorf("%s %s: served %s", l, tls.VersionName(v), cn)
			}
			echoTLS(t, c, strings.Repeat("trickled data\n", 20))
		}
	}
}
