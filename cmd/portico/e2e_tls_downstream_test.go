package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/internal/testpki"
)

// TestTLSDownSNICertificate: the certificate a client gets is the one for the name it
// asks for: exact, then a one-level wildcard, else the default — both when filter chains
// choose by filter_chain_match.server_names (tls_inspector) and when one context holds
// several certificates. crypto/tls and openssl s_client both check the served subject/SAN
// and verify the chain against the CA.
func TestTLSDownSNICertificate(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	def := pki.leaf(testpki.ECDSA, "default", "default.example.net")
	exact := pki.leaf(testpki.ECDSA, "exact", "a.example.com")
	wild := pki.leaf(testpki.ECDSA, "wild", "*.b.example.com")
	p := startTLSDown(t, tlsDownSetup{Listeners: []tlsListener{
		{Name: "chains", Inspector: true, Chains: []tlsChain{
			{Name: "exact", ServerNames: []string{"a.example.com"}, Certs: []tlsLeaf{exact}, Filters: echoFilterYAML},
			{Name: "wild", ServerNames: []string{"*.b.example.com"}, Certs: []tlsLeaf{wild}, Filters: echoFilterYAML},
			// No server_names: the chain for every other name, and for no name at all.
			{Name: "default", Certs: []tlsLeaf{def}, Filters: echoFilterYAML},
		}},
		// One chain, three certificates (inline): the first is the default.
		{Name: "certs", Chains: []tlsChain{
			{Certs: []tlsLeaf{def, exact, wild}, Inline: true, Filters: echoFilterYAML},
		}},
	}})
	cases := []struct{ sni, want, wantChains string }{
		{"a.example.com", "a.example.com", ""},
		{"A.EXAMPLE.com", "a.example.com", ""},
		{"x.b.example.com", "*.b.example.com", ""},
		{"y.b.example.com", "*.b.example.com", ""},
		// A certificate's wildcard covers one label only; filter_chain_match.server_names
		// matches the longest wildcard suffix, any number of labels deep (Envoy's
		// "www.example.com, then *.example.com, then *.com").
		{"z.y.b.example.com", "default.example.net", "*.b.example.com"},
		{"b.example.com", "default.example.net", ""},
		{"nothing.example.org", "default.example.net", ""},
		{"", "default.example.net", ""},
	}
	for _, l := range []string{"chains", "certs"} {
		addr := p.Addr[l]
		for _, tc := range cases {
			if l == "chains" && tc.wantChains != "" {
				tc.want = tc.wantChains
			}
			t.Run(fmt.Sprintf("%s/sni=%s", l, tc.sni), func(t *testing.T) {
				// crypto/tls verifies the chain (and the name, when it matches).
				cfg := &tls.Config{ServerName: tc.sni, RootCAs: pki.ca.Pool}
				if tc.sni == "" || tc.want == "default.example.net" || tc.wantChains != "" {
					cfg.InsecureSkipVerify = true
				}
				c := mustDialTLS(t, addr, cfg)
				leaf := c.ConnectionState().PeerCertificates[0]
				if leaf.Subject.CommonName != tc.want || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != tc.want {
					t.Errorf("crypto/tls with SNI %q got %s, want %s", tc.sni, certName(leaf), tc.want)
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pki.ca.Pool}); err != nil {
					t.Errorf("served certificate does not verify: %v", err)
				}
				echoTLS(t, c, "through "+l+"\n")

				args := []string{"-CAfile", pki.CAFile, "-verify_return_error"}
				if tc.sni != "" {
					args = append(args, "-servername", tc.sni)
				} else {
					args = append(args, "-noservername")
				}
				r := runSClient(t, addr, args...)
				if r.Err != nil || r.Leaf == nil {
					t.Fatalf("openssl s_client: %v\n%s", r.Err, r.Out)
				}
				if r.Leaf.Subject.CommonName != tc.want || r.Leaf.DNSNames[0] != tc.want {
					t.Errorf("openssl with SNI %q got %s, want %s", tc.sni, certName(r.Leaf), tc.want)
				}
				if !strings.Contains(r.Out, "Verify return code: 0 (ok)") {
					t.Errorf("openssl did not verify the chain:\n%s", r.Out)
				}
			})
		}
	}
	// Every handshake above was counted, on the listener that made it.
	for _, l := range []string{"chains", "certs"} {
		p.sslStatEventually(t, l, "handshake", float64(2*len(cases)))
	}
}

