package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/internal/testpki"
)

// upstreamPKI is the files of a TLS backend test: a CA, the backend's certificate, a
// client certificate for portico, and another CA that signed neither.
type upstreamPKI struct {
	ca, otherCA, srvCert, srvKey, cliCert, cliKey string
}

func newUpstreamPKI(t *testing.T) *upstreamPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA("upstream test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(testpki.ECDSA, "backend.test", "a.test", "b.test")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue(testpki.ECDSA, "portico-client")
	if err != nil {
		t.Fatal(err)
	}
	w := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return &upstreamPKI{ca: w("ca.pem", ca.PEM), otherCA: w("other.pem", other.PEM),
		srvCert: w("srv.pem", srv.CertPEM), srvKey: w("srv.key", srv.KeyPEM),
		cliCert: w("cli.pem", cli.CertPEM), cliKey: w("cli.key", cli.KeyPEM)}
}

// bigFileSize is the file nginx serves for the bulk test.
const bigFileSize = 5<<20 + 12345

// nginxHTTPS runs nginx serving HTTPS on a free port: / answers with what nginx saw of
// the TLS session (SNI, resumption, ALPN, client certificate), /big a file of
// bigFileSize bytes. It asks for a client certificate (optional) from the CA. It returns
// the port and the file's sha256.
func nginxHTTPS(t *testing.T, pki *upstreamPKI) (int, string) {
	t.Helper()
	port := freePort(t)
	root := t.TempDir()
	big := make([]byte, bigFileSize)
	for i := range big {
		big[i] = byte(i*31 + i>>13)
	}
	if err := os.WriteFile(filepath.Join(root, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	_, done, stderr := runNginx(t, "", fmt.Sprintf(`  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:up:1m;
    ssl_client_certificate %s;
    ssl_verify_client optional;
    keepalive_requests 100000;
    root %s;
    location = /big { }
    location / {
      default_type text/plain;
      return 200 "sni=$ssl_server_name reused=$ssl_session_reused alpn=$ssl_alpn_protocol proto=$ssl_protocol verify=$ssl_client_verify requests=$connection_requests client=$ssl_client_s_dn\n";
    }
  }
`, port, pki.srvCert, pki.srvKey, pki.ca, root))
	eventually(t, "nginx to listen", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return true
		}
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", stderr.String())
		default:
		}
		return false
	})
	return port, hex.EncodeToString(sum[:])
}

// upstreamTLSYAML is a cluster's transport_socket with an UpstreamTlsContext.
func upstreamTLSYAML(sni, ca, cert, key string, alpn ...string) string {
	var b strings.Builder
	b.WriteString(`transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
`)
	if sni != "" {
		fmt.Fprintf(&b, "    sni: %s\n", sni)
	}
	b.WriteString("    common_tls_context:\n")
	if len(alpn) > 0 {
		fmt.Fprintf(&b, "      alpn_protocols: [%s]\n", strings.Join(alpn, ", "))
	}
	if ca != "" {
		fmt.Fprintf(&b, "      validation_context: { trusted_ca: { filename: %s } }\n", ca)
	}
	if cert != "" {
		fmt.Fprintf(&b, "      tls_certificates: [{ certificate_chain: { filename: %s }, private_key: { filename: %s } }]\n", cert, key)
	}
	return b.String()
}

// oneRequestPerConnection makes every upstream request open a new connection.
const oneRequestPerConnection = `typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: { max_requests_per_connection: 1 }
    explicit_http_config: { http_protocol_options: {} }
`

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestE2EUpstreamTLS: HCM → router → clusters that originate TLS to nginx. With the right
// CA the request gets nginx's answer, which shows the configured SNI, the ALPN offered,
// the client certificate verified by nginx, and (one request per connection) the second
// connection resuming the first one's session; portico's cluster.<name>.ssl.* agree. With
// another CA the handshake fails: 503 with UF, ssl.fail_verify_error and
// upstream_cx_connect_fail move. curl is the client.
func TestE2EUpstreamTLS(t *testing.T) {
	curl := requireTool(t, "curl")
	pki := newUpstreamPKI(t)
	port, _ := nginxHTTPS(t, pki)
	h := startHCM(t, hcmSetup{
		Routes: `
name: local
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/wrong" }
    route: { cluster: wrong_ca, prefix_rewrite: "/" }
  - match: { prefix: "/" }
    route: { cluster: good }
`,
		Clusters: []hcmCluster{
			{Name: "good", Ports: []int{port}, Extra: upstreamTLSYAML("backend.test", pki.ca, pki.cliCert, pki.cliKey, "http/1.1") + oneRequestPerConnection},
			{Name: "wrong_ca", Ports: []int{port}, Extra: upstreamTLSYAML("backend.test", pki.otherCA, "", "")},
		},
	})
	var bodies []string
	for i := 0; i < 2; i++ {
		out, err := runCmd(curl, "-s", "--max-time", "20", "http://"+h.Addr+"/")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		bodies = append(bodies, out)
	}
	for i, b := range bodies {
		want := []string{"sni=backend.test ", "alpn=http/1.1 ", "proto=TLSv1.2 ", "verify=SUCCESS ", "CN=portico-client"}
		if i == 0 {
			want = append(want, "reused=. ")
		} else {
			want = append(want, "reused=r ")
		}
		for _, w := range want {
			if !strings.Contains(b, w) {
				t.Errorf("request %d: nginx answered %q, want %q in it", i, b, w)
			}
		}
	}
	h.statEventually(t, "cluster.good.ssl.handshake", 2)
	h.statEventually(t, "cluster.good.ssl.session_reused", 1)
	h.statEventually(t, "cluster.good.ssl.versions.TLSv1.2", 2)

	code, body := getBody(t, "http://"+h.Addr+"/wrong")
	if code != 503 {
		t.Fatalf("wrong CA: %d %q", code, body)
	}
	h.statEventually(t, "cluster.wrong_ca.ssl.fail_verify_error", 1)
	h.statEventually(t, "cluster.wrong_ca.upstream_cx_connect_fail", 1)
	// As in Envoy, a refused certificate is not also a connection_error.
	h.statEventually(t, "cluster.wrong_ca.ssl.connection_error", 0)
	h.expectLog(t, 3, fmt.Sprintf("503 UF 127.0.0.1:%d /", port))
}

