package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proxy is one Portico process of the fleet.
type proxy struct {
	node  string // node id, proxy-<i>
	ip    string // its own loopback address, 127.0.1.<i>: every proxy binds the same ports
	admin string // host:port of its admin
	cmd   *exec.Cmd
	pid   int
	log   string
	done  chan struct{} // closed when the process has exited (and been reaped)
	err   error         // the exit status, once done
}

func (p *proxy) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// bootstrap is the proxy's Envoy v3 bootstrap: ADS over gRPC (apiType GRPC,
// state of the world, or DELTA_GRPC) to the control plane, LDS and CDS over
// ADS, the control plane's cluster static.
func bootstrap(node, apiType, cpAddr, admin string) (string, error) {
	host, port, err := net.SplitHostPort(cpAddr)
	if err != nil {
		return "", err
	}
	ahost, aport, err := net.SplitHostPort(admin)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`node: {id: %s, cluster: fleet}
dynamic_resources:
  ads_config:
    api_type: %s
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: xds_cluster, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]}
admin: {address: {socket_address: {address: %s, port_value: %s}}}
`, node, apiType, host, port, ahost, aport), nil
}

// freeAddr returns a loopback host:port nothing listens on now (the admin's;
// the same race every e2e test accepts).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProxies starts n Portico processes pinned to cpu (taskset), each with
// its own bootstrap in dir and its log there.
func startProxies(bin string, n int, cpu, apiType, cpAddr, dir string, extra []string) ([]*proxy, error) {
	help, _ := exec.Command(bin, "--help").CombinedOutput()
	// A build with hot restart binds an abstract socket named by its base id
	// even without --restart-epoch: three processes need three ids, random so
	// that they differ from another run's on this box.
	baseID := -1
	if strings.Contains(string(help), "--base-id") {
		baseID = 7000 + rand.IntN(2000)*4
	}
	var out []*proxy
	for i := 1; i <= n; i++ {
		p := &proxy{node: fmt.Sprintf("proxy-%d", i), ip: fmt.Sprintf("127.0.1.%d", i), done: make(chan struct{})}
		var err error
		if p.admin, err = freeAddr(); err != nil {
			return out, err
		}
		cfg, err := bootstrap(p.node, apiType, cpAddr, p.admin)
		if err != nil {
			return out, err
		}
		path := filepath.Join(dir, p.node+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return out, err
		}
		p.log = filepath.Join(dir, p.node+".log")
		lf, err := os.Create(p.log)
		if err != nil {
			return out, err
		}
		args := []string{"-c", path, "--concurrency", "1"}
		if baseID >= 0 {
			args = append(args, "--base-id", strconv.Itoa(baseID+i))
		}
		args = append(args, extra...)
		if cpu != "" {
			p.cmd = exec.Command("taskset", append([]string{"-c", cpu, bin}, args...)...)
		} else {
			p.cmd = exec.Command(bin, args...)
		}
		p.cmd.Stdout, p.cmd.Stderr = lf, lf
		if err := p.cmd.Start(); err != nil {
			lf.Close()
			return out, fmt.Errorf("start %s: %w", p.node, err)
		}
		p.pid = p.cmd.Process.Pid // taskset execs the proxy: the same PID
		go func() {
			p.err = p.cmd.Wait()
			lf.Close()
			close(p.done)
		}()
		out = append(out, p)
	}
	return out, nil
}

// stopProxies stops every proxy by its PID: SIGTERM, then SIGKILL after 5 s.
func stopProxies(ps []*proxy) {
	for _, p := range ps {
		if p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// lastLines is the tail of a log file, for an error message.
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// adminStats fetches the named counters and gauges from a proxy's /stats.
func adminStats(addr string, names []string) map[string]float64 {
	c := http.Client{Timeout: 2 * time.Second}
	rsp, err := c.Get("http://" + addr + "/stats")
	if err != nil {
		return nil
	}
	defer rsp.Body.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(rsp.Body)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok || !want[k] {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[k] = f
		}
	}
	return out
}

// backends are loopback TCP servers that write their banner on accept and
// close: a listener that reaches one proves its tcp_proxy, its cluster and
// the cluster's endpoint all work, and the banner says which cluster.
type backends struct {
	lns   []net.Listener
	ports []int
	wg    sync.WaitGroup
}

func banner(k int) string { return fmt.Sprintf("xdsbench-backend-%d\n", k) }

func startBackends(n int) (*backends, error) {
	b := &backends{}
	for k := 0; k < n; k++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.stop()
			return nil, fmt.Errorf("backend listen: %w", err)
		}
		b.lns = append(b.lns, ln)
		b.ports = append(b.ports, ln.Addr().(*net.TCPAddr).Port)
		b.wg.Add(1)
		go func(k int) {
			defer b.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				_, _ = io.WriteString(c, banner(k))
				_ = c.Close()
			}
		}(k)
	}
	return b, nil
}

func (b *backends) stop() {
	for _, ln := range b.lns {
		_ = ln.Close()
	}
	b.wg.Wait()
}

// probe connects to addr and reads one line: the banner of the backend the
// listener proxied to.
func probe(ctx context.Context, addr string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return line, err
	}
	return line, nil
}

// portsFree reports whether ports base..base+n-1 can be bound on every ip
// (bound and closed at once: nothing listens there now).
func portsFree(ips []string, base, n int) bool {
	for _, ip := range ips {
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				return false
			}
			_ = ln.Close()
		}
	}
	return true
}

// pickPortBase finds a range of n ports free on every ip, in 20000-29999:
// below the ephemeral range, so no client socket takes one meanwhile.
func pickPortBase(ips []string, n int) (int, error) {
	for try := 0; try < 20; try++ {
		base := 20000 + rand.IntN((10000-n)/100)*100
		if portsFree(ips, base, n) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no range of %d free ports in 20000-29999 on %v", n, ips)
}
