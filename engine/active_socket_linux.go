package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// ActiveSocket is an accepted socket going through its listener's filters, before any
// Connection exists (Envoy's ActiveTcpSocket). It is pooled per worker: filters must not
// keep a pointer to it after their call returns.
type ActiveSocket struct {
	// Info is what the listener filters learn; chain selection reads it.
	Info SocketInfo

	fd         int
	w          *Worker
	l          *activeListener
	idx        int  // current listener filter
	registered bool // fd is in epoll (edge-triggered) waiting for data
	failed     bool
	handedOff  bool
	done       bool
	// peerFin: an EPOLLRDHUP/EPOLLHUP edge was taken while the socket waited here. The
	// Connection that takes the socket over must know, since that edge will not come again.
	peerFin bool
	timer   *Timer
	// next links the worker's free list; prev/next also link its waiting list while the
	// socket waits for data, so shutdown can close it.
	next, prev *ActiveSocket
	waiting    bool
	alpnBuf    [maxALPN]string
	alpnList   []string // Info's ALPN list, backed by alpnBuf
}

// Control calls fn with the raw socket, for a getsockopt or setsockopt a listener filter
// needs (original_dst reads SO_ORIGINAL_DST), like syscall.RawConn.Control. fn must not
// close the fd, and must not read from it: Drain consumes bytes.
func (s *ActiveSocket) Control(fn func(fd int)) { fn(s.fd) }

// Worker is the worker running the filters.
func (s *ActiveSocket) Worker() *Worker { return s.w }

// ListenerName names the listener whose filters are running.
func (s *ActiveSocket) ListenerName() string { return s.l.l.cfg.Name }

// Fail rejects the socket: it is closed when the filter returns, and
// downstream_listener_filter_error is counted.
func (s *ActiveSocket) Fail() { s.failed = true }

// Drain consumes n bytes from the socket (they were peeked before, so they are there),
// as proxy_protocol does with its header. It reads into the worker's scratch buffer.
func (s *ActiveSocket) Drain(n int) error {
	buf := s.w.scratch
	for n > 0 {
		m := min(n, len(buf))
		r, err := readFd(s.fd, buf[:m])
		if err != nil {
			return err
		}
		if r == 0 {
			return unix.ECONNRESET
		}
		n -= r
	}
	return nil
}

func (w *Worker) getSocket() *ActiveSocket {
	s := w.freeSockets
	if s != nil {
		w.freeSockets = s.next
		s.next = nil
		return s
	}
	s = &ActiveSocket{w: w}
	s.timer = w.NewTimer(s.onTimeout)
	s.Info.reset(&s.alpnList, &s.alpnBuf)
	return s
}

// addWaiting links s into the worker's list of sockets waiting for listener-filter data.
func (w *Worker) addWaiting(s *ActiveSocket) {
	s.waiting = true
	s.prev, s.next = nil, w.waiting
	if w.waiting != nil {
		w.waiting.prev = s
	}
	w.waiting = s
}

func (w *Worker) removeWaiting(s *ActiveSocket) {
	if !s.waiting {
		return
	}
	s.waiting = false
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		w.waiting = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
}

func (w *Worker) putSocket(s *ActiveSocket) {
	s.Info.reset(&s.alpnList, &s.alpnBuf)
	s.fd, s.l, s.idx = -1, nil, 0
	s.registered, s.failed, s.handedOff, s.done, s.peerFin = false, false, false, false, false
	s.next = w.freeSockets
	w.freeSockets = s
}

// start runs the listener filters of s.l from the first one.
func (s *ActiveSocket) start() {
	s.l.stats.DownstreamPreCxActive.Inc()
	s.idx = 0
	s.continueFilters(true)
}

// continueFilters runs filters from s.idx. callAccept says whether the current filter's
// OnAccept is still to be called.
func (s *ActiveSocket) continueFilters(callAccept bool) {
	filters := s.l.l.cfg.ListenerFilters
	for s.idx < len(filters) {
		f := filters[s.idx]
		if callAccept {
			st := s.onAccept(f)
			if s.failed {
				s.reject()
				return
			}
			if st == StopIteration && f.MaxReadBytes() > 0 {
				// The peer usually sends its first bytes with the handshake: try now and
				// only wait in epoll if nothing is there yet.
				if s.peek(f) {
					return
				}
				callAccept = true
				continue
			}
			if st == StopIteration {
				// A filter that stops without wanting data would hang the socket; treat
				// it as done, as Envoy's asserts require maxReadBytes for it.
				s.idx++
				continue
			}
		}
		s.idx++
		callAccept = true
	}
	s.finish()
}

