package hotrestart

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoParent says that no process of the previous epoch answers.
var ErrNoParent = errors.New("no parent process")

// Child is the new process's side of a hot restart.
type Child struct {
	c conn
	// ParentEpoch, ParentPID and ParentGeneration are what the parent said in its hello.
	ParentEpoch, ParentPID, ParentGeneration int

	mu        sync.Mutex
	sockets   []Socket
	adminFd   int
	adminAddr netip.AddrPort
	counters  map[string]uint64 // the last complete snapshot
	pending   map[string]uint64
	final     bool
	gone      chan struct{}
	draining  bool
}

// Dial connects the child of epoch (> 0) to its parent, epoch-1, and says hello. A
// missing parent is ErrNoParent.
func Dial(baseID, epoch int) (*Child, error) {
	if epoch <= 0 {
		return nil, fmt.Errorf("hot restart: epoch %d has no parent", epoch)
	}
	name := SocketName(baseID, epoch-1)
	d := net.Dialer{Timeout: ReplyTimeout}
	nc, err := d.Dial("unixpacket", name)
	if err != nil {
		return nil, fmt.Errorf("hot restart: epoch %d: connect to the parent at %s: %w (%w)", epoch, name, ErrNoParent, err)
	}
	c := &Child{c: conn{nc.(*net.UnixConn)}, adminFd: -1, gone: make(chan struct{})}
	if err := c.c.send(message{Type: msgHello, Epoch: epoch, PID: os.Getpid()}); err != nil {
		c.c.c.Close()
		return nil, err
	}
	m, fds, err := c.c.recv(time.Now().Add(ReplyTimeout))
	closeAll(fds)
	if err == nil && m.Type != msgHello {
		err = fmt.Errorf("hot restart: parent answered hello with %q", m.Type)
	}
	if err != nil {
		c.c.c.Close()
		return nil, err
	}
	c.ParentEpoch, c.ParentPID, c.ParentGeneration = m.Epoch, m.PID, m.Generation
	return c, nil
}

// FetchSockets asks the parent for its listen sockets and its admin socket.
func (c *Child) FetchSockets() error {
	if err := c.c.send(message{Type: msgGetSockets}); err != nil {
		return err
	}
	deadline := time.Now().Add(ReplyTimeout)
	for {
		m, fds, err := c.c.recv(deadline)
		if err != nil {
			return err
		}
		if m.Type == msgSocketsDone {
			closeAll(fds)
			return nil
		}
		if len(fds) != 1 {
			closeAll(fds)
			return fmt.Errorf("hot restart: %s message with %d fds", m.Type, len(fds))
		}
		addr, err := netip.ParseAddrPort(m.Address)
		if err != nil {
			closeAll(fds)
			return fmt.Errorf("hot restart: socket address %q: %w", m.Address, err)
		}
		c.mu.Lock()
		switch m.Type {
		case msgSocket:
			c.sockets = append(c.sockets, Socket{Listener: m.Listener, Address: addr, ReusePort: m.ReusePort, Worker: m.Worker, Fd: fds[0]})
		case msgAdmin:
			if c.adminFd >= 0 {
				unix.Close(c.adminFd)
			}
			c.adminFd, c.adminAddr = fds[0], addr
		default:
			closeAll(fds)
		}
		c.mu.Unlock()
	}
}

// Inherit is an engine.InheritFunc: the parent's socket for (addr, port-sharing mode,
// worker), which the caller then owns. A shared socket (reuse_port false) is the parent's
// one socket whatever the worker.
func (c *Child) Inherit(addr netip.AddrPort, reusePort bool, worker int) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.sockets {
		s := &c.sockets[i]
		if s.Taken || s.Address != addr || s.ReusePort != reusePort || (reusePort && s.Worker != worker) {
			continue
		}
		s.Taken = true
		return s.Fd, true
	}
	return -1, false
}

// Sockets lists the sockets received, with Taken set on those the engine took.
func (c *Child) Sockets() []Socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Socket(nil), c.sockets...)
}

// TakeUnclaimed returns the sockets nobody took, which the caller now owns.
func (c *Child) TakeUnclaimed() []Socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Socket
	for i := range c.sockets {
		if !c.sockets[i].Taken {
			c.sockets[i].Taken = true
			out = append(out, c.sockets[i])
		}
	}
	return out
}

// TakeAdmin returns the parent's admin listen socket, which the caller now owns, if the
// parent sent one.
func (c *Child) TakeAdmin() (fd int, addr netip.AddrPort, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.adminFd < 0 {
		return -1, netip.AddrPort{}, false
	}
	fd, c.adminFd = c.adminFd, -1
	return fd, c.adminAddr, true
}

// Drain tells the parent that this process serves: the parent stops accepting and
// drains. From here on the parent's counters arrive (Counters) until it exits (Gone).
func (c *Child) Drain() error {
	if err := c.c.send(message{Type: msgDrain}); err != nil {
		return err
	}
	c.mu.Lock()
	c.draining = true
	c.mu.Unlock()
	go c.read()
	return nil
}

// read takes the parent's packets after the drain request until the parent goes.
func (c *Child) read() {
	defer close(c.gone)
	for {
		m, fds, err := c.c.recv(time.Time{})
		closeAll(fds)
		if err != nil {
			return
		}
		if m.Type != msgStats {
			continue
		}
		c.mu.Lock()
		if c.pending == nil {
			c.pending = make(map[string]uint64, len(m.Counters))
		}
		for k, v := range m.Counters {
			c.pending[k] = v
		}
		if m.Last {
			c.counters, c.pending = c.pending, nil
			c.final = c.final || m.Final
		}
		c.mu.Unlock()
	}
}

// Counters is the parent's last complete snapshot of counters (nil before the first); it
// stays after the parent exits. The map is not modified after it is returned.
func (c *Child) Counters() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counters
}

// Gone is closed when the parent's connection ends (it exited) after Drain.
func (c *Child) Gone() <-chan struct{} { return c.gone }

// Terminate tells the parent that parent-shutdown-time is over.
func (c *Child) Terminate() error {
	return c.c.send(message{Type: msgTerminate})
}

// Close ends the session (a parent that has not been asked to drain goes on serving as
// before) and closes every received socket that nobody took.
func (c *Child) Close() error {
	c.mu.Lock()
	for i := range c.sockets {
		if !c.sockets[i].Taken {
			unix.Close(c.sockets[i].Fd)
			c.sockets[i].Taken = true
		}
	}
	if c.adminFd >= 0 {
		unix.Close(c.adminFd)
		c.adminFd = -1
	}
	c.mu.Unlock()
	return c.c.c.Close()
}