// TestTLSDownECDSAOverRSA: one context with an RSA and an ECDSA certificate for the same
// name serves ECDSA to a client that supports it, whichever comes first in the list, and
// RSA to a client that only accepts RSA signatures (TLS 1.3 -sigalgs) or only an RSA
// cipher suite (TLS 1.2).
func TestTLSDownECDSAOverRSA(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	ec := pki.leaf(testpki.ECDSA, "ec", "both.example.com")
	rsa := pki.leaf(testpki.RSA, "rsa", "both.example.com")
	p := startTLSDown(t, tlsDownSetup{Listeners: []tlsListener{
		{Name: "rsa_first", Chains: []tlsChain{{Certs: []tlsLeaf{rsa, ec}, Filters: echoFilterYAML}}},
		{Name: "ec_first", Chains: []tlsChain{{Certs: []tlsLeaf{ec, rsa}, Filters: echoFilterYAML}}},
	}})
	for _, l := range []string{"rsa_first", "ec_first"} {
		addr := p.Addr[l]
		for _, tc := range []struct {
			name string
			args []string
			want x509.PublicKeyAlgorithm
		}{
			{"openssl-default", nil, x509.ECDSA},
			{"openssl-tls1.2", []string{"-tls1_2"}, x509.ECDSA},
			{"openssl-rsa-sigalgs", []string{"-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"}, x509.RSA},
			{"openssl-tls1.2-rsa-cipher", []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"}, x509.RSA},
		} {
			t.Run(l+"/"+tc.name, func(t *testing.T) {
				args := append([]string{"-servername", "both.example.com", "-CAfile", pki.CAFile, "-verify_return_error"}, tc.args...)
				r := runSClient(t, addr, args...)
				if r.Err != nil || r.Leaf == nil {
					t.Fatalf("openssl s_client: %v\n%s", r.Err, r.Out)
				}
				if r.Leaf.PublicKeyAlgorithm != tc.want {
					t.Errorf("got %s, want %s\n%s", certName(r.Leaf), tc.want, r.Out)
				}
			})
		}
		for _, tc := range []struct {
			name string
			cfg  *tls.Config
			want x509.PublicKeyAlgorithm
		}{
			{"go-default", &tls.Config{}, x509.ECDSA},
			{"go-tls1.2-rsa-suite", &tls.Config{MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, x509.RSA},
			{"go-tls1.2-ecdsa-suite", &tls.Config{MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}, x509.ECDSA},
		} {
			t.Run(l+"/"+tc.name, func(t *testing.T) {
				cfg := tc.cfg.Clone()
				cfg.ServerName, cfg.RootCAs = "both.example.com", pki.ca.Pool
				c := mustDialTLS(t, addr, cfg)
				if got := c.ConnectionState().PeerCertificates[0]; got.PublicKeyAlgorithm != tc.want {
					t.Errorf("got %s, want %s", certName(got), tc.want)
				}
				echoTLS(t, c, "key type\n")
			})
		}
	}
}

// TestTLSDownALPN: a server with alpn_protocols [http/1.1] negotiates http/1.1 with curl
// and with openssl offering h2,http/1.1; a client offering only "foo" still completes the
// handshake, without ALPN, as Envoy does (Go's own server would refuse it).
func TestTLSDownALPN(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "www", "www.example.com")
	p := startTLSDown(t, tlsDownSetup{Listeners: []tlsListener{
		{Name: "https", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ALPN: []string{"http/1.1"},
			Filters: hcmDirectYAML("alpn", "over TLS\n")}}},
		{Name: "echo", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ALPN: []string{"h2", "http/1.1"},
			Filters: echoFilterYAML}}},
		// Envoy's most common list, in front of an HTTP/1.1-only connection manager.
		{Name: "h2first", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ALPN: []string{"h2", "http/1.1"},
			Filters: hcmDirectYAML("h2first", "over TLS\n")}}},
	}})
	https := p.Addr["https"]
	port := strings.TrimPrefix(https, "127.0.0.1:")
	url := "https://www.example.com:" + port + "/"
	resolve := "www.example.com:" + port + ":127.0.0.1"

	for _, flag := range []string{"--http1.1", "--http2"} {
		t.Run("curl"+flag, func(t *testing.T) {
			out, verbose, err := runCurl(t, "-sS", "-v", flag, "--cacert", pki.CAFile, "--resolve", resolve, url)
			if err != nil || out != "over TLS\n" {
				t.Fatalf("curl %s: %q %v\n%s", flag, out, err, verbose)
			}
			// curl 7.88: "ALPN: server accepted http/1.1" (older: "ALPN, server accepted to use").
			if !strings.Contains(verbose, "server accepted http/1.1") && !strings.Contains(verbose, "server accepted to use http/1.1") {
				t.Errorf("curl %s did not negotiate http/1.1:\n%s", flag, verbose)
			}
		})
	}
	t.Run("h2-not-advertised-by-hcm", func(t *testing.T) {
		// curl offers h2 first by default; had portico accepted it, curl would speak
		// HTTP/2 to an HTTP/1.1 codec and fail.
		port := strings.TrimPrefix(p.Addr["h2first"], "127.0.0.1:")
		out, verbose, err := runCurl(t, "-sS", "-v", "--cacert", pki.CAFile, "--resolve", "www.example.com:"+port+":127.0.0.1",
			"https://www.example.com:"+port+"/")
		if err != nil || out != "over TLS\n" || !strings.Contains(verbose, "server accepted http/1.1") {
			t.Fatalf("curl: %q %v\n%s", out, err, verbose)
		}
		if !strings.Contains(p.stderr.String(), "alpn_protocols[0]: h2 is not advertised") {
			t.Errorf("no warning about h2 at start-up:\n%s", p.stderr.String())
		}
	})
	t.Run("openssl-h2,http1.1", func(t *testing.T) {
		r := runSClient(t, https, "-servername", "www.example.com", "-alpn", "h2,http/1.1")
		if r.Err != nil || r.field("ALPN protocol") != "http/1.1" {
			t.Fatalf("ALPN protocol %q (%v)\n%s", r.field("ALPN protocol"), r.Err, r.Out)
		}
	})
	t.Run("openssl-foo", func(t *testing.T) {
		r := runSClientIn(t, https, "GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
			"-servername", "www.example.com", "-alpn", "foo", "-ign_eof")
		if r.Err != nil || !strings.Contains(r.Out, "No ALPN negotiated") {
			t.Fatalf("handshake with an unknown ALPN: %v\n%s", r.Err, r.Out)
		}
		if !strings.Contains(r.Out, "HTTP/1.1 200 OK") || !strings.Contains(r.Out, "over TLS") {
			t.Errorf("no HTTP answer after a handshake without ALPN:\n%s", r.Out)
		}
	})
	t.Run("go-foo", func(t *testing.T) {
		c := mustDialTLS(t, p.Addr["echo"], &tls.Config{ServerName: "www.example.com", RootCAs: pki.ca.Pool, NextProtos: []string{"foo"}})
		if np := c.ConnectionState().NegotiatedProtocol; np != "" {
			t.Errorf("negotiated %q with a client that offered only foo", np)
		}
		echoTLS(t, c, "no alpn\n")
	})
	t.Run("go-h2", func(t *testing.T) {
		c := mustDialTLS(t, p.Addr["echo"], &tls.Config{ServerName: "www.example.com", RootCAs: pki.ca.Pool, NextProtos: []string{"http/1.1", "h2"}})
		// The server's order wins, as in BoringSSL's server-preference selection.
		if np := c.ConnectionState().NegotiatedProtocol; np != "h2" {
			t.Errorf("negotiated %q, want h2 (the server's first)", np)
		}
	})
	if n := p.sslStat(t, "https", "connection_error"); n != 0 {
		t.Errorf("ssl.connection_error = %v, want 0", n)
	}
}

