package engine

import (
	"context"
	"sync/atomic"
	"time"
)

// Outlier detection (Envoy's passive health checking, outlier_detection_impl.cc): workers
// report what they saw of a host (Host.ReportResult, Host.ReportHTTPStatus) into the
// host's atomic counters; the report that completes a run of consecutive failures ejects
// the host right there, with atomics (the ejection count and the host's flag), so the
// next pick on every worker skips it. A sweep every interval, off the workers
// (OutlierDetector.Run), returns hosts whose ejection time is over. Nothing locks, nothing
// allocates on the worker's path.

// OutlierResult is the outcome of a connection attempt or request, as a filter reports it
// (Envoy's Outlier::Result for the locally originated events).
type OutlierResult uint8

// Results reported by filters.
const (
	// ResultConnectSuccess: the connection is up, a response is still to come (the
	// router; Envoy's LOCAL_ORIGIN_CONNECT_SUCCESS).
	ResultConnectSuccess OutlierResult = iota + 1
	// ResultConnectSuccessFinal: the connection is up and that is all there is to judge
	// (tcp_proxy; LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL).
	ResultConnectSuccessFinal
	// ResultConnectFailed: the connect was refused or reset (LOCAL_ORIGIN_CONNECT_FAILED).
	ResultConnectFailed
	// ResultTimeout: the connect or the request timed out (LOCAL_ORIGIN_TIMEOUT).
	ResultTimeout
)

// OutlierConfig is a cluster's outlier_detection. A threshold of 0 disables that kind of
// ejection; enforcing values are percentages.
type OutlierConfig struct {
	Interval         time.Duration
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps BaseEjectionTime × the host's ejection count.
	MaxEjectionTime    time.Duration
	MaxEjectionPercent uint32
	// AlwaysEjectOneHost ejects one host even when MaxEjectionPercent would allow none.
	AlwaysEjectOneHost bool

	Consecutive5xx            uint32
	ConsecutiveGatewayFailure uint32
	EnforcingConsecutive5xx   uint32
	EnforcingGatewayFailure   uint32

	// SplitExternalLocalOriginErrors counts connect failures and timeouts apart from
	// HTTP statuses (ConsecutiveLocalOriginFailure); without it they count as 503 and
	// 504 responses.
	SplitExternalLocalOriginErrors bool
	ConsecutiveLocalOriginFailure  uint32
	EnforcingLocalOriginFailure    uint32

	// UnejectOnHealthCheck: a passing active health check returns an ejected host
	// (successful_active_health_check_uneject_host, default true).
	UnejectOnHealthCheck bool
}

// DefaultOutlierConfig is Envoy's defaults.
func DefaultOutlierConfig() OutlierConfig {
	return OutlierConfig{
		Interval:                      10 * time.Second,
		BaseEjectionTime:              30 * time.Second,
		MaxEjectionTime:               300 * time.Second,
		MaxEjectionPercent:            10,
		Consecutive5xx:                5,
		ConsecutiveGatewayFailure:     5,
		EnforcingConsecutive5xx:       100,
		EnforcingGatewayFailure:       0,
		ConsecutiveLocalOriginFailure: 5,
		EnforcingLocalOriginFailure:   100,
		UnejectOnHealthCheck:          true,
	}
}

// ejection kinds
const (
	kind5xx = iota
	kindGateway
	kindLocal
	numKinds
)

var kindNames = [numKinds]string{"consecutive_5xx", "consecutive_gateway_failure", "consecutive_local_origin_failure"}

// OutlierStats are a cluster's outlier_detection.* stats (cluster-wide, atomics).
type OutlierStats struct {
	EjectionsEnforcedTotal Counter
	EjectionsOverflow      Counter
	EjectionsTotal         Counter // deprecated in Envoy, still reported
	Enforced               [numKinds]Counter
	Detected               [numKinds]Counter
	// EjectionsActive is the hosts ejected now.
	EjectionsActive Gauge
}

// hostOutlier is one host's outlier state, written by every worker that reports on it.
type hostOutlier struct {
	d         atomic.Pointer[OutlierDetector]
	c5xx      atomic.Uint32
	gateway   atomic.Uint32
	local     atomic.Uint32
	ejected   atomic.Bool
	ejectedAt atomic.Int64  // detector clock, nanoseconds
	backoff   atomic.Uint32 // ejections counted into the ejection time
}

