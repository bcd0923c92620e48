package engine

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// KernelPairs forwards the bytes of proxied socket pairs inside the kernel (a BPF
// sockmap: engine/sockmap's Map implements it). The engine knows it only through this
// interface, so the engine itself needs no BPF library; a server gets one through
// ServerOptions.KernelPairs.
type KernelPairs interface {
	// Pair makes the kernel forward what a receives to b's send side and what b receives
	// to a's. acked[i] is socket i's tcpi_bytes_acked now. allow[i] bounds what socket i may have in flight to the other beyond the
	// other's send buffer (0: no bound); past it the kernel holds socket i's bytes on its
	// own queue, for the engine to read, and reports tags[i] to Notify's function. On
	// error nothing changed, unless the returned pair is not zero: then one direction was
	// already forwarded and the pair must be released and reset.
	Pair(a, b int, acked, allow, tags [2]uint64) ([2]uint64, error)
	// ReleaseSide takes socket i (0: a, 1: b) of the pair out before it is closed; what
	// the kernel still queues for the other socket is still delivered. Socket i's side of
	// the pair is not used again.
	ReleaseSide(p [2]uint64, i int)
	// Sent is how many bytes the kernel redirected from socket i to the other since Pair.
	Sent(p [2]uint64, i int) uint64
	// Held is how many bytes the kernel held on socket i's own queue (read with read(2))
	// since Pair, and the forwarded count last set.
	Held(p [2]uint64, i int) (held, forwarded uint64)
	// SetForwarded says how many of socket i's held bytes have been written to the other
	// socket's TCP; once that is all of them, the kernel forwards again.
	SetForwarded(p [2]uint64, i int, n uint64)
	// SetListening says whether the engine reads socket i's held bytes now (no events
	// are needed then).
	SetListening(p [2]uint64, i int, on bool)
	// Notify adds fn as the receiver, told from another goroutine, of the tags that carry
	// the returned base in their top 16 bits: a socket that started holding bytes.
	// Called once, when the server is made.
	Notify(fn func(tag uint64)) (base uint64, err error)
}

// Why PairInKernel refused. ErrKernelPairBusy is the only one worth a later retry.
var (
	ErrKernelPairOff         = errors.New("kernel pairing is off")
	ErrKernelPairUnsupported = errors.New("the pair cannot be forwarded in the kernel (another worker, a transport socket, not open, half closed, spliced)")
	ErrKernelPairBusy        = errors.New("bytes are buffered in userspace")
)

// kernelEvents is a paired connection's epoll mask while the kernel forwards its bytes:
// no EPOLLIN and no EPOLLOUT, as the worker neither reads nor writes it; only the peer's
// FIN (EPOLLRDHUP) and, always reported, errors and hang-ups. Each batch of redirected
// bytes still wakes the socket's wait queue with EPOLLIN (sk_psock_verdict_data_ready
// calls the saved sk_data_ready), and leaving EPOLLIN out of the mask lets
// ep_poll_callback drop it by its key. EPOLLIN is added while the worker reads bytes the
// kernel held (backpressure), EPOLLOUT while it has some to write.
const kernelEvents = poller.RDHup | poller.ET

