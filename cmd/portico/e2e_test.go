package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const echoTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: {{.Name}}
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Port}} } }
    enable_reuse_port: {{.ReusePort}}
{{- if .Exact}}
    connection_balance_config: { exact_balance: {} }
{{- end}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
`

const proxyTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Port}} } }
    filter_chains:
    - name: to_backend
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: ingress_tcp
          cluster: backend
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {{.AccessLog}}
              log_format:
                text_format_source:
                  inline_string: "%DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_HOST% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS%\n"
  clusters:
  - name: backend
    connect_timeout: {{.ConnectTimeout}}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{.Backend}} } } }
`

type proxyParams struct {
	Admin, Port, Backend int
	AccessLog            string
	ConnectTimeout       string
}

func newProxyParams(t *testing.T, backend int) proxyParams {
	return proxyParams{Admin: freePort(t), Port: freePort(t), Backend: backend,
		AccessLog: filepath.Join(t.TempDir(), "access.log"), ConnectTimeout: "1s"}
}

// TestEchoExample runs the bundled example exactly as the README does.
func TestEchoExample(t *testing.T) {
	p := startPortico(t, "127.0.0.1:9901", "-c", "../../examples/echo.yaml", "--concurrency", "2")
	c, err := net.Dial("tcp", "127.0.0.1:10000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "hello portico\n")
	got := make([]byte, len("hello portico\n"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello portico\n" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()
	if code := p.stop(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestTCPProxyNginx: curl fetches a page from nginx through portico's tcp_proxy, and the
// access log records the connection.
func TestTCPProxyNginx(t *testing.T) {
	curl := requireTool(t, "curl")
	root := t.TempDir()
	page := strings.Repeat("portico through nginx\n", 5000)
	os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644)
	backend := freePort(t)
	startNginx(t, backend, root)
	pp := newProxyParams(t, backend)
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", pp.Admin), "-c", writeConfig(t, proxyTmpl, pp), "--concurrency", "2")
	for i := 0; i < 3; i++ {
		out, err := exec.Command(curl, "-sS", "--max-time", "10", fmt.Sprintf("http://127.0.0.1:%d/index.html", pp.Port)).Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		if string(out) != page {
			t.Fatalf("curl got %d bytes, want the %d-byte page", len(out), len(page))
		}
	}
	eventually(t, "stats", func() bool {
		s := p.stats(t)
		return s["cluster.backend.upstream_cx_total"] == 3 && s["listener.ingress.downstream_cx_total"] == 3 &&
			s["tcp.ingress_tcp.downstream_cx_total"] == 3
	})
	eventually(t, "three access-log lines", func() bool {
		b, _ := os.ReadFile(pp.AccessLog)
		return strings.Count(string(b), fmt.Sprintf("127.0.0.1:%d", backend)) == 3
	})
	b, _ := os.ReadFile(pp.AccessLog)
	t.Logf("access log:\n%s", b)
}

// TestPortSharingStats: each port-sharing mode spreads connections over both workers, as the
// per-worker admin stats show.
func TestPortSharingStats(t *testing.T) {
	for _, mode := range []struct {
		name             string
		reusePort, exact bool
	}{{"reuse_port", true, false}, {"dup_fd", false, false}, {"exact_balance", false, true}} {
		t.Run(mode.name, func(t *testing.T) {
			params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Name": mode.name,
				"ReusePort": mode.reusePort, "Exact": mode.exact}
			p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c",
				writeConfig(t, echoTmpl, params), "--concurrency", "2")
			addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
			const n = 200
			for i := 0; i < n; i++ {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write([]byte("x"))
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			}
			s := p.stats(t)
			w0 := s["listener."+mode.name+".worker_0.downstream_cx_active"]
			w1 := s["listener."+mode.name+".worker_1.downstream_cx_active"]
			t.Logf("%s: worker_0=%v worker_1=%v", mode.name, w0, w1)
			if w0+w1 != n || w0 == 0 || w1 == 0 {
				t.Errorf("per-worker active = %v/%v, want both > 0 summing to %d", w0, w1, n)
			}
			if mode.exact && (w0-w1 > 1 || w1-w0 > 1) {
				t.Errorf("exact_balance: %v vs %v", w0, w1)
			}
		})
	}
}

// TestPortConflict: a second portico on the same address exits non-zero naming the
// listener and address, and never starts.
func TestPortConflict(t *testing.T) {
	params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Name": "first", "ReusePort": false}
	startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, echoTmpl, params))
	params["Admin"], params["Name"] = freePort(t), "second_listener"
	cmd := exec.Command(porticoBin, "-c", writeConfig(t, echoTmpl, params))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("second portico exited 0:\n%s", out)
	}
	want := fmt.Sprintf(`listener "second_listener": bind 127.0.0.1:%d`, params["Port"])
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "address already in use") {
		t.Errorf("output does not name the listener and address (%q):\n%s", want, out)
	}
	if strings.Contains(string(out), "portico started") {
		t.Errorf("second portico started workers:\n%s", out)
	}
}

