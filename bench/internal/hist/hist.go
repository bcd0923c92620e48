// Package hist is a small HDR-style latency histogram: log2 buckets each split
// into 64 linear sub-buckets, so every recorded value is kept to within ~1.6 %.
// Counters are atomic so that many connection goroutines can share one
// histogram without locks; the load generator shards by connection anyway to
// keep cache lines from bouncing when it is not pinned to a single core.
package hist

import (
	"math/bits"
	"sync/atomic"
)

const (
	subBits    = 6
	subCount   = 1 << subBits // sub-buckets per power of two
	linearMax  = 2 * subCount // values below this are exact
	numBuckets = linearMax + (64-subBits-1)*subCount
)

// H counts non-negative int64 values (nanoseconds in practice).
type H struct {
	counts [numBuckets]atomic.Uint64
}

func index(v uint64) int {
	if v < linearMax {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // >= 1
	top := v >> uint(shift)              // in [subCount, 2*subCount)
	return linearMax + (shift-1)*subCount + int(top-subCount)
}

// upper returns the largest value that maps to bucket i, so percentiles are
// reported conservatively (never below the true value).
func upper(i int) uint64 {
	if i < linearMax {
		return uint64(i)
	}
	j := i - linearMax
	shift := j/subCount + 1
	top := uint64(j%subCount + subCount)
	return (top+1)<<uint(shift) - 1
}

// Record adds one observation; negative values count as zero.
func (h *H) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[index(uint64(v))].Add(1)
}

// Merge adds o's counts into h. Not atomic as a whole: call it once writers stop.
func (h *H) Merge(o *H) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
}

// Count is the number of recorded values.
func (h *H) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Quantile returns the value at quantile q in [0,1] (0 when empty).
func (h *H) Quantile(q float64) int64 {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > total {
		rank = total
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return int64(upper(i))
		}
	}
	return int64(upper(numBuckets - 1))
}

// Max returns the upper bound of the highest non-empty bucket.
func (h *H) Max() int64 {
	for i := numBuckets - 1; i >= 0; i-- {
		if h.counts[i].Load() != 0 {
			return int64(upper(i))
		}
	}
	return 0
}
