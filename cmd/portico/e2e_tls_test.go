package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a throwaway CA and a server certificate for the test names.
type testPKI struct {
	pool   *x509.CertPool
	cert   tls.Certificate
	caFile string
}

func newTestPKI(t *testing.T, names ...string) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portico test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{pool: x509.NewCertPool(), cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
	p.pool.AddCert(ca)
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	return p
}

// tlsBackend terminates TLS and answers "backend=<name> sni=<sni> alpn=<proto>" then closes;
// it proves the bytes crossed portico undecrypted. It returns its port.
func tlsBackend(t *testing.T, pki *testPKI, name string) int {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{pki.cert}, NextProtos: []string{"h2", "http/1.1"}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
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
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				st := tc.ConnectionState()
				fmt.Fprintf(tc, "backend=%s sni=%s alpn=%s\n", name, st.ServerName, st.NegotiatedProtocol)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// routerTmpl is a listener with one listener filter and one tcp_proxy chain (and cluster)
// per routed backend, optionally with a raw_buffer chain that echoes.
const routerTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: {{.Listener}}
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Port}} } }
    listener_filters:
    - name: {{.Inspector}}
      typed_config: { "@type": {{.InspectorType}} }
    filter_chains:
{{- range .Chains}}
    - name: {{.Name}}
      filter_chain_match: {{.Match}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {{.Name}}
          cluster: {{.Name}}
{{- end}}
{{- if .PlaintextEcho}}
    - name: plaintext
      filter_chain_match: { transport_protocol: raw_buffer }
      filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
{{- end}}
  clusters:
{{- range .Chains}}
  - name: {{.Name}}
    load_assignment:
      cluster_name: {{.Name}}
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{.Backend}} } } }
{{- end}}
`

// routerParams fills routerTmpl for a listener whose inspector is the given Envoy filter.
func routerParams(t *testing.T, listener, inspector, inspectorType string, chains []sniChain, plaintextEcho bool) map[string]any {
	return map[string]any{"Admin": freePort(t), "Port": freePort(t), "Listener": listener,
		"Inspector": inspector, "InspectorType": "type.googleapis.com/" + inspectorType,
		"Chains": chains, "PlaintextEcho": plaintextEcho}
}

type sniChain struct {
	Name, Match string
	Backend     int
}

// TestSNIAndALPNRouting: TLS clients with different SNI and ALPN reach different backends
// through tls_inspector chains; TLS passes through undecrypted (the backend's certificate
// is what the client verifies).
func TestSNIAndALPNRouting(t *testing.T) {
	pki := newTestPKI(t, "a.example.com", "*.b.example.com", "c.example.com")
	chains := []sniChain{
		{"a_h2", `{ server_names: ["a.example.com"], application_protocols: ["h2"] }`, tlsBackend(t, pki, "a_h2")},
		{"a_other", `{ server_names: ["a.example.com"] }`, tlsBackend(t, pki, "a_other")},
		{"b_wildcard", `{ server_names: ["*.b.example.com"] }`, tlsBackend(t, pki, "b_wildcard")},
	}
	params := routerParams(t, "tls_router", "envoy.filters.listener.tls_inspector",
		"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", chains, true)
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, routerTmpl, params), "--concurrency", "2")
	addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])

	for _, tc := range []struct {
		sni   string
		alpn  []string
		want  string
		proto string
	}{
		{"a.example.com", []string{"h2", "http/1.1"}, "a_h2", "h2"},
		{"A.Example.COM", []string{"http/1.1"}, "a_other", "http/1.1"},
		{"a.example.com", nil, "a_other", ""},
		{"x.b.example.com", []string{"h2"}, "b_wildcard", "h2"},
	} {
		t.Run(tc.sni+"/"+strings.Join(tc.alpn, ","), func(t *testing.T) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: tc.sni, NextProtos: tc.alpn, RootCAs: pki.pool})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			// The backend sees the SNI exactly as the client sent it: portico routes on the
			// lower-cased name but forwards the bytes untouched.
			want := fmt.Sprintf("backend=%s sni=%s alpn=%s\n", tc.want, tc.sni, tc.proto)
			if line != want {
				t.Errorf("got %q, want %q", line, want)
			}
		})
	}

	// No chain for this name: the socket is closed and counted.
	_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "c.example.com", RootCAs: pki.pool})
	if err == nil {
		t.Error("handshake with an unrouted SNI succeeded")
	}
	eventually(t, "no_filter_chain_match", func() bool {
		return p.stats(t)["listener.tls_router.no_filter_chain_match"] == 1
	})

	// Plaintext on the same port takes the raw_buffer chain.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "not tls at all\n")
	c.Close()

	// openssl s_client as a second, independent TLS client.
	openssl := requireTool(t, "openssl")
	cmd := exec.Command(openssl, "s_client", "-connect", addr, "-servername", "y.b.example.com",
		"-alpn", "http/1.1", "-CAfile", pki.caFile, "-verify_return_error", "-quiet", "-ign_eof")
	cmd.Stdin = strings.NewReader("")
	out, err := runWithTimeout(cmd, 10*time.Second)
	if !strings.Contains(out, "backend=b_wildcard sni=y.b.example.com alpn=http/1.1") {
		t.Errorf("openssl s_client: %v\n%s", err, out)
	}
}

// runWithTimeout runs cmd, killing it (by PID) if it outlives d.
func runWithTimeout(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s: timed out after %v", cmd.Path, d)
	}
}

const inspectorTimeoutTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: tls_wait
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Port}} } }
    listener_filters_timeout: 0.5s
    continue_on_listener_filters_timeout: {{.Continue}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
    filter_chains:
    - name: tls
      filter_chain_match: { transport_protocol: tls }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tls, cluster: tls }
    - name: plain
      filter_chain_match: { transport_protocol: raw_buffer }
      filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
  clusters:
  - name: tls
    load_assignment:
      cluster_name: tls
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{.Backend}} } } } }] }]
`

