package engine

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// Listener is one configured listener as the main goroutine holds it: its config, its
// bound sockets and its per-worker stats.
type Listener struct {
	cfg      ListenerConfig
	id       int
	fds      []int // per worker; nil when BindToPort is false
	stats    []ListenerStats
	balancer *balancer
	// addr is the bound address (port resolved when the config asked for port 0).
	addr netip.AddrPort
}

// Name is the listener's name.
func (l *Listener) Name() string { return l.cfg.Name }

// StatName is the scope of the listener's stats: its stat_prefix, or else its name.
func (l *Listener) StatName() string {
	if l.cfg.StatPrefix != "" {
		return l.cfg.StatPrefix
	}
	return l.cfg.Name
}

// Config is the listener's configuration.
func (l *Listener) Config() *ListenerConfig { return &l.cfg }

// Address is the listening address, with the port the kernel chose if the config said 0.
func (l *Listener) Address() netip.AddrPort { return l.addr }

// Stats returns the listener's stats on worker i.
func (l *Listener) Stats(worker int) *ListenerStats { return &l.stats[worker] }

// balancer implements exact_balance (and the active-connection count per worker that it
// needs). Without exact balance it only counts.
type balancer struct {
	exact  bool
	mu     sync.Mutex
	counts []int64 // active connections per worker
	totals []int64 // connections ever given to each worker
}

// pick returns the worker with the fewest active connections, as Envoy's exact balancer
// does, and counts one more on it. Ties go to the worker that was given the fewest
// connections so far, then to the accepting worker: when connections are short-lived the
// active counts are mostly equal (0 or 1), and Envoy's first-in-list tie-break would then
// pile the churn onto one worker.
func (b *balancer) pick(self int) int {
	if !b.exact {
		return self
	}
	b.mu.Lock()
	best := self
	for i, c := range b.counts {
		if c < b.counts[best] || (c == b.counts[best] && b.totals[i] < b.totals[best]) {
			best = i
		}
	}
	b.counts[best]++
	b.totals[best]++
	b.mu.Unlock()
	return best
}

func (b *balancer) release(worker int) {
	if !b.exact {
		return
	}
	b.mu.Lock()
	b.counts[worker]--
	b.mu.Unlock()
}

// bindListener creates the listener's sockets on the main goroutine, so that an address in
// use fails start-up before any worker runs.
func bindListener(cfg ListenerConfig, id, workers int) (*Listener, error) {
	l := &Listener{cfg: cfg, id: id, stats: make([]ListenerStats, workers), addr: cfg.Address,
		balancer: &balancer{exact: cfg.ExactBalance, counts: make([]int64, workers), totals: make([]int64, workers)}}
	if !cfg.BindToPort {
		return l, nil
	}
	fail := func(err error) (*Listener, error) {
		for _, fd := range l.fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("listener %q: bind %s: %w", cfg.Name, cfg.Address, err)
	}
	n := 1
	if cfg.ReusePort {
		n = workers
	}
	addr := cfg.Address
	for i := 0; i < n; i++ {
		fd, err := listenSocket(addr, cfg)
		if err != nil {
			return fail(err)
		}
		l.fds = append(l.fds, fd)
		if addr.Port() == 0 {
			// Port 0: the first socket picks the port, the others join it.
			addr = localAddr(fd)
			l.addr = addr
		}
	}
	for i := n; i < workers; i++ {
		fd, err := unix.Dup(l.fds[0])
		if err != nil {
			return fail(err)
		}
		unix.CloseOnExec(fd)
		l.fds = append(l.fds, fd)
	}
	return l, nil
}

