package engine_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/echo"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

var loopback0 = netip.MustParseAddrPort("127.0.0.1:0")

func echoChain() engine.FilterChainManager {
	return engine.SingleChain{Chain: &engine.FilterChain{Name: "echo", Filters: []engine.NetworkFilterFactory{echo.Factory{}}}}
}

// startServer runs a server with the given listeners and stops it when the test ends.
func startServer(t *testing.T, workers int, clusters []engine.ClusterConfig, mk func(s *engine.Server) []engine.ListenerConfig) (*engine.Server, []*engine.Listener) {
	t.Helper()
	return serverWith(t, engine.ServerOptions{Concurrency: workers, KernelPairs: kernelPairs}, clusters, mk)
}

func echoListener(name string, reusePort, exact bool) engine.ListenerConfig {
	return engine.ListenerConfig{Name: name, Address: loopback0, NoReusePort: !reusePort,
		ExactBalance: exact, FilterChains: echoChain()}
}

// TestEchoManyClients: hundreds of concurrent clients through 2 workers, every byte back
// in order.
func TestEchoManyClients(t *testing.T) {
	_, ls := startServer(t, 2, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{echoListener("echo", true, false)}
	})
	addr := ls[0].Address().String()
	const clients = 300
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 30*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			msg := make([]byte, 32<<10+i)
			rand.Read(msg)
			go func() {
				// Write in uneven chunks while the reader drains, like a real client.
				for off := 0; off < len(msg); off += 1000 {
					c.Write(msg[off:min(off+1000, len(msg))])
				}
			}()
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("client %d: echoed bytes differ", i)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var total uint64
	for w := 0; w < 2; w++ {
		n := ls[0].Stats(w).DownstreamCxTotal.Value()
		t.Logf("worker %d: %d connections", w, n)
		total += n
	}
	if total != clients {
		t.Errorf("downstream_cx_total = %d, want %d", total, clients)
	}
}

// holdConns opens n connections, proves each works with one echo, and keeps them open
// until the test ends.
func holdConns(t *testing.T, addr string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPortSharingModes: reuse_port, dup-fd and exact balance all reach every worker.
func TestPortSharingModes(t *testing.T) {
	for _, tc := range []struct {
		name             string
		reusePort, exact bool
	}{
		{"reuse_port", true, false},
		{"dup_fd", false, false},
		{"exact_balance", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const workers, conns = 2, 200
			_, ls := startServer(t, workers, nil, func(*engine.Server) []engine.ListenerConfig {
				return []engine.ListenerConfig{echoListener(tc.name, tc.reusePort, tc.exact)}
			})
			holdConns(t, ls[0].Address().String(), conns)
			var per [workers]int64
			for w := range per {
				per[w] = ls[0].Stats(w).DownstreamCxActive.Value()
				if per[w] == 0 {
					t.Errorf("worker %d got no connection (%v)", w, per)
				}
			}
			if tc.exact && (per[0]-per[1] > 1 || per[1]-per[0] > 1) {
				t.Errorf("exact balance spread %v, want equal within 1", per)
			}
			t.Logf("active per worker: %v", per)
		})
	}
}

func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitFor polls cond for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func proxyListener(s *engine.Server, cluster string, idle time.Duration) engine.ListenerConfig {
	f, err := tcpproxy.NewFactory(tcpproxy.Config{StatPrefix: "tp", MaxConnectAttempts: 1,
		IdleTimeout: idle,
		Clusters:    []tcpproxy.WeightedCluster{{Cluster: s.Cluster(cluster), Weight: 1}}}, s.Concurrency())
	if err != nil {
		panic(err)
	}
	return engine.ListenerConfig{Name: "proxy", Address: loopback0,
		FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "tcp", Filters: []engine.NetworkFilterFactory{f}}}}
}