// kernelPair is what two connections share while the kernel forwards their bytes.
type kernelPair struct {
	id    [2]uint64
	seq   uint64 // the worker's name for it, in the kernel's tags
	conns [2]*Connection
	// baseRx[i], baseTx[i]: what userspace had read from and written to conns[i] when
	// the pair entered the kernel (the engine's byte counters add the rest at close);
	// rxAt[i]: what had been taken from conns[i]'s receive queue then: baseRx[i] and what
	// a listener filter consumed (a PROXY protocol header). What TCP received beyond it
	// is the kernel's to forward (bytes still queued at Pair included).
	baseRx, baseTx, rxAt [2]uint64
	// final[i] is conns[i]'s TCP counts, read just before it closed (closed[i]).
	final   [2]poller.TCPCounts
	closed  [2]bool
	reset   [2]bool // conns[i] closed on an error (an RST): its TCP_CLOSE is not two FINs
	polls   [2]Timer
	wait    [2]time.Duration
	pollers [2]kernelPoller
	mask    [2]uint32 // conns[i]'s epoll mask

	// Backpressure. The kernel bounds nothing it redirects, so the program does: once
	// what conns[i] gave conns[1-i] and conns[1-i]'s peer has not acknowledged passes the
	// target's buffer limit beyond its send buffer, conns[i]'s bytes stay on conns[i]'s
	// own queue (charged to its receive buffer: its window closes, its sender waits) and
	// the worker is told (onKernelHold). It then reads them (listening[i]) and writes them
	// to the target once the target's psock has sent what was redirected before them,
	// counting them (readHeld); the program redirects again once all it held was written.
	listening [2]bool
	userspace [2]bool // conns[i] never entered the verdict (half paired): always read
	readHeld  [2]uint64
	holds     [2]Timer
	holders   [2]kernelHolder
	holdWait  [2]time.Duration
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

// kernelTag names socket side of the worker's pair seq in the kernel's events; base is
// the server's, from Notify (the top 16 bits).
func kernelTag(base uint64, worker int, seq uint64, side int) uint64 {
	return base | uint64(worker&0xffff)<<32 | (seq&(1<<31-1))<<1 | uint64(side)
}

// kernelTagWorker is the worker a tag names.
func kernelTagWorker(tag uint64) int { return int(tag >> 32 & 0xffff) }

// kernelTagSeq is the pair a tag names, as its worker numbers them (kpBySeq's key).
func kernelTagSeq(tag uint64) uint64 { return tag & (1<<32 - 1) >> 1 }

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
	case c.replay || peer.replay || c.pending() > 0 || peer.pending() > 0,
		c.partialRead || peer.partialRead: // the kernel would send the read part again
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
	// Direction i's bound is its target's buffer limit, as on the userspace path.
	var allow [2]uint64
	for i, t := range []*Connection{peer, c} {
		if t.high != noWatermark {
			allow[i] = uint64(t.high)
		}
	}
	w.kpSeq = (w.kpSeq + 1) & (1<<31 - 1) // a pair outlived by 2^31 others is not expected
	seq := w.kpSeq
	id, err := w.kpairs.Pair(c.fd, peer.fd, [2]uint64{ca.BytesAcked, cb.BytesAcked}, allow, [2]uint64{kernelTag(w.kpBase, w.ID, seq, 0), kernelTag(w.kpBase, w.ID, seq, 1)})
	half := false
	if err != nil {
		if id == ([2]uint64{}) {
			return errors.Join(ErrKernelPairUnsupported, err)
		}
		// Half paired: the kernel forwards c's bytes, peer's stay in its receive queue
		// (its FIN came as it was being added). The worker reads peer and writes c, as it
		// does with held bytes, for the pair's whole life (userspace[1]).
		half = true
	}
	kp := &kernelPair{id: id, seq: seq, conns: [2]*Connection{c, peer},
		baseTx: [2]uint64{ca.Written, cb.Written}, baseRx: [2]uint64{cb.Written, ca.Written},
		rxAt: [2]uint64{cb.Written + uint64(c.consumed), ca.Written + uint64(peer.consumed)}}
	if w.kpBySeq == nil {
		w.kpBySeq = map[uint64]*kernelPair{}
	}
	w.kpBySeq[seq] = kp
	for i, x := range kp.conns {
		x.kp = kp
		x.readReady = false
		kp.pollers[i] = kernelPoller{kp, i}
		kp.polls[i].InitFor(x, &kp.pollers[i])
		kp.holders[i] = kernelHolder{kp, i}
		kp.holds[i].InitFor(x, &kp.holders[i])
		kp.mask[i] = kernelEvents
		w.modify(x.fd, kernelEvents)
	}
	if half {
		w.kpHalf++
		kp.userspace[1] = true
		kp.listen(1)
	}
	return nil
}

// onKernelHold is the kernel's event for tag: that socket started holding bytes.
func (w *Worker) onKernelHold(tag uint64) {
	kp := w.kpBySeq[kernelTagSeq(tag)]
	i := int(tag & 1)
	if kp == nil || kp.closed[i] {
		return // closed meanwhile
	}
	w.kpHolds++
	kp.listen(i)
}

// listen starts reading conns[i]'s held bytes.
func (kp *kernelPair) listen(i int) {
	if !kp.listening[i] {
		kp.listening[i] = true
		kp.conns[i].w.kpairs.SetListening(kp.id, i, true)
		kp.setMask(i)
	}
	kp.forwardHeld(i)
}

