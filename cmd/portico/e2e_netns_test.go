package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test's own hosts: two network namespaces joined by a veth pair, addressed from
// TEST-NET-1 (192.0.2.0/24). No traffic leaves them.
const (
	nsClientIP  = "192.0.2.1"  // the client host; portico's upstream connections use it
	nsAppIP     = "192.0.2.11" // the application's source address, the one iptables redirects
	nsBackendIP = "192.0.2.2"  // the backend host
)

// requireRoot: network namespaces and iptables need root, which CI has.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must run as root for the network-namespace tests")
		}
		t.Skip("needs root")
	}
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// makeHosts creates the client and backend namespaces and returns their names.
func makeHosts(t *testing.T) (client, backend string) {
	t.Helper()
	requireRoot(t)
	requireTool(t, "ip")
	requireTool(t, "iptables")
	requireTool(t, "curl")
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	client, backend = "ptc"+id, "ptb"+id
	vc, vb := "vc"+id, "vb"+id
	sh(t, "ip", "netns", "add", client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", client).Run() })
	sh(t, "ip", "netns", "add", backend)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", backend).Run() })
	sh(t, "ip", "link", "add", vc, "netns", client, "type", "veth", "peer", "name", vb, "netns", backend)
	in := func(ns string, args ...string) { sh(t, append([]string{"ip", "netns", "exec", ns}, args...)...) }
	in(client, "ip", "link", "set", "lo", "up")
	in(backend, "ip", "link", "set", "lo", "up")
	in(client, "ip", "addr", "add", nsClientIP+"/24", "dev", vc)
	in(client, "ip", "addr", "add", nsAppIP+"/24", "dev", vc)
	in(backend, "ip", "addr", "add", nsBackendIP+"/24", "dev", vb)
	in(client, "ip", "link", "set", vc, "up")
	in(backend, "ip", "link", "set", vb, "up")
	// Like Istio's sidecar capture: the application's outbound TCP goes to 15001.
	in(client, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-s", nsAppIP,
		"-j", "REDIRECT", "--to-ports", "15001")
	return client, backend
}

// startNginxIn runs nginx in a namespace, answering "backend-<port>" on each port.
func startNginxIn(t *testing.T, ns string, ports ...int) {
	t.Helper()
	var servers strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&servers, "  server { listen %s:%d; location / { return 200 \"backend-%d\\n\"; } }\n", nsBackendIP, p, p)
	}
	pidFile, done, stderr := runNginx(t, ns, servers.String())
	eventually(t, "nginx in "+ns, func() bool {
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", stderr.String())
		default:
		}
		_, err := os.Stat(pidFile)
		return err == nil
	})
}

const istioTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 15000 } }
static_resources:
  listeners:
  - name: virtualOutbound
    address: { socket_address: { address: 0.0.0.0, port_value: 15001 } }
    use_original_dst: true
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst }
    filter_chains:
    - name: virtualOutbound-blackhole
      filter_chain_match: { destination_port: 15001 }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: BlackHoleCluster, cluster: BlackHoleCluster }
    - name: PassthroughFilterChain
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: PassthroughCluster, cluster: passthrough_9090 }
  - name: 0.0.0.0_8080
    address: { socket_address: { address: 0.0.0.0, port_value: 8080 } }
    bind_to_port: false
    filter_chains:
    - name: svc_8080
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: svc_8080, cluster: svc_8080 }
  clusters:
  - name: svc_8080
    connect_timeout: 2s
    load_assignment:
      cluster_name: svc_8080
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 192.0.2.2, port_value: 8080 } } } }] }]
  - name: passthrough_9090
    connect_timeout: 2s
    load_assignment:
      cluster_name: passthrough_9090
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 192.0.2.2, port_value: 9090 } } } }] }]
  - name: BlackHoleCluster
    connect_timeout: 1s
    load_assignment:
      cluster_name: BlackHoleCluster
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9 } } } }] }]
`

// TestOriginalDstHandoff: an iptables REDIRECT sends the application's traffic for the
// backend host's port 8080 to a virtualOutbound-style listener on 15001, which hands it to
// the bind_to_port: false listener 0.0.0.0_8080 whose tcp_proxy reaches the backend; a
// destination with no listener of its own (9090) stays on virtualOutbound's chains.
func TestOriginalDstHandoff(t *testing.T) {
	client, backend := makeHosts(t)
	startNginxIn(t, backend, 8080, 9090)
	cfg := filepath.Join(t.TempDir(), "istio.yaml")
	os.WriteFile(cfg, []byte(istioTmpl), 0o644)
	p := startPorticoIn(t, client, "127.0.0.1:15000", "-c", cfg, "--concurrency", "2")

	curl := func(port int) string {
		out, err := exec.Command("ip", "netns", "exec", client, "curl", "-sS", "--max-time", "10",
			"--interface", nsAppIP, fmt.Sprintf("http://%s:%d/", nsBackendIP, port)).CombinedOutput()
		if err != nil {
			t.Fatalf("curl :%d from the app address: %v\n%s\nportico:\n%s", port, err, out, p.stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	if got := curl(8080); got != "backend-8080" {
		t.Errorf(":8080 got %q", got)
	}
	if got := curl(9090); got != "backend-9090" {
		t.Errorf(":9090 got %q", got)
	}
	s := p.stats(t)
	for k, want := range map[string]float64{
		"listener.virtualOutbound.downstream_cx_handed_off": 1, // the :8080 connection
		"listener.0.0.0.0_8080.downstream_cx_total":         1,
		"listener.virtualOutbound.downstream_cx_total":      1, // the :9090 connection
		"tcp.svc_8080.downstream_cx_total":                  1,
		"tcp.PassthroughCluster.downstream_cx_total":        1,
	} {
		if s[k] != want {
			t.Errorf("%s = %v, want %v", k, s[k], want)
		}
	}
	if t.Failed() {
		t.Logf("stats: %v", s)
	}
}
