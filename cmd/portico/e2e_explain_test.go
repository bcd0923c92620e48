package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/internal/testpki"
)

const explainConfig = `
static_resources:
  listeners:
  - name: virtualOutbound
    address: { socket_address: { address: 0.0.0.0, port_value: 15001 } }
    use_original_dst: true
    filter_chains:
    - name: blackhole
      filter_chain_match: { destination_port: 15001 }
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
    - name: passthrough
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
  - name: 0.0.0.0_8443
    address: { socket_address: { address: 0.0.0.0, port_value: 8443 } }
    bind_to_port: false
    filter_chains:
    - name: api_h2
      filter_chain_match: { server_names: [api.example.com], transport_protocol: tls, application_protocols: [h2] }
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
    - name: wildcard
      filter_chain_match: { server_names: ["*.example.com"], transport_protocol: tls }
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
    - name: internal_src
      filter_chain_match: { source_prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }] }
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
  - name: 10.1.2.3_8443
    address: { socket_address: { address: 10.1.2.3, port_value: 8443 } }
    bind_to_port: false
    default_filter_chain:
      filters: [{ name: envoy.filters.network.echo, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo } }]
`

// TestExplain: portico explain prints the listener after hand-off and the chosen chain,
// exits 3 when the socket would be closed, and 1 on a bad config.
func TestExplain(t *testing.T) {
	cfg := writeConfig(t, explainConfig, nil)
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--dst", "192.0.2.7:8443", "--sni", "api.example.com", "--transport", "tls", "--alpn", "http/1.1,h2"},
			"listener=0.0.0.0_8443 chain=api_h2", 0},
		{[]string{"--dst", "192.0.2.7:8443", "--sni", "API.example.com", "--transport", "tls", "--alpn", "http/1.1"},
			"listener=0.0.0.0_8443 chain=none", 3}, // the SNI branch holds only h2: no backtracking
		{[]string{"--dst", "192.0.2.7:8443", "--sni", "www.example.com", "--transport", "tls"},
			"listener=0.0.0.0_8443 chain=wildcard", 0},
		{[]string{"--dst", "192.0.2.7:8443", "--src", "10.9.8.7:40000"},
			"listener=0.0.0.0_8443 chain=internal_src", 0},
		{[]string{"--dst", "192.0.2.7:8443"}, "listener=0.0.0.0_8443 chain=none", 3},
		{[]string{"--dst", "10.1.2.3:8443"}, "listener=10.1.2.3_8443 chain=default_filter_chain", 0},
		{[]string{"--dst", "192.0.2.7:9999"}, "listener=virtualOutbound chain=passthrough", 0},
		{[]string{"--dst", "127.0.0.1:15001"}, "listener=virtualOutbound chain=blackhole", 0},
	} {
		if tc.code == 0 {
			// Every chain here is an echo: its bytes go through userspace.
			tc.want += "\nbyte_path=userspace (another network filter: envoy.filters.network.echo)"
		}
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(porticoBin, append([]string{"explain", "-c", cfg, "--listener", "virtualOutbound"}, tc.args...)...)
			out, _ := cmd.CombinedOutput()
			if got := strings.TrimSpace(string(out)); got != tc.want || cmd.ProcessState.ExitCode() != tc.code {
				t.Errorf("got %q exit %d, want %q exit %d", got, cmd.ProcessState.ExitCode(), tc.want, tc.code)
			}
		})
	}
	bad := writeConfig(t, strings.Replace(explainConfig, "bind_to_port", "bind_to_prot", 1), nil)
	cmd := exec.Command(porticoBin, "explain", "-c", bad, "--listener", "virtualOutbound", "--dst", "1.2.3.4:80")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "static_resources.listeners[1].bind_to_prot") {
		t.Errorf("bad config: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

const explainHTTPConfig = `
static_resources:
  listeners:
  - name: web
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    bind_to_port: false
    filter_chains:
    - name: http
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config:
            virtual_hosts:
            - name: api
              domains: ["api.example.com"]
              routes:
              - name: v2
                match: { prefix: "/v2/", headers: [{ name: x-canary, string_match: { exact: "1" } }] }
                route: { cluster: canary, prefix_rewrite: "/" }
              - name: v1
                match: { prefix: "/v1/" }
                route: { weighted_clusters: { clusters: [{ name: stable, weight: 90 }, { name: canary, weight: 10 }] }, timeout: 3s }
            - name: www
              domains: ["*.example.com"]
              routes:
              - name: to_https
                match: { prefix: "/" }
                redirect: { https_redirect: true }
            - name: rest
              domains: ["*"]
              routes:
              - name: ping
                match: { path: "/ping" }
                direct_response: { status: 200, body: { inline_string: "pong" } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: stable
    load_assignment: { cluster_name: stable, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } }] }] }
  - name: canary
    load_assignment: { cluster_name: canary, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 2 } } } }] }] }
`

// TestExplainHTTP: with --host, explain follows the request through the chain's
// http_connection_manager: virtual host, route, and action.
func TestExplainHTTP(t *testing.T) {
	cfg := writeConfig(t, explainHTTPConfig, nil)
	for _, tc := range []struct {
		args []string
		want []string
		code int
	}{
		{[]string{"--host", "api.example.com", "--path", "/v2/users?id=1", "--header", "X-Canary: 1"},
			[]string{"virtual_host=api route=v2", "cluster=canary", "path_rewrite=/users?id=1"}, 0},
		{[]string{"--host", "api.example.com", "--path", "/v2/users"},
			[]string{"virtual_host=api route=none status=404 flags=NR"}, 3},
		{[]string{"--host", "api.example.com", "--path", "/v1/x"},
			[]string{"route=v1", "weighted_clusters=stable:90,canary:10", "timeout=3s"}, 0},
		{[]string{"--host", "www.example.com", "--path", "/a?b"},
			[]string{"virtual_host=www route=to_https", "redirect status=301 location=https://www.example.com/a?b"}, 0},
		{[]string{"--host", "other", "--path", "/ping", "--method", "HEAD"},
			[]string{"virtual_host=rest route=ping", "direct_response status=200 body_bytes=4"}, 0},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(porticoBin, append([]string{"explain", "-c", cfg, "--listener", "web", "--dst", "127.0.0.1:1"}, tc.args...)...)
			out, _ := cmd.CombinedOutput()
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("missing %q in:\n%s", w, out)
				}
			}
			if !strings.HasPrefix(string(out), "listener=web chain=http\n") || cmd.ProcessState.ExitCode() != tc.code {
				t.Errorf("exit %d, want %d:\n%s", cmd.ProcessState.ExitCode(), tc.code, out)
			}
		})
	}
}

