package engine

import (
	"net/netip"
	"testing"
)

// TestOriginalDstHosts: a host per restored destination, reused, with the port override;
// an unrestored address gets none; a host unused for a cleanup interval leaves (its
// OnRemoved hook runs), a used one stays.
func TestOriginalDstHosts(t *testing.T) {
	// A worker that is not running: the test goroutine plays its loop.
	w, werr := newWorker(0, nil)
	if werr != nil {
		t.Fatal(werr)
	}
	c, err := NewCluster(ClusterConfig{Name: "passthrough", OriginalDst: &OriginalDstConfig{}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Hosts()) != 0 || !c.IsOriginalDst() {
		t.Fatal("ORIGINAL_DST cluster with static hosts")
	}
	func() {
		a := &SocketInfo{LocalAddr: netip.MustParseAddrPort("192.0.2.7:80"), LocalAddrRestored: true}
		b := &SocketInfo{LocalAddr: netip.MustParseAddrPort("192.0.2.8:80"), LocalAddrRestored: true}
		if h := c.ChooseHostFor(w, &SocketInfo{LocalAddr: a.LocalAddr}); h != nil {
			t.Error("host for an address no filter restored")
		}
		ha := c.ChooseHostFor(w, a)
		if ha == nil || ha.Address() != a.LocalAddr || c.ChooseHostFor(w, a) != ha {
			t.Errorf("host %v for %v, not reused", ha, a.LocalAddr)
			return
		}
		removed := false
		ha.Local(w).OnRemoved = func() { removed = true }
		hb := c.ChooseHostFor(w, b)
		ow := &c.ext.odst.perWorker[0]
		ow.OnTimer() // first cleanup: both were used in the interval
		if c.OriginalDstHosts(w) != 2 {
			t.Errorf("%d hosts after the first cleanup", c.OriginalDstHosts(w))
		}
		c.ChooseHostFor(w, b)
		ow.OnTimer()
		if c.OriginalDstHosts(w) != 1 || !removed || !ha.Removed() || hb.Removed() {
			t.Errorf("after the second cleanup: %d hosts, a removed %v/%v, b removed %v",
				c.OriginalDstHosts(w), removed, ha.Removed(), hb.Removed())
		}
		if !ow.timer.Armed() {
			t.Error("cleanup timer not re-armed while hosts remain")
		}
		ow.timer.Stop()
	}()

	c2, _ := NewCluster(ClusterConfig{Name: "p2", OriginalDst: &OriginalDstConfig{UpstreamPortOverride: 8080}}, 1)
	func() {
		h := c2.ChooseHostFor(w, &SocketInfo{LocalAddr: netip.MustParseAddrPort("192.0.2.7:80"), LocalAddrRestored: true})
		if h == nil || h.Address().String() != "192.0.2.7:8080" {
			t.Errorf("port override: %v", h)
		}
		c2.ext.odst.perWorker[0].timer.Stop()
	}()
}
