package hist

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestIndexRoundTrip(t *testing.T) {
	// Every value must land in a bucket whose upper bound is >= the value
	// and within 1/64 of it.
	vals := []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, 1 << 40, 1<<63 - 1}
	for i := 0; i < 10000; i++ {
		vals = append(vals, rand.Uint64N(1<<40))
	}
	for _, v := range vals {
		i := index(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("index(%d)=%d out of range", v, i)
		}
		u := upper(i)
		if u < v {
			t.Fatalf("upper(index(%d))=%d < value", v, u)
		}
		if v >= linearMax && float64(u-v) > float64(v)/subCount {
			t.Fatalf("value %d bucket upper %d: error above 1/%d", v, u, subCount)
		}
		if i > 0 && upper(i-1) >= v {
			t.Fatalf("value %d also fits bucket %d", v, i-1)
		}
	}
}

func TestQuantile(t *testing.T) {
	var h H
	var raw []int64
	for i := 0; i < 100000; i++ {
		v := int64(rand.ExpFloat64() * 50000)
		raw = append(raw, v)
		h.Record(v)
	}
	slices.Sort(raw)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := raw[int(q*float64(len(raw)))-1]
		got := h.Quantile(q)
		if got < want*98/100 || got > want*103/100 {
			t.Errorf("q%.3f: got %d want ~%d", q, got, want)
		}
	}
	if h.Count() != uint64(len(raw)) {
		t.Fatalf("count %d", h.Count())
	}
	var m H
	m.Merge(&h)
	if m.Quantile(0.5) != h.Quantile(0.5) {
		t.Fatal("merge changed p50")
	}
	var empty H
	if empty.Quantile(0.99) != 0 || empty.Max() != 0 {
		t.Fatal("empty histogram should report 0")
	}
}
