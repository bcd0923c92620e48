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

// eventHandler receives the epoll events of one fd registered with a Worker.
type eventHandler interface {
	onEvent(events uint32)
}

type handlerSlot struct {
	seq uint32
	h   eventHandler
}

// busyWaitMillis bounds a wait that keeps the P (see Poller.WaitBusy): a loop that saw
// no event for this long counts as idle and waits the ordinary way again.
const busyWaitMillis = 5

// scratchSize is the worker's shared read buffer: every read lands here and is
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
	// firingTimers is the batch of due timers being run (reused between turns).
	firingTimers []*Timer
	// now is the loop's monotonic clock (nanoseconds since the worker was made), read once
	// per loop turn; epoch is the wall time at that origin, for Now.
	now   int64
	turn  uint64 // loop turns, counted from 1
	clock func() int64
	epoch time.Time

	// freeBufs are empty buffers kept for reuse by this worker's connections (writes) and
	// sockets in their listener filters (reads).
	freeBufs []*writeBuffer
	// replays are the bytes listener filters read for connections that have not had their
	// first read yet (Connection.replay): a map, so that a Connection pays no field for
	// them.
	replays map[*Connection]*writeBuffer

	stats *ServerStats // this worker's share of the server-wide stats
	// draining is set when the server starts draining; drainHooks run then (OnDrain).
	draining   bool
	drainHooks []func()
	// closeTimeout bounds a flush before close (0: DefaultDelayedCloseTimeout).
	closeTimeout time.Duration
	// onFatal is told when the loop fails (set by the Server).
	onFatal func(error)
	// lastPanicLog and panicsUnlogged rate-limit panic logs to one a second.
	lastPanicLog   int64
	panicsUnlogged int

	scratch []byte
	intern  Interner
	// tscratch is TransportScratch's buffer, made on first use; handshakes counts the
	// transport handshake slots in use (HandshakeSlot).
	tscratch   []byte
	tbuf       TransportBuffer
	handshakes int

	listeners map[string]*activeListener // by listener name
	active    []*activeListener          // by Listener.id
	// byAddr maps listener addresses to Listener ids for use_original_dst: this worker's
	// own copy, changed as listeners come and go.
	byAddr map[netip.AddrPort]int
	// drain is the server's drain time and strategy (read-only); drainWin is the window
	// of the server's drain sequence once it began (StartDrainSequence), zero before.
	drain    *drainPolicy
	drainWin drainWindow
	// srvHCFailed is the server's health-check-failed flag (SetHealthCheckFailed).
	srvHCFailed *atomic.Bool
	// peers are all workers, for exact-balance hand-offs.
	peers       []*Worker
	freeSockets *ActiveSocket
	// deferredReads are connections with bytes left to read this turn; runningReads is the
	// batch being run (two slices so reads deferred during a run wait for the next turn).
	deferredReads, runningReads []*Connection
	waiting                     *ActiveSocket // sockets in their listener filters, waiting for data
	// pipes are empty splice pipes kept for reuse; spliceOff disables splicing.
	pipes     [][3]int // read end, write end, capacity
	pipesMade int      // pipes created, for tests
	lfReads   uint64   // listener-filter reads, for tests
	spliceOff bool
	// kpairs forwards proxied pairs in the kernel (ServerOptions.KernelPairs); nil: off.
	kpairs KernelPairs
	// kpBySeq finds a pair by the seq its kernel events carry (kernelTag); kpSeq numbers
	// them; kpHolds counts the events (a source that started holding bytes).
	kpBySeq map[uint64]*kernelPair
	kpSeq   uint64
	kpBase  uint64 // the server's tag base (KernelPairs.Notify)
	kpHolds int
	kpHalf  int // pairs whose second socket could not enter the verdict (ErrHalfPaired)

	stopping bool
	// exited is set under mu once the loop has ended: Post is refused from then on, and
	// the eventfd may be closed.
	exited bool
	done   chan struct{}
}

