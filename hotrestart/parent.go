package hotrestart

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// ParentHooks connect a Parent to the process it serves from. The hooks run on the
// Parent's own goroutine.
type ParentHooks struct {
	// Epoch and Generation are this process's (Envoy's server.hot_restart_generation: 1 for
	// a cold start, the parent's plus one after a hot restart).
	Epoch, Generation int
	// Sockets lists the listen sockets to hand over, as duplicates the Parent closes once
	// sent (engine.Server.ListenSockets).
	Sockets func() []engine.ListenSocket
	// Admin gives a duplicate of the admin listen socket, which the Parent closes once
	// sent; ok false if there is none.
	Admin func() (fd int, addr netip.AddrPort, ok bool)
	// Drain is called once, when the child serves: stop accepting, close the admin
	// socket, drain. It should return at once (start the drain elsewhere).
	Drain func()
	// Terminate is called when the child says parent-shutdown-time is over.
	Terminate func()
	// ChildFailed is called when a child goes away before asking to drain (its start
	// failed): whatever it changed in shared sockets should be put back.
	ChildFailed func()
	Logger      *slog.Logger
}

// Parent is the running process's side: it answers the next epoch's child.
type Parent struct {
	ln *net.UnixListener
	h  ParentHooks

	mu     sync.Mutex
	child  *conn // the child that asked to drain; stats go to it
	closed bool
}

// Listen binds the socket of this process's epoch. It fails if another process holds it
// (the same base id and epoch are running already).
func Listen(baseID, epoch int) (*Parent, error) {
	name := SocketName(baseID, epoch)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: name, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("hot restart: listen on %s (is epoch %d of base id %d running already?): %w", name, epoch, baseID, err)
	}
	return &Parent{ln: ln}, nil
}

// Serve answers children one at a time until Close, or until a child has asked to drain
// (a process hands over once). Run it on its own goroutine.
func (p *Parent) Serve(h ParentHooks) {
	p.h = h
	if p.h.Logger == nil {
		p.h.Logger = slog.Default()
	}
	for {
		c, err := p.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		if p.serveChild(conn{c}) {
			return
		}
	}
}

// serveChild runs one child's session; it reports whether the child took over (asked to
// drain), after which the session lasts until the child or this process goes.
func (p *Parent) serveChild(c conn) bool {
	log := p.h.Logger
	fail := func(err error) bool {
		log.Warn("hot restart: child session ended before the hand-over; serving on", "err", err)
		c.c.Close()
		if p.h.ChildFailed != nil {
			p.h.ChildFailed()
		}
		return false
	}
	m, fds, err := c.recv(time.Now().Add(ReplyTimeout))
	closeAll(fds)
	if err != nil {
		return fail(err)
	}
	if m.Type != msgHello || m.Epoch != p.h.Epoch+1 {
		c.send(message{Type: msgError, Error: fmt.Sprintf("expected hello from epoch %d, got %q from epoch %d", p.h.Epoch+1, m.Type, m.Epoch)})
		return fail(fmt.Errorf("bad hello: %q epoch %d", m.Type, m.Epoch))
	}
	log.Info("hot restart: child connected", "child_epoch", m.Epoch, "child_pid", m.PID)
	if err := c.send(message{Type: msgHello, Epoch: p.h.Epoch, PID: os.Getpid(), Generation: p.h.Generation}); err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(ReplyTimeout)
	for {
		// Before get_sockets, a silent child is dropped; after it, the child may take as
		// long as its start takes (cluster warm-up), and its death ends the session.
		m, fds, err := c.recv(deadline)
		closeAll(fds)
		if err != nil {
			return fail(err)
		}
		switch m.Type {
		case msgGetSockets:
			if err := p.sendSockets(c); err != nil {
				return fail(err)
			}
			deadline = time.Time{}
		case msgDrain:
			p.mu.Lock()
			p.child = &c
			p.mu.Unlock()
			p.ln.Close() // one hand-over per process
			log.Info("hot restart: child serves; draining", "child_epoch", p.h.Epoch+1)
			if p.h.Drain != nil {
				p.h.Drain()
			}
			if err := c.send(message{Type: msgDrainStart}); err != nil {
				log.Warn("hot restart: telling the child the drain started", "err", err)
			}
			p.waitTerminate(c)
			return true
		default:
			c.send(message{Type: msgError, Error: fmt.Sprintf("unexpected %q", m.Type)})
			return fail(fmt.Errorf("unexpected %q", m.Type))
		}
	}
}

func (p *Parent) sendSockets(c conn) error {
	var socks []engine.ListenSocket
	if p.h.Sockets != nil {
		socks = p.h.Sockets()
	}
	defer func() {
		for _, s := range socks {
			closeFd(s.Fd)
		}
	}()
	n := 0
	for _, s := range socks {
		err := c.send(message{Type: msgSocket, Listener: s.Listener, Address: s.Address.String(),
			ReusePort: s.ReusePort, Worker: s.Worker}, s.Fd)
		if err != nil {
			return err
		}
		n++
	}
	if p.h.Admin != nil {
		if fd, addr, ok := p.h.Admin(); ok {
			err := c.send(message{Type: msgAdmin, Address: addr.String()}, fd)
			closeFd(fd)
			if err != nil {
				return err
			}
		}
	}
	return c.send(message{Type: msgSocketsDone, Count: n})
}

// waitTerminate reads from the child that took over until it says terminate or goes.
func (p *Parent) waitTerminate(c conn) {
	for {
		m, fds, err := c.recv(time.Time{})
		closeAll(fds)
		if err != nil {
			p.h.Logger.Info("hot restart: child connection ended; draining on", "err", err)
			return
		}
		if m.Type == msgTerminate {
			p.h.Logger.Info("hot restart: child says parent-shutdown-time is over; exiting")
			if p.h.Terminate != nil {
				p.h.Terminate()
			}
			return
		}
	}
}

// SendStats sends a snapshot of counters to the child that took over (if one did);
// final marks the last one, sent just before this process exits.
func (p *Parent) SendStats(counters map[string]uint64, final bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.child == nil || p.closed {
		return errors.New("hot restart: no child to send stats to")
	}
	chunks := splitCounters(counters)
	for i, ch := range chunks {
		last := i == len(chunks)-1
		if err := p.child.send(message{Type: msgStats, Counters: ch, Last: last, Final: final && last}); err != nil {
			return err
		}
	}
	return nil
}

// Close stops answering children and ends a session in progress.
func (p *Parent) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.child != nil {
		p.child.c.Close()
	}
	p.mu.Unlock()
	return p.ln.Close()
}
