package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/internal/testpki"
	"github.com/portico-proxy/portico/transport/tls"
)

// tlsFiles writes a CA, an ECDSA and an RSA leaf, and returns their paths by name.
func tlsFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA("config test CA")
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ca.Issue(testpki.ECDSA, "www.example.com")
	if err != nil {
		t.Fatal(err)
	}
	rsa, err := ca.Issue(testpki.RSA, "*.example.org")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca": ca.PEM, "ec_cert": ec.CertPEM, "ec_key": ec.KeyPEM,
		"rsa_cert": rsa.CertPEM, "rsa_key": rsa.KeyPEM, "garbage": []byte("not pem\n")}
	out := map[string]string{}
	for n, b := range files {
		p := filepath.Join(dir, n+".pem")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out[n] = p
	}
	return out
}

const tlsListener = `
static_resources:
  listeners:
  - name: https
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket_connect_timeout: 3s
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_sni: false
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_params:
              tls_minimum_protocol_version: TLSv1_2
              tls_maximum_protocol_version: TLSv1_3
              cipher_suites: ["[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]", ECDHE-RSA-AES128-GCM-SHA256]
              ecdh_curves: [X25519, P-256]
            tls_certificates:
            - certificate_chain: { filename: EC_CERT }
              private_key: { filename: EC_KEY }
            - certificate_chain: { inline_string: "RSA_CERT_INLINE" }
              private_key: { filename: RSA_KEY }
      filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
`

func tlsConfig(t *testing.T, f map[string]string, edit func(string) string) string {
	rsaPEM, err := os.ReadFile(f["rsa_cert"])
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("EC_CERT", f["ec_cert"], "EC_KEY", f["ec_key"], "RSA_KEY", f["rsa_key"],
		"RSA_CERT_INLINE", strings.ReplaceAll(string(rsaPEM), "\n", `\n`)).Replace(tlsListener)
	if edit != nil {
		s = edit(s)
	}
	return s
}

func TestDownstreamTLS(t *testing.T) {
	f := tlsFiles(t)
	cfg, err := Parse([]byte(tlsConfig(t, f, nil)), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	fc := cfg.Chains["https"]
	if fc == nil {
		t.Fatal("no chains")
	}
	ch := fc.FindFilterChain(&engine.SocketInfo{})
	fac, ok := ch.TransportSocket.(*tls.Factory)
	if !ok {
		t.Fatalf("transport socket %T", ch.TransportSocket)
	}
	if fac.Name() != "envoy.transport_sockets.tls" {
		t.Error(fac.Name())
	}
	found := false
	for _, src := range cfg.StatsSources {
		if src.StatsFamily() == "listener" && len(src.StatsLabels()) == 1 && src.StatsLabels()[0] == [2]string{"listener", "https"} {
			found = true
		}
	}
	if !found {
		t.Error("no listener.https.ssl stats source")
	}
}

func TestDownstreamTLSErrors(t *testing.T) {
	f := tlsFiles(t)
	cases := []struct {
		name string
		edit func(string) string
		path string
		msg  string
	}{
		{"missing file", func(s string) string { return strings.Replace(s, f["ec_cert"], "/nonexistent/cert.pem", 1) },
			"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].certificate_chain.filename", "open /nonexistent/cert.pem"},
		{"not pem", func(s string) string { return strings.Replace(s, f["ec_key"], f["garbage"], 1) },
			"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].private_key.filename", "no PEM private key"},
		{"key mismatch", func(s string) string { return strings.Replace(s, f["ec_key"], f["rsa_key"], 1) },
			"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0]", "certificate_chain and private_key"},
		{"cipher", func(s string) string {
			return strings.Replace(s, "ECDHE-RSA-AES128-GCM-SHA256]", "ECDHE-RSA-AES128-GCM-SHA999]", 1)
		},
			"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_params.cipher_suites", `unknown cipher suite "ECDHE-RSA-AES128-GCM-SHA999"`},
		{"curve", func(s string) string { return strings.Replace(s, "[X25519, P-256]", "[X25519, P-255]", 1) },
			"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_params.ecdh_curves", `unknown curve "P-255"`},
		{"versions", func(s string) string {
			return strings.Replace(s, "tls_maximum_protocol_version: TLSv1_3", "tls_maximum_protocol_version: TLSv1_1", 1)
		},
			"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_params.tls_minimum_protocol_version", "TLSv1_2 is above"},
		{"no certificates", func(s string) string {
			i := strings.Index(s, "            tls_certificates:")
			j := strings.Index(s, "      filters:")
			return s[:i] + s[j:]
		}, "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates", "a server needs at least one certificate"},
		{"upstream context", func(s string) string {
			return strings.Replace(s, "tls.v3.DownstreamTlsContext\n          require_sni: false", "tls.v3.UpstreamTlsContext\n          sni: x", 1)
		}, "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config", "a filter chain terminates TLS with a DownstreamTlsContext"},
		{"unknown field", func(s string) string { return strings.Replace(s, "require_sni: false", "require_snii: false", 1) },
			"static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.require_snii", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tlsConfig(t, f, c.edit)), 1)
			if err == nil {
				cfg.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.path+": "+c.msg) {
				t.Fatalf("want %s: %s…, got\n%v", c.path, c.msg, err)
			}
		})
	}
}

// An expired certificate loads, with a warning naming it (Envoy logs and serves it).
func TestDownstreamTLSExpiredWarns(t *testing.T) {
	f := tlsFiles(t)
	// A certificate that expired: made by hand with NotAfter in the past.
	exp, key := expiredCert(t)
	s := tlsConfig(t, f, func(s string) string {
		s = strings.Replace(s, f["ec_cert"], exp, 1)
		return strings.Replace(s, f["ec_key"], key, 1)
	})
	cfg, err := Parse([]byte(s), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	for _, w := range cfg.Warnings {
		if strings.Contains(w, "tls_certificates[0].certificate_chain.filename") && strings.Contains(w, "expired") {
			return
		}
	}
	t.Fatalf("no expiry warning in %q", cfg.Warnings)
}

func expiredCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	ca, err := testpki.NewCA("expired CA")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ca.IssueValid(testpki.ECDSA, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "old.example.com")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, l.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, l.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestInspectorWarnings: a chain matching on the SNI without a tls_inspector is never
// chosen; Portico says so.
func TestInspectorWarnings(t *testing.T) {
	const y = `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filter_chain_match: { server_names: [a.example.com] }
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
    - filter_chain_match: { transport_protocol: tls }
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
`
	cfg, err := Parse([]byte(y), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	want := []string{"static_resources.listeners[0].filter_chains[0].filter_chain_match.server_names",
		"static_resources.listeners[0].filter_chains[1].filter_chain_match.transport_protocol"}
	for _, w := range want {
		found := false
		for _, got := range cfg.Warnings {
			found = found || strings.HasPrefix(got, w+": ")
		}
		if !found {
			t.Errorf("no warning at %s in %q", w, cfg.Warnings)
		}
	}
	with := strings.Replace(y, "    filter_chains:", "    listener_filters: [{ name: envoy.filters.listener.tls_inspector }]\n    filter_chains:", 1)
	cfg2, err := Parse([]byte(with), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg2.Close()
	if len(cfg2.Warnings) != 0 {
		t.Errorf("warnings with a tls_inspector: %q", cfg2.Warnings)
	}
}
