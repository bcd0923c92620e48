package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"golang.org/x/sys/unix"
)

// portico is the binary under test, built once by TestMain.
var porticoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portico-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	porticoBin = filepath.Join(dir, "portico")
	out, err := exec.Command("go", "build", "-o", porticoBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building portico: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool finds an external program. Outside CI a missing tool skips the test; in CI
// (CI=true) it fails it, so a broken install step cannot pass silently.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI but not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// freePort asks the kernel for an unused loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveTCP runs a loopback TCP server that calls handle for each connection (then closes
// it) until the test ends; it returns the port.
func serveTCP(t *testing.T, handle func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
				handle(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// refusedPort is a loopback port that refuses connections for the whole test: a socket is
// bound there without listening, so no other process can take it meanwhile.
func refusedPort(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*unix.SockaddrInet4).Port
}

// writeConfig renders a config template with the given values into the test's temp dir.
func writeConfig(t *testing.T, tmpl string, data any) string {
	t.Helper()
	var b bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "portico.yaml")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer collects a process's output safely while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running portico.
type proc struct {
	cmd    *exec.Cmd
	admin  string
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
	// netns, when set, is the network namespace portico runs in; admin requests then go
	// through curl inside it.
	netns string
}

// get fetches an admin path, returning the status code and body.
func (p *proc) get(path string) (int, string, error) {
	if p.netns != "" {
		out, err := exec.Command("ip", "netns", "exec", p.netns, "curl", "-s", "--max-time", "5",
			"-o", "-", "-w", "\n%{http_code}", "http://"+p.admin+path).Output()
		if err != nil {
			return 0, "", err
		}
		// The status code is on the last line, after the body.
		i := strings.LastIndexByte(string(out), '\n')
		n, _ := strconv.Atoi(string(out[i+1:]))
		return n, string(out[:i]), nil
	}
	resp, err := http.Get("http://" + p.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

// startPortico runs the binary and waits until its admin /ready says LIVE.
func startPortico(t *testing.T, admin string, args ...string) *proc {
	t.Helper()
	return startPorticoIn(t, "", admin, args...)
}

// startPorticoIn runs portico inside network namespace ns ("" for the test's own).
func startPorticoIn(t *testing.T, ns, admin string, args ...string) *proc {
	t.Helper()
	return startPorticoWith(t, ns, admin, nil, args...)
}

// startPorticoWith is startPorticoIn with a hook that may change the command before it
// starts (its standard output, say).
func startPorticoWith(t *testing.T, ns, admin string, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	p := &proc{admin: admin, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{}), netns: ns}
	if ns != "" {
		p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, porticoBin}, args...)...)
	} else {
		p.cmd = exec.Command(porticoBin, args...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if setup != nil {
		setup(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("portico stderr:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("portico exited early: %v\nstderr:\n%s", p.err, p.stderr.String())
		default:
		}
		if code, _, err := p.get("/ready"); err == nil && code == 200 {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("portico not ready after 15s\nstderr:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit code.
func (p *proc) stop(t *testing.T, timeout time.Duration) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("portico did not exit within %v of SIGTERM", timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

// stats reads /stats (Envoy's text form) into a map.
func (p *proc) stats(t *testing.T) map[string]float64 {
	t.Helper()
	_, body, err := p.get("/stats")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err == nil {
			m[k] = f
		}
	}
	return m
}

// rss is the process's resident set in bytes.
func (p *proc) rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// fds counts the process's open descriptors.
func (p *proc) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(10*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitUntil polls cond for up to d, reporting whether it came true.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// nginxUser keeps nginx's workers as root when the test runs as root, so they can read
// the test's private temp directories.
func nginxUser() string {
	if os.Geteuid() == 0 {
		return "user root;"
	}
	return ""
}

// runNginx starts nginx with the given server blocks (inside network namespace netns when
// it is not empty), stops it by PID when the test ends, and returns its pid-file path and
// a channel closed when it exits.
func runNginx(t *testing.T, netns, servers string) (pidFile string, done <-chan struct{}, stderr *syncBuffer) {
	t.Helper()
	bin := requireTool(t, "nginx")
	dir := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
%[3]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s;
  proxy_temp_path %[1]s;
  fastcgi_temp_path %[1]s;
  uwsgi_temp_path %[1]s;
  scgi_temp_path %[1]s;
%[2]s}
`, dir, servers, nginxUser())
	cp := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cp, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "-c", cp, "-e", filepath.Join(dir, "error.log")}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return filepath.Join(dir, "nginx.pid"), exited, stderr
}

// startNginx serves root on 127.0.0.1:port.
func startNginx(t *testing.T, port int, root string) {
	t.Helper()
	_, done, stderr := runNginx(t, "", fmt.Sprintf("  server { listen 127.0.0.1:%d; root %s; }\n", port, root))
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
}
