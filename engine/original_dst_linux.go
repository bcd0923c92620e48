package engine

import (
	"net/netip"
	"time"
)

// ORIGINAL_DST clusters (Envoy's OriginalDstCluster, lb_policy CLUSTER_PROVIDED; Istio's
// PassthroughCluster): each connection goes to the address it was sent to before an
// iptables REDIRECT brought it to the proxy, as the original_dst listener filter restored
// it. Hosts are made on demand, one per destination, and forgotten once unused for a
// cleanup interval. Each worker keeps its own map, so a pick takes no lock and reuses the
// host (and its HTTP pool) of earlier connections to the same destination; only the first
// connection to a destination on a worker allocates.

// OriginalDstConfig configures an ORIGINAL_DST cluster.
type OriginalDstConfig struct {
	// CleanupInterval: a host not picked for this long is removed (Envoy's
	// cleanup_interval, default 5 s).
	CleanupInterval time.Duration
	// UpstreamPortOverride, if not 0, replaces the original destination's port.
	UpstreamPortOverride uint16
}

// DefaultOriginalDstCleanup is Envoy's cleanup_interval default.
const DefaultOriginalDstCleanup = 5 * time.Second

type originalDst struct {
	cfg       OriginalDstConfig
	perWorker []odWorker
}

type odWorker struct {
	c     *Cluster
	w     *Worker
	hosts map[netip.AddrPort]*odEntry
	timer Timer
}

type odEntry struct {
	h    *Host
	used bool // picked since the last cleanup
}

func (c *Cluster) initOriginalDst(cfg OriginalDstConfig) {
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = DefaultOriginalDstCleanup
	}
	od := &originalDst{cfg: cfg, perWorker: make([]odWorker, c.workers)}
	for i := range od.perWorker {
		od.perWorker[i].c = c
	}
	c.ext.odst = od
}

// IsOriginalDst reports whether the cluster is an ORIGINAL_DST cluster.
func (c *Cluster) IsOriginalDst() bool { return c.ext.odst != nil }

// ChooseHostFor picks a host for a connection whose downstream socket is described by
// info (nil when there is none). For an ORIGINAL_DST cluster it is the downstream's
// original destination (info.LocalAddr, when a listener filter restored it; otherwise nil,
// "no healthy upstream", as in Envoy); for any other cluster it is ChooseHost.
func (c *Cluster) ChooseHostFor(w *Worker, info *SocketInfo) *Host {
	od := c.ext.odst
	if od == nil {
		return c.ChooseHost(w, nil)
	}
	if info == nil || !info.LocalAddrRestored || !info.LocalAddr.IsValid() {
		return nil
	}
	return c.OriginalDstHost(w, info.LocalAddr)
}

// OriginalDstHost returns worker w's host of an ORIGINAL_DST cluster for destination
// addr, made on first use (nil for other clusters).
func (c *Cluster) OriginalDstHost(w *Worker, addr netip.AddrPort) *Host {
	od := c.ext.odst
	if od == nil {
		return nil
	}
	if p := od.cfg.UpstreamPortOverride; p != 0 {
		addr = netip.AddrPortFrom(addr.Addr(), p)
	}
	ow := &od.perWorker[w.ID]
	if e := ow.hosts[addr]; e != nil {
		e.used = true
		return e.h
	}
	if ow.hosts == nil {
		ow.hosts = make(map[netip.AddrPort]*odEntry)
		ow.w = w
		ow.timer.Init(w, ow)
	}
	h := NewHost(addr, 1, "", c.workers)
	ow.hosts[addr] = &odEntry{h: h, used: true}
	if !ow.timer.Armed() {
		ow.timer.Reset(od.cfg.CleanupInterval)
	}
	return h
}

// OnTimer implements TimerHandler: the cleanup of one worker's hosts. A host not picked
// since the last cleanup leaves (its idle pooled connections are closed by its OnRemoved
// hook; open connections keep it until they close).
func (ow *odWorker) OnTimer() {
	for addr, e := range ow.hosts {
		if e.used {
			e.used = false
			continue
		}
		delete(ow.hosts, addr)
		e.h.removed.Store(true)
		if fn := e.h.local[ow.w.ID].OnRemoved; fn != nil {
			fn()
		}
	}
	if len(ow.hosts) > 0 {
		ow.timer.Reset(ow.c.ext.odst.cfg.CleanupInterval)
	}
}

// OriginalDstHosts is the number of hosts worker w holds for an ORIGINAL_DST cluster
// (only w may call it; tests and admin use it through Worker.Post).
func (c *Cluster) OriginalDstHosts(w *Worker) int {
	if c.ext.odst == nil {
		return 0
	}
	return len(c.ext.odst.perWorker[w.ID].hosts)
}
