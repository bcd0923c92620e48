package engine

// What active health checking, outlier detection and ORIGINAL_DST add to a Cluster. The
// checkers and the outlier detector's sweeps run off the workers (DESIGN §1): they reach
// the workers through the hosts' atomic health flags only.

// clusterExt is a Cluster's health-checking, outlier-detection and ORIGINAL_DST state.
// The fields are set before the server starts (EnableActiveHealthChecking,
// SetOutlierDetection) or read under Cluster.mu (watchers).
type clusterExt struct {
	// healthChecked: hosts that join the cluster start with FailedActiveHealthCheck until
	// their first check passes, as in Envoy.
	healthChecked bool
	// keepHealthyRemoved: a host that leaves the host set while it passes its health
	// checks stays in it until it fails one (Envoy's behaviour unless
	// ignore_health_on_host_removal is set).
	keepHealthyRemoved bool
	watchers           []chan struct{}
	outlier            *OutlierDetector
	odst               *originalDst
}

// EnableActiveHealthChecking tells the cluster that an active health checker watches its
// hosts: every host, present and to come, is marked FailedActiveHealthCheck until its
// first check passes (Envoy does the same for the hosts of a health-checked cluster). With
// keepHealthyOnRemoval, a host that leaves the set (a DNS answer without it) stays while
// it passes its checks: Envoy's default, which ignore_health_on_host_removal turns off.
// Call it before the server starts.
func (c *Cluster) EnableActiveHealthChecking(keepHealthyOnRemoval bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ext.healthChecked = true
	c.ext.keepHealthyRemoved = keepHealthyOnRemoval
	for _, h := range c.current.hosts {
		h.SetHealthFlag(FailedActiveHealthCheck, true)
	}
}

// WatchHosts returns a channel that receives a value (without blocking the updater; one
// is kept) after each change of the host set. Health checkers use it to check the hosts a
// DNS refresh adds.
func (c *Cluster) WatchHosts() <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.ext.watchers = append(c.ext.watchers, ch)
	c.mu.Unlock()
	return ch
}

// HadTraffic reports whether the cluster ever opened an upstream connection for traffic
// (health checkers use no_traffic_interval until it has, as Envoy does).
func (c *Cluster) HadTraffic() bool {
	for i := range c.perWorker {
		if c.perWorker[i].stats.UpstreamCxTotal.Value() > 0 {
			return true
		}
	}
	return false
}

// OutlierDetector returns the cluster's outlier detector, or nil.
func (c *Cluster) OutlierDetector() *OutlierDetector { return c.ext.outlier }

// beforeHostUpdate runs under c.mu when the host set is replaced by hosts: it keeps the
// removed hosts that still pass their health checks (see EnableActiveHealthChecking),
// marks the new ones as waiting for their first check, attaches the outlier detector to
// them, forgets the ejections of the hosts that left, and wakes the watchers. It returns
// the set to publish.
func (c *Cluster) beforeHostUpdate(hosts []*Host) []*Host {
	var old []*Host
	if c.current != nil {
		old = c.current.hosts
	}
	if c.ext.healthChecked && c.ext.keepHealthyRemoved {
		kept := false
		for _, h := range old {
			if h.health.Load()&uint32(FailedActiveHealthCheck) == 0 && !containsHost(hosts, h) {
				if !kept {
					hosts = append([]*Host(nil), hosts...)
					kept = true
				}
				hosts = append(hosts, h)
			}
		}
	}
	d := c.ext.outlier
	for _, h := range hosts {
		if containsHost(old, h) {
			continue
		}
		if c.ext.healthChecked {
			h.SetHealthFlag(FailedActiveHealthCheck, true)
		}
		if d != nil {
			h.out.d.Store(d)
		}
	}
	if d != nil {
		for _, h := range old {
			if !containsHost(hosts, h) {
				d.uneject(h)
			}
		}
		d.hosts.Store(int64(len(hosts)))
	}
	for _, ch := range c.ext.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return hosts
}

// MembershipStats returns the cluster's membership gauges (Envoy's
// cluster.<name>.membership_total, membership_healthy ...), computed from the host set
// when scraped.
func (c *Cluster) MembershipStats() StatsSource { return membershipStats{c} }

type membershipStats struct{ c *Cluster }

func (membershipStats) StatsFamily() string { return "cluster" }

func (m membershipStats) StatsLabels() [][2]string { return [][2]string{{"cluster", m.c.Name()}} }

func (m membershipStats) VisitStats(worker int, v StatVisitor) {
	if worker != 0 {
		// Cluster-wide values: reported once, so that the sum over workers is the value.
		v("membership_total", KindGauge, 0)
		v("membership_healthy", KindGauge, 0)
		v("membership_degraded", KindGauge, 0)
		v("membership_excluded", KindGauge, 0)
		return
	}
	hosts := m.c.Hosts()
	healthy := 0
	for _, h := range hosts {
		if h.Healthy() {
			healthy++
		}
	}
	v("membership_total", KindGauge, float64(len(hosts)))
	v("membership_healthy", KindGauge, float64(healthy))
	v("membership_degraded", KindGauge, 0)
	v("membership_excluded", KindGauge, 0)
}
