package engine

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// activeListener is a listener on one worker (Envoy's ActiveTcpListener).
type activeListener struct {
	l       *Listener
	w       *Worker
	fd      int
	stats   *ListenerStats
	io      byteCounters // this worker's rx/tx byte counters, shared by its connections
	paused  bool
	resume  *Timer
	stopped bool
	rsa     unix.RawSockaddrAny
	// batch is how many accepts the next readiness event tries (see onEvent); fullTurn is
	// the loop turn whose batch was used up without EAGAIN.
	batch    int
	fullTurn uint64
	// chains is what new sockets are matched against: the listener's FilterChains until an
	// in-place update replaces them on this worker.
	chains FilterChainManager
	// drainWin is set when the listener stopped to drain (updated or removed);
	// chainDrains holds the chains an in-place update dropped, while they drain.
	drainWin    drainWindow
	chainDrains map[*FilterChain]drainWindow
	// next is the version that replaced this one on the worker (UpdateListener).
	next *activeListener
	// chainHook, set only by tests and benchmarks, receives the chosen chain instead of a
	// Connection being created.
	chainHook func(fd int, info *SocketInfo, chain *FilterChain)
}

// acceptBackoff is how long accepting pauses after EMFILE/ENFILE; the level-triggered
// listen fd would otherwise wake the loop for nothing until an fd frees up.
const acceptBackoff = 100 * time.Millisecond

func (w *Worker) addListener(l *Listener) {
	al := &activeListener{l: l, w: w, fd: -1, stats: &l.stats[w.ID], chains: l.FilterChains()}
	al.io = byteCounters{&al.stats.DownstreamCxRxBytesTotal, &al.stats.DownstreamCxTxBytesTotal}
	for len(w.active) <= l.id {
		w.active = append(w.active, nil)
	}
	w.active[l.id] = al
	w.listeners[l.cfg.Name] = al
	if _, taken := w.byAddr[l.addr]; !taken || l.addr.Port() != 0 {
		w.byAddr[l.addr] = l.id
	}
	if l.fds == nil {
		return
	}
	al.fd = l.fds[w.ID]
	al.resume = w.NewTimer(al.onResume)
	if err := w.register(al.fd, poller.In, al); err != nil {
		w.log.Error("listener register", "listener", l.cfg.Name, "err", err)
	}
}

// onEvent implements eventHandler: accept a bounded batch.
//
// The batch adapts, so that the accept4 that would only say EAGAIN is not spent on every
// wake-up: the listen socket is level-triggered, so a batch that stops early loses
// nothing (epoll reports the socket again on the next turn). A batch used up while the
// socket is ready again on the very next turn doubles (a burst: take more per turn, up to
// MaxAcceptPerEvent); one that ends on EAGAIN after n accepts shrinks to n. Under light
// load that is one accept4 per connection, as nginx does; under a burst, batches.
func (al *activeListener) onEvent(uint32) {
	limit := al.l.cfg.MaxAcceptPerEvent
	if limit <= 0 {
		limit = defaultMaxAccept
	}
	if al.batch <= 0 {
		al.batch = 1
	}
	if al.fullTurn != 0 && al.fullTurn+1 == al.w.turn {
		al.batch = 2 * al.batch
	}
	al.batch = min(al.batch, limit)
	for i := 0; i < al.batch && !al.stopped; i++ {
		fd, err := accept4(al.fd, &al.rsa)
		if err != nil {
			switch err {
			case unix.EAGAIN:
				al.batch = max(1, i)
				return
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				al.pause(err)
				return
			}
			// ECONNABORTED and the like concern one dead connection: take the next.
			continue
		}
		al.onAccept(fd, addrPortFromRaw(&al.rsa))
	}
	al.fullTurn = al.w.turn
}

func (al *activeListener) pause(err error) {
	if al.paused {
		return
	}
	al.paused = true
	al.stats.DownstreamCxOverflow.Inc()
	al.w.log.Warn("accept paused", "listener", al.l.cfg.Name, "err", err, "retry", acceptBackoff)
	al.w.modify(al.fd, 0)
	al.resume.Reset(acceptBackoff)
}

func (al *activeListener) onResume() {
	if al.stopped {
		return
	}
	al.paused = false
	al.w.modify(al.fd, poller.In)
}

func (al *activeListener) onAccept(fd int, remote netip.AddrPort) {
	target := al.l.balancer.pick(al.w.ID)
	if target != al.w.ID {
		tw := al.w.peers[target]
		l := al.l
		if !tw.Post(func() { tw.acceptHandedOn(l, fd, remote) }) {
			// That worker has stopped: the socket is ours to close.
			poller.RawClose(fd)
			l.balancer.release(target)
		}
		return
	}
	al.acceptOn(fd, remote)
}

