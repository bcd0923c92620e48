package engine

import (
	"math"
	"testing"
)

func TestWatermarks(t *testing.T) {
	for _, tc := range []struct {
		limit     int
		high, low int32
	}{
		{0, DefaultBufferLimit, DefaultBufferLimit / 2},
		{32768, 32768, 16384},
		{NoBufferLimit, math.MaxInt32, math.MaxInt32},
		{4 << 30, 1 << 30, 1 << 29},
	} {
		if h, l := watermarks(tc.limit); h != tc.high || l != tc.low {
			t.Errorf("watermarks(%d) = %d, %d; want %d, %d", tc.limit, h, l, tc.high, tc.low)
		}
	}
}
