package main

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPIgnored: like Envoy without hot restart, portico logs SIGHUP and keeps
// serving; it used to die of it (exit 129).
func TestSIGHUPIgnored(t *testing.T) {
	params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Name": "hup", "ReusePort": true}
	p := startPortico(t, fmt.Sprintf("127.0.0.1:%d", params["Admin"]), "-c", writeConfig(t, echoTmpl, params), "--concurrency", "1")
	addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
	for i := 0; i < 2; i++ {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		// The log line proves the signal was handled, so what follows is checked after it.
		eventually(t, "the SIGHUP log line", func() bool {
			select {
			case <-p.done:
				t.Fatalf("portico exited on SIGHUP: %v", p.err)
			default:
			}
			return strings.Count(p.stderr.String(), "SIGHUP received; ignoring") == i+1
		})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("after SIGHUP: %v", err)
		}
		roundTrip(t, c, "still echoing")
		c.Close()
		code, body, err := p.get("/ready")
		if err != nil || code != 200 || strings.TrimSpace(body) != "LIVE" {
			t.Fatalf("/ready after SIGHUP: %d %q %v", code, body, err)
		}
	}
	if code := p.stop(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}
