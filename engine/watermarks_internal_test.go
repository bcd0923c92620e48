package engine

import (
	"math"
	"testing"
)

func TestWatermark(t *testing.T) {
	for _, tc := range []struct {
		limit int
		high  int32
	}{
		{0, DefaultBufferLimit},
		{32768, 32768},
		{NoBufferLimit, math.MaxInt32},
		{4 << 30, 1 << 30},
	} {
		if h := watermark(tc.limit); h != tc.high {
			t.Errorf("watermark(%d) = %d, want %d", tc.limit, h, tc.high)
		}
	}
}
