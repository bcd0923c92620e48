package engine

import "testing"

// histogramBucket agrees with a plain search for every value near a bound and for every
// power of two.
func TestHistogramBucket(t *testing.T) {
	slow := func(v uint64) int {
		for i, b := range histogramBounds {
			if v <= b {
				return i
			}
		}
		return len(histogramBounds)
	}
	vals := []uint64{1<<64 - 1}
	for _, b := range histogramBounds {
		vals = append(vals, b, b+1, b-1, b/2, b*3/2)
	}
	for n := 0; n < 64; n++ {
		vals = append(vals, 1<<n, 1<<n-1, 1<<n+1)
	}
	for _, v := range vals {
		if got, want := histogramBucket(v), slow(v); got != want {
			t.Errorf("value %d: bucket %d, want %d", v, got, want)
		}
	}
}

func BenchmarkHistogramBucket(b *testing.B) {
	s := 0
	for i := 0; i < b.N; i++ {
		s += histogramBucket(uint64(i & 1023))
	}
	_ = s
}
