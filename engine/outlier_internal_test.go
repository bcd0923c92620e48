package engine

import (
	"net/netip"
	"testing"
	"time"
)

func outlierCluster(t *testing.T, n int, cfg OutlierConfig) (*Cluster, *OutlierDetector, *int64) {
	t.Helper()
	var eps []Endpoint
	for i := 0; i < n; i++ {
		eps = append(eps, Endpoint{Address: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i))})
	}
	c, err := NewCluster(ClusterConfig{Name: "od", Endpoints: eps}, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := c.SetOutlierDetection(cfg)
	clock := new(int64)
	d.now = func() int64 { return *clock }
	return c, d, clock
}

// TestOutlierConsecutive5xx: five 5xx in a row eject a host (a success in between starts
// the count again); it stays out for base_ejection_time × its ejection count, and the
// sweep brings it back.
func TestOutlierConsecutive5xx(t *testing.T) {
	cfg := DefaultOutlierConfig()
	cfg.MaxEjectionPercent = 100
	c, d, clock := outlierCluster(t, 2, cfg)
	h := c.Hosts()[0]
	for i := 0; i < 4; i++ {
		h.ReportHTTPStatus(500)
	}
	h.ReportHTTPStatus(200)
	for i := 0; i < 4; i++ {
		h.ReportHTTPStatus(503)
	}
	if !h.Healthy() {
		t.Fatal("ejected before five consecutive 5xx")
	}
	h.ReportHTTPStatus(500)
	if h.Healthy() || h.HealthFlags() != FailedOutlierCheck || !h.Ejected() {
		t.Fatalf("not ejected after five 5xx: flags %v", h.HealthFlags())
	}
	s := d.Stats()
	if s.EjectionsActive.Value() != 1 || s.Enforced[kind5xx].Value() != 1 || s.EjectionsEnforcedTotal.Value() != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The other host takes the traffic.
	w := &Worker{ID: 0}
	for i := 0; i < 4; i++ {
		if got := c.ChooseHost(w, nil); got == h {
			t.Fatal("ejected host picked")
		}
	}
	*clock = int64(29 * time.Second)
	d.Sweep()
	if !h.Ejected() {
		t.Fatal("returned before base_ejection_time")
	}
	*clock = int64(30 * time.Second)
	d.Sweep()
	if h.Ejected() || !h.Healthy() || s.EjectionsActive.Value() != 0 {
		t.Fatal("not returned after base_ejection_time")
	}
	// Ejected again at once: twice as long (the count has not decayed yet).
	for i := 0; i < 5; i++ {
		h.ReportHTTPStatus(500)
	}
	start := *clock
	*clock = start + int64(59*time.Second)
	d.Sweep()
	if !h.Ejected() {
		t.Fatal("second ejection shorter than 2 × base")
	}
	*clock = start + int64(60*time.Second)
	d.Sweep()
	if h.Ejected() {
		t.Fatal("second ejection longer than 2 × base")
	}
}

// TestOutlierMaxEjectionPercent: the default 10 % ejects nobody from a cluster of two (one
// host would be 50 %), unless always_eject_one_host; the refusal counts as an overflow.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	cfg := DefaultOutlierConfig()
	c, d, _ := outlierCluster(t, 2, cfg)
	h := c.Hosts()[0]
	for i := 0; i < 5; i++ {
		h.ReportHTTPStatus(500)
	}
	if h.Ejected() || d.Stats().EjectionsOverflow.Value() != 1 {
		t.Fatalf("ejected %v overflow %d", h.Ejected(), d.Stats().EjectionsOverflow.Value())
	}
	cfg.AlwaysEjectOneHost = true
	c, _, _ = outlierCluster(t, 2, cfg)
	a, b := c.Hosts()[0], c.Hosts()[1]
	for i := 0; i < 5; i++ {
		a.ReportHTTPStatus(500)
		b.ReportHTTPStatus(500)
	}
	if !a.Ejected() || b.Ejected() {
		t.Fatalf("always_eject_one_host: %v %v", a.Ejected(), b.Ejected())
	}
}