// setMask gives conns[k] the epoll mask its state needs (one epoll_ctl when it changes).
func (kp *kernelPair) setMask(k int) {
	c := kp.conns[k]
	if kp.closed[k] {
		return
	}
	m := uint32(kernelEvents)
	if kp.listening[k] {
		m |= poller.In
	}
	if c.out != nil && c.out.len() > 0 {
		m |= poller.Out
	}
	if m != kp.mask[k] {
		kp.mask[k] = m
		c.w.modify(c.fd, m)
	}
}

// forwardHeld moves conns[i]'s held bytes to the other socket, in order: only once the
// target's psock has sent all that was redirected before them, and only while the
// target takes them (what it does not take waits in its write buffer, flushed on
// EPOLLOUT, and reading stops meanwhile: the source's window stays closed).
func (kp *kernelPair) forwardHeld(i int) {
	j := 1 - i
	src, dst := kp.conns[i], kp.conns[j]
	if kp.closed[i] || !kp.listening[i] || kp.closed[j] {
		return
	}
	kpairs := src.w.kpairs
	buf := src.w.scratch
	for {
		if dst.out != nil && dst.out.len() > 0 {
			return // dst's EPOLLOUT goes on (onKernelEvent)
		}
		if kp.psockBusy(i) {
			kp.retryHeld(i)
			return
		}
		kp.holdWait[i] = 0
		n, err := readFd(src.fd, buf)
		if n > 0 {
			kp.readHeld[i] += uint64(n)
			if !kp.give(j, buf[:n]) {
				return
			}
			kp.noteForwarded(i)
			continue
		}
		if err != nil && err != unix.EAGAIN {
			return // the error's EPOLLERR closes it
		}
		// Nothing to read now (n == 0: only the FIN, which RDHUP handles). Caught up when
		// all that was held was read and written: stop listening, then look once more,
		// as the program may have held bytes after the first look.
		if kp.userspace[i] {
			return // its next bytes come with an EPOLLIN edge
		}
		h, f := kpairs.Held(kp.id, i)
		if h != f {
			return // counted but not queued yet: its EPOLLIN edge follows
		}
		kp.listening[i] = false
		kpairs.SetListening(kp.id, i, false)
		if h2, _ := kpairs.Held(kp.id, i); h2 != f {
			kp.listening[i] = true
			kpairs.SetListening(kp.id, i, true)
			if n == 0 && err == nil {
				return // at the FIN: the edge of the new bytes follows
			}
			continue
		}
		kp.setMask(i)
		return
	}
}

// psockBusy reports whether the kernel still queues, for the target, bytes it redirected
// from conns[i]: everything written to the target since Pair came from conns[i], either
// redirected (Sent) or read and written here (readHeld less what waits in its buffer).
func (kp *kernelPair) psockBusy(i int) bool {
	j := 1 - i
	t := kp.conns[j]
	n, err := poller.ReadTCPCounts(t.fd, t.dialed())
	if err != nil {
		return false
	}
	given := kp.readHeld[i]
	if t.out != nil {
		given -= uint64(t.out.len())
	}
	return n.Written-kp.baseTx[j] < t.w.kpairs.Sent(kp.id, i)+given
}

// retryHeld looks again soon (1 ms, doubling to 16 ms): the kernel tells nobody when a
// psock's queue is sent.
func (kp *kernelPair) retryHeld(i int) {
	if kp.holds[i].Armed() {
		return
	}
	kp.holdWait[i] = backoff(kp.holdWait[i], 16*time.Millisecond)
	kp.holds[i].Reset(kp.holdWait[i])
}

// backoff is the next wait of a poll that starts at 1 ms and doubles up to limit.
func backoff(d, limit time.Duration) time.Duration {
	switch {
	case d == 0:
		return time.Millisecond
	case d < limit:
		return min(2*d, limit)
	}
	return d
}

// give writes held bytes to conns[j], buffering what it does not take; false if
// conns[j] closed on an error. They are not counted in the byte counters here: those
// come from TCP_INFO at close, which counts them.
func (kp *kernelPair) give(j int, data []byte) bool {
	t := kp.conns[j]
	if t.out == nil || t.out.len() == 0 {
		n, err := writeFd(t.fd, data)
		if n > 0 {
			data = data[n:]
		}
		if err != nil && err != unix.EAGAIN {
			t.closeSocket(RemoteClose)
			return false
		}
	}
	if len(data) > 0 {
		if t.out == nil {
			t.out = t.w.getBuffer()
		}
		t.out.b = append(t.out.b, data...)
		kp.setMask(j)
	}
	return true
}

