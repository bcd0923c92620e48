package config

import (
	"bytes"
	ctls "crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/internal/testpki"
)

const sessionListener = `
static_resources:
  listeners:
  - name: https
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          session_ticket_keys:
            keys:
            - filename: TICKET_KEY_FILE
            - inline_bytes: TICKET_KEY_B64
          session_timeout: 300s
          disable_stateful_session_resumption: true
          ocsp_staple_policy: STRICT_STAPLING
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: CERT }
              private_key: { filename: KEY }
              ocsp_staple: { filename: OCSP }
      filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
`

type sessionPKI struct {
	ca                         *testpki.CA
	ocsp                       []byte
	cert, key, ocspFile, other string // files; other: an OCSP response for another serial
	ticketKey                  string
	ticketB64                  string
}

func newSessionPKI(t *testing.T) *sessionPKI {
	t.Helper()
	ca, err := testpki.NewCA("session test CA")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ca.Issue(testpki.ECDSA, "srv.test")
	if err != nil {
		t.Fatal(err)
	}
	serial, err := testpki.Serial(l.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ocsp, err := ca.OCSPResponse(serial, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.OCSPResponse(serial.Add(serial, serial), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &sessionPKI{ca: ca, ocsp: ocsp, ticketB64: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 80))}
	for _, f := range []struct {
		path *string
		name string
		b    []byte
	}{{&p.cert, "cert.pem", l.CertPEM}, {&p.key, "key.pem", l.KeyPEM}, {&p.ocspFile, "ocsp.der", ocsp},
		{&p.other, "other.der", other}, {&p.ticketKey, "ticket.key", bytes.Repeat([]byte{3}, 80)}} {
		*f.path = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.path, f.b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *sessionPKI) config(edit func(string) string) string {
	s := strings.NewReplacer("TICKET_KEY_FILE", p.ticketKey, "TICKET_KEY_B64", p.ticketB64, "CERT", p.cert,
		"KEY", p.key, "OCSP", p.ocspFile).Replace(sessionListener)
	if edit != nil {
		s = edit(s)
	}
	return s
}

// serveChain serves the https listener's chain of cfg on a one-worker server.
func serveChain(t *testing.T, cfg *Config) string {
	t.Helper()
	ch := cfg.Chains["https"].FindFilterChain(&engine.SocketInfo{})
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.AddListener(engine.ListenerConfig{Name: "https", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{Chain: ch}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	return l.Address().String()
}

// TestDownstreamTLSSessionAndOCSP: two configurations with the same session_ticket_keys
// (two Portico processes) resume each other's tickets, on TLS 1.2 and 1.3, and staple the
// configured OCSP response.
func TestDownstreamTLSSessionAndOCSP(t *testing.T) {
	p := newSessionPKI(t)
	var addrs []string
	for i := 0; i < 2; i++ {
		cfg, err := Parse([]byte(p.config(nil)), 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cfg.Close() })
		addrs = append(addrs, serveChain(t, cfg))
	}
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		c := &ctls.Config{ServerName: "srv.test", RootCAs: p.ca.Pool, MinVersion: v, MaxVersion: v,
			ClientSessionCache: ctls.NewLRUClientSessionCache(4)}
		for i, addr := range addrs {
			nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			nc.SetDeadline(time.Now().Add(30 * time.Second))
			tc := ctls.Client(nc, c)
			if _, err := tc.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(tc, b); err != nil || string(b) != "ping" {
				t.Fatalf("echo %q %v", b, err)
			}
			st := tc.ConnectionState()
			tc.Close()
			if st.DidResume != (i == 1) {
				t.Fatalf("%s, server %d: resumed %v", ctls.VersionName(v), i, st.DidResume)
			}
			if i == 0 && !bytes.Equal(st.OCSPResponse, p.ocsp) {
				t.Fatalf("%s: staple of %d bytes, want the configured %d", ctls.VersionName(v), len(st.OCSPResponse), len(p.ocsp))
			}
		}
	}
}

func TestDownstreamTLSSessionErrors(t *testing.T) {
	p := newSessionPKI(t)
	const at = "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config."
	for _, c := range []struct {
		name, path, msg string
		edit            func(string) string
	}{
		{"short key", at + "session_ticket_keys.keys[1].inline_bytes", "a session ticket key is 80 bytes",
			func(s string) string {
				return strings.Replace(s, p.ticketB64, base64.StdEncoding.EncodeToString(make([]byte, 48)), 1)
			}},
		{"sds keys", at + "session_ticket_keys_sds_secret_config", "not supported by Portico",
			func(s string) string {
				i := strings.Index(s, "          session_ticket_keys:")
				j := strings.Index(s, "          session_timeout:")
				return s[:i] + "          session_ticket_keys_sds_secret_config: { name: ticket_keys }\n" + s[j:]
			}},
		{"staple as string", at + "common_tls_context.tls_certificates[0].ocsp_staple.inline_string", "an OCSP response is binary",
			func(s string) string {
				return strings.Replace(s, "{ filename: "+p.ocspFile+" }", `{ inline_string: "x" }`, 1)
			}},
		{"staple of another certificate", at + "common_tls_context.tls_certificates[0].ocsp_staple.filename", "OCSP response does not match its TLS certificate",
			func(s string) string { return strings.Replace(s, p.ocspFile, p.other, 1) }},
		{"garbage staple", at + "common_tls_context.tls_certificates[0].ocsp_staple.filename", "not an OCSP response",
			func(s string) string { return strings.Replace(s, p.ocspFile, p.cert, 1) }},
		{"must staple without one", at + "common_tls_context.tls_certificates[0]", "ocsp_staple is required by ocsp_staple_policy MUST_STAPLE",
			func(s string) string {
				s = strings.Replace(s, "STRICT_STAPLING", "MUST_STAPLE", 1)
				return strings.Replace(s, "              ocsp_staple: { filename: "+p.ocspFile+" }\n", "", 1)
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(p.config(c.edit)), 1)
			if err == nil {
				cfg.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.path+": "+c.msg) {
				t.Fatalf("want %s: %s…, got\n%v", c.path, c.msg, err)
			}
		})
	}
	// disable_stateless_session_resumption and a 0s session_timeout load.
	cfg, err := Parse([]byte(p.config(func(s string) string {
		i := strings.Index(s, "          session_ticket_keys:")
		j := strings.Index(s, "          session_timeout:")
		s = s[:i] + "          disable_stateless_session_resumption: true\n" + s[j:]
		return strings.Replace(s, "session_timeout: 300s", "session_timeout: 0s", 1)
	})), 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Close()
}