// peek feeds the current filter the bytes available. It returns true when the socket is
// waiting (for data or timer) or gone, false when the filter continued (s.idx advanced).
func (s *ActiveSocket) peek(f ListenerFilter) bool {
	max := min(f.MaxReadBytes(), len(s.w.scratch))
	buf := s.w.scratch[:max]
	n, err := recvPeek(s.fd, buf)
	if err == unix.EAGAIN {
		s.wait()
		return true
	}
	if err != nil || n == 0 {
		// Peer reset or closed before the filters were satisfied.
		s.close()
		return true
	}
	st := s.onData(f, buf[:n])
	if s.failed {
		s.reject()
		return true
	}
	if st == StopIteration {
		if n >= max {
			// The filter has all it may ever see and still cannot decide.
			s.reject()
			return true
		}
		if s.peerFin {
			// The peer has ended its stream: no more bytes will come for the filter to
			// decide on, so waiting would hold the socket (and its fd) until the listener
			// filters' timeout, or forever without one.
			s.close()
			return true
		}
		s.wait()
		return true
	}
	s.idx++
	return false
}

// onAccept and onData call the filter; a panic in it fails the socket.
func (s *ActiveSocket) onAccept(f ListenerFilter) FilterStatus {
	defer s.recoverFilter()
	return f.OnAccept(s)
}

func (s *ActiveSocket) onData(f ListenerFilter, data []byte) FilterStatus {
	defer s.recoverFilter()
	return f.OnData(s, data)
}

// findChain runs the listener's chain selection; a panic in it fails the socket.
func (s *ActiveSocket) findChain() *FilterChain {
	defer s.recoverFilter()
	return s.l.l.cfg.FilterChains.FindFilterChain(&s.Info)
}

// wait registers the socket edge-triggered (so peeked-but-unread bytes do not re-fire)
// and arms the listener-filter timeout.
func (s *ActiveSocket) wait() {
	if !s.registered {
		// The Connection's registration from the start, so creating it costs no
		// epoll_ctl; edge-triggered, so peeked-but-unread bytes do not re-fire.
		if err := s.w.register(s.fd, connEvents, s); err != nil {
			s.close()
			return
		}
		s.registered = true
		s.w.addWaiting(s)
		if d := s.l.l.cfg.ListenerFiltersTimeout; d > 0 {
			s.timer.Reset(d)
		}
	}
}

// onEvent implements eventHandler: more bytes arrived for the current filter.
func (s *ActiveSocket) onEvent(ev uint32) {
	if ev&(poller.In|poller.RDHup|poller.Err|poller.Hup) == 0 {
		return // the writability edge every new registration gets
	}
	if ev&(poller.RDHup|poller.Hup) != 0 {
		s.peerFin = true
	}
	filters := s.l.l.cfg.ListenerFilters
	if s.idx >= len(filters) {
		return
	}
	if s.peek(filters[s.idx]) {
		return
	}
	s.continueFilters(true)
}

func (s *ActiveSocket) onTimeout() {
	s.l.stats.DownstreamPreCxTimeout.Inc()
	if s.l.l.cfg.ContinueOnListenerFiltersTimeout {
		s.finish()
		return
	}
	s.close()
}

func (s *ActiveSocket) reject() {
	s.l.stats.DownstreamListenerFilterError.Inc()
	s.close()
}

// detach ends the pre-connection phase on this listener without closing the fd.
func (s *ActiveSocket) detach() {
	s.timer.Stop()
	s.w.removeWaiting(s)
	s.l.stats.DownstreamPreCxActive.Dec()
}

func (s *ActiveSocket) close() {
	s.detach()
	s.w.forget(s.fd)
	poller.RawClose(s.fd)
	s.l.l.balancer.release(s.w.ID)
	s.w.putSocket(s)
}

// finish hands the socket off (use_original_dst) or selects its chain and creates the
// Connection.
func (s *ActiveSocket) finish() {
	l := s.l
	if l.l.cfg.UseOriginalDst && s.Info.LocalAddrRestored && !s.handedOff {
		if target := s.w.findListener(s.Info.LocalAddr); target != nil && target != l {
			s.detach()
			l.stats.DownstreamCxHandedOff.Inc()
			l.l.balancer.release(s.w.ID)
			if s.registered {
				s.w.unregister(s.fd)
				s.registered = false
			}
			target.takeSocket(s)
			return
		}
	}
	if s.Info.TransportProtocol == "" {
		s.Info.TransportProtocol = TransportRawBuffer
	}
	chain := s.findChain()
	if s.failed {
		s.reject()
		return
	}
	if chain == nil {
		l.stats.NoFilterChainMatch.Inc()
		s.close()
		return
	}
	s.detach()
	if l.chainHook != nil {
		l.chainHook(s.fd, &s.Info, chain)
		s.w.putSocket(s)
		return
	}
	// The Connection copies what it needs from s.Info before s goes back to the pool.
	l.newConnection(s.fd, s.registered, s.peerFin, &s.Info, chain)
	s.w.putSocket(s)
}

// recvPeek is recv(MSG_PEEK) into buf. It calls recvfrom directly with no address:
// x/sys's Recvfrom allocates a sockaddr on every call. The socket is non-blocking, so
// RawSyscall, like every other non-blocking call of the worker (see poller).
func recvPeek(fd int, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])),
			uintptr(len(buf)), unix.MSG_PEEK, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}