// TestUpstreamFailures: refused and timed-out upstream connects close the downstream,
// move the counters and leave no fd or goroutine behind.
func TestUpstreamFailures(t *testing.T) {
	// A port nobody listens on: connect is refused.
	deadAddr := deadAddr(t)

	// A listener with a full accept queue that never accepts: further SYNs are dropped, so
	// connects hang until the connect timeout.
	stuck, stuckAddr := fullBacklogListener(t)
	defer stuck()

	fdsBefore, gBefore := fdCount(t), runtime.NumGoroutine()
	s, ls := startServer(t, 1, []engine.ClusterConfig{
		{Name: "refused", ConnectTimeout: time.Second, Endpoints: []engine.Endpoint{{Address: deadAddr}}},
		{Name: "blackhole", ConnectTimeout: 200 * time.Millisecond, Endpoints: []engine.Endpoint{{Address: stuckAddr}}},
	}, func(s *engine.Server) []engine.ListenerConfig {
		a := proxyListener(s, "refused", time.Hour)
		b := proxyListener(s, "blackhole", time.Hour)
		b.Name = "proxy2"
		return []engine.ListenerConfig{a, b}
	})
	for i, l := range ls {
		for n := 0; n < 5; n++ {
			c, err := net.Dial("tcp", l.Address().String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(15 * time.Second))
			_, err = c.Read(make([]byte, 1))
			if err == nil {
				t.Errorf("listener %d: downstream read succeeded, want close", i)
			}
			c.Close()
		}
	}
	refused, hole := s.Cluster("refused").Stats(0), s.Cluster("blackhole").Stats(0)
	waitFor(t, "counters", func() bool {
		ok := refused.UpstreamCxConnectFail.Value() == 5 && hole.UpstreamCxConnectTimeout.Value() == 5
		if !ok {
			t.Logf("refused: fail=%d total=%d; blackhole: fail=%d timeout=%d total=%d",
				refused.UpstreamCxConnectFail.Value(), refused.UpstreamCxTotal.Value(),
				hole.UpstreamCxConnectFail.Value(), hole.UpstreamCxConnectTimeout.Value(), hole.UpstreamCxTotal.Value())
		}
		return ok
	})
	if v := hole.UpstreamCxConnectFail.Value(); v != 5 {
		t.Errorf("blackhole upstream_cx_connect_fail = %d, want 5", v)
	}
	if v := refused.UpstreamCxConnectTimeout.Value(); v != 0 {
		t.Errorf("refused upstream_cx_connect_timeout = %d, want 0", v)
	}
	waitFor(t, "downstream_cx_active to reach 0", func() bool {
		return ls[0].Stats(0).DownstreamCxActive.Value() == 0 && ls[1].Stats(0).DownstreamCxActive.Value() == 0
	})
	if refused.UpstreamCxActive.Value() != 0 || hole.UpstreamCxActive.Value() != 0 {
		t.Errorf("upstream_cx_active not 0")
	}
	s.Close()
	waitFor(t, "fds and goroutines to return", func() bool {
		return fdCount(t) <= fdsBefore && runtime.NumGoroutine() <= gBefore
	})
}

// fullBacklogListener returns an address whose accept queue is full, so connects to it
// neither succeed nor fail until they time out.
func fullBacklogListener(t *testing.T) (func(), netip.AddrPort) {
	t.Helper()
	ln, err := listenBacklog0()
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	var fillers []net.Conn
	// Fill the queue: the first connections complete, later ones hang. Keep going until a
	// dial really hangs, however slow the machine is.
	for i := 0; i < 16; i++ {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			break
		}
		fillers = append(fillers, c)
	}
	return func() {
		for _, c := range fillers {
			c.Close()
		}
		ln.Close()
	}, addr
}

// TestExactBalanceChurn: with short-lived connections the active counts are mostly equal,
// so the tie-break decides; exact balance must still spread the totals evenly.
func TestExactBalanceChurn(t *testing.T) {
	const workers, conns = 4, 400
	_, ls := startServer(t, workers, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{echoListener("churn", false, true)}
	})
	addr := ls[0].Address().String()
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "x")
		c.Close()
	}
	waitFor(t, "every connection counted", func() bool {
		var n uint64
		for w := 0; w < workers; w++ {
			n += ls[0].Stats(w).DownstreamCxTotal.Value()
		}
		return n == conns
	})
	var per [workers]uint64
	for w := range per {
		per[w] = ls[0].Stats(w).DownstreamCxTotal.Value()
	}
	// max/mean ≤ 1.02: at most 102 of the 400 on any worker.
	for w, n := range per {
		if n*workers > conns*102/100 {
			t.Errorf("worker %d got %d of %d connections (%v), above 1.02 × the mean", w, n, conns, per)
		}
	}
	t.Logf("connections per worker: %v", per)
}

// TestShutdownClosesConnections: stopping the server closes every live connection it owns
// (downstream and upstream, found through the workers' handler tables) and releases
// their fds.
func TestShutdownClosesConnections(t *testing.T) {
	backend := copyEchoServer(t)
	fds := fdCount(t)
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := engine.NewCluster(engine.ClusterConfig{Name: "echo", Endpoints: []engine.Endpoint{{Address: backend}}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddCluster(cl); err != nil {
		t.Fatal(err)
	}
	echoL, err := s.AddListener(echoListener("echo", true, false))
	if err != nil {
		t.Fatal(err)
	}
	proxyL, err := s.AddListener(proxyListener(s, "echo", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		l := echoL
		if i%2 == 1 {
			l = proxyL
		}
		c, err := net.Dial("tcp", l.Address().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "hello")
		conns = append(conns, c)
	}
	s.Close()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("connection %d: read after shutdown = %d, %v; want EOF", i, n, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "fds released", func() bool { return fdCount(t) <= fds })
}
