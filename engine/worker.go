package engine

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-proxy/portico/poller"
)

// EventHandler receives the epoll events of one fd registered with a Worker.
type EventHandler interface {
	OnEvent(events uint32)
}

type handlerSlot struct {
	seq uint32
	h   EventHandler
}

// busyWaitMillis bounds a wait that keeps the P (see Poller.WaitBusy): a loop that saw
// no event for this long counts as idle and waits the ordinary way again.
const busyWaitMillis = 5

// scratchSize is the worker's shared read buffer: every read and peek lands here and is
// handed to filters as a slice valid only during the call.
const scratchSize = 64 << 10

// Worker is one event loop: a goroutine locked to its OS thread, owning one epoll
// instance, a task queue and a timer heap (Envoy's Worker + Dispatcher). Everything it owns
// is touched only on its goroutine; other goroutines talk to it through Post.
type Worker struct {
	ID     int
	poller *poller.Poller
	log    *slog.Logger

	handlers []handlerSlot // indexed by fd
	seq      uint32

	mu      sync.Mutex
	tasks   []func()
	running []func()
	// hasTasks mirrors len(tasks) > 0 (set and cleared under mu) so the loop checks for
	// posted work without taking the lock on every turn.
	hasTasks atomic.Bool

	timers timerHeap
	now    int64 // unix nanoseconds, refreshed once per loop iteration

	scratch []byte
	intern  map[string]string

	listeners map[string]*ActiveListener // by listener name
	active    []*ActiveListener          // by Listener.id
	// byAddr maps listener addresses to Listener ids for use_original_dst; shared and
	// read-only once workers run.
	byAddr map[netip.AddrPort]int
	// peers are all workers, for exact-balance hand-offs.
	peers       []*Worker
	freeSockets *ActiveSocket
	// deferredReads are connections with bytes left to read this turn; runningReads is the
	// batch being run (two slices so reads deferred during a run wait for the next turn).
	deferredReads, runningReads []*Connection
	waiting                     *ActiveSocket // sockets in their listener filters, waiting for data
	// pipes are empty splice pipes kept for reuse; spliceOff disables splicing.
	pipes     [][2]int
	pipesMade int // pipes created, for tests
	spliceOff bool

	stopping bool
	done     chan struct{}
}

// NewWorker creates a worker; Start runs its loop.
func NewWorker(id int, log *slog.Logger) (*Worker, error) {
	p, err := poller.New(256)
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", id, err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Worker{
		ID:        id,
		poller:    p,
		log:       log.With("worker", id),
		handlers:  make([]handlerSlot, 1024),
		scratch:   make([]byte, scratchSize),
		intern:    make(map[string]string),
		listeners: make(map[string]*ActiveListener),
		now:       time.Now().UnixNano(),
		done:      make(chan struct{}),
	}, nil
}

// Start runs the loop on a new goroutine locked to its own OS thread.
func (w *Worker) Start() {
	go w.run()
}

// Done is closed when the loop has exited and released its resources.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Post queues fn to run on the worker's loop. Safe from any goroutine.
func (w *Worker) Post(fn func()) {
	w.mu.Lock()
	w.tasks = append(w.tasks, fn)
	w.hasTasks.Store(true)
	w.mu.Unlock()
	w.poller.Wake()
}

// Now is the loop's cached clock.
func (w *Worker) Now() time.Time { return time.Unix(0, w.now) }

// NowNanos is the loop's cached clock in unix nanoseconds: cheap enough for every read.
func (w *Worker) NowNanos() int64 { return w.now }

// Scratch is the worker's shared buffer. Valid only until the handler returns.
func (w *Worker) Scratch() []byte { return w.scratch }

// Intern returns a string equal to b, reusing an earlier one so that names seen again
// (SNI, ALPN) cost no allocation. The table is bounded; past its size it is cleared.
func (w *Worker) Intern(b []byte) string {
	if s, ok := w.intern[string(b)]; ok {
		return s
	}
	if len(w.intern) >= 4096 {
		clear(w.intern)
	}
	s := string(b)
	w.intern[s] = s
	return s
}

// Register watches fd for events, delivering them to h. Worker goroutine only.
func (w *Worker) Register(fd int, events uint32, h EventHandler) error {
	for fd >= len(w.handlers) {
		w.handlers = append(w.handlers, make([]handlerSlot, len(w.handlers))...)
	}
	w.seq++
	w.handlers[fd] = handlerSlot{seq: w.seq, h: h}
	if err := w.poller.Add(fd, events, poller.MakeToken(fd, w.seq)); err != nil {
		w.handlers[fd] = handlerSlot{}
		return err
	}
	return nil
}

