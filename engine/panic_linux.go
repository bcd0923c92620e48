package engine

import (
	"fmt"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

// Panics in filter code are contained: a Go panic unwinds without corrupting memory, so
// the worker can recover it where the engine called the filter, give up the one
// connection (or socket) the filter was serving, and go on with the others. Only the
// engine's calls into code it does not own are guarded (listener filters, chain selection,
// network filters and their factories, connection callbacks, splice sources, timer
// handlers, posted tasks); a panic in the engine's own code still crashes the process, as
// a broken invariant should.
//
// Each guard is a deferred call in the function that calls out; Go open-codes such defers,
// so the cost on the data path is a few instructions per call, not a heap-allocated frame.

// panicLogEvery rate-limits panic logs (with their stacks) per worker.
const panicLogEvery = time.Second

// ServerStats are server-wide stats on one worker (Envoy's server.* scope).
type ServerStats struct {
	// FilterPanics counts panics recovered from filter code.
	FilterPanics Counter
	// LoopFailures counts event loops that stopped on an error (epoll_wait failing).
	LoopFailures Counter
	_            [48]byte // one worker's counters per cache line
}

// Visit reports every stat.
func (s *ServerStats) Visit(v StatVisitor) {
	v("filter_panics", KindCounter, float64(s.FilterPanics.Value()))
	v("worker_loop_failures", KindCounter, float64(s.LoopFailures.Value()))
}

// serverStatsSource exposes every worker's ServerStats as the "server" family.
type serverStatsSource struct{ workers []*Worker }

func (serverStatsSource) StatsFamily() string      { return "server" }
func (serverStatsSource) StatsLabels() [][2]string { return nil }
func (s serverStatsSource) VisitStats(worker int, v StatVisitor) {
	s.workers[worker].stats.Visit(v)
}

// notePanic counts and logs a recovered panic. Call it from the deferred function that
// recovered, so the stack printed is the panicking one.
func (w *Worker) notePanic(r any, where string, l *activeListener) {
	w.stats.FilterPanics.Inc()
	if l != nil {
		l.stats.DownstreamCxFilterPanic.Inc()
	}
	if w.now-w.lastPanicLog < int64(panicLogEvery) && w.lastPanicLog != 0 {
		w.panicsUnlogged++
		return
	}
	w.lastPanicLog = w.now
	args := []any{"where", where, "panic", fmt.Sprint(r)}
	if l != nil {
		args = append(args, "listener", l.l.cfg.Name)
	}
	if w.panicsUnlogged > 0 {
		args = append(args, "unlogged_since_last", w.panicsUnlogged)
		w.panicsUnlogged = 0
	}
	args = append(args, "stack", string(debug.Stack()))
	w.log.Error("recovered a panic in filter code; the connection is reset", args...)
}

// recoverFilter is deferred around calls into c's filters and callbacks: a panic resets c
// (its callbacks then see LocalClose and close its peer, as for any other close).
func (c *Connection) recoverFilter() {
	if r := recover(); r != nil {
		c.w.notePanic(r, "connection", c.listener())
		c.reset()
	}
}

// listener is the activeListener of a downstream connection, nil for an upstream one.
func (c *Connection) listener() *activeListener {
	al, _ := c.owner.(*activeListener)
	return al
}

// reset closes c at once with an RST, whatever it was doing.
func (c *Connection) reset() {
	if c.state == stateClosed {
		return
	}
	unix.SetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	c.closeSocket(LocalClose)
}

// recoverFilter is deferred around calls into listener filters and chain selection: a
// panic rejects the socket (the caller sees s.failed).
func (s *ActiveSocket) recoverFilter() {
	if r := recover(); r != nil {
		s.w.notePanic(r, "listener filter", s.l)
		s.failed = true
	}
}

// callTask runs a posted task; a panic in it is logged and counted.
func (w *Worker) callTask(fn func()) {
	defer w.recoverTask()
	fn()
}

func (w *Worker) recoverTask() {
	if r := recover(); r != nil {
		w.notePanic(r, "posted task", nil)
	}
}

// callTimer runs a timer's handler; a panic in it resets the connection the timer belongs
// to, if any.
func (w *Worker) callTimer(t *Timer) {
	defer w.recoverTimer(t)
	t.h.OnTimer()
}

func (w *Worker) recoverTimer(t *Timer) {
	if r := recover(); r != nil {
		var l *activeListener
		if t.conn != nil {
			l = t.conn.listener()
		}
		w.notePanic(r, "timer", l)
		if t.conn != nil {
			t.conn.reset()
		}
	}
}
