package engine

import (
	"errors"
	"time"

	"github.com/portico-proxy/portico/poller"
)

// KernelPairs forwards the bytes of proxied socket pairs inside the kernel (a BPF
// sockmap: engine/sockmap's Map implements it). The engine knows it only through this
// interface, so the engine itself needs no BPF library; a server gets one through
// ServerOptions.KernelPairs.
type KernelPairs interface {
	// Pair makes the kernel forward what a receives to b's send side and what b receives
	// to a's. On error nothing changed, unless the returned pair is not zero: then one
	// direction was already forwarded and the pair must be released and reset.
	Pair(a, b int) ([2]uint64, error)
	// ReleaseSide takes socket i (0: a, 1: b) of the pair out before it is closed; what
	// the kernel still queues for the other socket is still delivered.
	ReleaseSide(p [2]uint64, i int)
}

// Why PairInKernel refused. ErrKernelPairBusy is the only one worth a later retry.
var (
	ErrKernelPairOff         = errors.New("kernel pairing is off")
	ErrKernelPairUnsupported = errors.New("the pair cannot be forwarded in the kernel (another worker, a transport socket, not open, half closed, spliced)")
	ErrKernelPairBusy        = errors.New("bytes are buffered in userspace")
)

// kernelEvents is a paired connection's epoll mask: no EPOLLIN and no EPOLLOUT, as the
// worker neither reads nor writes it; only the peer's FIN (EPOLLRDHUP) and, always
// reported, errors and hang-ups. Each batch of redirected bytes still wakes the socket's
// wait queue with EPOLLIN (sk_psock_verdict_data_ready calls the saved sk_data_ready), and
// leaving EPOLLIN out of the mask lets ep_poll_callback drop it by its key.
const kernelEvents = poller.RDHup | poller.ET

// kernelPair is what two connections share while the kernel forwards their bytes.
type kernelPair struct {
	id    [2]uint64
	conns [2]*Connection
	// baseRx[i], baseTx[i]: what userspace had read from and written to conns[i] when
	// the pair entered the kernel (the engine's byte counters add the rest at close).
	baseRx, baseTx [2]uint64
	// final[i] is conns[i]'s TCP counts, read just before it closed (closed[i]).
	final   [2]poller.TCPCounts
	closed  [2]bool
	reset   [2]bool // conns[i] closed on an error (an RST): its TCP_CLOSE is not two FINs
	polls   [2]Timer
	wait    [2]time.Duration
	pollers [2]kernelPoller
}

func (kp *kernelPair) side(c *Connection) int {
	if kp.conns[0] == c {
		return 0
	}
	return 1
}

// dialed reports whether c made its connection (an upstream): its tcpi_bytes_acked
// counts its SYN.
func (c *Connection) dialed() bool { return c.chain == nil }

// PairInKernel hands c and peer to the server's KernelPairs, so that the kernel forwards
// each one's received bytes to the other and the worker no longer reads or writes either;
// it keeps watching both for the peer's FIN, reset and error, and raises the usual events
// (a FIN is dispatched as end of stream; Write(nil, true) on the other one then shuts its
// write side down once the kernel has delivered what it holds). Only connections whose
// filter forwards every byte unchanged may ask (tcp_proxy alone in its chain). Both must be
// open raw-buffer connections of this worker with nothing buffered in userspace.
func (c *Connection) PairInKernel(peer *Connection) error {
	w := c.w
	switch {
	case w.kpairs == nil:
		return ErrKernelPairOff
	case peer == nil || peer == c || peer.w != w || c.kp != nil || peer.kp != nil,
		c.readFilters() != 1 || peer.readFilters() != 1, // another filter must see the bytes
		c.state != stateOpen || peer.state != stateOpen,
		c.ts != nil || peer.ts != nil || c.tsPending || peer.tsPending,
		c.splice != nil || peer.splice != nil,
		c.remoteEOF || peer.remoteEOF || c.peerFin || peer.peerFin,
		c.shutdownAfter || peer.shutdownAfter || c.localShutdown || peer.localShutdown:
		return ErrKernelPairUnsupported
	case c.replay || peer.replay || c.pending() > 0 || peer.pending() > 0:
		return ErrKernelPairBusy
	}
	// Userspace forwarded all it read: what each had been written is what the other had
	// been read. The kernel starts moving bytes inside Pair, so count first.
	ca, err := poller.ReadTCPCounts(c.fd, c.dialed())
	if err != nil {
		return ErrKernelPairUnsupported
	}
	cb, err := poller.ReadTCPCounts(peer.fd, peer.dialed())
	if err != nil {
		return ErrKernelPairUnsupported
	}
	id, err := w.kpairs.Pair(c.fd, peer.fd)
	if err != nil {
		if id != ([2]uint64{}) {
			// Half paired: bytes may sit in the kernel for one side; neither can be
			// trusted to keep its order in userspace.
			w.kpairs.ReleaseSide(id, 0)
			w.kpairs.ReleaseSide(id, 1)
			c.Close(CloseReset)
			peer.Close(CloseReset)
		}
		return errors.Join(ErrKernelPairUnsupported, err)
	}
	kp := &kernelPair{id: id, conns: [2]*Connection{c, peer},
		baseTx: [2]uint64{ca.Written, cb.Written}, baseRx: [2]uint64{cb.Written, ca.Written}}
	for i, x := range kp.conns {
		x.kp = kp
		x.readReady = false
		kp.pollers[i] = kernelPoller{kp, i}
		kp.polls[i].InitFor(x, &kp.pollers[i])
		w.modify(x.fd, kernelEvents)
	}
	return nil
}

