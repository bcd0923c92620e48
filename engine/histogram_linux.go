package engine

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// histogramBounds are the inclusive upper bounds, in whole milliseconds, of a Histogram's
// buckets but the last (which has none). They hold every one of Envoy's default bucket
// bounds (0.5 is 0 for whole milliseconds), so the Prometheus buckets are exact sums of
// these, and steps of at most 1.5x in between, so that the quantiles of the /stats text
// form are interpolated within a narrow bucket. Read only.
var histogramBounds = [...]uint64{
	0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 25, 35, 50, 75, 100, 150, 200, 250, 350, 500, 750,
	1000, 1500, 2000, 2500, 3500, 5000, 7500, 10000, 15000, 20000, 30000, 45000, 60000,
	120000, 300000, 600000, 1800000, 3600000,
}

// prometheusBounds are Envoy's default histogram buckets (ms), the le labels it exports.
// Read only.
var prometheusBounds = [...]float64{
	0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
	600000, 1800000, 3600000,
}

// HistogramBuckets is the number of buckets of a Histogram, the last one unbounded.
const HistogramBuckets = len(histogramBounds) + 1

// PrometheusBuckets is the number of Envoy's default buckets, which /stats/prometheus
// exports (before the +Inf bucket).
const PrometheusBuckets = len(prometheusBounds)

// HistogramBucketBound is bucket i's inclusive upper bound in whole milliseconds;
// math.MaxUint64 for the last bucket.
func HistogramBucketBound(i int) uint64 {
	if i >= len(histogramBounds) {
		return math.MaxUint64
	}
	return histogramBounds[i]
}

// PrometheusBucketBound is Envoy's default bucket i's bound (its le label), in ms.
func PrometheusBucketBound(i int) float64 { return prometheusBounds[i] }

// Histogram is a distribution of durations in milliseconds, as Envoy's histograms
// (rq_time, upstream_cx_connect_ms ...). Like a Counter it is written by one worker and read
// by the admin scrape without a lock: Record is a few atomic adds and never allocates.
// It keeps every value since it was created (Envoy's cumulative statistics).
type Histogram struct {
	buckets [HistogramBuckets]atomic.Uint64
	sum     atomic.Uint64
	// min (the smallest value + 1, 0 before the first) and max are written by the one
	// recording worker only (a load and, rarely, a store): they make P0 and P100 exact
	// and bound the first and last buckets' interpolation.
	min, max atomic.Uint64
}

// histogramStart[n] is the first bucket that can hold a value of bit length n (the first
// whose bound is at least 1<<(n-1)): with steps of at most 1.5x between bounds a value's
// bucket is then at most three comparisons away. Computed once, read only.
var histogramStart = func() (t [65]uint8) {
	for n := 1; n <= 64; n++ {
		lo := uint64(1) << (n - 1)
		i := 0
		for i < len(histogramBounds) && histogramBounds[i] < lo {
			i++
		}
		t[n] = uint8(i)
	}
	return t
}()

// histogramBucket is the index of the first bucket whose bound is at least v.
func histogramBucket(v uint64) int {
	i := int(histogramStart[bits.Len64(v)])
	for i < len(histogramBounds) && histogramBounds[i] < v {
		i++
	}
	return i
}

// Record adds one value, in milliseconds. Call it from the histogram's worker only.
func (h *Histogram) Record(v uint64) {
	// The extremes first: a Snapshot, which reads them after the buckets, then has
	// extremes that cover every value it counts.
	if v > h.max.Load() {
		h.max.Store(v)
	}
	if m := h.min.Load(); m == 0 || v < m-1 {
		h.min.Store(v + 1)
	}
	h.buckets[histogramBucket(v)].Add(1)
	h.sum.Add(v)
}

// Snapshot reads the histogram into s. The buckets are read one by one while the worker
// may record, so Sum may differ from the counted values' sum by a value or two; the count
// is always the sum of the buckets, and Min and Max cover every value counted.
func (h *Histogram) Snapshot(s *HistogramSnapshot) {
	for i := range h.buckets {
		s.Buckets[i] = h.buckets[i].Load()
	}
	s.Sum = h.sum.Load()
	s.Min = h.min.Load() - 1 // MaxUint64 before the first value, which Add treats as none
	s.Max = h.max.Load()
}