// OutlierDetector is a cluster's outlier detection (SetOutlierDetection).
type OutlierDetector struct {
	cfg   OutlierConfig
	c     *Cluster
	start time.Time
	hosts atomic.Int64 // the host count, for max_ejection_percent
	rng   atomic.Uint64
	stats OutlierStats
	// now reads the detector's clock (tests step it).
	now func() int64
}

// SetOutlierDetection gives the cluster outlier detection with cfg and returns the
// detector, whose Run must be started (config.Runners) to return ejected hosts. Call it
// before the server starts.
func (c *Cluster) SetOutlierDetection(cfg OutlierConfig) *OutlierDetector {
	if cfg.MaxEjectionTime < cfg.BaseEjectionTime {
		cfg.MaxEjectionTime = cfg.BaseEjectionTime
	}
	d := &OutlierDetector{cfg: cfg, c: c, start: time.Now()}
	d.rng.Store(uint64(d.start.UnixNano()))
	d.now = func() int64 { return int64(time.Since(d.start)) }
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ext.outlier = d
	for _, h := range c.current.hosts {
		h.out.d.Store(d)
	}
	d.hosts.Store(int64(len(c.current.hosts)))
	return d
}

// Config returns the detector's configuration.
func (d *OutlierDetector) Config() OutlierConfig { return d.cfg }

// Stats returns the detector's stats.
func (d *OutlierDetector) Stats() *OutlierStats { return &d.stats }

// ReportResult records a locally originated outcome for the host (nil-safe; a no-op
// unless its cluster has outlier detection). Safe on any worker; no lock, no allocation.
func (h *Host) ReportResult(r OutlierResult) {
	if h == nil {
		return
	}
	d := h.out.d.Load()
	if d == nil {
		return
	}
	if d.cfg.SplitExternalLocalOriginErrors {
		switch r {
		case ResultConnectSuccess, ResultConnectSuccessFinal:
			resetCounter(&h.out.local)
		case ResultConnectFailed, ResultTimeout:
			if n := h.out.local.Add(1); n == d.cfg.ConsecutiveLocalOriginFailure {
				d.onConsecutive(h, kindLocal)
			}
		}
		return
	}
	// Not split: a local failure counts as the status the client would get.
	switch r {
	case ResultConnectSuccessFinal:
		d.putHTTP(h, 200)
	case ResultConnectFailed:
		d.putHTTP(h, 503)
	case ResultTimeout:
		d.putHTTP(h, 504)
	}
}

// ReportHTTPStatus records an upstream's response status for the host (nil-safe).
func (h *Host) ReportHTTPStatus(code int) {
	if h == nil {
		return
	}
	if d := h.out.d.Load(); d != nil {
		d.putHTTP(h, code)
	}
}

// resetCounter zeroes a counter without writing its cache line when it is already zero
// (the common case: a success after successes).
func resetCounter(c *atomic.Uint32) {
	if c.Load() != 0 {
		c.Store(0)
	}
}

func (d *OutlierDetector) putHTTP(h *Host, code int) {
	o := &h.out
	if code < 500 || code > 599 {
		resetCounter(&o.c5xx)
		resetCounter(&o.gateway)
		return
	}
	if code >= 502 && code <= 504 {
		if n := o.gateway.Add(1); n == d.cfg.ConsecutiveGatewayFailure {
			d.onConsecutive(h, kindGateway)
		}
	} else {
		resetCounter(&o.gateway)
	}
	if n := o.c5xx.Add(1); n == d.cfg.Consecutive5xx {
		d.onConsecutive(h, kind5xx)
	}
}

// onConsecutive: a run of failures of one kind reached its threshold on host h. Envoy
// posts this to its main thread; here it is decided on the spot with atomics.
func (d *OutlierDetector) onConsecutive(h *Host, kind int) {
	o := &h.out
	switch kind {
	case kind5xx:
		o.c5xx.Store(0)
	case kindGateway:
		o.gateway.Store(0)
	default:
		o.local.Store(0)
	}
	if o.ejected.Load() || h.Removed() {
		return
	}
	n := d.hosts.Load()
	if n <= 0 {
		return
	}
	// Take an ejection slot if max_ejection_percent allows one more.
	for {
		a := d.stats.EjectionsActive.Value()
		if 100*(a+1) > int64(d.cfg.MaxEjectionPercent)*n && !(d.cfg.AlwaysEjectOneHost && a == 0) {
			d.stats.EjectionsOverflow.Inc()
			return
		}
		if d.stats.EjectionsActive.v.CompareAndSwap(a, a+1) {
			break
		}
	}
	d.stats.Detected[kind].Inc()
	if !d.enforce(kind) || !o.ejected.CompareAndSwap(false, true) {
		d.stats.EjectionsActive.Dec()
		return
	}
	o.ejectedAt.Store(d.now())
	if b := o.backoff.Load(); d.cfg.BaseEjectionTime*time.Duration(b+1) <= d.cfg.MaxEjectionTime {
		o.backoff.Add(1)
	}
	h.SetHealthFlag(FailedOutlierCheck, true)
	d.stats.EjectionsEnforcedTotal.Inc()
	d.stats.EjectionsTotal.Inc()
	d.stats.Enforced[kind].Inc()
}

