package engine

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// InheritFunc offers a listen socket that another process already bound (a hot restart's
// parent) for the listener at addr on worker: it returns the socket's fd, which the
// listener then owns, or ok false and the listener binds its own. reusePort says which
// port-sharing mode the listener asks for: a socket of the other mode must not be offered
// (a SO_REUSEPORT socket and a plain one cannot share an address).
type InheritFunc func(addr netip.AddrPort, reusePort bool, worker int) (fd int, ok bool)

// ListenSocket is one listen socket of a running listener, as ListenSockets reports it.
type ListenSocket struct {
	Listener  string
	Address   netip.AddrPort
	ReusePort bool
	// Worker is the socket's worker. With reuse_port it is also the socket's position in
	// the kernel's SO_REUSEPORT group, which is the order the sockets were bound in.
	Worker int
	// Fd is a duplicate that the caller owns and must close.
	Fd int
}

// openListenSocket gives a listener the socket for worker i at addr: an inherited one if
// the hook offers it (nothing is bound then, so the address is never free in between),
// else a new one. A port-0 address is never inherited: its port is the kernel's choice of
// the moment, not something two processes can agree on.
func openListenSocket(addr netip.AddrPort, cfg ListenerConfig, i int, inherit InheritFunc) (int, error) {
	if inherit != nil && addr.Port() != 0 {
		if fd, ok := inherit(addr, !cfg.NoReusePort, i); ok {
			// O_NONBLOCK belongs to the open file, which the parent shares and already set;
			// set it anyway, as the workers' accept loops depend on it.
			if err := unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
				return -1, fmt.Errorf("inherited socket: %w", err)
			}
			unix.CloseOnExec(fd)
			return fd, nil
		}
	}
	return listenSocket(addr, cfg)
}

// ListenSockets lists the listen sockets that the running listeners accept on, each as a
// duplicate fd the caller must close: what a hot-restart parent hands its child. With
// reuse_port every worker's socket is listed; with one shared socket (reuse_port false),
// only worker 0's, as the other workers hold duplicates of it. It asks each worker (by
// Post) for the sockets it accepts on, so it is safe from any goroutine and sees the
// listeners of the moment, added or removed at run time; call it after Start. A listener
// that has stopped is not listed.
func (s *Server) ListenSockets() []ListenSocket {
	type reply struct {
		socks []ListenSocket
		err   error
	}
	ch := make(chan reply, len(s.workers))
	posted := 0
	for _, w := range s.workers {
		if w.Post(func() {
			var r reply
			for _, al := range w.active {
				if al == nil || al.stopped || al.fd < 0 {
					continue
				}
				if al.l.cfg.NoReusePort && w.ID != 0 {
					continue
				}
				fd, err := unix.FcntlInt(uintptr(al.fd), unix.F_DUPFD_CLOEXEC, 0)
				if err != nil {
					r.err = fmt.Errorf("listener %q: dup worker %d's socket: %w", al.l.cfg.Name, w.ID, err)
					continue
				}
				r.socks = append(r.socks, ListenSocket{Listener: al.l.cfg.Name, Address: al.l.addr,
					ReusePort: !al.l.cfg.NoReusePort, Worker: w.ID, Fd: fd})
			}
			// Adopted sockets go on to the next process too: they are still in their
			// SO_REUSEPORT group, and one left behind here would be closed with this
			// process while the group may still send it connections.
			for _, slot := range w.handlers {
				a, ok := slot.h.(*adoptedSocket)
				if !ok || a.fd < 0 {
					continue
				}
				fd, err := unix.FcntlInt(uintptr(a.fd), unix.F_DUPFD_CLOEXEC, 0)
				if err != nil {
					r.err = fmt.Errorf("listener %q: dup adopted socket %d: %w", a.l.cfg.Name, a.index, err)
					continue
				}
				r.socks = append(r.socks, ListenSocket{Listener: a.l.cfg.Name, Address: a.l.addr, ReusePort: true, Worker: a.index, Fd: fd})
			}
			ch <- r
		}) {
			posted++
		}
	}
	var out []ListenSocket
	for ; posted > 0; posted-- {
		r := <-ch
		if r.err != nil {
			s.log.Warn("listing listen sockets", "err", r.err)
		}
		out = append(out, r.socks...)
	}
	slices.SortFunc(out, func(a, b ListenSocket) int {
		if c := strings.Compare(a.Listener, b.Listener); c != 0 {
			return c
		}
		return a.Worker - b.Worker
	})
	return out
}