// HistogramSnapshot is a histogram's values at one time, or the merge of several (the
// workers' histograms of one stat).
type HistogramSnapshot struct {
	// Buckets[i] counts the values of bucket i: at most HistogramBucketBound(i) and more
	// than the bound of bucket i-1.
	Buckets [HistogramBuckets]uint64
	// Sum is the sum of the values, Min the smallest and Max the largest (Min is
	// math.MaxUint64 and Max 0 when there are none).
	Sum, Min, Max uint64
}

// Count is the number of values.
func (s *HistogramSnapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Buckets {
		n += c
	}
	return n
}

// Add merges o into s. Either may be the zero HistogramSnapshot, whose Min means nothing.
func (s *HistogramSnapshot) Add(o *HistogramSnapshot) {
	if o.Count() == 0 {
		return
	}
	if s.Count() == 0 {
		*s = *o
		return
	}
	for i, c := range o.Buckets {
		s.Buckets[i] += c
	}
	s.Sum += o.Sum
	s.Min = min(s.Min, o.Min)
	s.Max = max(s.Max, o.Max)
}

// Quantile estimates the q-quantile (0 <= q <= 1) of the values; NaN when there are
// none, as Envoy prints it. The quantile's bucket is known exactly; within it the value is
// interpolated linearly between the bucket's smallest whole value and its bound, narrowed
// to Min and Max, as Envoy interpolates within its own (finer) buckets: P0 is Min and P100
// Max.
func (s *HistogramSnapshot) Quantile(q float64) float64 {
	n := s.Count()
	if n == 0 {
		return math.NaN()
	}
	q = min(max(q, 0), 1)
	rank := q * float64(n)
	var cum uint64
	for i, c := range s.Buckets {
		if c == 0 {
			continue
		}
		if float64(cum+c) >= rank {
			lo := uint64(0)
			if i > 0 {
				lo = histogramBounds[i-1] + 1
			}
			hi := min(HistogramBucketBound(i), s.Max)
			lo = min(max(lo, s.Min), hi)
			frac := (rank - float64(cum)) / float64(c)
			return float64(lo) + float64(hi-lo)*frac
		}
		cum += c
	}
	return float64(s.Max) // not reached: the last non-empty bucket holds rank n
}

// PrometheusCounts fills dst with Prometheus's cumulative bucket counts at Envoy's default
// bounds: dst[i] counts the values at most PrometheusBucketBound(i). Each of those bounds
// is a bucket bound of s, so the counts are exact.
func (s *HistogramSnapshot) PrometheusCounts(dst *[PrometheusBuckets]uint64) {
	var cum uint64
	j := 0
	for i, c := range s.Buckets {
		cum += c
		if j < len(dst) && float64(HistogramBucketBound(i)) >= math.Floor(prometheusBounds[j]) {
			dst[j] = cum
			j++
		}
	}
}

// HistogramVisitor receives one histogram: its Envoy name and the worker's histogram,
// which it reads (Snapshot) and must not keep.
type HistogramVisitor func(name string, h *Histogram)

// HistogramSource is a StatsSource that also has histograms. Its VisitStats reports the
// counters and gauges and VisitHistograms the histograms of worker i, always the same
// names in the same order (as VisitStats). Exporters find it by a type assertion, so
// sources and visitors written for counters and gauges alone keep working.
type HistogramSource interface {
	StatsSource
	VisitHistograms(worker int, v HistogramVisitor)
}

// VisitHistograms reports the listener's histograms: none yet (Envoy's listener
// downstream_cx_length_ms would go here).
func (s *ListenerStats) VisitHistograms(HistogramVisitor) {}

// VisitHistograms reports the cluster's histograms: none yet (upstream_cx_connect_ms,
// upstream_cx_length_ms and the HTTP upstream_rq_time go here, next to their fields).
func (s *ClusterStats) VisitHistograms(HistogramVisitor) {}
