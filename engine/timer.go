package engine

import "time"

// Timer is a one-shot timer on a worker's loop. Its callback runs on the worker. A Timer is
// owned by the worker: Stop and Reset must be called on the worker.
type Timer struct {
	when  int64 // unix nanoseconds
	index int   // position in the heap, -1 when not scheduled
	h     TimerHandler
	w     *Worker
}

// TimerHandler is what a Timer calls when it fires. A pointer type implementing it costs
// no allocation, where a closure or method value per timer would.
type TimerHandler interface{ OnTimer() }

type funcTimer func()

func (f funcTimer) OnTimer() { f() }

// NewTimer creates a stopped timer that calls fn on w's loop when it fires.
func (w *Worker) NewTimer(fn func()) *Timer { return &Timer{index: -1, h: funcTimer(fn), w: w} }

// Init prepares a Timer embedded in another struct (so it costs no allocation of its own)
// to call h on w's loop; it starts stopped. Do not Init an armed timer.
func (t *Timer) Init(w *Worker, h TimerHandler) { *t = Timer{index: -1, h: h, w: w} }

// Reset (re)arms the timer to fire after d.
func (t *Timer) Reset(d time.Duration) {
	t.when = t.w.now + int64(d)
	if t.index >= 0 {
		t.w.timers.fix(t.index)
		return
	}
	t.w.timers.push(t)
}

// Stop disarms the timer; it reports whether it was armed.
func (t *Timer) Stop() bool {
	if t.index < 0 {
		return false
	}
	t.w.timers.remove(t.index)
	return true
}

// Armed reports whether the timer will fire.
func (t *Timer) Armed() bool { return t.index >= 0 }

// timerHeap is a binary min-heap on when, with indices kept in the timers so Stop and
// Reset are O(log n) without searching.
type timerHeap []*Timer

func (h timerHeap) less(i, j int) bool { return h[i].when < h[j].when }

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) push(t *Timer) {
	t.index = len(*h)
	*h = append(*h, t)
	h.up(t.index)
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
	t.index = -1
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