// TestOutlierGatewayAndLocalOrigin: gateway failures eject only when enforced (default
// 0 %); connect failures count as 503s unless split, then as local-origin failures.
func TestOutlierGatewayAndLocalOrigin(t *testing.T) {
	cfg := DefaultOutlierConfig()
	cfg.MaxEjectionPercent = 100
	cfg.Consecutive5xx = 0 // only gateway failures
	c, d, _ := outlierCluster(t, 1, cfg)
	h := c.Hosts()[0]
	for i := 0; i < 5; i++ {
		h.ReportHTTPStatus(502)
	}
	if h.Ejected() || d.Stats().Detected[kindGateway].Value() != 1 {
		t.Fatalf("gateway: ejected %v detected %d", h.Ejected(), d.Stats().Detected[kindGateway].Value())
	}
	cfg.EnforcingGatewayFailure = 100
	c, _, _ = outlierCluster(t, 1, cfg)
	h = c.Hosts()[0]
	for i := 0; i < 5; i++ {
		h.ReportResult(ResultConnectFailed) // a 503: a gateway failure
	}
	if !h.Ejected() {
		t.Fatal("connect failures (not split) did not count as gateway failures")
	}

	cfg = DefaultOutlierConfig()
	cfg.MaxEjectionPercent = 100
	cfg.SplitExternalLocalOriginErrors = true
	c, d, _ = outlierCluster(t, 1, cfg)
	h = c.Hosts()[0]
	for i := 0; i < 4; i++ {
		h.ReportResult(ResultTimeout)
	}
	h.ReportResult(ResultConnectSuccess)
	for i := 0; i < 4; i++ {
		h.ReportResult(ResultConnectFailed)
		h.ReportHTTPStatus(200) // HTTP successes do not reset local-origin failures
	}
	if h.Ejected() {
		t.Fatal("ejected before five consecutive local-origin failures")
	}
	h.ReportResult(ResultConnectFailed)
	if !h.Ejected() || d.Stats().Enforced[kindLocal].Value() != 1 {
		t.Fatal("not ejected after five local-origin failures")
	}
	d.ActiveCheckSucceeded(h)
	if h.Ejected() || !h.Healthy() {
		t.Fatal("a passing health check did not return the host")
	}
}

// TestHostUpdateHooks: with health checking, hosts that join start failed; a removed host
// that passes its checks stays until it fails one; an ejected host that leaves frees its
// ejection slot.
func TestHostUpdateHooks(t *testing.T) {
	cfg := DefaultOutlierConfig()
	cfg.MaxEjectionPercent = 100
	c, d, _ := outlierCluster(t, 2, cfg)
	c.EnableActiveHealthChecking(true)
	a, b := c.Hosts()[0], c.Hosts()[1]
	if a.Healthy() || b.Healthy() {
		t.Fatal("hosts not waiting for their first check")
	}
	watch := c.WatchHosts()
	a.SetHealthFlag(FailedActiveHealthCheck, false) // a passed
	n := NewHost(netip.MustParseAddrPort("127.0.0.1:2000"), 1, "", 1)
	c.UpdateHosts([]*Host{n})
	select {
	case <-watch:
	default:
		t.Fatal("watcher not woken")
	}
	hosts := c.Hosts()
	if len(hosts) != 2 || hosts[0] != n || hosts[1] != a {
		t.Fatalf("hosts %v: want the new one and the healthy removed one", hosts)
	}
	if n.HealthFlags()&FailedActiveHealthCheck == 0 || n.out.d.Load() != d {
		t.Fatal("new host not marked / not attached to the detector")
	}
	for i := 0; i < 5; i++ {
		a.ReportHTTPStatus(500)
	}
	if d.Stats().EjectionsActive.Value() != 1 {
		t.Fatal("not ejected")
	}
	a.SetHealthFlag(FailedActiveHealthCheck, true)
	c.UpdateHosts([]*Host{n})
	if len(c.Hosts()) != 1 || d.Stats().EjectionsActive.Value() != 0 || a.Ejected() {
		t.Fatalf("failed removed host kept (%d hosts) or its ejection not released", len(c.Hosts()))
	}
}