// newWorker creates a worker; start runs its loop.
func newWorker(id int, log *slog.Logger) (*Worker, error) {
	p, err := poller.New(256)
	if err != nil {
		return nil, fmt.Errorf("worker %d: %w", id, err)
	}
	if log == nil {
		log = slog.Default()
	}
	epoch := time.Now()
	w := &Worker{
		ID:        id,
		poller:    p,
		log:       log.With("worker", id),
		handlers:  make([]handlerSlot, 1024),
		scratch:   make([]byte, scratchSize),
		listeners: make(map[string]*activeListener),
		byAddr:    make(map[netip.AddrPort]int),
		replays:   make(map[*Connection]*writeBuffer),
		epoch:     epoch,
		// time.Since reads the monotonic clock carried by epoch: stepping the wall clock
		// does not move it.
		clock: func() int64 { return int64(time.Since(epoch)) },
		stats: new(ServerStats),
		done:  make(chan struct{}),
	}
	w.now = w.clock()
	return w, nil
}

// start runs the loop on a new goroutine locked to its own OS thread.
func (w *Worker) start() {
	go w.run()
}

// Post queues fn to run on the worker's loop. Safe from any goroutine. It reports false,
// and fn never runs, once the worker has stopped: a caller handing over a resource (an
// accepted socket) must then release it itself.
func (w *Worker) Post(fn func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.exited {
		return false
	}
	w.tasks = append(w.tasks, fn)
	w.hasTasks.Store(true)
	// Under mu: the loop closes the eventfd only after setting exited under mu, so this
	// write never reaches a closed (and maybe reused) fd number.
	w.poller.Wake()
	return true
}

// Now is the loop's cached clock as a wall time (for logs): the worker's start time plus
// the monotonic time elapsed since, read once per loop turn.
func (w *Worker) Now() time.Time { return w.epoch.Add(time.Duration(w.now)) }

// NowNanos is the loop's cached monotonic clock in nanoseconds, cheap enough for every
// read. Its origin is arbitrary: only differences between readings mean something.
func (w *Worker) NowNanos() int64 { return w.now }

// Scratch is the worker's shared buffer. Valid only until the handler returns.
func (w *Worker) Scratch() []byte { return w.scratch }

// Intern returns a string equal to b from the worker's Interner.
func (w *Worker) Intern(b []byte) string { return w.intern.Intern(b) }

// Interner is the worker's string table, for filters that take it as a concrete type.
func (w *Worker) Interner() *Interner { return &w.intern }

// Interner turns byte slices into strings, reusing an earlier string for the same bytes so
// that names seen again (SNI, ALPN) cost no allocation. It is bounded: past 4,096 names it
// starts over. The zero value is ready; it is not safe for concurrent use.
type Interner struct{ m map[string]string }

// Intern returns a string equal to b.
func (in *Interner) Intern(b []byte) string {
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) >= 4096 {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	return s
}

// register watches fd for events, delivering them to h. Worker goroutine only.
func (w *Worker) register(fd int, events uint32, h eventHandler) error {
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

// modify changes the events watched on a registered fd.
func (w *Worker) modify(fd int, events uint32) error {
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

// unregister stops watching fd. Call it before closing fd.
func (w *Worker) unregister(fd int) {
	if fd < len(w.handlers) && w.handlers[fd].h != nil {
		w.handlers[fd] = handlerSlot{}
		w.poller.Del(fd)
	}
}

// delayedClose is how long a connection closing with CloseFlushWrite may take to flush.
func (w *Worker) delayedClose() time.Duration {
	if w.closeTimeout > 0 {
		return w.closeTimeout
	}
	return DefaultDelayedCloseTimeout
}

// stop asks the loop to exit after closing everything it owns. Safe from any goroutine,
// and idempotent.
func (w *Worker) stop() {
	w.Post(func() { w.stopping = true })
}

// Stopped reports whether the loop has exited.
func (w *Worker) Stopped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.exited
}

func (w *Worker) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(w.done)
	if err := w.loop(); err != nil {
		// The loop cannot go on. Say so loudly: every listen socket of this worker is
		// closed below (a reuse_port socket left open would keep taking its share of
		// connections that nobody accepts), and the Server reports the failure.
		w.stats.LoopFailures.Inc()
		w.log.Error("worker event loop failed; closing its listeners and connections", "err", err)
		if w.onFatal != nil {
			w.onFatal(fmt.Errorf("worker %d: %w", w.ID, err))
		}
	}
	w.shutdown()
	// Refuse new posts, then run what was posted meanwhile: an exact-balance hand-off
	// holds an accepted fd, and finds its listener stopped and closes it.
	w.mu.Lock()
	w.exited = true
	tasks := w.tasks
	w.tasks = nil
	w.hasTasks.Store(false)
	w.mu.Unlock()
	for _, fn := range tasks {
		w.callTask(fn)
	}
	w.shutdown()
	w.poller.Close()
}

