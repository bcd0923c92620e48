package engine

import (
	"fmt"
	"slices"

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
	// buf holds the bytes read in the listener-filter phase (nil until the first read):
	// each byte is read from the kernel once, and what the filters did not drain is
	// replayed to the Connection's first read.
	buf *writeBuffer
	// drained: the last read was short, so the kernel held nothing more at that moment.
	drained bool
	// lowat: SO_RCVLOWAT was raised for a filter's WantBytes; reset before hand-over.
	lowat bool
	reads uint16 // recv calls in this phase, bounded by maxListenerFilterReads
	want  int    // bytes the current filter said it needs (WantBytes); 0: any
	timer *Timer
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

// Drain consumes the first n of the bytes the filters were given, as proxy_protocol does
// with its header: later filters, and the connection, see only what follows them.
func (s *ActiveSocket) Drain(n int) error {
	if n < 0 || s.buf == nil || n > s.buf.len() {
		return fmt.Errorf("drain %d bytes of %d read", n, s.buffered())
	}
	s.buf.off += n
	return nil
}

// WantBytes tells the engine, from OnData, that the filter cannot decide before it has
// seen at least n bytes (counted like OnData's data, from the first byte not drained):
// a TLS record says its length up front. The socket then sleeps in the kernel
// (SO_RCVLOWAT) until that many have arrived or the peer ends its stream, instead of
// waking the worker for every segment of a slow sender. A hint too high only delays the
// decision to the peer's FIN or the listener filters' timeout; without one, each arrival
// is read.
func (s *ActiveSocket) WantBytes(n int) { s.want = n }

// buffered is how many bytes read in this phase are not drained.
func (s *ActiveSocket) buffered() int {
	if s.buf == nil {
		return 0
	}
	return s.buf.len()
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
	if s.buf != nil {
		w.putBuffer(s.buf)
		s.buf = nil
	}
	s.fd, s.l, s.idx = -1, nil, 0
	s.registered, s.failed, s.handedOff, s.done, s.peerFin = false, false, false, false, false
	s.drained, s.lowat, s.reads, s.want = false, false, 0, 0
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
				// only wait in epoll if nothing is there yet. Bytes an earlier filter
				// had read are shown first.
				if s.feed(f, s.buffered() > 0) {
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

// maxListenerFilterReads bounds the reads one socket may cost in its listener filters
// before they decide. A client sends what they need in one or two segments (a ClientHello
// of 16 KiB is a dozen), and a filter that says how much it needs (WantBytes) costs two
// or three reads however slowly the bytes come; a socket still undecided after this many
// is a slow-drip attacker, and is closed (downstream_listener_filter_read_limit).
const maxListenerFilterReads = 64

// listenerFilterChunk is the first read's size: a ClientHello, a PROXY header or a request
// line fit; the buffer grows (to the listener's largest MaxReadBytes) only if needed.
const listenerFilterChunk = 4 << 10

// feed gives the current filter the bytes read so far, reading more while it wants them.
// Every byte is read from the kernel once (recv, not MSG_PEEK), so a socket's cost is
// linear in the bytes it sends. haveNew says whether the buffer holds bytes the filter has
// not seen. It returns true when the socket is waiting (for data or a timer) or gone,
// false when the filter continued (s.idx advanced).
func (s *ActiveSocket) feed(f ListenerFilter, haveNew bool) bool {
	fmax := f.MaxReadBytes()
	for {
		if haveNew {
			view := s.buf.b[s.buf.off:]
			if len(view) > fmax {
				view = view[:fmax]
			}
			s.want = 0
			st := s.onData(f, view)
			if s.failed {
				s.reject()
				return true
			}
			if st != StopIteration {
				s.idx++
				return false
			}
			if len(view) >= fmax {
				// The filter has all it may ever see and still cannot decide.
				s.reject()
				return true
			}
		}
		if s.peerFin && s.drained {
			// The peer has ended its stream and everything before the FIN is read: no
			// more bytes will come for the filter to decide on, so waiting would hold the
			// socket (and its fd) until the listener filters' timeout, or forever.
			s.close()
			return true
		}
		if s.reads >= maxListenerFilterReads {
			s.l.stats.DownstreamListenerFilterReadLimit.Inc()
			s.close()
			return true
		}
		if s.reads == 0 && !s.registered {
			// A fresh socket: its first bytes usually follow the accept by a few µs, and
			// a read now mostly says EAGAIN. Register (the ET registration reports bytes
			// already there at once) and read when epoll says so.
			s.wait()
			return true
		}
		n, err := s.read(fmax)
		switch {
		case err == unix.EAGAIN:
			s.wait()
			return true
		case err != nil || n == 0:
			// Reset, or closed before the filters were satisfied.
			s.close()
			return true
		}
		haveNew = true
	}
}

// read appends what the socket holds to s.buf, up to the larger of the current filter's
// and the listener's read limits.
func (s *ActiveSocket) read(fmax int) (int, error) {
	limit := max(fmax, s.l.l.maxRead)
	if s.buf == nil {
		s.buf = s.w.getBuffer()
	}
	b := s.buf
	room := limit - b.len() // bytes this phase may still read
	if room <= 0 {
		return 0, unix.ENOBUFS // unreachable: feed rejects a full view first
	}
	if cap(b.b)-len(b.b) < min(room, listenerFilterChunk) {
		if b.off > 0 {
			b.b = b.b[:copy(b.b, b.b[b.off:])]
			b.off = 0
		}
		b.b = slices.Grow(b.b, min(room, max(cap(b.b), listenerFilterChunk)))
	}
	space := b.b[len(b.b):min(cap(b.b), len(b.b)+room)]
	s.reads++
	s.w.lfReads++
	n, err := readFd(s.fd, space)
	if n > 0 {
		b.b = b.b[:len(b.b)+n]
		s.drained = n < len(space)
	}
	if err == unix.EAGAIN {
		s.drained = true
	}
	return n, err
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
	return s.l.chains.FindFilterChain(&s.Info)
}

// wait registers the socket edge-triggered and arms the listener-filter timeout. A filter
// that said how many bytes it needs (WantBytes) has the kernel hold back the wake-up until
// they are there (SO_RCVLOWAT: tcp_data_ready skips the wake-up of a socket whose queue
// is below it), so a slow sender costs no wake-up per segment.
func (s *ActiveSocket) wait() {
	if need := s.want - s.buffered(); need > 1 || s.lowat {
		// Linux caps the value at half the receive buffer; a FIN wakes the socket anyway.
		if need < 1 {
			need = 1
		}
		if unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, need) == nil {
			s.lowat = need > 1
		}
	}
	if !s.registered {
		// The Connection's registration from the start, so creating it costs no
		// epoll_ctl.
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
	s.drained = false // a new edge: bytes (or the FIN) may be there
	filters := s.l.l.cfg.ListenerFilters
	if s.idx >= len(filters) {
		return
	}
	if s.feed(filters[s.idx], false) {
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
	if s.lowat {
		// What comes next (another listener's filters, or the connection) reads whatever
		// arrives.
		unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
		s.lowat = false
	}
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
	// The bytes the filters read and did not drain go to the connection, which hands them
	// to its filters before reading the socket again.
	var replay *writeBuffer
	consumed := 0 // drained by the filters (a PROXY header): read, and never forwarded
	if s.buf != nil {
		consumed = s.buf.off
	}
	if s.buffered() > 0 {
		replay, s.buf = s.buf, nil
	}
	// The kernel may hold more if the last read was not short, or a FIN (whose edge was
	// taken here) once it is read; a socket whose filters read nothing is as accepted.
	more := s.peerFin || (s.reads > 0 && !s.drained)
	// The Connection copies what it needs from s.Info before s goes back to the pool.
	l.newConnection(s.fd, s.registered, more, s.peerFin, replay, consumed, &s.Info, chain)
	s.w.putSocket(s)
}