// KernelPaired reports whether the kernel forwards this connection's bytes.
func (c *Connection) KernelPaired() bool { return c.kp != nil }

// KernelCounts is what a paired connection received and was given to send in all, from
// TCP_INFO (read at close once it is closed); ok is false if it was never paired.
func (c *Connection) KernelCounts() (rx, tx uint64, ok bool) {
	kp := c.kp
	if kp == nil {
		return 0, 0, false
	}
	i := kp.side(c)
	n := kp.final[i]
	if !kp.closed[i] {
		var err error
		if n, err = poller.ReadTCPCounts(c.fd, c.dialed()); err != nil {
			return 0, 0, false
		}
	}
	return n.Received, n.Written, true
}

// KernelIdle is how long neither socket of a paired connection has received data
// (tcpi_last_data_recv), for idle timeouts; ok is false if it was never paired.
func (c *Connection) KernelIdle() (time.Duration, bool) {
	kp := c.kp
	if kp == nil {
		return 0, false
	}
	idle := time.Duration(-1)
	for i, x := range kp.conns {
		if kp.closed[i] {
			continue
		}
		n, err := poller.ReadTCPCounts(x.fd, x.dialed())
		if err != nil {
			continue
		}
		if d := time.Duration(n.LastRecvMillis) * time.Millisecond; idle < 0 || d < idle {
			idle = d
		}
	}
	if idle < 0 {
		return 0, false
	}
	return idle, true
}

// kernelBacklog is what the kernel still holds for c: what its peer received that c has
// not been given to send. It is part of c's pending bytes, so a half-close or a flushing
// close waits for it.
func (c *Connection) kernelBacklog() int {
	kp := c.kp
	i := kp.side(c)
	if kp.closed[i] {
		return 0
	}
	j := 1 - i
	rx := kp.final[j].Received
	if !kp.closed[j] {
		n, err := poller.ReadTCPCounts(kp.conns[j].fd, false)
		if err != nil {
			return 0
		}
		rx = n.Received
	}
	n, err := poller.ReadTCPCounts(c.fd, c.dialed())
	if err != nil || n.Written >= rx {
		return 0
	}
	return int(rx - n.Written)
}

// kernelSettled reports whether a connection may be closed as far as the kernel is
// concerned: true unless it is paired and what it received has not all reached its peer's
// send queue. The peer's FIN wakes the worker (tcp_fin -> sk_state_change) before the
// segment's data has been through the verdict (sk_data_ready comes after), and a socket
// taken out of the map and closed with bytes still in its receive queue would lose them
// (and send an RST). SIOCINQ cannot tell: on a socket with a psock it reports only the
// psock's own queue (tcp_bpf_ioctl on 6.18), not sk_receive_queue. Bytes already in the
// peer's psock survive this socket's close (each skb holds a reference on it), so waiting
// for the peer's whole backlog is more than needed, but it is what TCP_INFO can tell.
func (c *Connection) kernelSettled() bool {
	kp := c.kp
	if kp == nil {
		return true
	}
	j := 1 - kp.side(c)
	return kp.closed[j] || kp.conns[j].kernelBacklog() == 0
}

// onKernelEvent handles a paired connection's events: it is never read.
func (c *Connection) onKernelEvent(ev uint32) {
	if ev&poller.Err != 0 {
		c.kp.reset[c.kp.side(c)] = true
		c.closeSocket(RemoteClose)
		return
	}
	if ev&(poller.RDHup|poller.Hup) != 0 && !c.remoteEOF && c.state == stateOpen {
		// The peer's FIN. The verdict takes the FIN's segment with the data before it
		// (tcp_read_skb stops after a FIN), so everything before it is on its way to the
		// other socket; that one's shutdown waits for the kernel to deliver it.
		c.onRemoteEOF()
	}
}

// pollKernel re-checks c's kernel backlog soon: the kernel says nothing when it has
// delivered, so a FIN or a close waiting on it is polled, 1 ms first, doubling to 64 ms.
func (c *Connection) pollKernel() {
	kp := c.kp
	i := kp.side(c)
	if kp.closed[i] || kp.polls[i].Armed() {
		return
	}
	d := kp.wait[i]
	switch {
	case d == 0:
		d = time.Millisecond
	case d < 64*time.Millisecond:
		d *= 2
	}
	kp.wait[i] = d
	kp.polls[i].Reset(d)
}

type kernelPoller struct {
	kp *kernelPair
	i  int
}

func (p *kernelPoller) OnTimer() {
	if c := p.kp.conns[p.i]; c.state != stateClosed {
		c.afterWrite()
		if !p.kp.polls[p.i].Armed() {
			p.kp.wait[p.i] = 0 // done waiting: the next wait starts at 1 ms again
		}
	}
}

// leaveKernel takes c out of the map before its fd is closed, keeping its final counts.
func (c *Connection) leaveKernel() {
	kp := c.kp
	i := kp.side(c)
	if n, err := poller.ReadTCPCounts(c.fd, c.dialed()); err == nil {
		if kp.reset[i] {
			n.Reset(c.remoteEOF, c.localShutdown)
		}
		kp.final[i] = n
	}
	kp.closed[i] = true
	kp.polls[i].Stop()
	c.w.kpairs.ReleaseSide(kp.id, i)
	if c.io != nil {
		if n := kp.final[i]; n.Received > kp.baseRx[i] {
			c.io.rx.Add(n.Received - kp.baseRx[i])
		}
		if n := kp.final[i]; n.Written > kp.baseTx[i] {
			c.io.tx.Add(n.Written - kp.baseTx[i])
		}
	}
}
