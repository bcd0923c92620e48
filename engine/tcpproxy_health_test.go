package engine_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

// TestTCPProxyMaxConnections: with max_connections 2, a third concurrent connection is
// refused by the breaker (upstream_cx_overflow, the client closed at once); once one
// closes, a new one gets through.
func TestTCPProxyMaxConnections(t *testing.T) {
	s, ls := startServer(t, 2, []engine.ClusterConfig{{Name: "echo", Endpoints: []engine.Endpoint{{Address: echoServer(t)}},
		CircuitBreakers: engine.Thresholds{MaxConnections: 2, MaxPendingRequests: 1, MaxRequests: 1, MaxRetries: 1}}},
		func(s *engine.Server) []engine.ListenerConfig {
			l, _ := tcpProxyListener(s, tcpproxy.Config{StatPrefix: "cb",
				Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("echo"), Weight: 1}}})
			return []engine.ListenerConfig{l}
		})
	addr := ls[0].Address().String()
	var open []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "held")
		open = append(open, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("third connection served (%d bytes) past max_connections 2", n)
	}
	c.Close()
	cl := s.Cluster("echo")
	overflow := func() uint64 { return cl.Stats(0).UpstreamCxOverflow.Value() + cl.Stats(1).UpstreamCxOverflow.Value() }
	if overflow() != 1 {
		t.Errorf("upstream_cx_overflow = %d, want 1", overflow())
	}
	open[0].Close()
	waitFor(t, "the breaker unit back", func() bool { return cl.Breakers().Connections.Count() == 1 })
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "again")
}

// TestTCPProxyOutlierRefusingPort: a host that refuses connections is ejected after
// consecutive_local_origin_failure refusals (split) and the traffic goes to the other;
// the sweep brings it back once base_ejection_time is over.
func TestTCPProxyOutlierRefusingPort(t *testing.T) {
	dead, live := deadAddr(t), echoServer(t)
	var d *engine.OutlierDetector
	s, ls := startServer(t, 1, []engine.ClusterConfig{{Name: "two", Endpoints: []engine.Endpoint{{Address: dead}, {Address: live}}}},
		func(s *engine.Server) []engine.ListenerConfig {
			cfg := engine.DefaultOutlierConfig()
			cfg.SplitExternalLocalOriginErrors = true
			cfg.ConsecutiveLocalOriginFailure = 3
			cfg.MaxEjectionPercent = 50
			cfg.BaseEjectionTime = 200 * time.Millisecond
			cfg.Interval = 20 * time.Millisecond
			d = s.Cluster("two").SetOutlierDetection(cfg)
			l, _ := tcpProxyListener(s, tcpproxy.Config{StatPrefix: "od",
				Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("two"), Weight: 1}}})
			return []engine.ListenerConfig{l}
		})
	addr := ls[0].Address().String()
	served, refused := 0, 0
	try := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err == nil {
			served++
		} else {
			refused++
		}
	}
	// Round robin alternates: three refusals take six connections.
	for i := 0; i < 6; i++ {
		try()
	}
	if refused != 3 || d.Stats().EjectionsActive.Value() != 1 {
		t.Fatalf("refused %d, ejections_active %d; want 3, 1", refused, d.Stats().EjectionsActive.Value())
	}
	host := s.Cluster("two").Hosts()[0]
	if !host.Ejected() {
		t.Fatal("the refusing host is not the one ejected")
	}
	served, refused = 0, 0
	for i := 0; i < 6; i++ {
		try()
	}
	if refused != 0 {
		t.Fatalf("%d connections refused while the dead host was ejected", refused)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	waitFor(t, "un-ejection", func() bool { return !host.Ejected() })
	if d.Stats().Enforced[2].Value() != 1 {
		t.Errorf("ejections_enforced_consecutive_local_origin_failure = %d", d.Stats().Enforced[2].Value())
	}
}