// TestDirectResponseFromFile: a direct_response body may come from a file (read once at
// load, as Envoy does); a missing file is an error naming the field.
func TestDirectResponseFromFile(t *testing.T) {
	dir := t.TempDir()
	body := filepath.Join(dir, "body.txt")
	if err := os.WriteFile(body, []byte("served from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(explainHTTPConfig, `direct_response: { status: 200, body: { inline_string: "pong" } }`,
		`direct_response: { status: 200, body: { filename: "`+body+`" } }`, 1)
	path := writeConfig(t, cfg, nil)
	out, _ := exec.Command(porticoBin, "explain", "-c", path, "--listener", "web", "--dst", "127.0.0.1:1", "--host", "x", "--path", "/ping").CombinedOutput()
	if !strings.Contains(string(out), "direct_response status=200 body_bytes=19") {
		t.Fatalf("explain:\n%s", out)
	}
	os.Remove(body)
	cmd := exec.Command(porticoBin, "validate", "-c", path)
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "direct_response.body.filename") || !strings.Contains(string(out), "no such file") {
		t.Fatalf("missing file: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

// TestExplainTLS: explain names the certificate the chosen chain would serve for the SNI,
// on the bundled HTTPS example (its certificates made by the script the README runs).
func TestExplainTLS(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "examples"), 0o755); err != nil {
		t.Fatal(err)
	}
	gen := exec.Command("sh", filepath.Join(repoRoot(t), "scripts", "example-certs.sh"))
	gen.Dir = dir
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("example-certs.sh: %v\n%s", err, out)
	}
	for _, tc := range []struct{ sni, want string }{
		{"www.example.com", "chain=filter_chains[0]\ntransport_socket=envoy.transport_sockets.tls certificate=www.example.com key=ECDSA"},
		{"api.example.org", "chain=filter_chains[1]\ntransport_socket=envoy.transport_sockets.tls certificate=*.example.org key=RSA"},
	} {
		cmd := exec.Command(porticoBin, "explain", "-c", filepath.Join(repoRoot(t), "examples", "https.yaml"),
			"--listener", "https", "--dst", "127.0.0.1:10443", "--transport", "tls", "--sni", tc.sni)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("--sni %s: %v\n%s\nwant %q", tc.sni, err, out, tc.want)
		}
	}
}

