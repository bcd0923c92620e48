package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/portico-proxy/portico/bench/internal/jsonline"
)

func testOptions(t *testing.T) options {
	return options{proxies: 2, sizes: []int{3, 5}, reps: 1, updates: 2, standin: true, dir: t.TempDir(),
		maxDuration: time.Minute, ackTimeout: 10 * time.Second, gap: 10 * time.Millisecond,
		settle: 10 * time.Millisecond, idleWindow: 50 * time.Millisecond, samples: 3, kinds: []string{"chain", "clusters"}, clkTck: 100, labels: jsonline.Labels{}}
}

func updates(rows []any) []*updateRow {
	var out []*updateRow
	for _, r := range rows {
		if u, ok := r.(*updateRow); ok {
			out = append(out, u)
		}
	}
	return out
}

// TestStandinRun: a whole run against in-process config/xds clients; every
// update of every size is ACKed by both, with the types it changed.
func TestStandinRun(t *testing.T) {
	rows, err := run(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	meta := rows[0].(*metaRow)
	if meta.Failure != "" || meta.Unavailable != "" {
		t.Fatalf("meta: %+v", meta)
	}
	us := updates(rows)
	if len(us) != 6 {
		t.Fatalf("%d updates, want 6 (2 sizes × initial + 2)", len(us))
	}
	wantTypes := map[string]string{"initial": "CDS,LDS", "chain": "LDS", "clusters": "CDS,LDS"}
	for _, u := range us {
		if u.Failure != "" || u.AckMS <= 0 || len(u.ProxyAckMS) != 2 {
			t.Errorf("update %+v", u)
		}
		if got := strings.Join(u.Types, ","); got != wantTypes[u.Kind] {
			t.Errorf("%s update changed %s, want %s", u.Kind, got, wantTypes[u.Kind])
		}
	}
}

// TestStandinNACKStopsTheRun: a NACK of a version ends the run at once with
// the proxy's error_detail, rather than waiting out the ACK deadline.
func TestStandinNACKStopsTheRun(t *testing.T) {
	o := testOptions(t)
	o.ackTimeout = time.Minute
	o.standinHandler = func(typ, version string) error {
		if typ == ldsType && version == "u2" {
			return errors.New("Error adding/updating listener(s) l0: no")
		}
		return nil
	}
	start := time.Now()
	rows, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("the NACK was not seen: the run waited %s", time.Since(start))
	}
	meta := rows[0].(*metaRow)
	if !strings.Contains(meta.Failure, "NACK") || !strings.Contains(meta.Failure, "l0: no") {
		t.Errorf("meta failure %q, want the NACK and its detail", meta.Failure)
	}
	us := updates(rows)
	if len(us) != 2 || us[1].Failure == "" {
		t.Errorf("updates %+v, want the initial one then a failed one", us)
	}
}

// TestTrackerMatching: a stream's first request (no nonce) is no ACK; an ACK
// names the version it accepts; a NACK is matched to the rejected version
// through the nonce of the response it answers.
func TestTrackerMatching(t *testing.T) {
	tr := newTracker()
	cb := tr.callbacks()
	node := &corev3.Node{Id: "p1"}
	ctx := context.Background()
	_ = cb.OnStreamOpen(ctx, 1, "")
	_ = cb.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: ldsType, VersionInfo: "u1"})
	cb.OnStreamResponse(ctx, 1, nil, &discoveryv3.DiscoveryResponse{TypeUrl: ldsType, VersionInfo: "u1", Nonce: "n1"})
	short := func() time.Time { return time.Now().Add(50 * time.Millisecond) }
	if _, err := tr.wait(ctx, []want{{"p1", ldsType, "u1"}}, short()); err == nil {
		t.Fatal("a request without a nonce counted as an ACK")
	}
	_ = cb.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: ldsType, VersionInfo: "u1", ResponseNonce: "n1"})
	evs, err := tr.wait(ctx, []want{{"p1", ldsType, "u1"}}, short())
	if err != nil || evs[0].sent.IsZero() || evs[0].acked.Before(evs[0].sent) {
		t.Fatalf("ACK: %v %+v", err, evs)
	}
	cb.OnStreamResponse(ctx, 1, nil, &discoveryv3.DiscoveryResponse{TypeUrl: ldsType, VersionInfo: "u2", Nonce: "n2"})
	_ = cb.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: ldsType, VersionInfo: "u1", ResponseNonce: "n2",
		ErrorDetail: &statuspb.Status{Code: 3, Message: "bad listener"}})
	if _, err := tr.wait(ctx, []want{{"p1", ldsType, "u2"}}, short()); !errors.Is(err, errNack) || !strings.Contains(err.Error(), "bad listener") {
		t.Fatalf("NACK: %v", err)
	}
}

// TestPorticoFleet runs the real binary (built from this tree): two proxies,
// a tiny size, every update kind, serve checks and the steady sample, over
// state of the world and over delta.
func TestPorticoFleet(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "portico")
	build := exec.Command("go", "build", "-o", bin, "./cmd/portico")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build portico: %v\n%s", err, out)
	}
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) { portico(t, bin, delta) })
	}
}

func portico(t *testing.T, bin string, delta bool) {
	o := testOptions(t)
	o.standin, o.portico, o.sutCPU, o.delta = false, bin, "", delta
	o.sizes = []int{4}
	o.updates = 3
	o.kinds = []string{"chain", "clusters", "one"}
	rows, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	meta := rows[0].(*metaRow)
	if meta.Failure != "" || meta.Unavailable != "" {
		for _, p := range []string{"proxy-1.log", "proxy-2.log"} {
			b, _ := os.ReadFile(filepath.Join(o.dir, p))
			t.Logf("%s:\n%s", p, b)
		}
		t.Fatalf("meta: %+v", meta)
	}
	us := updates(rows)
	if len(us) != 4 {
		t.Fatalf("%d updates, want 4", len(us))
	}
	for _, u := range us {
		if u.Failure != "" || u.Serve == nil || u.Serve.OK != u.Serve.Checked || u.Serve.Checked != 2*3 {
			t.Errorf("update %s: failure %q serve %+v", u.Kind, u.Failure, u.Serve)
		}
	}
	var st *steadyRow
	for _, r := range rows {
		if s, ok := r.(*steadyRow); ok {
			st = s
		}
	}
	if st == nil || len(st.RSSKiB) != 2 || st.RSSKiB[0] <= 0 || st.PSSKiB[0] <= 0 {
		t.Fatalf("steady row %+v", st)
	}
	if c := st.AdminCounters["proxy-1"]; c["listener_manager.total_listeners_active"] != 4 {
		t.Errorf("proxy-1 counters %v, want 4 active listeners", c)
	}
}
