package main

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// hrTCPTmpl is a tcp_proxy listener in front of an echo backend, for hot restart.
const hrTCPTmpl = `
admin: {address: {socket_address: {address: 127.0.0.1, port_value: {{.Admin}}}}}
static_resources:
  listeners:
  - name: edge
    address: {socket_address: {address: 127.0.0.1, port_value: {{.Port}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: edge, cluster: echo}
  clusters:
  - name: echo
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {{.Backend}}}}}}]}]
`

// TestHotRestartTCPProxyStreams: 100 long-lived tcp_proxy streams and a churn of new
// connections through a hot restart. The streams stay in the old process and go on
// echoing through its drain (tcp_proxy connections are not asked to close), until the
// parent exits at its shutdown time; no new connection fails; new ones reach the child.
func TestHotRestartTCPProxyStreams(t *testing.T) {
	params := map[string]any{"Admin": freePort(t), "Port": freePort(t), "Backend": echoBackend(t)}
	cfg := writeConfig(t, hrTCPTmpl, params)
	admin := fmt.Sprintf("127.0.0.1:%d", params["Admin"])
	addr := fmt.Sprintf("127.0.0.1:%d", params["Port"])
	flags := func(epoch int) []string {
		return []string{"-c", cfg, "--concurrency", "2", "--restart-epoch", fmt.Sprint(epoch), "--base-id", fmt.Sprint(params["Port"]),
			"--drain-time-s", "1", "--parent-shutdown-time-s", "3", "--log-level", "warning"}
	}
	parent := startHR(t, 0, flags(0)...)
	waitEpoch(t, admin, 0, parent)

	stop := make(chan struct{})
	var mu sync.Mutex
	var streams []*stream
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := runStream(addr, "127.0.0.1", stop)
			mu.Lock()
			streams = append(streams, s)
			mu.Unlock()
		}()
	}
	eventually(t, "100 streams up", func() bool {
		_, body, err := adminGet(admin, "/stats")
		return err == nil && grepLines(body, "listener.edge.downstream_cx_active: 100") != ""
	})
	churn, waitChurn := runChurn(addr, 1000, stop)
	time.Sleep(500 * time.Millisecond)
	child := startHR(t, 1, flags(1)...)
	waitEpoch(t, admin, 1, child)
	served := time.Now()
	code := waitExit(t, parent, 15*time.Second)
	exited := time.Since(served)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	waitChurn()
	wg.Wait()

	if code != 0 {
		t.Errorf("the parent exited %d", code)
	}
	if churn.failed() != 0 || churn.ok.Load() == 0 {
		t.Errorf("new connections failed through the hot restart: %s", churn)
	}
	early := 0
	for _, s := range streams {
		if s.err == nil {
			t.Errorf("a stream outlived its parent process")
			continue
		}
		if !s.byPeer {
			t.Errorf("a stream broke other than by its process's exit: %v", s.err)
		}
		// It lived on in the parent through the drain time, to the parent's exit.
		if s.closed.Before(served.Add(time.Second)) {
			early++
		}
	}
	if early > 0 {
		t.Errorf("%d streams were closed before the parent's drain time was over", early)
	}
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "through the child\n")
	c.Close()
	t.Logf("parent exited %v after the child served; churn %s", exited.Round(time.Millisecond), churn)
}