// repoRoot is the repository's root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// explainBytePathConfig has one chain per reason a tcp_proxy connection would or would not
// be forwarded by the kernel (sockmap), picked by destination port.
const explainBytePathConfig = `
static_resources:
  listeners:
  - name: l4
    address: { socket_address: { address: 0.0.0.0, port_value: 1000 } }
    bind_to_port: false
    filter_chains:
    - name: plain
      filter_chain_match: { destination_port: 1001 }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: plain
          cluster: plain
          # An access log needs nothing from the bytes: the kernel path stays open.
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config: { "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog }
    - name: tls_down
      filter_chain_match: { destination_port: 1002 }
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates: [{ certificate_chain: { filename: {{.Cert}} }, private_key: { filename: {{.Key}} } }]
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tls_down, cluster: plain }
    - name: tls_up
      filter_chain_match: { destination_port: 1003 }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tls_up
          weighted_clusters: { clusters: [{ name: plain, weight: 1 }, { name: secure, weight: 1 }] }
    - name: http
      filter_chain_match: { destination_port: 1004 }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config: { virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: plain } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
  - name: plain
    load_assignment: { cluster_name: plain, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } }] }] }
  - name: secure
    load_assignment: { cluster_name: secure, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 2 } } } }] }] }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: backend.example.com
        common_tls_context: { validation_context: { trusted_ca: { filename: {{.CA}} } } }
`

// TestExplainBytePath: explain says which byte path a connection on the chosen chain
// takes: the kernel's for a lone tcp_proxy with no transport socket on either side (with
// the conditions under which the running proxy has it), else userspace and why.
func TestExplainBytePath(t *testing.T) {
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "server", "www.example.com")
	cfg := writeConfig(t, explainBytePathConfig, map[string]string{"Cert": leaf.CertFile, "Key": leaf.KeyFile, "CA": pki.CAFile})
	for _, tc := range []struct{ dst, chain, want string }{
		{"192.0.2.1:1001", "plain", "byte_path=userspace; kernel (sockmap) with --enable-sockmap as root with BPF (experimental)"},
		{"192.0.2.1:1002", "tls_down", "byte_path=userspace (transport socket: tls)"},
		{"192.0.2.1:1003", "tls_up", "byte_path=userspace (upstream transport socket: tls (cluster secure))"},
		{"192.0.2.1:1004", "http", "byte_path=userspace (another network filter: envoy.filters.network.http_connection_manager)"},
	} {
		t.Run(tc.chain, func(t *testing.T) {
			args := []string{"explain", "-c", cfg, "--listener", "l4", "--dst", tc.dst}
			if tc.chain == "tls_down" {
				args = append(args, "--transport", "tls", "--sni", "www.example.com")
			}
			cmd := exec.Command(porticoBin, args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("explain: %v\n%s", err, out)
			}
			if !strings.HasPrefix(string(out), "listener=l4 chain="+tc.chain+"\n") {
				t.Errorf("want chain %s:\n%s", tc.chain, out)
			}
			if !strings.Contains(string(out), "\n"+tc.want+"\n") {
				t.Errorf("want the line %q in:\n%s", tc.want, out)
			}
		})
	}
}
