package main

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMServesQueued: connections the kernel queued on a listen socket before a
// SIGTERM are accepted and served, not reset by the socket's close. The process is
// stopped (SIGSTOP) while 500 clients connect and send a line, so all 500 wait in the
// accept queue; then SIGTERM and SIGCONT: every client gets its echo. Both port-sharing
// modes, two workers.
func TestSIGTERMServesQueued(t *testing.T) {
	for _, reusePort := range []bool{true, false} {
		t.Run(fmt.Sprintf("reuse_port=%v", reusePort), func(t *testing.T) {
			params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Name": "queued", "ReusePort": reusePort}
			p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, echoTmpl, params),
				"--concurrency", "2", "--drain-time-s", "3")
			addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
			if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			cont := func() { p.cmd.Process.Signal(syscall.SIGCONT) }
			defer cont()
			const n = 500
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for i := 0; i < n; i++ {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatalf("connection %d while portico is stopped: %v", i, err)
				}
				if _, err := fmt.Fprintf(c, "queued %d\n", i); err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			cont()
			var wg sync.WaitGroup
			var mu sync.Mutex
			served, failed := 0, []string{}
			for i, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					line, err := bufio.NewReader(c).ReadString('\n')
					mu.Lock()
					defer mu.Unlock()
					if err == nil && line == fmt.Sprintf("queued %d\n", i) {
						served++
					} else if len(failed) < 5 {
						failed = append(failed, fmt.Sprintf("%d: %q %v", i, line, err))
					}
				}()
			}
			wg.Wait()
			if served != n {
				t.Fatalf("%d of %d queued connections served; first failures: %v", served, n, failed)
			}
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				t.Fatal("portico did not exit after the drain")
			}
		})
	}
}
