package main

import (
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
)

// httpBackend answers every request with its name and the protocol it saw; it speaks
// HTTP/1.x and h2c prior knowledge. It returns its port.
func httpBackend(t *testing.T, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "backend=%s proto=%s\n", name, r.Proto)
		})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// TestHTTPInspectorRouting: curl HTTP/1.0, HTTP/1.1 and h2c prior knowledge land on the
// chains keyed by the application protocol http_inspector sets.
func TestHTTPInspectorRouting(t *testing.T) {
	curl := requireTool(t, "curl")
	chains := []sniChain{
		{"http10", `{ application_protocols: ["http/1.0"] }`, httpBackend(t, "http10")},
		{"http11", `{ application_protocols: ["http/1.1"] }`, httpBackend(t, "http11")},
		{"h2c", `{ application_protocols: ["h2c"] }`, httpBackend(t, "h2c")},
		{"other", `{}`, echoBackend(t)},
	}
	params := routerParams(t, "http_router", "envoy.filters.listener.http_inspector",
		"envoy.extensions.filters.listener.http_inspector.v3.HttpInspector", chains, false)
	startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, routerTmpl, params))
	url := fmt.Sprintf("http://127.0.0.1:%d/", params["Port"])
	for _, tc := range []struct {
		flag, want string
	}{
		{"--http1.0", "backend=http10 proto=HTTP/1.0"},
		{"--http1.1", "backend=http11 proto=HTTP/1.1"},
		{"--http2-prior-knowledge", "backend=h2c proto=HTTP/2.0"},
	} {
		out, err := exec.Command(curl, "-sS", "--max-time", "10", tc.flag, url).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("curl %s: got %q (%v), want %q", tc.flag, out, err, tc.want)
		}
	}
	// Bytes that are not HTTP take the chain without application_protocols.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", params["Port"]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "\x00\x01binary\r\n\r\n")
}

// echoBackend is a plain TCP echo server; it returns its port.
func echoBackend(t *testing.T) int {
	return serveTCP(t, func(c net.Conn) { io.Copy(c, c) })
}

const proxyProtoTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: behind_lb
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Port}} } }
    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol }
    filter_chains:
    - name: from_client_net
      filter_chain_match:
        source_prefix_ranges: [{ address_prefix: 127.0.0.2, prefix_len: 32 }]
        direct_source_prefix_ranges: [{ address_prefix: 127.0.0.1, prefix_len: 32 }]
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: via_lb
          cluster: backend
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {{.AccessLog}}
              log_format:
                text_format_source:
                  inline_string: "client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% direct=%DOWNSTREAM_DIRECT_REMOTE_ADDRESS% chain=%FILTER_CHAIN_NAME%\n"
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{.Backend}} } } }
`

// startHAProxy runs HAProxy in TCP mode on front, sending PROXY headers (sendProxy is
// "send-proxy" or "send-proxy-v2") to portico on back.
func startHAProxy(t *testing.T, front, back int, sendProxy string) {
	t.Helper()
	bin := requireTool(t, "haproxy")
	dir := t.TempDir()
	conf := fmt.Sprintf(`global
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:%d
  default_backend be
backend be
  server portico 127.0.0.1:%d %s
`, front, back, sendProxy)
	cp := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cp, []byte(conf), 0o644)
	cmd := exec.Command(bin, "-db", "-f", cp)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	eventually(t, "haproxy to listen", func() bool {
		select {
		case <-done:
			t.Fatalf("haproxy exited:\n%s", out.String())
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", front))
		if err == nil {
			c.Close()
			return true
		}
		return false
	})
}

// TestProxyProtocolFromHAProxy: HAProxy with send-proxy and send-proxy-v2 in front of
// portico; the chain matches on the client's address from the header and the access log
// shows it, next to HAProxy's own direct address.
func TestProxyProtocolFromHAProxy(t *testing.T) {
	curl := requireTool(t, "curl")
	for _, mode := range []string{"send-proxy", "send-proxy-v2"} {
		t.Run(mode, func(t *testing.T) {
			backend := httpBackend(t, "app")
			pp := newProxyParams(t, backend)
			p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", pp.Admin), "-c", writeConfig(t, proxyProtoTmpl, pp))
			front := freePort(t)
			startHAProxy(t, front, pp.Port, mode)
			// The client connects to HAProxy from 127.0.0.2, so the header carries it.
			out, err := exec.Command(curl, "-sS", "--max-time", "10", "--interface", "127.0.0.2",
				fmt.Sprintf("http://127.0.0.1:%d/", front)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "backend=app") {
				t.Fatalf("curl through HAProxy and portico: %q, %v", out, err)
			}
			eventually(t, "the access-log line", func() bool {
				b, _ := os.ReadFile(pp.AccessLog)
				return strings.Contains(string(b), "client=127.0.0.2 direct=127.0.0.1:")
			})
			b, _ := os.ReadFile(pp.AccessLog)
			if !strings.Contains(string(b), "chain=from_client_net") {
				t.Errorf("access log: %s", b)
			}
			// A malformed header closes that connection and is counted; others go on.
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pp.Port))
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n"))
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("malformed PROXY header: connection not closed")
			}
			c.Close()
			eventually(t, "downstream_listener_filter_error", func() bool {
				return p.stats(t)["listener.behind_lb.downstream_listener_filter_error"] == 1
			})
		})
	}
}
