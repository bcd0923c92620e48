package engine

import (
	"math"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// ConnectionEvent is raised to ConnectionCallbacks (Envoy's Network::ConnectionEvent).
type ConnectionEvent int

const (
	// RemoteClose: the peer closed or reset, or an upstream connect failed.
	RemoteClose ConnectionEvent = iota
	// LocalClose: this side closed the connection.
	LocalClose
	// Connected: an upstream connect completed.
	Connected
)

func (e ConnectionEvent) String() string {
	switch e {
	case RemoteClose:
		return "RemoteClose"
	case LocalClose:
		return "LocalClose"
	case Connected:
		return "Connected"
	}
	return "unknown"
}

// CloseType says what happens to buffered data on Close.
type CloseType int

const (
	// CloseFlushWrite sends what is buffered, then closes.
	CloseFlushWrite CloseType = iota
	// CloseNoFlush drops what is buffered and closes now.
	CloseNoFlush
	// CloseReset drops what is buffered and sends RST (SO_LINGER 0).
	CloseReset
)

// FailureReason says why an upstream connection closed before or while connecting.
type FailureReason uint8

// Failure reasons.
const (
	FailureNone FailureReason = iota
	FailureConnectRefused
	FailureConnectTimeout
	// FailureOverflow: the proxy itself had no resources for the connection (the socket
	// could not be created: EMFILE, ENFILE, ENOBUFS, ENOMEM). Not the backend's fault.
	FailureOverflow
	// FailureNoHealthyUpstream: the cluster had no host to connect to.
	FailureNoHealthyUpstream
	// FailureTransport: the TCP connect succeeded but the transport socket failed before
	// it was ready (a TLS handshake or certificate verification failed). Envoy counts it,
	// like a refused connect, as an upstream connect failure.
	FailureTransport
)

// ConnectionCallbacks observe a connection's life and its write-buffer watermarks.
type ConnectionCallbacks interface {
	OnEvent(ev ConnectionEvent)
	// OnAboveWriteBufferHighWatermark: the write buffer passed the high watermark; stop
	// feeding this connection (typically ReadDisable the peer).
	OnAboveWriteBufferHighWatermark()
	// OnBelowWriteBufferLowWatermark: it drained below the low watermark; resume.
	OnBelowWriteBufferLowWatermark()
}

// connState is a Connection's place in its life:
//
//	state       how it is entered                   reads  writes   leaves to
//	connecting  Cluster.Connect                     no     buffered open (EPOLLOUT), closed (error, connect timeout)
//	open        accepted + chain built, or          yes    yes      closing (Close(CloseFlushWrite) with bytes buffered),
//	            connect completed                                   closed (Close, peer reset/hang-up, both sides done)
//	closing     Close(CloseFlushWrite), buffered     no     flushing closed (buffer drained, delayed-close timeout, error)
//	closed      closeSocket                         no     no       -
//
// Orthogonal to the state: readDisable (flow control), remoteEOF (the peer's FIN was
// read), shutdownAfter/localShutdown (our FIN: asked for, sent).
type connState uint8

const (
	stateConnecting connState = iota
	stateOpen
	stateClosing // flushing before close, under the delayed-close timeout
	stateClosed
)

// DefaultDelayedCloseTimeout bounds how long a connection closed with CloseFlushWrite may
// take to flush what it holds before it is closed hard (Envoy's delayed_close_timeout
// default): a peer that stopped reading cannot keep it, its fd and its memory forever.
const DefaultDelayedCloseTimeout = time.Second

// noWatermark is the high watermark of a connection without flow control.
const noWatermark = math.MaxInt32

// Connection is an established (or connecting) TCP connection on one worker, downstream
// or upstream (Envoy's Network::ConnectionImpl). All methods run on its worker.
type Connection struct {
	fd int
	w  *Worker
	// Info describes the socket (addresses, SNI, protocols) for filters.
	Info SocketInfo

	// filter is the first read filter, more the rest: a chain almost always has one, and
	// a slice with inline storage would cost 16 bytes more per connection.
	filter ReadFilter
	more   *[]ReadFilter
	// cb is the first callback, moreCbs the rest (one is the rule; see filter).
	cb      ConnectionCallbacks
	moreCbs *[]ConnectionCallbacks

	out  *writeBuffer // what the kernel has not taken yet; nil when empty
	high int32        // write-buffer high watermark (the low one is half); noWatermark: off

	// Flags, kept together so the struct stays small: an idle connection is mostly this.
	readDisable uint8 // nesting count of ReadDisable(true)
	state       connState
	above       bool
	readReady   bool // the socket may hold unread bytes (edge seen, not yet drained)
	peerFin     bool // EPOLLRDHUP seen: an end of stream waits behind the data
	deferred    bool // queued on the worker's deferred-read list
	halfClose   bool
	remoteEOF   bool
	// tsPending: the transport socket is not ready yet (TransportReady not called);
	// eofHeld: the peer's FIN came then and waits for it (see onRemoteEOF).
	tsPending, eofHeld bool
	shutdownAfter      bool // endStream was written: shutdown(SHUT_WR) once the buffer is empty
	localShutdown      bool
	noSplice           bool // splicing was refused once; keep copying
	replay             bool // the worker holds bytes the listener filters read (Worker.replays)
	draining           bool // its listener or filter chain drains (see Draining)
	failure            FailureReason

	// timer is the connect timeout while connecting, then the delayed-close timeout while
	// closing (the two never overlap); nil until needed.
	timer  *Timer
	io     *byteCounters // the owner's rx/tx byte counters; nil for none
	owner  connOwner     // accounts for the connection when it closes
	host   *Host         // upstream: the host dialed
	chain  *FilterChain  // downstream: the filter chain that built it (nil: upstream)
	splice *splicePair   // set once a bulk transfer switched to splice(2); nil otherwise
	kp     *kernelPair   // set once the kernel forwards its bytes (PairInKernel)
	// consumed is what the listener filters read and drained (a PROXY header): bytes TCP
	// received that no filter of the connection sees (PairInKernel's accounting).
	consumed uint32
	// partialRead: the last read filled the buffer, so the segment at the head of the
	// receive queue may be partly read; the kernel's verdict would take it whole
	// (tcp_read_skb ignores how much of it was read), so PairInKernel waits for a short
	// read.
	partialRead bool
	ts          TransportSocket // nil: raw_buffer
}

// byteCounters are the rx/tx byte counters a listener or cluster keeps per worker; its
// connections share one pointer to them.
type byteCounters struct{ rx, tx *Counter }

// connOwner is told when a connection it accounted for closes (an activeListener for
// downstream connections, a cluster's per-worker state for upstream ones).
type connOwner interface {
	connClosed(c *Connection)
}

// Host is the host an upstream connection dialed (nil for a downstream connection, or
// when the cluster had none).
func (c *Connection) Host() *Host { return c.host }

// RemoteEndpoint is the address an upstream connection dialed.
func (c *Connection) RemoteEndpoint() netip.AddrPort { return c.Info.RemoteAddr }

// FilterChainName names the filter chain a downstream connection runs.
func (c *Connection) FilterChainName() string {
	if c.chain == nil {
		return ""
	}
	return c.chain.Name
}

func newConnection(w *Worker, fd int, limit int, state connState) *Connection {
	return &Connection{fd: fd, w: w, state: state, high: watermark(limit)}
}

// Worker is the worker the connection lives on.
func (c *Connection) Worker() *Worker { return c.w }

// Control calls fn with the socket's descriptor, for a setsockopt or getsockopt the engine
// does not offer (like syscall.RawConn.Control). fn must not close, read or write it. It
// returns false if the connection is closed.
func (c *Connection) Control(fn func(fd int)) bool {
	if c.state == stateClosed {
		return false
	}
	fn(c.fd)
	return true
}

// AddReadFilter appends a read filter; upstream connections get theirs this way.
func (c *Connection) AddReadFilter(f ReadFilter) {
	switch {
	case c.filter == nil:
		c.filter = f
	case c.more == nil:
		c.more = &[]ReadFilter{f}
	default:
		*c.more = append(*c.more, f)
	}
}

// readFilters is how many read filters the connection has.
func (c *Connection) readFilters() int {
	switch {
	case c.filter == nil:
		return 0
	case c.more == nil:
		return 1
	}
	return 1 + len(*c.more)
}

// AddCallbacks registers cb for events and watermarks.
func (c *Connection) AddCallbacks(cb ConnectionCallbacks) {
	switch {
	case c.cb == nil:
		c.cb = cb
	case c.moreCbs == nil:
		c.moreCbs = &[]ConnectionCallbacks{cb}
	default:
		*c.moreCbs = append(*c.moreCbs, cb)
	}
}

// callbacks calls fn for each registered callback, in order. A panic in one resets the
// connection (see recoverFilter).
func (c *Connection) callbacks(fn func(ConnectionCallbacks)) {
	if c.cb == nil {
		return
	}
	defer c.recoverFilter()
	fn(c.cb)
	if c.moreCbs != nil {
		for _, cb := range *c.moreCbs {
			fn(cb)
		}
	}
}

// EnableHalfClose keeps the connection open after the peer's FIN, so a filter can still
// write (tcp_proxy does). Without it a FIN closes the connection after flushing.
func (c *Connection) EnableHalfClose(on bool) { c.halfClose = on }

// FailureReason says why an upstream connection failed, if it did.
func (c *Connection) FailureReason() FailureReason { return c.failure }

// IsOpen reports whether the connection is neither closing nor closed.
func (c *Connection) IsOpen() bool { return c.state == stateOpen || c.state == stateConnecting }

// BufferedBytes is what the kernel has not yet taken, in the write buffer and in the
// splice pipe that feeds the connection, and what its transport socket holds (written
// before its handshake was done).
func (c *Connection) BufferedBytes() int {
	return c.pending() + c.held()
}

// pending is what waits below the transport socket: the write buffer and the splice
// pipe. The write path decides on it alone (bytes a transport socket holds are not the
// socket's to send yet).
func (c *Connection) pending() int {
	n := 0
	if c.out != nil {
		n = c.out.len()
	}
	if c.splice != nil {
		n += c.pipeBytes()
	}
	if c.kp != nil {
		n += c.kernelBacklog()
	}
	return n
}

// held is what the transport socket holds (TransportHeld); 0 for raw_buffer, at the cost
// of one nil check.
func (c *Connection) held() int {
	if c.ts != nil {
		if h, ok := c.ts.(TransportHeld); ok {
			return h.HeldBytes()
		}
	}
	return 0
}

// AboveHighWatermark reports whether the write buffer is over its high watermark.
func (c *Connection) AboveHighWatermark() bool { return c.above }

func (c *Connection) raise(ev ConnectionEvent) {
	c.callbacks(func(cb ConnectionCallbacks) { cb.OnEvent(ev) })
}

// connEvents is every connection's one and only epoll registration: edge-triggered
// read, write and peer-shutdown. It never changes, so the hot path and flow control cost
// no epoll_ctl; instead the connection remembers readiness (readReady) and the worker
// re-runs reads it had to postpone (deferRead).
const connEvents = poller.In | poller.Out | poller.RDHup | poller.ET

// ReadDisable stops (true) or resumes (false) reading; calls nest like Envoy's.
func (c *Connection) ReadDisable(disable bool) {
	if c.state == stateClosed {
		return
	}
	if disable {
		if c.readDisable < 255 {
			c.readDisable++
		}
		return
	}
	if c.readDisable > 0 {
		c.readDisable--
		if c.readDisable == 0 && (c.readReady || c.replay) {
			// Bytes arrived while reading was off (or wait from the listener filters);
			// their edge is gone, so read them on this loop turn.
			c.w.deferRead(c)
		}
	}
}

// ReadDisabled reports whether reading is off.
func (c *Connection) ReadDisabled() bool { return c.readDisable > 0 }

// Write sends data, buffering what the kernel does not take; endStream half-closes the
// write side once everything is sent. The data is copied if buffered, so the caller may
// reuse it (e.g. the worker's scratch buffer).
func (c *Connection) Write(data []byte, endStream bool) {
	if c.state == stateClosed || c.state == stateClosing || c.localShutdown {
		return
	}
	if c.ts != nil {
		c.ts.Write(data, endStream)
		return
	}
	c.writeRaw(data, endStream)
}

// writeRaw is Write below the transport socket.
func (c *Connection) writeRaw(data []byte, endStream bool) {
	if len(data) > 0 {
		if c.state == stateOpen && c.pending() == 0 {
			n, err := writeFd(c.fd, data)
			if n > 0 {
				if c.io != nil {
					c.io.tx.Add(uint64(n))
				}
				data = data[n:]
			}
			if err != nil && err != unix.EAGAIN {
				c.closeSocket(RemoteClose)
				return
			}
		}
		if len(data) > 0 {
			if c.out == nil {
				c.out = c.w.getBuffer()
			}
			c.out.b = append(c.out.b, data...)
		}
	}
	if endStream {
		c.shutdownAfter = true
	}
	c.afterWrite()
}

// afterWrite applies shutdown, watermarks and the epoll mask after the buffer changed.
func (c *Connection) afterWrite() {
	if c.state == stateClosed {
		return
	}
	buffered := c.pending()
	if buffered == 0 && c.state != stateConnecting {
		if c.out != nil {
			c.w.putBuffer(c.out)
			c.out = nil
		}
		if c.shutdownAfter && !c.localShutdown {
			c.localShutdown = true
			if c.remoteEOF && c.state == stateOpen && c.kernelSettled() {
				// Both directions end here: close(2) sends the FIN itself (the receive
				// queue is empty, so no RST), saving the shutdown(2).
				c.closeSocket(LocalClose)
				return
			}
			unix.Shutdown(c.fd, unix.SHUT_WR)
		}
		if c.state == stateClosing {
			c.closeSocket(LocalClose)
			return
		}
	}
	if c.kp != nil && buffered > 0 && ((c.shutdownAfter && !c.localShutdown) || c.state == stateClosing) {
		// The kernel still holds bytes for this socket and says nothing when it has
		// delivered them: a FIN or a close waiting on them is polled.
		c.pollKernel()
	}
	// Without flow control, never raise watermarks; nor when the kernel forwards the bytes
	// (no userspace buffer: see docs/sockmap.md on what bounds the kernel's queue).
	if c.high != noWatermark && c.kp == nil {
		total := buffered + c.held() // what a transport socket holds counts too
		if !c.above && total > int(c.high) {
			c.above = true
			c.callbacks(ConnectionCallbacks.OnAboveWriteBufferHighWatermark)
		} else if c.above && total < int(c.high/2) {
			c.above = false
			c.callbacks(ConnectionCallbacks.OnBelowWriteBufferLowWatermark)
		}
	}
	if c.localShutdown && c.remoteEOF && buffered == 0 && c.state == stateOpen {
		if !c.kernelSettled() {
			c.pollKernel()
			return
		}
		// Both directions are done: nothing more can happen on this socket.
		c.closeSocket(LocalClose)
	}
}

func (c *Connection) flush() {
	// Spliced bytes are older than anything in out: splicing starts only when out is empty.
	if d := c.spliceIn(); d != nil && d.n > 0 && !c.flushPipe(d) {
		c.afterWrite()
		return
	}
	if !c.writeOut() {
		return
	}
	if c.splice != nil && c.pending() == 0 {
		// The backlog is gone: a splice source waiting on it may go on.
		c.kickSpliceSource()
	}
	c.afterWrite()
}

// writeOut writes the write buffer until it is empty or the socket is full; false if the
// socket failed (it is closed then).
func (c *Connection) writeOut() bool {
	for c.out != nil && c.out.len() > 0 {
		n, err := writeFd(c.fd, c.out.b[c.out.off:])
		if n > 0 {
			// A paired connection's bytes are counted from TCP_INFO when it closes.
			if c.io != nil && c.kp == nil {
				c.io.tx.Add(uint64(n))
			}
			c.out.off += n
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			c.closeSocket(RemoteClose)
			return false
		}
	}
	if c.out != nil {
		c.out.compact()
	}
	return true
}

// Close closes the connection; see CloseType.
func (c *Connection) Close(t CloseType) {
	switch c.state {
	case stateClosed:
		return
	case stateClosing:
		if t == CloseFlushWrite {
			return
		}
	}
	if c.tsPending && c.chain == nil && t == CloseFlushWrite {
		// Nothing written can go out before the handshake: a graceful close of an
		// upstream connection whose transport socket is not ready closes now.
		t = CloseNoFlush
	}
	if t == CloseFlushWrite && c.ts != nil && c.state == stateOpen && !c.localShutdown && !c.shutdownAfter {
		// The transport's own end of stream (TLS close_notify) goes out before the FIN.
		c.ts.Write(nil, true)
		if c.state == stateClosed {
			return
		}
	}
	if t == CloseFlushWrite && c.state == stateOpen && c.pending() > 0 {
		// The EPOLLOUT edge of the next drain finishes the close; a peer that stopped
		// reading gets the delayed-close timeout instead.
		c.state = stateClosing
		if c.timer == nil {
			c.timer = &Timer{}
		}
		c.timer.Init(c.w, (*delayedClose)(c))
		c.timer.Reset(c.w.delayedClose())
		if c.kp != nil {
			c.pollKernel() // no EPOLLOUT edge will come: the kernel's backlog is polled
		}
		return
	}
	if t == CloseReset {
		c.reset()
		return
	}
	c.closeSocket(LocalClose)
}

// delayedClose is a closing Connection seen as the handler of its delayed-close timer.
type delayedClose Connection

func (t *delayedClose) OnTimer() {
	if c := (*Connection)(t); c.state == stateClosing {
		// The peer did not take what was left in time: drop it, and tell the peer with
		// an RST that the stream was cut.
		c.reset()
	}
}

func (c *Connection) closeSocket(ev ConnectionEvent) {
	if c.state == stateClosed {
		return
	}
	c.state = stateClosed
	if c.tsPending && c.chain == nil && ev == RemoteClose && c.failure == FailureNone {
		// An upstream reset or hung up on before its transport socket was ready
		// (mid-handshake): the callbacks see a connect failure, as in Envoy.
		c.failure = FailureTransport
	}
	c.tsPending = false
	if c.timer != nil {
		c.timer.Stop()
	}
	// close(2) removes the fd from epoll (connections are never dup'ed), so no
	// EPOLL_CTL_DEL; a stale event in the current batch is dropped by its token.
	c.w.forget(c.fd)
	if c.kp != nil {
		c.leaveKernel()
	}
	poller.RawClose(c.fd)
	c.fd = -1
	if c.splice != nil {
		c.releaseSplice()
	}
	if c.out != nil {
		c.w.putBuffer(c.out)
		c.out = nil
	}
	if c.replay {
		c.w.putBuffer(c.w.replays[c])
		delete(c.w.replays, c)
		c.replay = false
	}
	if c.ts != nil {
		c.ts.OnClose()
	}
	if c.owner != nil {
		c.owner.connClosed(c)
	}
	c.raise(ev)
}

// onEvent implements eventHandler.
func (c *Connection) onEvent(ev uint32) {
	if c.kp != nil {
		c.onKernelEvent(ev)
		return
	}
	if c.state == stateConnecting {
		if !c.onConnectReady(ev) {
			return
		}
	}
	if ev&poller.Err != 0 {
		// A reset or another socket error: nothing more can be written. What the peer sent
		// before it is still readable if reading is on; then the read's error closes.
		// Whatever the read state (paused by flow control, or a splice waiting on its
		// target's backlog, when no read would ever notice), the connection closes now.
		if c.readDisable == 0 && c.state == stateOpen {
			c.readReady = true
			c.onReadReady()
		}
		c.closeSocket(RemoteClose)
		return
	}
	if ev&(poller.Out|poller.Hup) != 0 && c.pending() > 0 {
		c.flush()
		if c.state == stateClosed {
			return
		}
	}
	if ev&(poller.RDHup|poller.Hup) != 0 {
		// The FIN is queued behind any data: a short read no longer proves there is
		// nothing left, since the end of stream itself is still to be read.
		c.peerFin = true
	}
	if ev&poller.Hup != 0 && c.readDisable > 0 && c.state == stateOpen && !c.remoteEOF && unreadBytes(c.fd) == 0 {
		// Hung up in both directions with nothing left to read: the end of stream needs no
		// read to be taken, so it is not held back by the paused reads.
		c.readReady = false
		c.onRemoteEOF()
		return
	}
	if ev&(poller.In|poller.RDHup|poller.Err|poller.Hup) != 0 {
		c.readReady = true
		c.onReadReady()
	}
}

// maxReadsPerEvent bounds how much one connection reads per loop turn (4 × 64 KiB) so a
// fast sender cannot starve the others; the rest is read on the next turn.
const maxReadsPerEvent = 4

// onReadReady reads while the socket may hold data. With edge-triggered epoll a read
// shorter than the buffer proves the queue was drained, so no extra read is spent on
// EAGAIN in the common case.
func (c *Connection) onReadReady() {
	if c.kp != nil {
		return // the kernel takes its bytes (a read deferred before it was paired)
	}
	if c.replay {
		if c.readDisable > 0 || c.state != stateOpen {
			return
		}
		c.replayRead()
		if c.state != stateOpen {
			return
		}
	}
	if c.splice != nil {
		if d := c.spliceOut(); d != nil && c.spliceRead(d) {
			return
		}
	}
	buf := c.w.scratch
	for i := 0; i < maxReadsPerEvent; i++ {
		if !c.readReady || c.readDisable > 0 || c.remoteEOF || c.state != stateOpen || c.kp != nil {
			return
		}
		n, err := readFd(c.fd, buf)
		switch {
		case n > 0:
			short := n < len(buf)
			if short && !c.peerFin {
				c.readReady = false
			}
			c.partialRead = !short
			if c.io != nil {
				c.io.rx.Add(uint64(n))
			}
			c.received(buf[:n])
			if !short && c.state == stateOpen && c.startSplice() {
				// A bulk transfer: the rest goes by splice.
				if d := c.spliceOut(); c.spliceRead(d) {
					return
				}
			}
			if short && c.peerFin && c.readDisable == 0 && c.state == stateOpen && !c.remoteEOF {
				// The FIN was already queued when this short read drained the queue, so
				// the next read could only return 0: take the end of stream now.
				c.readReady = false
				c.onRemoteEOF()
				return
			}
			if c.readReady {
				continue
			}
			return
		case n == 0 && err == nil:
			c.readReady = false
			c.onRemoteEOF()
			return
		case err == unix.EAGAIN:
			c.readReady = false
			return
		default:
			c.closeSocket(RemoteClose)
			return
		}
	}
	if c.readReady && c.state == stateOpen {
		c.w.deferRead(c)
	}
}

// replayRead hands the filters the bytes the listener filters read, as the connection's
// first read: they were taken from the kernel once, there.
func (c *Connection) replayRead() {
	b := c.w.replays[c]
	delete(c.w.replays, c)
	c.replay = false
	data := b.b[b.off:]
	if c.io != nil {
		c.io.rx.Add(uint64(len(data)))
	}
	c.received(data)
	c.w.putBuffer(b)
}

// received hands bytes read from the socket to the transport socket, or straight to the
// filters on raw_buffer.
func (c *Connection) received(data []byte) {
	if c.ts != nil {
		c.ts.OnRead(data)
		return
	}
	c.dispatch(data, false)
}

func (c *Connection) onRemoteEOF() {
	c.remoteEOF = true
	if c.tsPending {
		// The FIN came while the transport socket handshakes: the bytes before it may
		// still complete the handshake (a client that sends its Finished and closes at
		// once). No more is read; the transport socket closes the connection, or hands the
		// end of stream on with TransportEOF once it is ready.
		c.eofHeld = true
		c.ts.OnRemoteEOF()
		return
	}
	if !c.halfClose {
		// A FIN without half-close support ends the connection, as in Envoy.
		c.dispatch(nil, true)
		if c.state != stateClosed {
			c.Close(CloseFlushWrite)
		}
		return
	}
	c.dispatch(nil, true)
	if c.state == stateOpen && c.localShutdown && c.pending() == 0 {
		if !c.kernelSettled() {
			c.pollKernel()
			return
		}
		c.closeSocket(RemoteClose)
	}
}

func (c *Connection) dispatch(data []byte, endStream bool) {
	defer c.recoverFilter()
	if c.filter == nil || c.filter.OnData(data, endStream) == StopIteration || c.more == nil {
		return
	}
	for _, f := range *c.more {
		if c.state == stateClosed {
			return
		}
		if f.OnData(data, endStream) == StopIteration {
			return
		}
	}
}

// unreadBytes is how many bytes wait in fd's receive queue (SIOCINQ).
func unreadBytes(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return 0
	}
	return n
}

func readFd(fd int, p []byte) (int, error) {
	for {
		n, err := poller.RawRecv(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

func writeFd(fd int, p []byte) (int, error) {
	for {
		n, err := poller.RawSend(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}
