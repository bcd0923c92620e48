package engine

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Listener is one configured listener as the main goroutine holds it: its config, its
// bound sockets and its per-worker stats.
type Listener struct {
	cfg      ListenerConfig
	id       int
	fds      []int // per worker; nil with NoBindToPort
	stats    []ListenerStats
	balancer *balancer
	// addr is the bound address (port resolved when the config asked for port 0).
	addr netip.AddrPort
	// maxRead is the most bytes any of its listener filters reads (MaxReadBytes).
	maxRead int
	// chains is the current filter-chain manager: cfg.FilterChains until an in-place
	// update (UpdateListenerChains) stores another; workers read it when they add the
	// listener, the main goroutine writes it.
	chains atomic.Pointer[FilterChainManager]
}

// FilterChains is the listener's current filter-chain manager.
func (l *Listener) FilterChains() FilterChainManager { return *l.chains.Load() }

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

// bindListener creates the listener's sockets on the main goroutine, so that an address in
// use fails start-up before any worker runs. inherit, if set, may offer sockets bound by
// another process (hot restart) instead.
func bindListener(cfg ListenerConfig, id, workers int, inherit InheritFunc) (*Listener, error) {
	l := &Listener{cfg: cfg, id: id, stats: make([]ListenerStats, workers), addr: cfg.Address,
		balancer: &balancer{exact: cfg.ExactBalance, counts: make([]int64, workers), totals: make([]int64, workers)}}
	for _, f := range cfg.ListenerFilters {
		l.maxRead = max(l.maxRead, f.MaxReadBytes())
	}
	l.chains.Store(&cfg.FilterChains)
	if cfg.NoBindToPort {
		return l, nil
	}
	fail := func(err error) (*Listener, error) {
		for _, fd := range l.fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("listener %q: bind %s: %w", cfg.Name, cfg.Address, err)
	}
	n := 1
	if !cfg.NoReusePort {
		n = workers
	}
	addr := cfg.Address
	for i := 0; i < n; i++ {
		fd, err := openListenSocket(addr, cfg, i, inherit)
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
	if !cfg.NoReusePort {
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