// Modify changes the events watched on a registered fd.
func (w *Worker) Modify(fd int, events uint32) error {
	return w.poller.Mod(fd, events, poller.MakeToken(fd, w.handlers[fd].seq))
}

// forget drops fd's handler without EPOLL_CTL_DEL, for an fd about to be closed that has
// no duplicate (close removes it from epoll). Later events carry a stale token.
func (w *Worker) forget(fd int) {
	if fd >= 0 && fd < len(w.handlers) {
		w.handlers[fd] = handlerSlot{}
	}
}

// deferRead queues c to read again on this loop turn, after the current events.
func (w *Worker) deferRead(c *Connection) {
	if !c.deferred {
		c.deferred = true
		w.deferredReads = append(w.deferredReads, c)
	}
}

func (w *Worker) runDeferredReads() {
	w.deferredReads, w.runningReads = w.runningReads[:0], w.deferredReads
	for i, c := range w.runningReads {
		c.deferred = false
		c.onReadReady()
		w.runningReads[i] = nil
	}
}

// Unregister stops watching fd. Call it before closing fd.
func (w *Worker) Unregister(fd int) {
	if fd < len(w.handlers) && w.handlers[fd].h != nil {
		w.handlers[fd] = handlerSlot{}
		w.poller.Del(fd)
	}
}

// Stop asks the loop to exit after closing everything it owns. Safe from any goroutine.
func (w *Worker) Stop() {
	w.Post(func() { w.stopping = true })
}

func (w *Worker) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(w.done)
	defer w.poller.Close()
	// While events keep coming, the loop waits with WaitBusy, which keeps the P. A locked
	// goroutine that never passes through the scheduler looks stuck to sysmon: every 10 ms
	// it either preempts it or, caught in a blocking epoll_wait, takes its P away; the
	// worker must then win a P back and wake sysmon, which restarts polling every 20 µs.
	// That cost 15 % of the CPU per TLS handshake in the SNI benchmark (361 → 307 µs with
	// busy waits). After busyWaitMillis without an event the loop is idle and blocks the
	// ordinary way, so an idle proxy costs nothing.
	busy := false
	for !w.stopping {
		var n int
		var err error
		switch timeout := w.waitTimeout(); {
		case timeout == 0:
			n, err = w.poller.Wait(0)
		case busy:
			if timeout < 0 || timeout > busyWaitMillis {
				timeout = busyWaitMillis
			}
			n, err = w.poller.WaitBusy(timeout)
			busy = n > 0
		default:
			n, err = w.poller.Wait(timeout)
			busy = n > 0
		}
		if err != nil {
			w.log.Error("event loop", "err", err)
			return
		}
		w.now = time.Now().UnixNano()
		for i := 0; i < n; i++ {
			tok, ev, ok := w.poller.Ready(i)
			if !ok {
				continue
			}
			fd := tok.Fd()
			if fd < len(w.handlers) {
				if slot := w.handlers[fd]; slot.h != nil && slot.seq == tok.Seq() {
					slot.h.OnEvent(ev)
				}
			}
		}
		w.poller.Grow(n)
		w.runDeferredReads()
		w.runTasks()
		w.runTimers()
	}
	w.shutdown()
}

func (w *Worker) runTasks() {
	if !w.hasTasks.Load() {
		return
	}
	w.mu.Lock()
	w.tasks, w.running = w.running[:0], w.tasks
	w.hasTasks.Store(false)
	w.mu.Unlock()
	for i, fn := range w.running {
		fn()
		w.running[i] = nil
	}
}

func (w *Worker) runTimers() {
	for len(w.timers) > 0 && w.timers[0].when <= w.now {
		t := w.timers[0]
		w.timers.remove(0)
		t.h.OnTimer()
	}
}

// waitTimeout is the epoll_wait timeout: until the nearest timer, 0 if tasks are queued.
func (w *Worker) waitTimeout() int {
	if w.hasTasks.Load() || len(w.deferredReads) > 0 {
		return 0
	}
	if len(w.timers) == 0 {
		return -1
	}
	d := w.timers[0].when - time.Now().UnixNano()
	if d <= 0 {
		return 0
	}
	// Round up so a timer never fires a millisecond early and spins.
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// shutdown closes every listener and connection the worker still owns.
func (w *Worker) shutdown() {
	for _, l := range w.listeners {
		l.stop()
	}
	for w.waiting != nil {
		w.waiting.close()
	}
	// Every live connection is registered, so the handler table finds them all without a
	// list threaded through each. Closing one may close its peer; a pass that finds none
	// left ends it.
	for found := true; found; {
		found = false
		for _, slot := range w.handlers {
			if c, ok := slot.h.(*Connection); ok && c.state != stateClosed {
				c.Close(CloseNoFlush)
				found = true
			}
		}
	}
	w.closePipes()
}