// TestSlowReaderBoundedMemory: a client that does not read while the backend streams 1 GiB;
// portico's memory stays near its watermarks, and everything arrives once the client reads.
func TestSlowReaderBoundedMemory(t *testing.T) {
	const total = 1 << 30
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	pp := newProxyParams(t, ln.Addr().(*net.TCPAddr).Port)
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", pp.Admin), "-c", writeConfig(t, proxyTmpl, pp), "--concurrency", "1")
	base := p.rss(t)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pp.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Let the backend fill every buffer on the way while the client reads nothing.
	time.Sleep(1500 * time.Millisecond)
	stalled := p.rss(t)
	s := p.stats(t)
	t.Logf("rss: base %d KiB, stalled %d KiB; upstream rx so far %v", base>>10, stalled>>10, s["cluster.backend.upstream_cx_rx_bytes_total"])
	if grow := stalled - base; grow > 24<<20 {
		t.Errorf("portico grew %d MiB while the client stalled; want it bounded near the 1 MiB watermark", grow>>20)
	}
	if rx := s["cluster.backend.upstream_cx_rx_bytes_total"]; rx > 64<<20 {
		t.Errorf("portico read %v bytes from the backend while the client stalled", rx)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != total {
		t.Fatalf("client read %d bytes (%v), want %d", n, err, total)
	}
	t.Logf("rss after transfer: %d KiB", p.rss(t)>>10)
}

// TestHalfClose: the client shuts down its write side; the backend, which answers only
// after EOF, still gets its reply through.
func TestHalfClose(t *testing.T) {
	backend := serveTCP(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %d bytes", len(b))
	})
	pp := newProxyParams(t, backend)
	startPortico(t, fmt.Sprintf("127.0.0.1:%d", pp.Admin), "-c", writeConfig(t, proxyTmpl, pp))
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pp.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := make([]byte, 100000)
	rand.Read(msg)
	c.Write(msg)
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "got 100000 bytes" {
		t.Fatalf("reply %q, %v", reply, err)
	}
}

// TestUpstreamRefused: the downstream is closed, the counter moves, no fd is left.
func TestUpstreamRefused(t *testing.T) {
	pp := newProxyParams(t, refusedPort(t))
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", pp.Admin), "-c", writeConfig(t, proxyTmpl, pp), "--concurrency", "1")
	before := p.fds(t)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pp.Port))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("read succeeded; want the downstream closed")
			}
		}()
	}
	wg.Wait()
	eventually(t, "upstream_cx_connect_fail = 20", func() bool {
		return p.stats(t)["cluster.backend.upstream_cx_connect_fail"] == 20
	})
	eventually(t, "fds back to the baseline", func() bool { return p.fds(t) <= before })
	eventually(t, "UF in the access log", func() bool {
		b, _ := os.ReadFile(pp.AccessLog)
		return strings.Count(string(b), " UF\n") == 20
	})
}

// TestDrainOnSIGTERM: after SIGTERM the listener stops accepting, an open connection keeps
// working until it closes, then portico exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Name": "drain", "ReusePort": true}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, echoTmpl, params), "--drain-time-s", "20")
	addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// One round trip first: a connection still in the kernel's accept queue is reset when
	// the listen socket closes, as in Envoy.
	roundTrip(t, c, "accepted")
	p.cmd.Process.Signal(os.Interrupt)
	eventually(t, "listener to stop accepting", func() bool {
		c2, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		c2.Close()
		return false
	})
	fmt.Fprint(c, "still here")
	got := make([]byte, len("still here"))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("open connection stopped working while draining: %v", err)
	}
	c.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("portico did not exit after its last connection closed")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestValidate: portico validate on a good file, a typo'd field and an unsupported filter.
