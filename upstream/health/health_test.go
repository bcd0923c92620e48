package health

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

func cluster(t *testing.T, addrs ...netip.AddrPort) *engine.Cluster {
	t.Helper()
	var eps []engine.Endpoint
	for _, a := range addrs {
		eps = append(eps, engine.Endpoint{Address: a})
	}
	c, err := engine.NewCluster(engine.ClusterConfig{Name: "svc", Endpoints: eps}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond for up to 10 s (no timing assert: only a bound on a hang).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func run(t *testing.T, k *Checker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("checker did not stop")
		}
	})
}

func fast(cfg Config) Config {
	cfg.Timeout = 500 * time.Millisecond
	cfg.Interval = 10 * time.Millisecond
	cfg.NoTrafficInterval = 10 * time.Millisecond
	return cfg
}

// TestThresholds drives the state machine directly: the first pass alone makes a host
// healthy; network failures need unhealthy_threshold in a row (a pass resets the run);
// an active failure fails at once; healthy_threshold passes bring it back.
func TestThresholds(t *testing.T) {
	c := cluster(t, netip.MustParseAddrPort("127.0.0.1:1"))
	k, err := New(c, fast(Config{TCP: &TCPCheck{}, UnhealthyThreshold: 3, HealthyThreshold: 2}), false)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hosts()[0]
	if !failed(h) {
		t.Fatal("a new host is not waiting for its first check")
	}
	s := &session{k: k, h: h, first: true}
	step := func(o outcome, wantFailed bool, what string) {
		t.Helper()
		s.apply(o, "")
		if failed(h) != wantFailed {
			t.Fatalf("%s: failed = %v", what, failed(h))
		}
	}
	step(pass, false, "first pass")
	step(failNetwork, false, "1st network failure")
	step(failTimeout, false, "2nd")
	step(pass, false, "a pass between")
	step(failNetwork, false, "1st again")
	step(failNetwork, false, "2nd again")
	step(failNetwork, true, "3rd in a row")
	step(pass, true, "1 of 2 passes")
	step(pass, false, "2 of 2 passes")
	step(failActive, true, "an active failure")
	step(pass, true, "1 pass")
	step(failRetriable, true, "a retriable status resets the passes")
	step(pass, true, "1 pass again")
	step(pass, false, "2 passes")
	step(failRetriable, false, "a retriable status counts, 1")
	step(failRetriable, false, "2")
	step(failRetriable, true, "3")
	st := k.Stats()
	if st.Success.Value() != 7 || st.Failure.Value() != 10 || st.NetworkFailure.Value() != 5 {
		t.Fatalf("stats success %d failure %d network %d", st.Success.Value(), st.Failure.Value(), st.NetworkFailure.Value())
	}
}

// TestTCPCheckDownAndBack: a connect-only check against a real listener: healthy, then
// failed once the port refuses, healthy again once it listens again.
func TestTCPCheckDownAndBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	go acceptLoop(ln, nil)
	other, _ := net.Listen("tcp", "127.0.0.1:0")
	defer other.Close()
	go acceptLoop(other, nil)
	c := cluster(t, addr, netip.MustParseAddrPort(other.Addr().String()))
	k, err := New(c, fast(Config{TCP: &TCPCheck{}, UnhealthyThreshold: 2, HealthyThreshold: 2}), false)
	if err != nil {
		t.Fatal(err)
	}
	run(t, k)
	h := c.Hosts()[0]
	select {
	case <-k.Warm():
	case <-time.After(10 * time.Second):
		t.Fatal("not warm after the first checks")
	}
	if k.Stats().Attempt.Value() < 2 {
		t.Fatalf("warm after %d checks of 2 hosts", k.Stats().Attempt.Value())
	}
	eventually(t, "both healthy", func() bool { return k.Healthy() == 2 })
	ln.Close()
	eventually(t, "the closed port's host failed", func() bool { return failed(h) })
	if k.Stats().NetworkFailure.Value() < 2 {
		t.Fatalf("failed after %d network failures, threshold 2", k.Stats().NetworkFailure.Value())
	}
	// Traffic moves away: every pick is the other host.
	w := &engine.Worker{ID: 0}
	for i := 0; i < 4; i++ {
		if c.ChooseHost(w, nil) == h {
			t.Fatal("failed host picked")
		}
	}
	ln2, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Skipf("port %v taken meanwhile: %v", addr, err)
	}
	defer ln2.Close()
	go acceptLoop(ln2, nil)
	eventually(t, "healthy again", func() bool { return !failed(h) })
	if k.Stats().Attempt.Value() < k.Stats().Success.Value()+k.Stats().Failure.Value() {
		t.Fatal("attempts below outcomes")
	}
}

func acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if handle != nil {
				handle(c)
			}
		}()
	}
}