// TestE2EUpstreamTLSNoValidation: without a validation_context nothing is verified (a
// backend whose CA portico does not know is accepted), and without sni none is sent.
func TestE2EUpstreamTLSNoValidation(t *testing.T) {
	pki := newUpstreamPKI(t)
	port, _ := nginxHTTPS(t, pki)
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "open", Ports: []int{port}, Extra: upstreamTLSYAML("", "", "", "")}}})
	code, body := getBody(t, "http://"+h.Addr+"/")
	if code != 200 || !strings.Contains(body, "sni= ") || !strings.Contains(body, "verify=NONE ") {
		t.Fatalf("%d %q", code, body)
	}
	h.statEventually(t, "cluster.open.ssl.handshake", 1)
}

// TestE2EUpstreamTLSAutoSNI: with auto_sni and auto_san_validation the SNI of each
// upstream connection is the request's host, connections are pooled per host (a keep-alive
// connection made for a.test serves a.test again, never b.test), and a host the backend's
// certificate does not name fails verification: 503, ssl.fail_verify_san.
func TestE2EUpstreamTLSAutoSNI(t *testing.T) {
	curl := requireTool(t, "curl")
	pki := newUpstreamPKI(t)
	port, _ := nginxHTTPS(t, pki)
	h := startHCM(t, hcmSetup{Concurrency: 1, Clusters: []hcmCluster{{Name: "auto", Ports: []int{port},
		Extra: upstreamTLSYAML("", pki.ca, "", "") + `typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    upstream_http_protocol_options: { auto_sni: true, auto_san_validation: true }
    explicit_http_config: { http_protocol_options: {} }
`}}})
	for i, c := range []struct{ host, want string }{
		{"a.test", "sni=a.test "}, {"b.test:8080", "sni=b.test "}, {"a.test", "sni=a.test "},
	} {
		out, err := runCmd(curl, "-s", "--max-time", "20", "-H", "Host: "+c.host, "http://"+h.Addr+"/")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		if !strings.Contains(out, c.want) {
			t.Fatalf("request %d (%s): nginx answered %q", i, c.host, out)
		}
		if i == 2 && !strings.Contains(out, "requests=2 ") {
			t.Fatalf("the second a.test request did not reuse a.test's connection: %q", out)
		}
	}
	code, body := getBody(t, "http://"+h.Addr+"/?c") // Host: 127.0.0.1:port, not in the certificate
	if code != 503 {
		t.Fatalf("host not in the certificate: %d %q", code, body)
	}
	h.statEventually(t, "cluster.auto.ssl.fail_verify_san", 1)
	h.statEventually(t, "cluster.auto.ssl.handshake", 2)
}

// TestE2EUpstreamTLSTCPProxy: tcp_proxy from a plain listener to nginx over TLS: an HTTP
// request written in plaintext by the client is encrypted by portico, and the 5 MB file
// comes back intact (sha256), several times.
func TestE2EUpstreamTLSTCPProxy(t *testing.T) {
	pki := newUpstreamPKI(t)
	port, sum := nginxHTTPS(t, pki)
	admin, listen := freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "portico.yaml")
	yaml := fmt.Sprintf(`admin:
  address: { socket_address: { address: 127.0.0.1, port_value: %d } }
static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: %d } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tls_up
          cluster: nginx
  clusters:
  - name: nginx
    connect_timeout: 2s
    load_assignment:
      cluster_name: nginx
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } }
%s`, admin, listen, port, indent(upstreamTLSYAML("backend.test", pki.ca, "", ""), 4))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", admin), "-c", cfg, "--concurrency", "2")
	const rounds = 3
	for i := 0; i < rounds; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", listen))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: backend.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			t.Fatal(err)
		}
		hs := sha256.New()
		n, err := io.Copy(hs, resp.Body)
		resp.Body.Close()
		c.Close()
		if err != nil || n != bigFileSize || resp.StatusCode != 200 {
			t.Fatalf("round %d: status %d, %d bytes: %v", i, resp.StatusCode, n, err)
		}
		if got := hex.EncodeToString(hs.Sum(nil)); got != sum {
			t.Fatalf("round %d: sha256 %s, want %s", i, got, sum)
		}
	}
	eventually(t, "ssl.handshake", func() bool { return p.stats(t)["cluster.nginx.ssl.handshake"] == rounds })
	if v := p.stats(t)["cluster.nginx.ssl.connection_error"]; v != 0 {
		t.Errorf("ssl.connection_error = %v", v)
	}
}

// runCmd runs a command and returns its standard output.
func runCmd(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).Output()
	return string(out), err
}
