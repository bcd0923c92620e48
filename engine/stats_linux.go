package engine

import (
	"reflect"
	"sync/atomic"
)

// Counter is a monotonically increasing stat. It is written by one worker and read by the
// admin scrape without a lock.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value reads the counter.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a stat that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Add adds n (may be negative).
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Set sets the gauge to n.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value reads the gauge.
func (g *Gauge) Value() int64 { return g.v.Load() }

// StatKind tells counters from gauges (and histograms) for exporters.
type StatKind int

// Stat kinds.
const (
	KindCounter StatKind = iota
	KindGauge
	// KindHistogram is a Histogram's kind. A StatVisitor never receives it: histograms
	// reach a HistogramVisitor (see HistogramSource), so visitors that know counters and
	// gauges only keep working.
	KindHistogram
)

// StatVisitor receives one stat: its Envoy name, kind and value.
type StatVisitor func(name string, kind StatKind, value float64)

// ListenerStats are one listener's stats on one worker, with Envoy's names.
type ListenerStats struct {
	DownstreamCxTotal    Counter
	DownstreamCxDestroy  Counter
	DownstreamCxActive   Gauge
	DownstreamCxOverflow Counter
	// DownstreamCxDrainAccepted (Portico's own): connections taken from the accept queue
	// as the listener stopped for a drain, served instead of reset.
	DownstreamCxDrainAccepted     Counter
	DownstreamPreCxActive         Gauge
	DownstreamPreCxTimeout        Counter
	DownstreamListenerFilterError Counter
	NoFilterChainMatch            Counter
	DownstreamCxRxBytesTotal      Counter
	DownstreamCxTxBytesTotal      Counter
	// DownstreamCxHandedOff counts sockets this listener passed on by use_original_dst.
	DownstreamCxHandedOff Counter
	// DownstreamCxFilterPanic counts connections and sockets reset because their filter
	// code panicked (see ServerStats.FilterPanics for the server-wide count).
	DownstreamCxFilterPanic Counter
	// DownstreamListenerFilterReadLimit counts sockets closed because their listener
	// filters were still undecided after maxListenerFilterReads reads (a slow drip).
	DownstreamListenerFilterReadLimit Counter
	// Each worker writes its own ListenerStats: keep two workers' counters off one cache
	// line (14 counters are 112 bytes; 128 is two lines).
	_ [16]byte
}

// Visit reports every stat.
func (s *ListenerStats) Visit(v StatVisitor) {
	v("downstream_cx_total", KindCounter, float64(s.DownstreamCxTotal.Value()))
	v("downstream_cx_destroy", KindCounter, float64(s.DownstreamCxDestroy.Value()))
	v("downstream_cx_active", KindGauge, float64(s.DownstreamCxActive.Value()))
	v("downstream_cx_overflow", KindCounter, float64(s.DownstreamCxOverflow.Value()))
	v("downstream_cx_drain_accepted", KindCounter, float64(s.DownstreamCxDrainAccepted.Value()))
	v("downstream_pre_cx_active", KindGauge, float64(s.DownstreamPreCxActive.Value()))
	v("downstream_pre_cx_timeout", KindCounter, float64(s.DownstreamPreCxTimeout.Value()))
	v("downstream_listener_filter_error", KindCounter, float64(s.DownstreamListenerFilterError.Value()))
	v("no_filter_chain_match", KindCounter, float64(s.NoFilterChainMatch.Value()))
	v("downstream_cx_rx_bytes_total", KindCounter, float64(s.DownstreamCxRxBytesTotal.Value()))
	v("downstream_cx_tx_bytes_total", KindCounter, float64(s.DownstreamCxTxBytesTotal.Value()))
	v("downstream_cx_handed_off", KindCounter, float64(s.DownstreamCxHandedOff.Value()))
	v("downstream_cx_filter_panic", KindCounter, float64(s.DownstreamCxFilterPanic.Value()))
	v("downstream_listener_filter_read_limit", KindCounter, float64(s.DownstreamListenerFilterReadLimit.Value()))
}

// ClusterStats are one cluster's stats on one worker, with Envoy's names.
type ClusterStats struct {
	UpstreamCxTotal          Counter
	UpstreamCxActive         Gauge
	UpstreamCxConnectFail    Counter
	UpstreamCxConnectTimeout Counter
	UpstreamCxDestroy        Counter
	UpstreamCxRxBytesTotal   Counter
	UpstreamCxTxBytesTotal   Counter
	UpstreamCxNoneHealthy    Counter
	// UpstreamCxOverflow counts upstream connections that failed for lack of the proxy's
	// own resources (no fd, no memory, no local port), not because of the backend.
	UpstreamCxOverflow Counter
}

// Visit reports every stat.
func (s *ClusterStats) Visit(v StatVisitor) {
	v("upstream_cx_total", KindCounter, float64(s.UpstreamCxTotal.Value()))
	v("upstream_cx_active", KindGauge, float64(s.UpstreamCxActive.Value()))
	v("upstream_cx_connect_fail", KindCounter, float64(s.UpstreamCxConnectFail.Value()))
	v("upstream_cx_connect_timeout", KindCounter, float64(s.UpstreamCxConnectTimeout.Value()))
	v("upstream_cx_destroy", KindCounter, float64(s.UpstreamCxDestroy.Value()))
	v("upstream_cx_rx_bytes_total", KindCounter, float64(s.UpstreamCxRxBytesTotal.Value()))
	v("upstream_cx_tx_bytes_total", KindCounter, float64(s.UpstreamCxTxBytesTotal.Value()))
	v("upstream_cx_none_healthy", KindCounter, float64(s.UpstreamCxNoneHealthy.Value()))
	v("upstream_cx_overflow", KindCounter, float64(s.UpstreamCxOverflow.Value()))
}

// StatsSource is a set of stats owned by a filter, such as one tcp_proxy stat_prefix.
// Family is the Prometheus family ("tcp"), Labels identify the instance (for example
// {"stat_prefix", "ingress"}); Visit reports worker i's stats.
type StatsSource interface {
	StatsFamily() string
	StatsLabels() [][2]string
	VisitStats(worker int, v StatVisitor)
}

// AddCounters adds every Counter of src into the Counter at the same place in dst: two
// pointers to values of one struct type, such as two ClusterStats. It is for stats that
// continue across versions of what they count: a cluster that CDS replaces keeps its
// counters in Envoy (the new version's scope has the same names), so the new version
// starts from the old one's counts. Gauges and histograms are left alone: a gauge is the
// version's own state, and a histogram's window restarts. Call it before dst is in use.
func AddCounters(dst, src any) {
	d, s := reflect.ValueOf(dst), reflect.ValueOf(src)
	if d.Kind() != reflect.Pointer || d.Type() != s.Type() || d.IsNil() || s.IsNil() {
		return
	}
	addCounters(d.Elem(), s.Elem())
}

func addCounters(d, s reflect.Value) {
	switch t := d.Type(); {
	case t == reflect.TypeFor[Counter]():
		// UnsafePointer reads unexported fields too (a struct's counters need not all be
		// exported); both sides are addressable, being reached through pointers.
		(*Counter)(d.Addr().UnsafePointer()).Add((*Counter)(s.Addr().UnsafePointer()).Value())
	case t == reflect.TypeFor[Histogram]():
	case t.Kind() == reflect.Struct:
		for i := range d.NumField() {
			addCounters(d.Field(i), s.Field(i))
		}
	case t.Kind() == reflect.Array:
		for i := range d.Len() {
			addCounters(d.Index(i), s.Index(i))
		}
	}
}
