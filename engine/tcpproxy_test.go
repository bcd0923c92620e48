package engine_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

// backend runs a loopback server calling handle on a goroutine per connection (which
// it closes afterwards) until the test ends; it returns the server's address.
func backend(t *testing.T, handle func(net.Conn)) netip.AddrPort {
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
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// echoServer is a loopback echo backend; it returns its address.
func echoServer(t *testing.T) netip.AddrPort {
	return backend(t, func(c net.Conn) { io.Copy(c, c) })
}

// deadAddr is a loopback port that refuses connections: a socket is bound to it without
// listening, so the kernel answers SYNs with RST and no other process can take the port
// while the test runs.
func deadAddr(t *testing.T) netip.AddrPort {
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
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}

func tcpProxyListener(s *engine.Server, cfg tcpproxy.Config) (engine.ListenerConfig, *tcpproxy.Factory) {
	f, err := tcpproxy.NewFactory(cfg, s.Concurrency())
	if err != nil {
		panic(err)
	}
	return engine.ListenerConfig{Name: "proxy", Address: loopback0,
		FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "tcp", Filters: []engine.NetworkFilterFactory{f}}}}, f
}

// TestTCPProxyIdleTimeout: a connection with no bytes either way is closed after
// idle_timeout; activity pushes the deadline back.
func TestTCPProxyIdleTimeout(t *testing.T) {
	var f *tcpproxy.Factory
	_, ls := startServer(t, 1, []engine.ClusterConfig{{Name: "echo", Endpoints: []engine.Endpoint{{Address: echoServer(t)}}}},
		func(s *engine.Server) []engine.ListenerConfig {
			var l engine.ListenerConfig
			l, f = tcpProxyListener(s, tcpproxy.Config{StatPrefix: "idle", IdleTimeout: 300 * time.Millisecond,
				Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("echo"), Weight: 1}}})
			return []engine.ListenerConfig{l}
		})
	c, err := net.Dial("tcp", ls[0].Address().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// Keep it busy past one timeout period: it must stay open.
	var quiet time.Time
	for time.Since(start) < 500*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
		roundTrip(t, c, "ping")
		quiet = time.Now()
	}
	if n := f.Stats(0).IdleTimeout.Value(); n != 0 {
		t.Fatalf("idle_timeout fired on a busy connection (%d)", n)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection not closed")
	}
	if el := time.Since(quiet); el < 250*time.Millisecond {
		t.Errorf("closed %v after the last byte, before idle_timeout", el)
	}
	if n := f.Stats(0).IdleTimeout.Value(); n != 1 {
		t.Errorf("idle_timeout = %d, want 1", n)
	}
}

// TestTCPProxyRetriesAndWeights: max_connect_attempts retries a refused connect on the
// next endpoint; weighted_clusters split connections by weight.
func TestTCPProxyRetriesAndWeights(t *testing.T) {
	var f *tcpproxy.Factory
	s, ls := startServer(t, 1, []engine.ClusterConfig{
		{Name: "flaky", Endpoints: []engine.Endpoint{{Address: deadAddr(t)}, {Address: echoServer(t)}}},
		{Name: "solid", Endpoints: []engine.Endpoint{{Address: echoServer(t)}}},
	}, func(s *engine.Server) []engine.ListenerConfig {
		var l engine.ListenerConfig
		l, f = tcpProxyListener(s, tcpproxy.Config{StatPrefix: "w", MaxConnectAttempts: 2, IdleTimeout: time.Hour,
			Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("flaky"), Weight: 1}, {Cluster: s.Cluster("solid"), Weight: 3}}})
		return []engine.ListenerConfig{l}
	})
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", ls[0].Address().String())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "hello")
		c.Close()
	}
	flaky, solid := s.Cluster("flaky").Stats(0), s.Cluster("solid").Stats(0)
	// 8 connections, weights 1:3: 2 to flaky (each refused once, then served), 6 to solid.
	if flaky.UpstreamCxConnectFail.Value() != 2 || flaky.UpstreamCxTotal.Value() != 4 || solid.UpstreamCxTotal.Value() != 6 {
		t.Errorf("flaky fail=%d total=%d, solid total=%d; want 2, 4, 6", flaky.UpstreamCxConnectFail.Value(),
			flaky.UpstreamCxTotal.Value(), solid.UpstreamCxTotal.Value())
	}
	if n := f.Stats(0).DownstreamCxTotal.Value(); n != 8 {
		t.Errorf("tcp downstream_cx_total = %d", n)
	}
}

// TestTCPProxyEmptyCluster: a cluster with no hosts (Envoy's BlackHoleCluster) is legal;
// tcp_proxy closes the client's connection at once, counting upstream_cx_none_healthy,
// and does not retry (there is no host to try).
func TestTCPProxyEmptyCluster(t *testing.T) {
	s, ls := startServer(t, 1, []engine.ClusterConfig{{Name: "blackhole"}}, func(s *engine.Server) []engine.ListenerConfig {
		l, _ := tcpProxyListener(s, tcpproxy.Config{StatPrefix: "b", MaxConnectAttempts: 3, IdleTimeout: time.Hour,
			Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("blackhole"), Weight: 1}}})
		return []engine.ListenerConfig{l}
	})
	if n := len(s.Cluster("blackhole").Hosts()); n != 0 {
		t.Fatalf("%d hosts, want none", n)
	}
	c, err := net.Dial("tcp", ls[0].Address().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("read %d bytes, err %v; want the connection closed", n, err)
	}
	st := s.Cluster("blackhole").Stats(0)
	deadline := time.Now().Add(5 * time.Second)
	for st.UpstreamCxNoneHealthy.Value() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st.UpstreamCxNoneHealthy.Value() != 1 || st.UpstreamCxTotal.Value() != 1 || st.UpstreamCxConnectFail.Value() != 0 {
		t.Errorf("none_healthy=%d total=%d connect_fail=%d; want 1, 1, 0", st.UpstreamCxNoneHealthy.Value(),
			st.UpstreamCxTotal.Value(), st.UpstreamCxConnectFail.Value())
	}
}
