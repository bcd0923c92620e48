package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stdoutLogTmpl proxies to a backend and logs each connection to standard output, in lines
// of about 16 KiB so that a pipe and the log's buffers fill after a few hundred connections.
const stdoutLogTmpl = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{.Admin}} } }
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 127.0.0.1, port_value: {{.Port}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: stdout_tcp
          cluster: backend
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "%DOWNSTREAM_REMOTE_ADDRESS% %BYTES_SENT% {{.Pad}}\n"
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{.Backend}} } } }
`

const logLineBytes = 16 << 10

// stdoutLogPortico starts portico with that config and a pipe as its standard output; the
// test holds the read end (and never reads it unless it says so). It returns the proxy
// address and the read end.
func stdoutLogPortico(t *testing.T, extra ...string) (*proc, string, *os.File) {
	t.Helper()
	backend := serveTCP(t, func(c net.Conn) { io.WriteString(c, "ok") })
	params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Backend": backend,
		"Pad": strings.Repeat("x", logLineBytes)}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	args := append([]string{"-c", writeConfig(t, stdoutLogTmpl, params), "--concurrency", "2"}, extra...)
	p := startPorticoWith(t, "", fmt.Sprintf("127.0.0.1:%d", params["Admin"]),
		func(c *exec.Cmd) { c.Stdout = w }, args...)
	w.Close() // portico holds the only write end now
	return p, fmt.Sprintf("127.0.0.1:%d", params["Port"]), r
}

// proxyConns opens n connections through the proxy, 8 at a time, each reading the
// backend's "ok" to the end.
func proxyConns(t *testing.T, addr string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b, err := io.ReadAll(c)
				c.Close()
				if err != nil || string(b) != "ok" {
					t.Errorf("through the proxy: %q, %v", b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// fillStuckStdout pushes connections until the pipe behind portico's stdout is full and
// its access log holds more than its bound, and checks the stats say so.
func fillStuckStdout(t *testing.T, p *proc, addr string, r *os.File) {
	t.Helper()
	pipeSize, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The pipe, the buffer the flusher is stuck writing and both workers' buffers (4 MiB
	// in all) hold less than this.
	n := (pipeSize+8<<20)/logLineBytes + 50
	proxyConns(t, addr, n)
	eventually(t, "every connection closed", func() bool {
		return p.stats(t)["listener.ingress.downstream_cx_destroy"] == float64(n)
	})
	eventually(t, "the pipe to be full", func() bool {
		queued, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ) // FIONREAD
		if err != nil {
			t.Fatal(err)
		}
		return queued == pipeSize
	})
	const scope = "filesystem./dev/stdout."
	eventually(t, "every line buffered or dropped", func() bool {
		s := p.stats(t)
		return s[scope+"write_buffered"]+s[scope+"dropped_lines"] == float64(n)
	})
	s := p.stats(t)
	if s[scope+"dropped_lines"] == 0 || s[scope+"write_total_buffered"] == 0 ||
		s[scope+"worker_0.write_buffered"]+s[scope+"worker_1.write_buffered"] != s[scope+"write_buffered"] {
		t.Errorf("stats with a stuck stdout after %d connections: %v", n, filesystemStats(s))
	}
}

func filesystemStats(s map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s {
		if strings.HasPrefix(k, "filesystem.") {
			out[k] = v
		}
	}
	return out
}

// TestAccessLogStuckStdoutShutdown: an stdout access log whose pipe nobody reads does not
// hold up shutdown: portico exits 0 within the drain time and a few seconds, and the
// lines it could not take are counted (filesystem./dev/stdout.dropped_lines).
func TestAccessLogStuckStdoutShutdown(t *testing.T) {
	p, addr, r := stdoutLogPortico(t, "--drain-time-s", "2")
	fillStuckStdout(t, p, addr, r)
	if code := p.stop(t, 2*time.Second+15*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.stderr.String(), "bytes not written when closing") {
		t.Errorf("no warning about the unwritten log lines:\n%s", p.stderr.String())
	}
}

// TestAccessLogStuckStdoutSecondSignal: with a connection still open (the drain would
// last a minute) and stdout stuck, a second SIGTERM makes portico exit at once.
func TestAccessLogStuckStdoutSecondSignal(t *testing.T) {
	p, addr, r := stdoutLogPortico(t, "--drain-time-s", "60")
	fillStuckStdout(t, p, addr, r)
	hold, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	eventually(t, "the held connection", func() bool {
		return p.stats(t)["listener.ingress.downstream_cx_active"] == 1
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	eventually(t, "draining", func() bool { return strings.Contains(p.stderr.String(), `msg=draining`) })
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("portico did not exit within 20 s of a second SIGTERM (drain time 60 s)")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.stderr.String(), "second signal; closing now") {
		t.Errorf("stderr:\n%s", p.stderr.String())
	}
}

// TestAccessLogStdoutEPIPE: standard output is a pipe whose reader is gone. Writing the
// access log fails with EPIPE, which is counted (write_failed); it used to kill portico
// with SIGPIPE.
func TestAccessLogStdoutEPIPE(t *testing.T) {
	p, addr, r := stdoutLogPortico(t)
	r.Close()
	const failed = "filesystem./dev/stdout.write_failed"
	for i := 0; i < 3; i++ {
		proxyConns(t, addr, 5)
		eventually(t, failed, func() bool {
			select {
			case <-p.done:
				t.Fatalf("portico exited: %v", p.err)
			default:
			}
			return p.stats(t)[failed] > float64(i)
		})
	}
	s := p.stats(t)
	if s["filesystem./dev/stdout.write_buffered"] != 15 || s["filesystem./dev/stdout.write_completed"] != 0 {
		t.Errorf("stats: %v", filesystemStats(s))
	}
	if code := p.stop(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