func listenSocket(addr netip.AddrPort, cfg ListenerConfig) (int, error) {
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	set := func(level, opt, v int) error { return unix.SetsockoptInt(fd, level, opt, v) }
	// TCP_NODELAY here is inherited by every accepted socket, saving a setsockopt each.
	errs := []error{set(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1), set(unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)}
	if cfg.ReusePort {
		errs = append(errs, set(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
	}
	if family == unix.AF_INET6 {
		// Like Envoy's ipv4_compat: false, a [::] listener takes IPv6 only.
		errs = append(errs, set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1))
	}
	if cfg.Transparent {
		if family == unix.AF_INET6 {
			errs = append(errs, set(unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1))
		} else {
			errs = append(errs, set(unix.SOL_IP, unix.IP_TRANSPARENT, 1))
		}
	}
	if cfg.Freebind {
		errs = append(errs, set(unix.SOL_IP, unix.IP_FREEBIND, 1))
	}
	for _, e := range errs {
		if e != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt: %w", e)
		}
	}
	if err := unix.Bind(fd, sockaddrOf(addr)); err != nil {
		unix.Close(fd)
		return -1, err
	}
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = unix.SOMAXCONN
		if b, err := somaxconn(); err == nil {
			backlog = b
		}
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// ActiveListener is a listener on one worker (Envoy's ActiveTcpListener).
type ActiveListener struct {
	l       *Listener
	w       *Worker
	fd      int
	stats   *ListenerStats
	io      byteCounters // this worker's rx/tx byte counters, shared by its connections
	paused  bool
	resume  *Timer
	stopped bool
	rsa     unix.RawSockaddrAny
	// chainHook, set only by tests and benchmarks, receives the chosen chain instead of a
	// Connection being created.
	chainHook func(fd int, info *SocketInfo, chain *FilterChain)
}

// acceptBackoff is how long accepting pauses after EMFILE/ENFILE; the level-triggered
// listen fd would otherwise wake the loop for nothing until an fd frees up.
const acceptBackoff = 100 * time.Millisecond

func (w *Worker) addListener(l *Listener) {
	al := &ActiveListener{l: l, w: w, fd: -1, stats: &l.stats[w.ID]}
	al.io = byteCounters{&al.stats.DownstreamCxRxBytesTotal, &al.stats.DownstreamCxTxBytesTotal}
	for len(w.active) <= l.id {
		w.active = append(w.active, nil)
	}
	w.active[l.id] = al
	w.listeners[l.cfg.Name] = al
	if l.fds == nil {
		return
	}
	al.fd = l.fds[w.ID]
	al.resume = w.NewTimer(al.onResume)
	if err := w.Register(al.fd, poller.In, al); err != nil {
		w.log.Error("listener register", "listener", l.cfg.Name, "err", err)
	}
}

// OnEvent implements EventHandler: accept a bounded batch.
func (al *ActiveListener) OnEvent(uint32) {
	max := al.l.cfg.MaxAcceptPerEvent
	if max <= 0 {
		max = defaultMaxAccept
	}
	for i := 0; i < max && !al.stopped; i++ {
		fd, err := accept4(al.fd, &al.rsa)
		if err != nil {
			switch err {
			case unix.EAGAIN:
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
}

func (al *ActiveListener) pause(err error) {
	if al.paused {
		return
	}
	al.paused = true
	al.stats.DownstreamCxOverflow.Inc()
	al.w.log.Warn("accept paused", "listener", al.l.cfg.Name, "err", err, "retry", acceptBackoff)
	al.w.Modify(al.fd, 0)
	al.resume.Reset(acceptBackoff)
}

func (al *ActiveListener) onResume() {
	if al.stopped {
		return
	}
	al.paused = false
	al.w.Modify(al.fd, poller.In)
}

func (al *ActiveListener) onAccept(fd int, remote netip.AddrPort) {
	target := al.l.balancer.pick(al.w.ID)
	if target != al.w.ID {
		tw := al.w.peers[target]
		l := al.l
		tw.Post(func() { tw.active[l.id].acceptOn(fd, remote) })
		return
	}
	al.acceptOn(fd, remote)
}

// acceptOn starts the listener-filter phase of an accepted socket on this worker.
func (al *ActiveListener) acceptOn(fd int, remote netip.AddrPort) {
	if al.stopped {
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

func (al *ActiveListener) needsLocal() bool {
	return al.l.cfg.FilterChains.NeedsLocalAddress() || len(al.l.cfg.ListenerFilters) > 0
}

// takeSocket receives a socket handed off by a use_original_dst listener on the same
// worker; this listener's balancer may move it to another worker, then its own filters
// run from the start.
func (al *ActiveListener) takeSocket(s *ActiveSocket) {
	s.l = al
	s.handedOff = true
	s.idx = 0
	target := al.l.balancer.pick(al.w.ID)
	if target != al.w.ID {
		fd, info := s.fd, s.Info
		// The ALPN list lives in s, which stays with this worker's pool.
		info.ownALPN()
		al.w.putSocket(s)
		tw := al.w.peers[target]
		l := al.l
		tw.Post(func() {
			t := tw.active[l.id]
			ns := tw.getSocket()
			ns.fd, ns.l, ns.handedOff = fd, t, true
			alpn := info.ApplicationProtocols()
			ns.Info, ns.Info.alpn = info, &ns.alpnList
			ns.Info.SetApplicationProtocols(alpn...)
			ns.start()
		})
		return
	}
	s.start()
}

// findListener resolves a restored destination to the listener that serves it on this
// worker; stopped listeners are skipped.
func (w *Worker) findListener(dst netip.AddrPort) *ActiveListener {
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
// network filters.
func (al *ActiveListener) newConnection(fd int, registered bool, info *SocketInfo, chain *FilterChain) {
	w := al.w
	// TCP_NODELAY comes from the listen socket: Linux copies it into accepted sockets.
	c := newConnection(w, fd, al.l.cfg.PerConnectionBufferLimit, stateOpen)
	c.Info = *info
	c.Info.ownALPN()
	c.chain = chain
	c.io = &al.io
	al.stats.DownstreamCxTotal.Inc()
	al.stats.DownstreamCxActive.Inc()
	c.owner = al
	if registered {
		// Already in epoll with connEvents since the listener filters waited; the bytes
		// they peeked are still queued and their edge is spent, so read them this turn.
		w.handlers[fd].h = c
		c.readReady = true
		w.deferRead(c)
	} else if err := w.Register(fd, connEvents, c); err != nil {
		c.closeSocket(LocalClose)
		return
	}
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
func (al *ActiveListener) connClosed(*Connection) {
	al.stats.DownstreamCxActive.Dec()
	al.stats.DownstreamCxDestroy.Inc()
	al.l.balancer.release(al.w.ID)
}

// stop closes this worker's listen fd; connections already accepted stay.
func (al *ActiveListener) stop() {
	if al.stopped {
		return
	}
	al.stopped = true
	if al.fd >= 0 {
		al.w.Unregister(al.fd)
		unix.Close(al.fd)
		al.fd = -1
	}
	if al.resume != nil {
		al.resume.Stop()
	}
}