// flushGiven writes what give buffered for conns[k]; false if it closed on an error.
func (kp *kernelPair) flushGiven(k int) bool {
	if !kp.conns[k].writeOut() {
		return false
	}
	kp.setMask(k)
	return true
}

// flushHeld writes what conns[k] holds of the other socket's held bytes, says so to the
// kernel, lets a shutdown or close waiting on them go on, and reads more once they are
// all written; false if conns[k] closed.
func (kp *kernelPair) flushHeld(k int) bool {
	c := kp.conns[k]
	if !kp.flushGiven(k) {
		return false
	}
	kp.noteForwarded(1 - k)
	c.afterWrite()
	if c.state == stateClosed {
		return false
	}
	if c.out == nil || c.out.len() == 0 {
		kp.forwardHeld(1 - k)
	}
	return c.state != stateClosed
}

// noteForwarded tells the kernel how many of conns[i]'s held bytes its target's TCP
// has: what was read less what waits in the target's write buffer.
func (kp *kernelPair) noteForwarded(i int) {
	if kp.closed[i] {
		return
	}
	n := kp.readHeld[i]
	if t := kp.conns[1-i]; t.out != nil {
		n -= uint64(t.out.len())
	}
	kp.conns[i].w.kpairs.SetForwarded(kp.id, i, n)
}

type kernelHolder struct {
	kp *kernelPair
	i  int
}

func (h *kernelHolder) OnTimer() { h.kp.forwardHeld(h.i) }

// KernelCounts is what a paired connection received and was given to send in all, from
// TCP_INFO (read at close once it is closed), as its filters count bytes: what a listener
// filter consumed before the chain (a PROXY protocol header) is not in rx. ok is false if
// it was never paired.
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
	return kp.baseRx[i] + n.Received - kp.rxAt[i], n.Written, true
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
	if err != nil {
		return 0
	}
	// Since Pair: what j received against what c was given. Not the totals: a listener
	// filter (proxy_protocol) may have consumed bytes j received that c never gets.
	rx -= kp.rxAt[j]
	given := n.Written - kp.baseTx[i]
	if given >= rx {
		return 0
	}
	return int(rx - given)
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

// onKernelEvent handles a paired connection's events: it is read only for bytes the
// kernel held (backpressure), and written only with those.
func (c *Connection) onKernelEvent(ev uint32) {
	kp := c.kp
	i := kp.side(c)
	if ev&poller.Err != 0 {
		kp.reset[i] = true
		c.closeSocket(RemoteClose)
		return
	}
	if ev&poller.Out != 0 && c.out != nil && c.out.len() > 0 {
		// Held bytes of the other socket that c did not take at once.
		if !kp.flushHeld(i) {
			return
		}
	}
	if ev&poller.In != 0 {
		kp.forwardHeld(i)
		if c.state == stateClosed {
			return
		}
	}
	if ev&(poller.RDHup|poller.Hup) != 0 && !c.remoteEOF && c.state == stateOpen {
		// The peer's FIN. The verdict takes the FIN's segment with the data before it
		// (tcp_read_skb stops after a FIN), so everything before it is on its way to the
		// other socket, redirected or held; that one's shutdown waits until it has it all
		// (kernelBacklog counts by TCP_INFO whichever way the bytes go).
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
	kp.wait[i] = backoff(kp.wait[i], 64*time.Millisecond)
	kp.polls[i].Reset(kp.wait[i])
}

type kernelPoller struct {
	kp *kernelPair
	i  int
}

func (p *kernelPoller) OnTimer() {
	if c := p.kp.conns[p.i]; c.state != stateClosed {
		if c.out != nil && c.out.len() > 0 {
			if !p.kp.flushHeld(p.i) {
				return
			}
		} else {
			c.afterWrite()
		}
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
	kp.listening[i] = false
	kp.polls[i].Stop()
	kp.holds[i].Stop()
	if kp.closed[1-i] {
		delete(c.w.kpBySeq, kp.seq)
	}
	c.w.kpairs.ReleaseSide(kp.id, i) // its slot is not used again: closed[i] guards it
	if c.io != nil {
		if n := kp.final[i]; n.Received > kp.rxAt[i] {
			c.io.rx.Add(n.Received - kp.rxAt[i])
		}
		if n := kp.final[i]; n.Written > kp.baseTx[i] {
			c.io.tx.Add(n.Written - kp.baseTx[i])
		}
	}
}