// AdoptListenSocket serves a listen socket of the named listener that no worker owns:
// one a hot-restart parent had beyond this process's worker count (its concurrency was
// higher). Closing such a socket while connections wait in its accept queue would reset
// them, so it is accepted from, on worker index modulo the worker count, into the
// listener's normal path, until it has been empty for idle; then it is closed. The caller
// is expected to have steered new connections away from it first (SO_REUSEPORT BPF), so
// that it empties. index is the socket's worker in the process it came from, under which
// ListenSockets lists it while it is open (a next process takes it over in turn). When
// the listener stops on that worker (a drain), the socket stops being accepted from and
// is closed, without taking what is queued: a process that drains has handed its sockets
// to a child, which accepts from its own copy. Call it after Start. The server owns fd
// from here on.
func (s *Server) AdoptListenSocket(name string, fd int, index int, idle time.Duration) error {
	l := s.Listener(name)
	if l == nil {
		unix.Close(fd)
		return fmt.Errorf("adopt socket: no listener %q", name)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("adopt socket of listener %q: %w", name, err)
	}
	w := s.workers[index%len(s.workers)]
	a := &adoptedSocket{w: w, l: l, fd: fd, index: index, idle: idle}
	if !w.Post(a.start) {
		unix.Close(fd)
		return fmt.Errorf("adopt socket of listener %q: worker %d has stopped", name, w.ID)
	}
	return nil
}

// adoptedSocket is a listen socket accepted from until it stays empty (AdoptListenSocket).
type adoptedSocket struct {
	w     *Worker
	l     *Listener
	fd    int
	index int
	idle  time.Duration
	timer *Timer
	rsa   unix.RawSockaddrAny
}

func (a *adoptedSocket) start() {
	a.timer = a.w.NewTimer(a.onIdle)
	if err := a.w.register(a.fd, poller.In, a); err != nil {
		a.w.log.Error("adopted listen socket: register", "listener", a.l.cfg.Name, "err", err)
		unix.Close(a.fd)
		return
	}
	a.onEvent(0) // whatever is queued already
	a.timer.Reset(a.idle)
}

// onEvent accepts everything queued into the listener on this worker; a connection
// accepted restarts the idle period.
func (a *adoptedSocket) onEvent(uint32) {
	if a.fd < 0 {
		return
	}
	if a.listener() == nil {
		// Stopped (drained) or gone: leave the queue to the other process's copy.
		a.close()
		return
	}
	for i := 0; i < maxQueuedAccepts; i++ {
		fd, err := accept4(a.fd, &a.rsa)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EMFILE || err == unix.ENFILE || err == unix.ENOBUFS || err == unix.ENOMEM {
				return
			}
			continue
		}
		al := a.listener()
		al.l.balancer.take(a.w.ID)
		al.acceptOn(fd, addrPortFromRaw(&a.rsa))
		a.timer.Reset(a.idle)
	}
}

// listener is the worker's running listener of that name, which may be a newer version
// than the one adopted for (an update while running keeps the name and the sockets).
func (a *adoptedSocket) listener() *activeListener {
	if al := a.w.listeners[a.l.cfg.Name]; al != nil && !al.stopped {
		return al
	}
	return nil
}

// onIdle closes the socket after one last look at its queue.
func (a *adoptedSocket) onIdle() {
	a.onEvent(0)
	a.close()
}

func (a *adoptedSocket) close() {
	if a.fd < 0 {
		return
	}
	a.w.unregister(a.fd)
	unix.Close(a.fd)
	a.fd = -1
	a.timer.Stop()
}

// DownstreamOpen counts the downstream connections and the accepted sockets still in
// their listener filters: what a hot restart's parent waits for before it exits (Drain
// waits for the same).
func (s *Server) DownstreamOpen() int64 { return s.ActiveConnections() + s.pendingSockets() }
