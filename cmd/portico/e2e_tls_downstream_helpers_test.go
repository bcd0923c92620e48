package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/internal/testpki"
)

// tlsDownPKI is a throwaway CA whose certificates are written to the test's temp dir, for
// configs that name them by filename and for curl --cacert / openssl -CAfile.
type tlsDownPKI struct {
	t      *testing.T
	ca     *testpki.CA
	dir    string
	CAFile string
}

// tlsLeaf is an issued certificate, on disk and in memory.
type tlsLeaf struct {
	CertFile, KeyFile string
	*testpki.Leaf
}

func newTLSDownPKI(t *testing.T) *tlsDownPKI {
	t.Helper()
	ca, err := testpki.NewCA("portico e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &tlsDownPKI{t: t, ca: ca, dir: t.TempDir()}
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(p.CAFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// leaf issues a certificate for names (the first is the subject's common name) and writes
// it as <stem>.pem and <stem>.key.
func (p *tlsDownPKI) leaf(kt testpki.KeyType, stem string, names ...string) tlsLeaf {
	p.t.Helper()
	l, err := p.ca.Issue(kt, names...)
	if err != nil {
		p.t.Fatal(err)
	}
	f := tlsLeaf{CertFile: filepath.Join(p.dir, stem+".pem"), KeyFile: filepath.Join(p.dir, stem+".key"), Leaf: l}
	if err := os.WriteFile(f.CertFile, l.CertPEM, 0o644); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(f.KeyFile, l.KeyPEM, 0o600); err != nil {
		p.t.Fatal(err)
	}
	return f
}

// tlsChain is one filter chain that terminates TLS, as a user writes it.
type tlsChain struct {
	Name string
	// ServerNames is filter_chain_match.server_names (nil: no match on the name).
	ServerNames []string
	// Match, when set, is the whole filter_chain_match (a YAML flow map) instead.
	Match string
	// Plain makes a raw_buffer chain: no transport socket, Certs unused.
	Plain bool
	Certs []tlsLeaf
	// Inline puts the certificates in the config (inline_string) instead of naming files.
	Inline bool
	ALPN   []string
	// Params is YAML at tls_params' level; Context at the DownstreamTlsContext's level.
	Params, Context string
	// ConnectTimeout is transport_socket_connect_timeout ("" for none).
	ConnectTimeout string
	// Filters is the chain's filters: a YAML list at the filters' level.
	Filters string
}

// tlsListener is a listener of TLS filter chains.
type tlsListener struct {
	Name      string
	Port      int // 0: a free port
	Inspector bool
	Chains    []tlsChain
}

// tlsDownSetup is a bootstrap of TLS listeners and STATIC clusters.
type tlsDownSetup struct {
	Listeners   []tlsListener
	Clusters    []hcmCluster
	Concurrency int // 0: 2
}

// tlsDownProxy is a running portico for a tlsDownSetup.
type tlsDownProxy struct {
	*proc
	// Addr is each listener's 127.0.0.1:port, by name.
	Addr   map[string]string
	Config string
}

// yamlString quotes s as a YAML double-quoted scalar (JSON's syntax is a subset).
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func yamlList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = yamlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// tlsDownYAML renders s (its listeners' ports already chosen).
func tlsDownYAML(s tlsDownSetup, admin int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: %d } }\nstatic_resources:\n  listeners:\n", admin)
	for _, l := range s.Listeners {
		fmt.Fprintf(&b, "  - name: %s\n    address: { socket_address: { address: 127.0.0.1, port_value: %d } }\n", l.Name, l.Port)
		if l.Inspector {
			b.WriteString(`    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
`)
		}
		b.WriteString("    filter_chains:\n")
		for i, c := range l.Chains {
			name := c.Name
			if name == "" {
				name = fmt.Sprintf("chain%d", i)
			}
			fmt.Fprintf(&b, "    - name: %s\n", name)
			switch {
			case c.Match != "":
				fmt.Fprintf(&b, "      filter_chain_match: %s\n", c.Match)
			case len(c.ServerNames) > 0:
				fmt.Fprintf(&b, "      filter_chain_match: { server_names: %s }\n", yamlList(c.ServerNames))
			}
			if c.ConnectTimeout != "" {
				fmt.Fprintf(&b, "      transport_socket_connect_timeout: %s\n", c.ConnectTimeout)
			}
			if c.Plain {
				b.WriteString("      filters:\n")
				b.WriteString(indent(c.Filters, 6))
				continue
			}
			b.WriteString(`      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
`)
			if c.Context != "" {
				b.WriteString(indent(c.Context, 10))
			}
			b.WriteString("          common_tls_context:\n")
			if len(c.ALPN) > 0 {
				fmt.Fprintf(&b, "            alpn_protocols: %s\n", yamlList(c.ALPN))
			}
			if c.Params != "" {
				b.WriteString("            tls_params:\n")
				b.WriteString(indent(c.Params, 14))
			}
			b.WriteString("            tls_certificates:\n")
			for _, cert := range c.Certs {
				if c.Inline {
					fmt.Fprintf(&b, "            - certificate_chain: { inline_string: %s }\n              private_key: { inline_string: %s }\n",
						yamlString(string(cert.CertPEM)), yamlString(string(cert.KeyPEM)))
				} else {
					fmt.Fprintf(&b, "            - certificate_chain: { filename: %s }\n              private_key: { filename: %s }\n",
						yamlString(cert.CertFile), yamlString(cert.KeyFile))
				}
			}
			b.WriteString("      filters:\n")
			b.WriteString(indent(c.Filters, 6))
		}
	}
	if len(s.Clusters) > 0 {
		b.WriteString("  clusters:\n")
	}
	for _, c := range s.Clusters {
		fmt.Fprintf(&b, "  - name: %s\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: %s\n      endpoints:\n      - lb_endpoints:\n", c.Name, c.Name)
		for _, p := range c.Ports {
			fmt.Fprintf(&b, "        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } }\n", p)
		}
		if c.Extra != "" {
			b.WriteString(indent(c.Extra, 4))
		}
	}
	return b.String()
}

// startTLSDown writes s as a config and starts portico on it.
func startTLSDown(t *testing.T, s tlsDownSetup) *tlsDownProxy {
	t.Helper()
	admin := freePort(t)
	addrs := map[string]string{}
	for i := range s.Listeners {
		if s.Listeners[i].Port == 0 {
			s.Listeners[i].Port = freePort(t)
		}
		addrs[s.Listeners[i].Name] = fmt.Sprintf("127.0.0.1:%d", s.Listeners[i].Port)
	}
	cfg := filepath.Join(t.TempDir(), "portico.yaml")
	if err := os.WriteFile(cfg, []byte(tlsDownYAML(s, admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	n := s.Concurrency
	if n == 0 {
		n = 2
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(cfg)
			t.Logf("config:\n%s", b)
		}
	})
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", admin), "-c", cfg, "--concurrency", strconv.Itoa(n))
	return &tlsDownProxy{proc: p, Addr: addrs, Config: cfg}
}

// sslStat is listener.<listener>.ssl.<name>.
func (p *tlsDownProxy) sslStat(t *testing.T, listener, name string) float64 {
	t.Helper()
	return p.stats(t)["listener."+listener+".ssl."+name]
}

// sslStatEventually waits until listener.<listener>.ssl.<name> is want.
func (p *tlsDownProxy) sslStatEventually(t *testing.T, listener, name string, want float64) {
	t.Helper()
	var got float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got = p.sslStat(t, listener, name); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener.%s.ssl.%s = %v, want %v", listener, name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Filters for tlsChain.Filters.
const echoFilterYAML = `
- name: envoy.filters.network.echo
  typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
`

func tcpProxyFilterYAML(cluster string) string {
	return fmt.Sprintf(`
- name: envoy.filters.network.tcp_proxy
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
    stat_prefix: %[1]s
    cluster: %[1]s
`, cluster)
}

// hcmFilterYAML is an HTTP connection manager whose route_config's virtual_hosts are vhosts
// (YAML at the list's level).
func hcmFilterYAML(prefix, vhosts string) string { return hcmFilterYAMLWith(prefix, "", vhosts) }

// hcmFilterYAMLWith is hcmFilterYAML with extra YAML at the HttpConnectionManager's level.
func hcmFilterYAMLWith(prefix, extra, vhosts string) string {
	if extra != "" {
		extra = indent(extra, 4)
	}
	return fmt.Sprintf(`
- name: envoy.filters.network.http_connection_manager
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: %s
%s    http_filters:
    - name: envoy.filters.http.router
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
    route_config:
      virtual_hosts:
%s`, prefix, extra, indent(vhosts, 6))
}

// hcmDirectYAML answers every request with 200 and body.
func hcmDirectYAML(prefix, body string) string {
	return hcmFilterYAML(prefix, fmt.Sprintf(`
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    direct_response: { status: 200, body: { inline_string: %s } }
`, yamlString(body)))
}

// dialTLS is a crypto/tls client to addr, bounded to 10 s for the handshake and 30 s for
// what follows; it is closed when the test ends.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// mustDialTLS is dialTLS failing the test on an error.
func mustDialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s (SNI %q): %v", addr, cfg.ServerName, err)
	}
	return c
}

// sClient is one openssl s_client run: its output and the certificate the server sent.
type sClient struct {
	Out  string
	Leaf *x509.Certificate
	Err  error
}

// runSClient runs openssl s_client -connect addr -showcerts with args, stdin closed at
// once (it says Q... nothing and quits after the handshake), bounded to 10 s.
func runSClient(t *testing.T, addr string, args ...string) sClient {
	t.Helper()
	return runSClientIn(t, addr, "", args...)
}

// runSClientIn is runSClient writing in to the connection before closing stdin.
func runSClientIn(t *testing.T, addr, in string, args ...string) sClient {
	t.Helper()
	openssl := requireTool(t, "openssl")
	cmd := exec.Command(openssl, append([]string{"s_client", "-connect", addr, "-showcerts"}, args...)...)
	cmd.Stdin = strings.NewReader(in)
	out, err := runWithTimeout(cmd, 10*time.Second)
	r := sClient{Out: out, Err: err}
	if i := strings.Index(out, "-----BEGIN CERTIFICATE-----"); i >= 0 {
		if blk, _ := pem.Decode([]byte(out[i:])); blk != nil {
			r.Leaf, _ = x509.ParseCertificate(blk.Bytes)
		}
	}
	return r
}

// field is the value after "key:" on the first line of the output that has it, trimmed.
func (s sClient) field(key string) string {
	sc := bufio.NewScanner(strings.NewReader(s.Out))
	for sc.Scan() {
		// "ALPN protocol: h2", "    Protocol  : TLSv1.3"
		l := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(l, key); ok {
			if v, ok := strings.CutPrefix(strings.TrimLeft(v, " "), ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// certName is a certificate's common name and DNS names, for messages and checks.
func certName(c *x509.Certificate) string {
	if c == nil {
		return "<no certificate>"
	}
	return fmt.Sprintf("CN=%s SAN=%v %s", c.Subject.CommonName, c.DNSNames, c.PublicKeyAlgorithm)
}

// clientHello is the first flight of a crypto/tls client for cfg: a whole ClientHello
// record, captured without any network.
func clientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, cfg).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(b, hdr[:]); err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	rec := make([]byte, 5+n)
	copy(rec, hdr[:])
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	if hdr[0] != 22 {
		t.Fatalf("first record is of type %d, not a handshake", hdr[0])
	}
	return rec
}

// closedWithin reports whether the peer closes c (EOF or reset) within d, discarding what
// it sends before.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	ne, ok := err.(net.Error)
	return !(ok && ne.Timeout())
}

// echoTLS writes msg on c and reads it back.
func echoTLS(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("writing over TLS: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte(msg)) {
		t.Fatalf("echo %q over TLS: got %q, %v", msg, got, err)
	}
}

// runCurl runs curl with args (bounded to 30 s) and returns its standard output; stderr
// (with -v) goes to the second result.
func runCurl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	curl := requireTool(t, "curl")
	cmd := exec.Command(curl, args...)
	var o, e syncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("curl %v: timed out", args)
	}
	return o.String(), e.String(), err
}
