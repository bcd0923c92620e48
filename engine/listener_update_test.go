package engine_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

// tagFactory's connections say which chain made them ("name\n"), then echo.
type tagFactory struct{ name string }

func (tagFactory) Name() string { return "tag" }

func (f tagFactory) CreateFilter(c *engine.Connection) engine.ReadFilter {
	return &tagFilter{c: c, name: f.name}
}

type tagFilter struct {
	c    *engine.Connection
	name string
}

func (f *tagFilter) OnNewConnection() engine.FilterStatus {
	f.c.Write([]byte(f.name+"\n"), false)
	return engine.Continue
}

func (f *tagFilter) OnData(data []byte, end bool) engine.FilterStatus {
	f.c.Write(data, end)
	return engine.StopIteration
}

func tagChain(name string) *engine.FilterChain {
	return &engine.FilterChain{Name: name, Filters: []engine.NetworkFilterFactory{tagFactory{name}}}
}

// tagged dials addr and returns the connection and the chain that greeted it.
func tagged(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return c, r, strings.TrimSpace(line)
}

// alive reports whether the connection still echoes.
func alive(c net.Conn, r *bufio.Reader) bool {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	line, err := r.ReadString('\n')
	return err == nil && line == "ping\n"
}

// closedByPeer waits (up to 10 s) for the server to close the connection.
func closedByPeer(c net.Conn, r *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(r)
	return err == nil || errors.Is(err, syscall.ECONNRESET)
}

// TestInPlaceChainUpdate: an update that changes only the filter chains keeps the
// connections of the chains it keeps, drains those of the chains it drops (closed at the
// drain deadline) and gives new connections the new chains; the counts of draining chains
// go up and back to zero.
func TestInPlaceChainUpdate(t *testing.T) {
	const drain = 400 * time.Millisecond
	a, b, c := tagChain("a"), tagChain("b"), tagChain("c")
	srv, ls := serverWith(t, engine.ServerOptions{Concurrency: 2, DrainTime: drain}, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{{Name: "l", Address: loopback0, FilterChains: engine.SingleChain{Chain: a}}}
	})
	addr := ls[0].Address().String()
	ca, ra, tag := tagged(t, addr)
	if tag != "a" {
		t.Fatalf("first chain %q", tag)
	}
	// a → b, a dropped.
	if err := srv.UpdateListenerChains("l", engine.SingleChain{Chain: b}, []*engine.FilterChain{a}); err != nil {
		t.Fatal(err)
	}
	// Each worker takes the update from its own task queue: until both have, a new
	// connection may still get chain a (and be drained with it), so b's connection is
	// one that said "b".
	var cb net.Conn
	var rb *bufio.Reader
	waitFor(t, "the new chain", func() bool {
		c, r, tag := tagged(t, addr)
		if tag != "b" {
			c.Close()
			return false
		}
		cb, rb = c, r
		return true
	})
	if _, chains := srv.DrainingCounts(); chains != 1 {
		t.Errorf("draining chains %d, want 1", chains)
	}
	if !alive(ca, ra) {
		t.Fatal("the dropped chain's connection died before the drain deadline")
	}
	if !closedByPeer(ca, ra) {
		t.Fatal("the dropped chain's connection was not closed at the deadline")
	}
	// b kept, c added: b's connection outlives the next drain time.
	if err := srv.UpdateListenerChains("l", engine.SingleChain{Chain: c}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * drain)
	if !alive(cb, rb) {
		t.Fatal("a kept chain's connection was closed")
	}
	waitFor(t, "no chain draining", func() bool { _, n := srv.DrainingCounts(); return n == 0 })
	if _, _, tag := tagged(t, addr); tag != "c" {
		t.Fatalf("after the second update: chain %q", tag)
	}
}

