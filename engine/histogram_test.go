package engine_test

import (
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// The buckets are increasing, and each of Envoy's default buckets is one of them (so the
// Prometheus counts are exact).
func TestHistogramBounds(t *testing.T) {
	prev := uint64(0)
	for i := 0; i < engine.HistogramBuckets; i++ {
		b := engine.HistogramBucketBound(i)
		if i > 0 && b <= prev {
			t.Fatalf("bucket %d bound %d after %d", i, b, prev)
		}
		prev = b
	}
	if engine.HistogramBucketBound(engine.HistogramBuckets-1) != math.MaxUint64 {
		t.Error("the last bucket is bounded")
	}
	want := []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	if engine.PrometheusBuckets != len(want) {
		t.Fatalf("%d Prometheus buckets", engine.PrometheusBuckets)
	}
	for j, w := range want {
		if got := engine.PrometheusBucketBound(j); got != w {
			t.Errorf("Prometheus bucket %d: %v, want %v", j, got, w)
		}
		found := false
		for i := 0; i < engine.HistogramBuckets; i++ {
			found = found || float64(engine.HistogramBucketBound(i)) == math.Floor(w)
		}
		if !found {
			t.Errorf("Envoy's bucket %v is not a bucket bound", w)
		}
	}
}

// Prometheus counts are exact at Envoy's bounds: brute force over values around each.
func TestHistogramPrometheusCounts(t *testing.T) {
	var h engine.Histogram
	var values []uint64
	for j := 0; j < engine.PrometheusBuckets; j++ {
		b := uint64(engine.PrometheusBucketBound(j))
		for _, v := range []uint64{b, b + 1, b / 2} {
			values = append(values, v)
			h.Record(v)
		}
	}
	h.Record(1 << 40)
	values = append(values, 1<<40)
	var s engine.HistogramSnapshot
	h.Snapshot(&s)
	var got [engine.PrometheusBuckets]uint64
	s.PrometheusCounts(&got)
	var sum uint64
	for _, v := range values {
		sum += v
	}
	for j := range got {
		le := engine.PrometheusBucketBound(j)
		var want uint64
		for _, v := range values {
			if float64(v) <= le {
				want++
			}
		}
		if got[j] != want {
			t.Errorf("le=%v: %d, want %d", le, got[j], want)
		}
	}
	if s.Count() != uint64(len(values)) || s.Sum != sum || s.Max != 1<<40 {
		t.Errorf("count %d sum %d max %d, want %d %d %d", s.Count(), s.Sum, s.Max, len(values), sum, uint64(1<<40))
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var s engine.HistogramSnapshot
	if q := s.Quantile(0.5); !math.IsNaN(q) {
		t.Errorf("empty: P50 %v, want NaN", q)
	}
	var h engine.Histogram
	for range 100 {
		h.Record(1) // a bucket of its own: every quantile is exact
	}
	h.Snapshot(&s)
	for _, q := range []float64{0, 0.5, 1} {
		if got := s.Quantile(q); got != 1 {
			t.Errorf("all 1: quantile %v = %v", q, got)
		}
	}
	// 1..1000 once each: quantiles within the bucket's width of the true value, P0 and
	// P100 the extremes.
	var u engine.Histogram
	for v := uint64(1); v <= 1000; v++ {
		u.Record(v)
	}
	u.Snapshot(&s)
	if s.Quantile(0) != 1 || s.Quantile(1) != 1000 {
		t.Errorf("P0 %v P100 %v, want 1 1000", s.Quantile(0), s.Quantile(1))
	}
	for _, q := range []float64{0.25, 0.5, 0.75, 0.9, 0.99} {
		got, want := s.Quantile(q), q*1000
		if math.Abs(got-want) > 0.26*want {
			t.Errorf("P%v = %v, want about %v", q*100, got, want)
		}
	}
	// One value: every quantile is that value, though its bucket holds 6 and 7.
	var one engine.Histogram
	one.Record(7)
	one.Snapshot(&s)
	for _, q := range []float64{0, 0.5, 1} {
		if got := s.Quantile(q); got != 7 {
			t.Errorf("one 7: quantile %v = %v", q, got)
		}
	}
	// A value past the last bound: P100 is the largest value.
	var big engine.Histogram
	big.Record(5)
	big.Record(7_200_000)
	big.Snapshot(&s)
	if got := s.Quantile(1); got != 7_200_000 {
		t.Errorf("P100 %v", got)
	}
	// Merged snapshots add up.
	var a, b engine.HistogramSnapshot
	h.Snapshot(&a)
	u.Snapshot(&b)
	a.Add(&b)
	if a.Count() != 1100 || a.Min != 1 || a.Max != 1000 || a.Sum != 100+500500 {
		t.Errorf("merged: count %d min %d max %d sum %d", a.Count(), a.Min, a.Max, a.Sum)
	}
	// The zero snapshot merges as empty, either way round.
	var z, e engine.HistogramSnapshot
	z.Add(&b)
	b.Add(&e)
	if z != b || z.Min != 1 {
		t.Errorf("merging with the zero snapshot: min %d, %d", z.Min, b.Min)
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h engine.Histogram
	v := uint64(0)
	if n := testing.AllocsPerRun(1000, func() { h.Record(v); v += 37 }); n != 0 {
		t.Errorf("%v allocations per Record", n)
	}
}

// One worker records while a scrape reads: the counts are read atomically (run -race).
func TestHistogramConcurrentRead(t *testing.T) {
	var h engine.Histogram
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range uint64(100000) {
			h.Record(i % 2000)
		}
	}()
	var s engine.HistogramSnapshot
	for range 100 {
		h.Snapshot(&s)
		_ = s.Quantile(0.99)
	}
	wg.Wait()
	h.Snapshot(&s)
	if s.Count() != 100000 {
		t.Errorf("count %d", s.Count())
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h engine.Histogram
	for i := 0; i < b.N; i++ {
		h.Record(uint64(i & 1023))
	}
}

// rqSource is what an HTTP filter's stats look like: counters through VisitStats, a
// histogram through VisitHistograms, one set per worker.
type rqSource struct {
	perWorker []struct {
		rqTotal engine.Counter
		rqTime  engine.Histogram
	}
}

func (*rqSource) StatsFamily() string      { return "http" }
func (*rqSource) StatsLabels() [][2]string { return [][2]string{{"stat_prefix", "ingress"}} }
func (s *rqSource) VisitStats(w int, v engine.StatVisitor) {
	v("downstream_rq_total", engine.KindCounter, float64(s.perWorker[w].rqTotal.Value()))
}
func (s *rqSource) VisitHistograms(w int, v engine.HistogramVisitor) {
	v("downstream_rq_time", &s.perWorker[w].rqTime)
}

var _ engine.HistogramSource = (*rqSource)(nil)

// A source with a histogram: the worker records each request's time; an exporter finds
// the histograms by asserting engine.HistogramSource and reads them with Snapshot.
func ExampleHistogramSource() {
	src := &rqSource{perWorker: make([]struct {
		rqTotal engine.Counter
		rqTime  engine.Histogram
	}, 2)}
	for _, ms := range []uint64{3, 12, 40} { // on worker 1
		src.perWorker[1].rqTotal.Inc()
		src.perWorker[1].rqTime.Record(ms)
	}
	var stats engine.StatsSource = src
	if hs, ok := stats.(engine.HistogramSource); ok {
		var s engine.HistogramSnapshot
		hs.VisitHistograms(1, func(name string, h *engine.Histogram) {
			h.Snapshot(&s)
			fmt.Printf("%s.%s: count %d sum %d P100 %v\n", stats.StatsFamily(), name, s.Count(), s.Sum, s.Quantile(1))
		})
	}
	// Output: http.downstream_rq_time: count 3 sum 55 P100 40
}