// TestTLSDownVersions: TLS 1.2 and 1.3 both complete and are counted by version; with
// tls_minimum_protocol_version TLSv1_3 a TLS 1.2 client is refused (ssl.connection_error);
// a cipher_suites list is enforced for TLS 1.2.
func TestTLSDownVersions(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "v", "v.example.com")
	p := startTLSDown(t, tlsDownSetup{Listeners: []tlsListener{
		{Name: "both", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML}}},
		{Name: "only13", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML,
			Params: "tls_minimum_protocol_version: TLSv1_3"}}},
		{Name: "only12", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML,
			Params: "tls_maximum_protocol_version: TLSv1_2"}}},
		{Name: "ciphers", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML,
			Params: `cipher_suites: ["ECDHE-ECDSA-AES256-GCM-SHA384"]`}}},
	}})
	sni := []string{"-servername", "v.example.com", "-CAfile", pki.CAFile, "-verify_return_error"}
	handshake := func(t *testing.T, l string, args ...string) sClient {
		t.Helper()
		return runSClient(t, p.Addr[l], append(append([]string(nil), sni...), args...)...)
	}
	protocol := func(r sClient) string { return r.field("Protocol") }

	t.Run("both", func(t *testing.T) {
		for _, v := range []struct{ flag, name string }{{"-tls1_2", "TLSv1.2"}, {"-tls1_3", "TLSv1.3"}} {
			r := handshake(t, "both", v.flag)
			if r.Err != nil || protocol(r) != v.name {
				t.Fatalf("%s: protocol %q (%v)\n%s", v.flag, protocol(r), r.Err, r.Out)
			}
		}
		p.sslStatEventually(t, "both", "versions.TLSv1.2", 1)
		p.sslStatEventually(t, "both", "versions.TLSv1.3", 1)
		p.sslStatEventually(t, "both", "handshake", 2)
		if n := p.sslStat(t, "both", "connection_error"); n != 0 {
			t.Errorf("connection_error = %v", n)
		}
	})
	t.Run("min-TLSv1_3", func(t *testing.T) {
		if r := handshake(t, "only13", "-tls1_2"); r.Err == nil || r.Leaf != nil {
			t.Fatalf("a TLS 1.2 client completed a handshake with a TLS 1.3-only server:\n%s", r.Out)
		}
		p.sslStatEventually(t, "only13", "connection_error", 1)
		_, err := dialTLS(t, p.Addr["only13"], &tls.Config{ServerName: "v.example.com", RootCAs: pki.ca.Pool, MaxVersion: tls.VersionTLS12})
		if err == nil {
			t.Fatal("crypto/tls TLS 1.2 client accepted")
		}
		p.sslStatEventually(t, "only13", "connection_error", 2)
		if r := handshake(t, "only13", "-tls1_3"); r.Err != nil || protocol(r) != "TLSv1.3" {
			t.Fatalf("TLS 1.3 client: %v\n%s", r.Err, r.Out)
		}
		p.sslStatEventually(t, "only13", "versions.TLSv1.3", 1)
		if n := p.sslStat(t, "only13", "versions.TLSv1.2"); n != 0 {
			t.Errorf("versions.TLSv1.2 = %v", n)
		}
	})
	t.Run("max-TLSv1_2", func(t *testing.T) {
		// A client offering both gets 1.2; one that insists on 1.3 is refused.
		if r := handshake(t, "only12"); r.Err != nil || protocol(r) != "TLSv1.2" {
			t.Fatalf("protocol %q (%v)\n%s", protocol(r), r.Err, r.Out)
		}
		if r := handshake(t, "only12", "-tls1_3"); r.Err == nil || r.Leaf != nil {
			t.Fatalf("a TLS 1.3-only client completed a handshake with a TLS 1.2-only server:\n%s", r.Out)
		}
		p.sslStatEventually(t, "only12", "connection_error", 1)
		p.sslStatEventually(t, "only12", "versions.TLSv1.2", 1)
	})
	t.Run("cipher_suites", func(t *testing.T) {
		if r := handshake(t, "ciphers", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"); r.Err == nil || r.Leaf != nil {
			t.Fatalf("a client offering only a suite not configured completed a handshake:\n%s", r.Out)
		}
		p.sslStatEventually(t, "ciphers", "connection_error", 1)
		r := handshake(t, "ciphers", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
		if r.Err != nil || r.field("Cipher") != "ECDHE-ECDSA-AES256-GCM-SHA384" {
			t.Fatalf("cipher %q (%v)\n%s", r.field("Cipher"), r.Err, r.Out)
		}
		p.sslStatEventually(t, "ciphers", "ciphers.ECDHE-ECDSA-AES256-GCM-SHA384", 1)
		// TLS 1.3 suites are not configurable (as in Envoy): a 1.3 client is served.
		if r := handshake(t, "ciphers"); r.Err != nil || protocol(r) != "TLSv1.3" {
			t.Fatalf("TLS 1.3 client: %v\n%s", r.Err, r.Out)
		}
	})
}
