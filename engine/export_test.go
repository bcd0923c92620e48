package engine

import "net/netip"

// FilterPhase runs a listener's filters and filter-chain selection on fd the way a worker
// does after accept, without creating a Connection; it returns the chosen chain (nil: the
// socket would be closed). The fd must already hold the client's first bytes; it is not
// closed. For benchmarks of the pre-connection path.
type FilterPhase struct {
	w      *Worker
	al     *ActiveListener
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
	fp.al = &ActiveListener{l: l, w: w, fd: -1, stats: &l.stats[0]}
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
