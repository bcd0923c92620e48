package poller

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event bits, re-exported so callers need not import x/sys/unix for them.
const (
	In    = unix.EPOLLIN
	Out   = unix.EPOLLOUT
	RDHup = unix.EPOLLRDHUP
	Err   = unix.EPOLLERR
	Hup   = unix.EPOLLHUP
	// ET asks for edge-triggered notification.
	ET = unix.EPOLLET
)

// Token is the 64-bit user data carried by an epoll registration. The engine packs an fd and
// a sequence number into it so that an event queued for a closed fd is never delivered to a
// new socket that reused the number within the same epoll_wait batch.
type Token uint64

// MakeToken packs fd and seq.
func MakeToken(fd int, seq uint32) Token { return Token(uint64(uint32(fd)) | uint64(seq)<<32) }

// Fd returns the fd half of the token.
func (t Token) Fd() int { return int(uint32(t)) }

// Seq returns the sequence half of the token.
func (t Token) Seq() uint32 { return uint32(t >> 32) }

// Poller owns one epoll instance and one eventfd registered in it for wake-ups.
type Poller struct {
	epfd   int
	evfd   int
	events []unix.EpollEvent
	// woken coalesces wake-ups: only the 0→1 transition writes to the eventfd.
	woken atomic.Int32
	buf   [8]byte
}

// wakeToken marks the eventfd; fd -1 never belongs to a socket.
var wakeToken = MakeToken(-1, 0)

// New creates the epoll instance and its wake-up eventfd.
func New(maxEvents int) (*Poller, error) {
	if maxEvents <= 0 {
		maxEvents = 256
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	p := &Poller{epfd: epfd, evfd: evfd, events: make([]unix.EpollEvent, maxEvents)}
	if err := p.ctl(unix.EPOLL_CTL_ADD, evfd, In, wakeToken); err != nil {
		p.Close()
		return nil, fmt.Errorf("epoll_ctl add eventfd: %w", err)
	}
	return p, nil
}

func (p *Poller) ctl(op, fd int, events uint32, tok Token) error {
	ev := unix.EpollEvent{Events: events}
	*(*Token)(unsafe.Pointer(&ev.Fd)) = tok
	return epollCtl(p.epfd, op, fd, &ev)
}

// Add registers fd for events (level-triggered unless events has ET) with the given token.
func (p *Poller) Add(fd int, events uint32, tok Token) error {
	return p.ctl(unix.EPOLL_CTL_ADD, fd, events, tok)
}

// Mod changes the events watched on fd.
func (p *Poller) Mod(fd int, events uint32, tok Token) error {
	return p.ctl(unix.EPOLL_CTL_MOD, fd, events, tok)
}

// Del removes fd. Callers must Del before close: an fd that was dup'ed stays registered
// after close while any duplicate of it is open.
func (p *Poller) Del(fd int) error {
	var ev unix.EpollEvent // kernels before 2.6.9 wanted a non-nil event even for DEL
	return epollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, &ev)
}

// Wake makes a concurrent or future Wait return. Safe from any goroutine.
func (p *Poller) Wake() {
	if p.woken.CompareAndSwap(0, 1) {
		one := [8]byte{1}
		for {
			_, err := unix.Write(p.evfd, one[:])
			if err != unix.EINTR {
				return
			}
		}
	}
}

// Wait blocks up to msec milliseconds (-1: forever, 0: poll) and returns how many events
// are ready; read them with Ready(0..n-1) before the next Wait.
func (p *Poller) Wait(msec int) (int, error) {
	return p.wait(msec, msec == 0)
}

// WaitBusy is Wait for a loop that is busy: it blocks for up to msec without telling the
// Go runtime (RawSyscall), so the thread keeps its P. See Worker.run for why. Keep msec
// short: while it blocks no other goroutine can use this P, and a GC waits for the
// preemption signal, which interrupts the wait (EINTR, reported as 0 events).
func (p *Poller) WaitBusy(msec int) (int, error) {
	return p.wait(msec, true)
}

func (p *Poller) wait(msec int, raw bool) (int, error) {
	n, err := epollWait(p.epfd, p.events, msec, raw)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, fmt.Errorf("epoll_wait: %w", err)
	}
	return n, nil
}

// Ready returns the i-th event of the last Wait. ok is false for the wake-up eventfd, which
// Ready drains and re-arms itself.
func (p *Poller) Ready(i int) (tok Token, events uint32, ok bool) {
	ev := &p.events[i]
	tok = *(*Token)(unsafe.Pointer(&ev.Fd))
	if tok == wakeToken {
		unix.Read(p.evfd, p.buf[:])
		p.woken.Store(0)
		return tok, ev.Events, false
	}
	return tok, ev.Events, true
}

// Grow doubles the event array when the last Wait filled it, so one call drains a busy
// loop; call it after the events are handled.
func (p *Poller) Grow(n int) {
	if n == len(p.events) && n < 4096 {
		p.events = make([]unix.EpollEvent, n*2)
	}
}

// Fd is the epoll instance's descriptor, for diagnostics and tests; do not close it.
func (p *Poller) Fd() int { return p.epfd }

// Close releases the epoll instance and the eventfd.
func (p *Poller) Close() error {
	unix.Close(p.evfd)
	return unix.Close(p.epfd)
}