// acceptHandedOn takes a socket another worker accepted for l (exact balance); if l has
// gone from this worker meanwhile (removed and drained), the socket is closed.
func (w *Worker) acceptHandedOn(l *Listener, fd int, remote netip.AddrPort) {
	if l.id >= len(w.active) || w.active[l.id] == nil {
		poller.RawClose(fd)
		l.balancer.release(w.ID)
		return
	}
	w.active[l.id].acceptOn(fd, remote)
}

// acceptOn starts the listener-filter phase of an accepted socket on this worker.
func (al *activeListener) acceptOn(fd int, remote netip.AddrPort) {
	if al.stopped {
		if n := al.next; n != nil && !n.stopped {
			// Accepted by the version this one was replaced by on another worker, just
			// before the update reached it (exact balance): the new version serves it.
			al.l.balancer.release(al.w.ID)
			n.l.balancer.take(n.w.ID)
			n.acceptOn(fd, remote)
			return
		}
		unix.Close(fd)
		al.l.balancer.release(al.w.ID)
		return
	}
	s := al.w.getSocket()
	s.fd, s.l = fd, al
	s.Info.RemoteAddr = remote
	s.Info.DirectRemoteAddr = remote
	s.Info.LocalAddr = al.l.addr
	if al.l.addr.Addr().IsUnspecified() && al.needsLocal() {
		s.Info.LocalAddr = localAddr(fd)
	}
	s.start()
}

func (al *activeListener) needsLocal() bool {
	return al.chains.NeedsLocalAddress() || len(al.l.cfg.ListenerFilters) > 0
}

// takeSocket receives a socket handed off by a use_original_dst listener on the same
// worker; this listener's balancer may move it to another worker, then its own filters
// run from the start.
func (al *activeListener) takeSocket(s *ActiveSocket) {
	s.l = al
	s.handedOff = true
	s.idx = 0
	target := al.l.balancer.pick(al.w.ID)
	if target != al.w.ID {
		fd, info := s.fd, s.Info
		// The ALPN list lives in s, which stays with this worker's pool; the bytes read so
		// far (a plain heap buffer) and what was seen of the socket go along.
		info.ownALPN()
		buf, peerFin, drained := s.buf, s.peerFin, s.drained
		s.buf = nil
		al.w.putSocket(s)
		tw := al.w.peers[target]
		l := al.l
		posted := tw.Post(func() {
			var t *activeListener
			if l.id < len(tw.active) {
				t = tw.active[l.id]
			}
			if t == nil || t.stopped {
				poller.RawClose(fd)
				l.balancer.release(tw.ID)
				return
			}
			ns := tw.getSocket()
			ns.fd, ns.l, ns.handedOff = fd, t, true
			ns.buf, ns.peerFin, ns.drained = buf, peerFin, drained
			alpn := info.ApplicationProtocols()
			ns.Info, ns.Info.alpn = info, &ns.alpnList
			ns.Info.SetApplicationProtocols(alpn...)
			ns.start()
		})
		if !posted {
			poller.RawClose(fd)
			l.balancer.release(target)
		}
		return
	}
	s.start()
}

// findListener resolves a restored destination to the listener that serves it on this
// worker; stopped listeners are skipped.
func (w *Worker) findListener(dst netip.AddrPort) *activeListener {
	id, ok := handoffTarget(w.byAddr, dst, func(id int) bool {
		return id < len(w.active) && w.active[id] != nil && !w.active[id].stopped
	})
	if !ok {
		return nil
	}
	return w.active[id]
}

// handoffTarget is Envoy's use_original_dst rule: the listener registered under exactly
// dst, else the wildcard address of dst's family with dst's port.
func handoffTarget(byAddr map[netip.AddrPort]int, dst netip.AddrPort, usable func(int) bool) (int, bool) {
	if id, ok := byAddr[dst]; ok && usable(id) {
		return id, true
	}
	any := netip.IPv4Unspecified()
	if dst.Addr().Is6() {
		any = netip.IPv6Unspecified()
	}
	if id, ok := byAddr[netip.AddrPortFrom(any, dst.Port())]; ok && usable(id) {
		return id, true
	}
	return 0, false
}

// HandoffTarget applies the use_original_dst rule to configured listeners, as a worker
// would: it returns the index in cfgs of the listener that would take a socket whose
// restored destination is dst, or -1.
func HandoffTarget(cfgs []ListenerConfig, dst netip.AddrPort) int {
	byAddr := make(map[netip.AddrPort]int, len(cfgs))
	for i, c := range cfgs {
		if _, dup := byAddr[c.Address]; !dup {
			byAddr[c.Address] = i
		}
	}
	id, ok := handoffTarget(byAddr, dst, func(int) bool { return true })
	if !ok {
		return -1
	}
	return id
}

