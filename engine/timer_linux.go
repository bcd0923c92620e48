package engine

import (
	"math"
	"time"
)

// Timer is a one-shot timer on a worker's loop. Its handler runs on the worker. A Timer is
// owned by the worker: Init, Reset and Stop must be called on the worker. The zero Timer is
// stopped; it must be given a worker (Init, or Worker.NewTimer) before Reset.
//
// Deadlines are on the worker's monotonic clock, so a step of the wall clock neither fires
// timers early nor holds them back. A duration too long to represent is clamped to the end
// of time (the timer never fires), as Go's runtime clamps its own timers; a zero or
// negative duration fires on the next loop turn, never within the turn that armed it, so a
// handler that re-arms itself with Reset(0) cannot keep the loop from epoll.
type Timer struct {
	when int64 // worker clock, nanoseconds
	// pos is the position in the heap plus one: 0 when not scheduled (so the zero value is
	// stopped), firing while its handler is about to run in the current batch.
	pos  int
	h    TimerHandler
	w    *Worker
	conn *Connection // a panic in h resets this connection; nil for none
}

// firing marks a timer taken off the heap for the batch being run.
const firing = -1

// TimerHandler is what a Timer calls when it fires. A pointer type implementing it costs
// no allocation, where a closure or method value per timer would.
type TimerHandler interface{ OnTimer() }

type funcTimer func()

func (f funcTimer) OnTimer() { f() }

// NewTimer creates a stopped timer that calls fn on w's loop when it fires.
func (w *Worker) NewTimer(fn func()) *Timer { return &Timer{h: funcTimer(fn), w: w} }

// Init prepares a Timer embedded in another struct (so it costs no allocation of its own)
// to call h on w's loop; it starts stopped. Do not Init an armed timer.
func (t *Timer) Init(w *Worker, h TimerHandler) { *t = Timer{h: h, w: w} }

// InitFor is Init for a timer that belongs to connection c (an idle timer, say): a panic
// in h is contained like a panic in c's filters, by resetting c.
func (t *Timer) InitFor(c *Connection, h TimerHandler) { *t = Timer{h: h, w: c.w, conn: c} }

// Reset (re)arms the timer to fire after d.
func (t *Timer) Reset(d time.Duration) {
	if t.w == nil {
		panic("engine: Reset of a Timer without a worker (use Worker.NewTimer or Timer.Init)")
	}
	t.when = deadline(t.w.now, d)
	switch {
	case t.pos > 0:
		t.w.timers.fix(t.pos - 1)
	default: // stopped, or firing in the current batch: it goes back on the heap
		t.w.timers.push(t)
	}
}

// deadline is now+d, clamped to the largest representable time instead of wrapping.
func deadline(now int64, d time.Duration) int64 {
	if d <= 0 {
		return now
	}
	if int64(d) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(d)
}

// Stop disarms the timer; it reports whether it was armed.
func (t *Timer) Stop() bool {
	switch {
	case t.pos > 0:
		t.w.timers.remove(t.pos - 1)
		return true
	case t.pos == firing:
		t.pos = 0
		return true
	}
	return false
}

// Armed reports whether the timer will fire.
func (t *Timer) Armed() bool { return t.pos != 0 }

// timerHeap is a binary min-heap on when, with positions kept in the timers so Stop and
// Reset are O(log n) without searching.
type timerHeap []*Timer

func (h timerHeap) less(i, j int) bool { return h[i].when < h[j].when }

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos = i + 1
	h[j].pos = j + 1
}

func (h *timerHeap) push(t *Timer) {
	t.pos = len(*h) + 1
	*h = append(*h, t)
	h.up(t.pos - 1)
}

func (h *timerHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	t := old[i]
	if i != n {
		old.swap(i, n)
	}
	old[n] = nil
	*h = old[:n]
	if i != n {
		h.fix(i)
	}
	t.pos = 0
}

func (h timerHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h timerHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h timerHeap) down(i0 int) bool {
	i := i0
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