// enforce draws whether a detected outlier is ejected (enforcing_* percentages).
func (d *OutlierDetector) enforce(kind int) bool {
	pct := d.cfg.EnforcingConsecutive5xx
	switch kind {
	case kindGateway:
		pct = d.cfg.EnforcingGatewayFailure
	case kindLocal:
		pct = d.cfg.EnforcingLocalOriginFailure
	}
	if pct >= 100 {
		return true
	}
	if pct == 0 {
		return false
	}
	z := d.rng.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return (z^(z>>31))%100 < uint64(pct)
}

// uneject returns an ejected host to load balancing.
func (d *OutlierDetector) uneject(h *Host) {
	o := &h.out
	if !o.ejected.CompareAndSwap(true, false) {
		return
	}
	d.stats.EjectionsActive.Dec()
	o.c5xx.Store(0)
	o.gateway.Store(0)
	o.local.Store(0)
	h.SetHealthFlag(FailedOutlierCheck, false)
}

// ActiveCheckSucceeded is called by an active health checker when h passes a check: with
// successful_active_health_check_uneject_host (the default) an ejected host returns.
func (d *OutlierDetector) ActiveCheckSucceeded(h *Host) {
	if d.cfg.UnejectOnHealthCheck {
		d.uneject(h)
	}
}

// Sweep returns the hosts whose ejection time is over and lets the ejection count of
// the others decay, as Envoy's interval timer does. Run calls it every interval.
func (d *OutlierDetector) Sweep() {
	now := d.now()
	for _, h := range d.c.Hosts() {
		o := &h.out
		if o.ejected.Load() {
			t := d.cfg.BaseEjectionTime * time.Duration(max(o.backoff.Load(), 1))
			t = min(t, d.cfg.MaxEjectionTime)
			if now-o.ejectedAt.Load() >= int64(t) {
				d.uneject(h)
			}
			continue
		}
		if b := o.backoff.Load(); b > 0 {
			o.backoff.CompareAndSwap(b, b-1)
		}
	}
}

// Run sweeps every interval until ctx is done (a config.Runner).
func (d *OutlierDetector) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.Sweep()
		}
	}
}

// Ejected reports whether outlier detection ejected h.
func (h *Host) Ejected() bool { return h.out.ejected.Load() }

// StatsFamily implements StatsSource: cluster.<name>.outlier_detection.*.
func (d *OutlierDetector) StatsFamily() string { return "cluster" }

// StatsLabels implements StatsSource.
func (d *OutlierDetector) StatsLabels() [][2]string {
	return [][2]string{{"cluster", d.c.Name()}}
}

// VisitStats implements StatsSource. The values are cluster-wide: worker 0 reports
// them, the others report zeros, so that the sum over workers is the value.
func (d *OutlierDetector) VisitStats(worker int, v StatVisitor) {
	s := &d.stats
	val := func(x uint64) float64 {
		if worker != 0 {
			return 0
		}
		return float64(x)
	}
	v("outlier_detection.ejections_active", KindGauge, val(uint64(max(s.EjectionsActive.Value(), 0))))
	v("outlier_detection.ejections_overflow", KindCounter, val(s.EjectionsOverflow.Value()))
	v("outlier_detection.ejections_enforced_total", KindCounter, val(s.EjectionsEnforcedTotal.Value()))
	v("outlier_detection.ejections_total", KindCounter, val(s.EjectionsTotal.Value()))
	v("outlier_detection.ejections_consecutive_5xx", KindCounter, val(s.Enforced[kind5xx].Value()))
	for k := 0; k < numKinds; k++ {
		v(enforcedNames[k], KindCounter, val(s.Enforced[k].Value()))
		v(detectedNames[k], KindCounter, val(s.Detected[k].Value()))
	}
}

var enforcedNames, detectedNames = func() (e, d [numKinds]string) {
	for k, n := range kindNames {
		e[k] = "outlier_detection.ejections_enforced_" + n
		d[k] = "outlier_detection.ejections_detected_" + n
	}
	return
}()