// TestTCPCheckPayload: send/receive blocks; a backend that stops answering them fails
// (a timeout) and comes back when it answers again.
func TestTCPCheckPayload(t *testing.T) {
	var broken atomic.Bool
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go acceptLoop(ln, func(c net.Conn) {
		buf := make([]byte, 4)
		if _, err := c.Read(buf); err != nil || !bytes.Equal(buf, []byte("PING")) {
			return
		}
		if broken.Load() {
			c.Write([]byte("NOPE"))
			time.Sleep(time.Second)
			return
		}
		c.Write([]byte("xx PO"))
		c.Write([]byte("NG yy"))
	})
	c := cluster(t, netip.MustParseAddrPort(ln.Addr().String()))
	cfg := fast(Config{TCP: &TCPCheck{Send: []byte("PING"), Receive: [][]byte{[]byte("PO"), []byte("NG")}}, UnhealthyThreshold: 1, HealthyThreshold: 1})
	cfg.Timeout = 100 * time.Millisecond
	k, _ := New(c, cfg, false)
	run(t, k)
	h := c.Hosts()[0]
	eventually(t, "healthy", func() bool { return !failed(h) })
	broken.Store(true)
	eventually(t, "failed", func() bool { return failed(h) })
	broken.Store(false)
	eventually(t, "healthy again", func() bool { return !failed(h) })
}

// TestHTTPCheck: path, Host header, added headers and the user agent reach the backend;
// a 503 fails the host at once (whatever unhealthy_threshold), a 200 brings it back.
func TestHTTPCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var mu sync.Mutex
	var seen *http.Request
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r
		mu.Unlock()
		w.WriteHeader(int(status.Load()))
		w.Write([]byte("status: ok"))
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()
	c := cluster(t, netip.MustParseAddrPort(ln.Addr().String()))
	cfg := fast(Config{HTTP: &HTTPCheck{Path: "/healthz", Host: "svc.internal",
		Headers: []Header{{Name: "x-check", Value: "1"}}, Receive: [][]byte{[]byte("ok")}},
		UnhealthyThreshold: 5, HealthyThreshold: 1, ReuseConnection: true})
	k, _ := New(c, cfg, false)
	run(t, k)
	h := c.Hosts()[0]
	eventually(t, "healthy", func() bool { return !failed(h) })
	mu.Lock()
	r := seen
	mu.Unlock()
	if r.URL.Path != "/healthz" || r.Host != "svc.internal" || r.Header.Get("x-check") != "1" || r.UserAgent() != "Envoy/HC" {
		t.Fatalf("request %s %s host %q headers %v", r.Method, r.URL, r.Host, r.Header)
	}
	before := k.Stats().Failure.Value()
	status.Store(503)
	eventually(t, "failed on a 503", func() bool { return failed(h) })
	if n := k.Stats().Failure.Value() - before; n != 1 {
		t.Fatalf("failed after %d failures, want 1 (a status failure is immediate)", n)
	}
	status.Store(200)
	eventually(t, "healthy again", func() bool { return !failed(h) })
}

// TestNewHostsChecked: a host added by a host-set update starts failed and is checked.
func TestNewHostsChecked(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go acceptLoop(ln, nil)
	c := cluster(t, netip.MustParseAddrPort(ln.Addr().String()))
	k, _ := New(c, fast(Config{TCP: &TCPCheck{}, UnhealthyThreshold: 1, HealthyThreshold: 1}), false)
	run(t, k)
	eventually(t, "first host healthy", func() bool { return k.Healthy() == 1 })
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln2.Close()
	go acceptLoop(ln2, nil)
	n := engine.NewHost(netip.MustParseAddrPort(ln2.Addr().String()), 1, "", 1)
	c.UpdateHosts(append(c.Hosts(), n))
	if !failed(n) {
		t.Fatal("added host not waiting for its check")
	}
	eventually(t, "added host healthy", func() bool { return !failed(n) })
}

// TestWarmWaitsForHosts: with HostsReady (a DNS cluster), an empty host set is not warm;
// the first hosts arrive, HostsReady closes, and warm follows their first check.
func TestWarmWaitsForHosts(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go acceptLoop(ln, nil)
	c := cluster(t)
	ready := make(chan struct{})
	cfg := fast(Config{TCP: &TCPCheck{}, UnhealthyThreshold: 1, HealthyThreshold: 1, HostsReady: ready})
	k, _ := New(c, cfg, false)
	run(t, k)
	time.Sleep(20 * time.Millisecond) // let Run's first pass see the empty set
	select {
	case <-k.Warm():
		t.Fatal("warm before the cluster had its hosts")
	default:
	}
	h := engine.NewHost(netip.MustParseAddrPort(ln.Addr().String()), 1, "", 1)
	c.UpdateHosts([]*engine.Host{h})
	close(ready)
	select {
	case <-k.Warm():
	case <-time.After(10 * time.Second):
		t.Fatal("not warm after the first hosts' checks")
	}
	if failed(h) {
		t.Fatal("warm with the host not checked")
	}
}
