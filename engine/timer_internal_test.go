package engine

import (
	"math"
	"math/rand"
	"sort"
	"testing"
	"time"
)

// TestTimerHeapOrder: random arms, re-arms and stops fire in deadline order, and stopped
// timers never fire.
func TestTimerHeapOrder(t *testing.T) {
	w := &Worker{now: 0}
	rng := rand.New(rand.NewSource(1))
	var fired []int64
	timers := make([]*Timer, 500)
	for i := range timers {
		var tm *Timer
		tm = w.NewTimer(func() { fired = append(fired, tm.when) })
		timers[i] = tm
		tm.Reset(time.Duration(rng.Intn(1000)))
	}
	stopped := 0
	for i := 0; i < 300; i++ {
		tm := timers[rng.Intn(len(timers))]
		if rng.Intn(3) == 0 {
			if tm.Stop() {
				stopped++
			}
		} else {
			if !tm.Armed() {
				stopped--
			}
			tm.Reset(time.Duration(rng.Intn(1000)))
		}
	}
	w.now = 2000
	w.runTimers()
	if len(fired) != len(timers)-stopped {
		t.Fatalf("fired %d, want %d", len(fired), len(timers)-stopped)
	}
	if !sort.SliceIsSorted(fired, func(i, j int) bool { return fired[i] < fired[j] }) {
		t.Fatal("timers fired out of order")
	}
	for _, tm := range timers {
		if tm.Armed() {
			t.Fatal("timer still armed after firing")
		}
	}
}

// TestZeroTimerStopped (defect 15): the zero Timer is stopped (it reported itself armed).
func TestZeroTimerStopped(t *testing.T) {
	var tm Timer
	if tm.Armed() || tm.Stop() {
		t.Fatal("zero Timer reports itself armed")
	}
}

// TestDeadlineClamped (defect 8): now+d saturates instead of wrapping negative.
func TestDeadlineClamped(t *testing.T) {
	for _, tc := range []struct {
		now  int64
		d    time.Duration
		want int64
	}{
		{100, 5, 105},
		{100, 0, 100},
		{100, -5, 100},
		{math.MaxInt64 - 10, 20, math.MaxInt64},
		{1 << 62, time.Duration(math.MaxInt64), math.MaxInt64},
	} {
		if got := deadline(tc.now, tc.d); got != tc.want {
			t.Errorf("deadline(%d, %d) = %d, want %d", tc.now, tc.d, got, tc.want)
		}
	}
}

// TestResetZeroFiresNextTurn (defect 8): a handler that re-arms itself with Reset(0) runs
// once per runTimers (per loop turn), not forever within one.
func TestResetZeroFiresNextTurn(t *testing.T) {
	w := &Worker{}
	n := 0
	var tm *Timer
	tm = w.NewTimer(func() { n++; tm.Reset(0) })
	tm.Reset(0)
	for turn := 1; turn <= 3; turn++ {
		w.runTimers()
		if n != turn {
			t.Fatalf("after %d turns the handler ran %d times", turn, n)
		}
	}
	// A timer stopped by an earlier handler of the same batch does not fire.
	var a, b *Timer
	bFired := false
	a = w.NewTimer(func() { b.Stop() })
	b = w.NewTimer(func() { bFired = true })
	tm.Stop()
	a.Reset(0)
	b.Reset(1)
	w.now = 10
	w.runTimers()
	if bFired || b.Armed() {
		t.Fatal("a timer stopped by an earlier handler of its batch still fired")
	}
}
