package engine

import (
	"net/netip"

	"github.com/portico-proxy/portico/poller"
	"golang.org/x/sys/unix"
)

// FilterPhase runs a listener's filters and filter-chain selection on fd the way a worker
// does after accept, without creating a Connection; it returns the chosen chain (nil: the
// socket would be closed). The fd must already hold the client's first bytes; it is not
// closed. For benchmarks of the pre-connection path.
type FilterPhase struct {
	w      *Worker
	al     *activeListener
	result *FilterChain
	Info   SocketInfo
}

// NewFilterPhase prepares a worker-less run of cfg's listener filters.
func NewFilterPhase(cfg ListenerConfig) (*FilterPhase, error) {
	w, err := newWorker(0, nil)
	if err != nil {
		return nil, err
	}
	l := &Listener{cfg: cfg, stats: make([]ListenerStats, 1), balancer: &balancer{counts: make([]int64, 1)},
		addr: cfg.Address}
	fp := &FilterPhase{w: w}
	fp.al = &activeListener{l: l, w: w, fd: -1, stats: &l.stats[0], chains: l.cfg.FilterChains}
	fp.al.chainHook = func(_ int, info *SocketInfo, c *FilterChain) { fp.result, fp.Info = c, *info }
	return fp, nil
}

// Run runs the phase on fd, as accepted from remote.
func (fp *FilterPhase) Run(fd int, remote netip.AddrPort) *FilterChain {
	fp.result = nil
	s := fp.w.getSocket()
	s.fd, s.l = fd, fp.al
	s.Info.RemoteAddr, s.Info.DirectRemoteAddr, s.Info.LocalAddr = remote, remote, fp.al.l.addr
	s.start()
	if s.registered && s.fd == fd {
		// A fresh socket waits for its first epoll event before reading: deliver it as
		// the worker's loop would (the bytes are queued), then drop the registration so
		// the next run can add it again.
		s.onEvent(poller.In)
		fp.w.unregister(fd)
	}
	return fp.result
}

// Close releases the worker's epoll.
func (fp *FilterPhase) Close() { fp.w.poller.Close() }

// PipesMade is how many splice pipes the worker has created.
func (w *Worker) PipesMade() int {
	ch := make(chan int)
	w.Post(func() { ch <- w.pipesMade })
	return <-ch
}

// BreakPoller makes the worker's next epoll_wait fail (EINVAL): a pipe is dup'ed over its
// epoll fd, so the number stays taken and nothing else is hit.
func (w *Worker) BreakPoller() error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if err := unix.Dup3(p[0], w.poller.Fd(), unix.O_CLOEXEC); err != nil {
		return err
	}
	w.Post(func() {}) // wake it (the eventfd is still there) so the failing wait comes now
	return nil
}

// SpliceState reports, over this worker's spliced connections, the most bytes waiting in
// one pipe and the largest pipe capacity asked for.
func (w *Worker) SpliceState() (maxBytes, maxSize int) {
	ch := make(chan [2]int)
	if !w.Post(func() {
		var r [2]int
		for _, slot := range w.handlers {
			c, ok := slot.h.(*Connection)
			if !ok || c.splice == nil {
				continue
			}
			for _, d := range c.splice.dirs {
				if d != nil {
					r[0], r[1] = max(r[0], d.n), max(r[1], d.size)
				}
			}
		}
		ch <- r
	}) {
		return 0, 0
	}
	r := <-ch
	return r[0], r[1]
}

// StopWorker stops one worker and waits for it.
func (w *Worker) StopWorker() {
	w.stop()
	<-w.done
}

// Done is closed when the worker's loop has exited.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Stats is the worker's share of the server stats.
func (w *Worker) Stats() *ServerStats { return w.stats }

// ListenerFilterReads is how many recv calls the worker's listener filters made.
func (w *Worker) ListenerFilterReads() uint64 {
	ch := make(chan uint64)
	if !w.Post(func() { ch <- w.lfReads }) {
		return 0
	}
	return <-ch
}

// KernelHolds reports, for tests, how many times a source of the worker's kernel pairs
// started holding bytes (backpressure), and how many pairs it has.
func (w *Worker) KernelHolds() (holds, pairs int) { return w.kpHolds, len(w.kpBySeq) }

// KernelHalfPairs reports, for tests, how many pairs were half paired (ErrHalfPaired).
func (w *Worker) KernelHalfPairs() int { return w.kpHalf }