// loop runs until Stop, or until epoll_wait fails.
func (w *Worker) loop() error {
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
			return err
		}
		w.now = w.clock()
		w.turn++
		for i := 0; i < n; i++ {
			tok, ev, ok := w.poller.Ready(i)
			if !ok {
				continue
			}
			fd := tok.Fd()
			if fd < len(w.handlers) {
				if slot := w.handlers[fd]; slot.h != nil && slot.seq == tok.Seq() {
					slot.h.onEvent(ev)
				}
			}
		}
		w.poller.Grow(n)
		w.runDeferredReads()
		w.runTasks()
		w.runTimers()
	}
	return nil
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
		w.callTask(fn)
		w.running[i] = nil
	}
}

// runTimers fires the timers due at the start of this turn. They are taken off the heap
// first, so a handler that re-arms its own timer for now (or any other timer) puts it in
// the next turn's batch, never this one: the loop always gets back to epoll.
func (w *Worker) runTimers() {
	if len(w.timers) == 0 || w.timers[0].when > w.now {
		return
	}
	batch := w.firingTimers[:0]
	for len(w.timers) > 0 && w.timers[0].when <= w.now {
		t := w.timers[0]
		w.timers.remove(0)
		t.pos = firing
		batch = append(batch, t)
	}
	for i, t := range batch {
		batch[i] = nil
		if t.pos != firing {
			continue // stopped or re-armed by a handler earlier in the batch
		}
		t.pos = 0
		w.callTimer(t)
	}
	w.firingTimers = batch[:0]
}

// maxWaitMillis caps one epoll_wait timeout (its argument is an int); a farther timer is
// simply waited for in several turns.
const maxWaitMillis = 1 << 30

// waitTimeout is the epoll_wait timeout: until the nearest timer, 0 if tasks are queued.
func (w *Worker) waitTimeout() int {
	if w.hasTasks.Load() || len(w.deferredReads) > 0 {
		return 0
	}
	if len(w.timers) == 0 {
		return -1
	}
	d := w.timers[0].when - w.clock()
	if d <= 0 {
		return 0
	}
	// Round up so a timer never fires a millisecond early and spins.
	ms := d/int64(time.Millisecond) + 1
	if ms > maxWaitMillis {
		return maxWaitMillis
	}
	return int(ms)
}

// shutdown closes every listener and connection the worker still owns.
func (w *Worker) shutdown() {
	for _, l := range w.listeners {
		l.stop(false)
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

// OnDrain registers fn to run on the worker when the server starts draining (Drain):
// a filter that keeps connections open between requests (HTTP keep-alive) closes its
// idle ones and marks the others to close after their response, as Envoy's drain
// manager asks its connection managers to. It must be called on the worker; if the
// drain has already begun, fn runs at once.
func (w *Worker) OnDrain(fn func()) {
	w.drainHooks = append(w.drainHooks, fn)
	if w.draining {
		fn()
	}
}

// Draining reports whether the server is draining: new requests should close their
// connection after their response.
func (w *Worker) Draining() bool { return w.draining }

func (w *Worker) startDrain() {
	if w.draining {
		return
	}
	w.draining = true
	for _, fn := range w.drainHooks {
		w.callTask(fn) // a panic in a hook is contained like one in a posted task
	}
}
