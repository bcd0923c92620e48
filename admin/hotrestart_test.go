package admin

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
)

// TestCarriedCounters: a hot restart parent's counters add into the summed counter lines
// of the same name (not into gauges nor per-worker lines), and Counters exports them.
func TestCarriedCounters(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.AddStatsSource(fakeSource{1}) // tcp.shared.downstream_cx_total: 1 + 2 = 3
	carried := map[string]uint64{
		"tcp.shared.downstream_cx_total":          100,
		"tcp.shared.worker_0.downstream_cx_total": 1000,
		"server.admin.downstream_cx_total":        50,
		"server.admin.downstream_cx_active":       7, // a gauge: not carried
		"cluster.gone.upstream_cx_total":          9, // no such line here
	}
	a := New(srv, Options{CarriedCounters: func() map[string]uint64 { return carried }})
	addr, err := a.Start(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, body := get(t, "http://"+addr.String()+"/stats")
	for _, want := range []string{"tcp.shared.downstream_cx_total: 103\n", "tcp.shared.worker_0.downstream_cx_total: 1\n",
		"server.admin.downstream_cx_active: 1\n", "server.admin.downstream_cx_total: 51\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("/stats lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "cluster.gone") {
		t.Errorf("a carried counter with no line of its own shows:\n%s", body)
	}
	c := a.Counters()
	if c["tcp.shared.downstream_cx_total"] != 103 || c["server.admin.downstream_cx_total"] < 51 {
		t.Errorf("Counters: %v", c)
	}
	if _, ok := c["server.admin.downstream_cx_active"]; ok {
		t.Errorf("Counters exports a gauge: %v", c)
	}
}

// TestServeInherited: the admin socket handed over by ListenerFd serves in another Admin
// (a hot restart's child) while the first one closes, and stays non-blocking.
func TestServeInherited(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	parent := New(srv, Options{})
	addr, err := parent.Start(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	fd, err := parent.ListenerFd()
	if err != nil {
		t.Fatal(err)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Fatalf("the shared socket lost O_NONBLOCK: flags %#x, %v", fl, err)
	}
	f := os.NewFile(uintptr(fd), "admin")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	child := New(srv, Options{})
	child.SetState(Live)
	if got := child.Serve(ln); got.String() != addr.String() {
		t.Fatalf("child serves %s, parent %s", got, addr)
	}
	defer child.Close()
	parent.Close()
	for i := 0; i < 20; i++ {
		if code, body := get(t, "http://"+addr.String()+"/ready"); code != 200 || strings.TrimSpace(body) != "LIVE" {
			t.Fatalf("after the parent closed: %d %q", code, body)
		}
	}
}