func TestValidate(t *testing.T) {
	good := "../../examples/tcp_proxy.yaml"
	out, err := exec.Command(porticoBin, "validate", "-c", good).CombinedOutput()
	if err != nil {
		t.Fatalf("validate %s: %v\n%s", good, err, out)
	}
	bad := map[string]struct{ yaml, want string }{
		"typo": {strings.Replace(echoTmpl, "filter_chains:", "filter_chain:", 1),
			"static_resources.listeners[0].filter_chain"},
		"unsupported_filter": {strings.Replace(echoTmpl,
			`envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }`,
			`envoy.filters.network.redis_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy, stat_prefix: r }`, 1),
			"static_resources.listeners[0].filter_chains[0].filters[0]"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			cfg := writeConfig(t, tc.yaml, map[string]any{"Admin": 1, "Port": 2, "Name": "l", "ReusePort": true})
			cmd := exec.Command(porticoBin, "validate", "-c", cfg)
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState.ExitCode() != 1 {
				t.Fatalf("exit %d (%v), want 1:\n%s", cmd.ProcessState.ExitCode(), err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output does not name %q:\n%s", tc.want, out)
			}
			t.Logf("%s", out)
		})
	}
}

// cpuTicks is utime+stime of a process, in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return ut + st
}

// TestAcceptEMFILE: out of fds, portico backs off instead of spinning, keeps serving the
// connections it has, and accepts again once fds are free.
func TestAcceptEMFILE(t *testing.T) {
	params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Name": "tight", "ReusePort": true}
	cfg := writeConfig(t, echoTmpl, params)
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", cfg, "--concurrency", "1")
	// Open the admin keep-alive connection now: later the process has no fd to spare.
	p.stats(t)
	// Lower the running process's fd limit (the Go runtime raises it at start-up).
	lim := unix.Rlimit{Cur: 64, Max: 64}
	if err := unix.Prlimit(p.cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Open more connections than portico can hold; the kernel still completes handshakes.
	for i := 0; i < 80; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	eventually(t, "downstream_cx_overflow", func() bool {
		return p.stats(t)["listener.tight.downstream_cx_overflow"] > 0
	})
	first := conns[0]
	roundTrip(t, first, "still served")
	ticks := cpuTicks(t, p.cmd.Process.Pid)
	time.Sleep(time.Second)
	if used := cpuTicks(t, p.cmd.Process.Pid) - ticks; used > 30 {
		t.Errorf("portico used %d ticks of CPU in 1s while out of fds: it is spinning", used)
	}
	// Free fds: the queued connections are accepted and served.
	for _, c := range conns[:40] {
		c.Close()
	}
	last := conns[len(conns)-1]
	roundTrip(t, last, "accepted after fds freed")
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("round trip %q: got %q, %v", msg, got, err)
	}
}

// TestIdleAfterLoad: after a burst of traffic the workers leave their busy waits (which keep
// the P and do not block in the runtime's view) and stop using CPU.
func TestIdleAfterLoad(t *testing.T) {
	params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Name": "idle", "ReusePort": true}
	cfg := writeConfig(t, echoTmpl, params)
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", cfg, "--concurrency", "2")
	addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i := 0; i < 500; i++ {
		roundTrip(t, conns[i%len(conns)], "busy")
	}
	time.Sleep(100 * time.Millisecond) // longer than a busy wait
	ticks := cpuTicks(t, p.cmd.Process.Pid)
	time.Sleep(time.Second)
	if used := cpuTicks(t, p.cmd.Process.Pid) - ticks; used > 5 {
		t.Errorf("portico used %d ticks of CPU in 1 s with 20 idle connections: it is not idling", used)
	}
	roundTrip(t, conns[0], "still served")
}

// TestValidateRejectIgnored: a field Portico accepts but ignores is a warning (validate
// exits 0 and names it); --reject-ignored makes it an error for validate and for the run
// command, which then starts nothing.
func TestValidateRejectIgnored(t *testing.T) {
	const y = `
stats_sinks:
- name: envoy.stat_sinks.statsd
  typed_config:
    "@type": type.googleapis.com/envoy.config.metrics.v3.StatsdSink
    address: { socket_address: { address: 127.0.0.1, port_value: 8125 } }
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.echo }] }]
`
	path := filepath.Join(t.TempDir(), "ignored.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(porticoBin, "validate", "-c", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "warning: stats_sinks[0]: stats sink") || !strings.Contains(string(out), ": OK") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"validate", "-c", path, "--reject-ignored"}, {"-c", path, "--reject-ignored"}} {
		cmd := exec.Command(porticoBin, args...)
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "stats_sinks[0]: stats sink") ||
			!strings.Contains(string(out), "--reject-ignored") || strings.Contains(string(out), "listener started") {
			t.Errorf("%v: exit %d (%v), want 1 naming stats_sinks[0]:\n%s", args, cmd.ProcessState.ExitCode(), err, out)
		}
	}
}