// newConnection turns a socket that passed its filters into a Connection with the chain's
// network filters. registered: the socket is in epoll already (it waited in the listener
// filters); more: the kernel may hold bytes whose edge was taken; peerFin: the peer's FIN
// edge was taken; replay: bytes the listener filters read and did not drain, handed to
// the connection's filters before anything else; consumed: bytes they drained.
func (al *activeListener) newConnection(fd int, registered, more, peerFin bool, replay *writeBuffer, consumed int, info *SocketInfo, chain *FilterChain) {
	w := al.w
	// TCP_NODELAY comes from the listen socket: Linux copies it into accepted sockets.
	c := newConnection(w, fd, al.l.cfg.PerConnectionBufferLimit, stateOpen)
	c.Info = *info
	c.Info.ownALPN()
	c.chain = chain
	c.consumed = uint32(consumed)
	c.io = &al.io
	al.stats.DownstreamCxTotal.Inc()
	al.stats.DownstreamCxActive.Inc()
	c.owner = al
	if replay != nil {
		w.replays[c] = replay
		c.replay = true
	}
	// The edges the listener filters took are spent: what they said about the socket (more
	// bytes, a FIN: without it the short read of the last bytes would look final and the
	// end of stream never be read) carries over.
	c.readReady = more
	c.partialRead = more && (consumed > 0 || replay != nil) // the filters read, and not to the end
	c.peerFin = peerFin
	if registered {
		// Already in epoll with connEvents since the listener filters waited.
		w.handlers[fd].h = c
	} else if err := w.register(fd, connEvents, c); err != nil {
		c.closeSocket(LocalClose)
		return
	}
	if c.readReady || c.replay {
		w.deferRead(c)
	}
	if chain.TransportSocket != nil {
		c.startTransport(chain.TransportSocket)
		return
	}
	c.startFilters(chain)
}

// startTransport makes the connection's transport socket; its OnConnected starts the
// handshake, and the filters wait for TransportReady. A panic resets the connection.
func (c *Connection) startTransport(f TransportSocketFactory) {
	defer c.recoverFilter()
	ts := f.NewTransportSocket(c)
	if ts == nil || c.state == stateClosed {
		if c.state != stateClosed {
			c.Close(CloseNoFlush)
		}
		return
	}
	c.ts, c.tsPending = ts, true
	ts.OnConnected()
}

// startFilters builds the chain's network filters and calls their OnNewConnection; a panic
// in a factory or filter resets the connection.
func (c *Connection) startFilters(chain *FilterChain) {
	defer c.recoverFilter()
	for _, f := range chain.Filters {
		c.AddReadFilter(f.CreateFilter(c))
	}
	if c.filter == nil {
		// Envoy closes a connection whose chain has no filters.
		c.Close(CloseNoFlush)
		return
	}
	if c.filter.OnNewConnection() == StopIteration || c.more == nil {
		return
	}
	for _, f := range *c.more {
		if c.state == stateClosed || f.OnNewConnection() == StopIteration {
			return
		}
	}
}

// connClosed accounts for a closed downstream connection of this listener.
func (al *activeListener) connClosed(*Connection) {
	al.stats.DownstreamCxActive.Dec()
	al.stats.DownstreamCxDestroy.Inc()
	al.l.balancer.release(al.w.ID)
}

// maxQueuedAccepts bounds what stop takes from the accept queue (a listen backlog is at
// most somaxconn, 4096 by default).
const maxQueuedAccepts = 1 << 16

// stop closes this worker's listen fd; connections already accepted stay. With
// acceptQueued (a drain, not the final shutdown) it first accepts what the kernel queued:
// clients whose handshake completed before the stop are served rather than reset by the
// close (Envoy resets them). A SYN that arrives between the last accept and the close is
// still reset; nothing but a socket hand-over can avoid that.
func (al *activeListener) stop(acceptQueued bool) {
	if al.stopped {
		return
	}
	if acceptQueued && al.fd >= 0 {
		al.acceptQueued()
	}
	al.stopped = true
	if al.fd >= 0 {
		al.w.unregister(al.fd)
		unix.Close(al.fd)
		al.fd = -1
	}
	if al.resume != nil {
		al.resume.Stop()
	}
}

// acceptQueued accepts every connection in the listen socket's queue onto this worker
// (not handed to another: they may be stopping too).
func (al *activeListener) acceptQueued() {
	for i := 0; i < maxQueuedAccepts; i++ {
		fd, err := accept4(al.fd, &al.rsa)
		if err != nil {
			switch err {
			case unix.EAGAIN, unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				return
			}
			continue // ECONNABORTED and the like: the next one
		}
		al.l.balancer.take(al.w.ID)
		al.stats.DownstreamCxDrainAccepted.Inc()
		al.acceptOn(fd, addrPortFromRaw(&al.rsa))
	}
}
