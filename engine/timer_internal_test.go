package engine

import (
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