// churn opens connections to addr until stop, counting those that failed to connect or
// to get their greeting and echo.
func churn(addr string, stop <-chan struct{}) (ok, failed *atomic.Int64, wait func()) {
	ok, failed = new(atomic.Int64), new(atomic.Int64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(3 * time.Second))
				r := bufio.NewReader(c)
				_, err1 := r.ReadString('\n')
				_, err2 := c.Write([]byte("x\n"))
				line, err3 := r.ReadString('\n')
				c.Close()
				if err1 != nil || err2 != nil || err3 != nil || line != "x\n" {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	return ok, failed, wg.Wait
}

// TestFullListenerUpdateKeepsSockets: a full update (the listener filters or options
// change) carries the bound sockets into the new version, in both port-sharing modes, so
// connections made throughout never fail; the old version's connections drain and close;
// changing enable_reuse_port is refused.
func TestFullListenerUpdateKeepsSockets(t *testing.T) {
	for _, mode := range []struct {
		name         string
		reuse, exact bool
	}{{"reuse_port", true, false}, {"dup_fd", false, false}, {"exact_balance", true, true}} {
		reuse, exact := mode.reuse, mode.exact
		t.Run(mode.name, func(t *testing.T) {
			const drain = 400 * time.Millisecond
			srv, ls := serverWith(t, engine.ServerOptions{Concurrency: 2, DrainTime: drain}, nil, func(*engine.Server) []engine.ListenerConfig {
				return []engine.ListenerConfig{{Name: "l", Address: loopback0, NoReusePort: !reuse, ExactBalance: exact,
					FilterChains: engine.SingleChain{Chain: tagChain("v0")}}}
			})
			addr := ls[0].Address().String()
			old, rold, _ := tagged(t, addr)
			stop := make(chan struct{})
			ok, failed, wait := churn(addr, stop)
			for i := 1; i <= 20; i++ {
				l, err := srv.UpdateListener(engine.ListenerConfig{Name: "l", Address: ls[0].Address(), NoReusePort: !reuse,
					ExactBalance: exact, MaxAcceptPerEvent: i, FilterChains: engine.SingleChain{Chain: tagChain("v" + string(rune('0'+i%10)))}})
				if err != nil {
					t.Fatal(err)
				}
				if l.Address() != ls[0].Address() {
					t.Fatalf("address changed: %v", l.Address())
				}
				time.Sleep(20 * time.Millisecond)
			}
			close(stop)
			wait()
			if failed.Load() != 0 || ok.Load() == 0 {
				t.Fatalf("during 20 updates: %d connections ok, %d failed", ok.Load(), failed.Load())
			}
			t.Logf("20 full updates: %d connections, none failed", ok.Load())
			if !closedByPeer(old, rold) {
				t.Fatal("the old version's connection was not closed at the drain deadline")
			}
			waitFor(t, "no listener draining", func() bool { n, _ := srv.DrainingCounts(); return n == 0 })
			if _, err := srv.UpdateListener(engine.ListenerConfig{Name: "l", Address: ls[0].Address(), NoReusePort: reuse,
				FilterChains: echoChain()}); err == nil || !strings.Contains(err.Error(), "enable_reuse_port") {
				t.Fatalf("a reuse_port change: %v", err)
			}
		})
	}
}

// TestRemoveAndAddListener: a removed listener refuses new connections, drains its own and
// closes them at the deadline; a listener added while running serves at once.
func TestRemoveAndAddListener(t *testing.T) {
	const drain = 400 * time.Millisecond
	srv, ls := serverWith(t, engine.ServerOptions{Concurrency: 2, DrainTime: drain}, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{{Name: "l", Address: loopback0, FilterChains: engine.SingleChain{Chain: tagChain("l")}}}
	})
	addr := ls[0].Address().String()
	c, r, _ := tagged(t, addr)
	if err := srv.RemoveListener("l"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connections refused", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if len(srv.Listeners()) != 0 || len(srv.DrainingListeners()) != 1 {
		t.Fatalf("listeners %d, draining %d", len(srv.Listeners()), len(srv.DrainingListeners()))
	}
	if !alive(c, r) {
		t.Fatal("connection closed before the drain deadline")
	}
	if !closedByPeer(c, r) {
		t.Fatal("connection not closed at the drain deadline")
	}
	waitFor(t, "the retired listener gone", func() bool { return len(srv.DrainingListeners()) == 0 })
	l, err := srv.AddListener(engine.ListenerConfig{Name: "m", Address: loopback0, FilterChains: engine.SingleChain{Chain: tagChain("m")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, tag := tagged(t, l.Address().String()); tag != "m" {
		t.Fatalf("added listener: %q", tag)
	}
}

// TestClusterUpdateByName: tcp_proxy looks its cluster up by name per connection, so a
// cluster that arrives later, is replaced or is removed takes effect for new connections;
// between, connections fail as no-route and are counted.
func TestClusterUpdateByName(t *testing.T) {
	backend := func(tag string) string {
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
				c.Write([]byte(tag + "\n"))
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	b1, b2 := backend("one"), backend("two")
	var tp *tcpproxy.Factory
	srv, ls := serverWith(t, engine.ServerOptions{Concurrency: 2}, nil, func(s *engine.Server) []engine.ListenerConfig {
		var err error
		tp, err = tcpproxy.NewFactory(tcpproxy.Config{StatPrefix: "tp", MaxConnectAttempts: 1, Registry: s.ClusterRegistry(),
			Clusters: []tcpproxy.WeightedCluster{{Name: "up", Weight: 1}}}, s.Concurrency())
		if err != nil {
			t.Fatal(err)
		}
		return []engine.ListenerConfig{{Name: "p", Address: loopback0,
			FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "tcp", Filters: []engine.NetworkFilterFactory{tp}}}}}
	})
	addr := ls[0].Address().String()
	get := func() string {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return strings.TrimSpace(string(b))
	}
	noRoute := func() uint64 {
		return tp.Stats(0).DownstreamCxNoRoute.Value() + tp.Stats(1).DownstreamCxNoRoute.Value()
	}
	if got := get(); got != "" || noRoute() != 1 {
		t.Fatalf("before the cluster: %q, no_route %d", got, noRoute())
	}
	cluster := func(addr string) *engine.Cluster {
		c, err := engine.NewCluster(engine.ClusterConfig{Name: "up", Endpoints: []engine.Endpoint{{Address: mustAddrPort(t, addr)}}}, 2)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := srv.AddCluster(cluster(b1)); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "one" {
		t.Fatalf("after add: %q", got)
	}
	total := func(c *engine.Cluster) uint64 {
		return c.Stats(0).UpstreamCxTotal.Value() + c.Stats(1).UpstreamCxTotal.Value()
	}
	v1 := srv.Cluster("up")
	before := total(v1)
	v2 := cluster(b2)
	if err := srv.UpdateCluster(v2); err != nil {
		t.Fatal(err)
	}
	// Envoy's counters of a cluster go on across versions.
	if total(v2) != before || before == 0 {
		t.Fatalf("upstream_cx_total of the new version %d, the old one's %d", total(v2), before)
	}
	if got := get(); got != "two" {
		t.Fatalf("after update: %q", got)
	}
	if total(v2) != before+1 {
		t.Fatalf("upstream_cx_total after one more connection: %d, want %d", total(v2), before+1)
	}
	if err := srv.RemoveCluster("up"); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != "" || noRoute() != 2 {
		t.Fatalf("after remove: %q, no_route %d", got, noRoute())
	}
	if len(srv.Clusters()) != 0 {
		t.Fatalf("clusters left: %d", len(srv.Clusters()))
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestClusterBatch: the clusters a batch adds, replaces and removes take effect together
// when it ends; inside it, lookups by new connections still see the previous set.
func TestClusterBatch(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mk := func(name string) *engine.Cluster {
		c, err := engine.NewCluster(engine.ClusterConfig{Name: name}, 1)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a1, b := mk("a"), mk("b")
	if err := srv.AddCluster(a1); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddCluster(b); err != nil {
		t.Fatal(err)
	}
	reg := srv.ClusterRegistry()
	a2, c := mk("a"), mk("c")
	srv.ClusterBatch(func() {
		if err := srv.UpdateCluster(a2); err != nil {
			t.Fatal(err)
		}
		if err := srv.AddCluster(c); err != nil {
			t.Fatal(err)
		}
		if err := srv.RemoveCluster("b"); err != nil {
			t.Fatal(err)
		}
		if err := srv.AddCluster(mk("c")); err == nil {
			t.Error("a second c in the batch was accepted")
		}
		if reg.Get("a") != a1 || reg.Get("b") != b || reg.Get("c") != nil {
			t.Error("the batch showed before it ended")
		}
	})
	if reg.Get("a") != a2 || reg.Get("b") != nil || reg.Get("c") != c || reg.Len() != 2 {
		t.Fatalf("after the batch: a=%p (want %p) b=%v c=%v len %d", reg.Get("a"), a2, reg.Get("b"), reg.Get("c"), reg.Len())
	}
}

type namedSource struct{ name string }

func (namedSource) StatsFamily() string                    { return "test" }
func (namedSource) StatsLabels() [][2]string               { return nil }
func (namedSource) VisitStats(_ int, _ engine.StatVisitor) {}

// TestRemoveStatsSources: many sources leave in one call, the others stay in order.
func TestRemoveStatsSources(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := len(srv.StatsSources())
	var all []engine.StatsSource
	for i := range 6 {
		src := &namedSource{name: string(rune('a' + i))}
		all = append(all, src)
		srv.AddStatsSource(src)
	}
	srv.RemoveStatsSources([]engine.StatsSource{all[1], all[4], all[5]})
	got := srv.StatsSources()[base:]
	if len(got) != 3 || got[0] != all[0] || got[1] != all[2] || got[2] != all[3] {
		t.Fatalf("left %v", got)
	}
}

// TestDrainEndsWithLastConnection: a drain is over as soon as the last connection on what
// it drains is gone, not only at the deadline, so what only those connections used can be
// let go of early (Server.Draining).
func TestDrainEndsWithLastConnection(t *testing.T) {
	const drain = time.Minute // far beyond the waits below: only an early end passes
	a, b, c := tagChain("a"), tagChain("b"), tagChain("c")
	srv, ls := serverWith(t, engine.ServerOptions{Concurrency: 2, DrainTime: drain}, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{{Name: "l", Address: loopback0, FilterChains: engine.SingleChain{Chain: a}}}
	})
	addr := ls[0].Address().String()
	// No connection on a: its drain ends within a poll or two.
	if err := srv.UpdateListenerChains("l", engine.SingleChain{Chain: b}, []*engine.FilterChain{a}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drain of a chain without connections to end", func() bool { return !srv.Draining(a) })
	// One connection on b: its drain lasts while it is open, and ends once it closes.
	cb, rb, tag := tagged(t, addr)
	if tag != "b" {
		t.Fatalf("chain %q", tag)
	}
	if err := srv.UpdateListenerChains("l", engine.SingleChain{Chain: c}, []*engine.FilterChain{b}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // two polls
	if !srv.Draining(b) || !alive(cb, rb) {
		t.Fatal("the drain ended with a connection still on the chain")
	}
	cb.Close()
	waitFor(t, "the drain to end with its last connection", func() bool { return !srv.Draining(b) })
	if _, n := srv.DrainingCounts(); n != 0 {
		t.Fatalf("draining chains %d, want 0", n)
	}
	// A replaced listener version: the same.
	old := srv.Listener("l")
	if _, err := srv.UpdateListener(engine.ListenerConfig{Name: "l", Address: ls[0].Address(), FilterChains: engine.SingleChain{Chain: tagChain("d")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replaced version's drain to end", func() bool { return !srv.Draining(old) })
}