// TestTLSInspectorTimeout: a client that connects and sends nothing is closed at
// listener_filters_timeout (or passed to the raw_buffer chain with
// continue_on_listener_filters_timeout), while a TLS client on the same worker is served
// meanwhile.
func TestTLSInspectorTimeout(t *testing.T) {
	pki := newTestPKI(t, "a.example.com")
	for _, cont := range []bool{false, true} {
		t.Run(fmt.Sprintf("continue=%v", cont), func(t *testing.T) {
			params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Continue": cont,
				"Backend": tlsBackend(t, pki, "tls")}
			p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c",
				writeConfig(t, inspectorTimeoutTmpl, params), "--concurrency", "1")
			addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
			silent, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			start := time.Now()
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example.com", RootCAs: pki.pool})
			if err != nil {
				t.Fatalf("TLS client not served while another socket waits: %v", err)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil || !strings.HasPrefix(line, "backend=tls ") {
				t.Fatalf("TLS client: %q %v", line, err)
			}
			if time.Since(start) > 400*time.Millisecond {
				t.Logf("note: TLS client took %v", time.Since(start))
			}
			if cont {
				// After the timeout the socket takes the raw_buffer chain.
				eventually(t, "downstream_pre_cx_timeout", func() bool {
					return p.stats(t)["listener.tls_wait.downstream_pre_cx_timeout"] == 1
				})
				roundTrip(t, silent, "late plaintext")
			} else {
				silent.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := silent.Read(make([]byte, 1)); err == nil {
					t.Fatal("silent client not closed")
				}
				if el := time.Since(start); el < 400*time.Millisecond {
					t.Errorf("closed after %v, before the 0.5s timeout", el)
				}
			}
			eventually(t, "downstream_pre_cx_timeout", func() bool {
				return p.stats(t)["listener.tls_wait.downstream_pre_cx_timeout"] == 1
			})
		})
	}
}
