package engine

import (
	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// SpliceSource is implemented by a read filter that forwards every byte it reads, unchanged,
// to one other connection on the same worker (tcp_proxy). When such a filter is the
// connection's only read filter and a read fills the worker's whole scratch buffer, the
// connection switches that direction to splice(2): bytes go from one socket into a pipe and
// from the pipe into the other socket as page references, never copied into user space.
// Small request/response traffic never fills the buffer, so it keeps plain read/write,
// which costs the same two syscalls and no pipe (HAProxy's splice-auto works alike).
type SpliceSource interface {
	// SpliceTarget is the connection the filter forwards to, or nil while there is none.
	SpliceTarget() *Connection
	// OnSpliced reports n bytes moved to the target without passing through OnData.
	OnSpliced(n int)
}

// pipeSize is the capacity asked of each splice pipe: large enough that one splice moves
// as much as one read into the scratch buffer would (a default pipe has 16 slots, and each
// holds one page fragment however small). A target with a smaller buffer limit gets a
// smaller pipe (see pipeSizeFor): what waits in the pipe is part of its write buffer.
const pipeSize = 1 << 20

// minPipeSize is the smallest pipe asked for: 16 pages, the kernel's default.
const minPipeSize = 64 << 10

// pipeSizeFor is the pipe capacity for a target whose high watermark is high: the
// watermark rounded up to a power of two (F_SETPIPE_SZ's unit), within [minPipeSize,
// pipeSize]. How much is spliced in at once is bounded by the watermark itself.
func pipeSizeFor(high int32) int {
	n := minPipeSize
	for n < int(high) && n < pipeSize {
		n <<= 1
	}
	return n
}

// maxPooledPipes bounds the empty pipes a worker keeps for reuse.
const maxPooledPipes = 16

// spliceDir is one direction of a spliced pair: src's socket → pipe → dst's socket.
type spliceDir struct {
	src, dst *Connection
	cb       SpliceSource
	pr, pw   int // the pipe; -1 when none is held
	n        int // bytes in the pipe, not yet written to dst
	size     int // the pipe's capacity
}

// splicePair is shared by the two connections of a proxied pair; dirs[i] runs from
// conns[i] to conns[1-i]. A direction exists once it switched to splice.
type splicePair struct {
	conns [2]*Connection
	dirs  [2]*spliceDir
}

func (p *splicePair) side(c *Connection) int {
	if p.conns[0] == c {
		return 0
	}
	return 1
}

// spliceOut is the direction c feeds, if it is spliced.
func (c *Connection) spliceOut() *spliceDir {
	if c.splice == nil {
		return nil
	}
	return c.splice.dirs[c.splice.side(c)]
}

// spliceIn is the direction that feeds c, if it is spliced.
func (c *Connection) spliceIn() *spliceDir {
	if c.splice == nil {
		return nil
	}
	return c.splice.dirs[1-c.splice.side(c)]
}

// pipeBytes is what waits in the pipe that feeds c: part of its write buffer.
func (c *Connection) pipeBytes() int {
	if d := c.spliceIn(); d != nil {
		return d.n
	}
	return 0
}

// startSplice switches c's reads to splice after a read filled the scratch buffer, if its
// only filter forwards to a target that can take spliced bytes. It reports whether it did.
func (c *Connection) startSplice() bool {
	if c.noSplice || c.ts != nil || c.w.spliceOff || c.readFilters() != 1 || c.kp != nil {
		return false
	}
	src, ok := c.filter.(SpliceSource)
	if !ok {
		c.noSplice = true
		return false
	}
	t := src.SpliceTarget()
	if t == nil || t == c || t.w != c.w || t.state != stateOpen || t.localShutdown || t.ts != nil {
		// A target with a transport socket must see every byte (splice would bypass it).
		return false
	}
	p := c.splice
	switch {
	case p == nil && t.splice == nil:
		p = &splicePair{conns: [2]*Connection{c, t}}
		c.splice, t.splice = p, p
	case p != nil && t.splice == p:
	default:
		// Already paired with some other connection: keep copying.
		c.noSplice = true
		return false
	}
	size := pipeSizeFor(t.high)
	pr, pw, err := c.w.getPipe(size)
	if err != nil {
		// Out of fds or pipe memory: copying still works, and retrying on every read
		// would spend a syscall each time.
		c.noSplice = true
		return false
	}
	p.dirs[p.side(c)] = &spliceDir{src: c, dst: t, cb: src, pr: pr, pw: pw, size: size}
	return true
}

// spliceRead moves what c's socket holds into the pipe and on to the target. It returns
// false when the caller must fall back to an ordinary read (the target can no longer take
// bytes, so the filter should see them), true when it handled the readiness.
func (c *Connection) spliceRead(d *spliceDir) bool {
	t := d.dst
	if t.state != stateOpen || t.localShutdown {
		return false
	}
	for i := 0; i < maxReadsPerEvent; i++ {
		if !c.readReady || c.readDisable > 0 || c.remoteEOF || c.state != stateOpen {
			return true
		}
		if t.pending() > 0 {
			// The target has a backlog; bytes spliced now would have to queue behind it.
			// Its drain re-queues this read (kickSpliceSource).
			return true
		}
		// At most the target's high watermark at once: the pipe's contents count as its
		// write buffer, so they must not exceed what per_connection_buffer_limit_bytes
		// allows a buffer to hold.
		n, err := spliceFd(c.fd, d.pw, min(d.size, int(t.high)))
		switch {
		case n > 0:
			d.n += n
			if c.io != nil {
				c.io.rx.Add(uint64(n))
			}
			d.cb.OnSpliced(n)
			t.flush()
			if c.state != stateOpen || t.state == stateClosed {
				return true
			}
		case n == 0 && err == nil:
			c.readReady = false
			c.onRemoteEOF()
			return true
		case err == unix.EAGAIN:
			c.readReady = false
			return true
		default:
			c.closeSocket(RemoteClose)
			return true
		}
	}
	if c.readReady && c.state == stateOpen {
		c.w.deferRead(c)
	}
	return true
}

// flushPipe writes what waits in c's inbound pipe. It reports false if the socket is full
// (or failed) with bytes left.
func (c *Connection) flushPipe(d *spliceDir) bool {
	for d.n > 0 {
		n, err := spliceFd(d.pr, c.fd, d.n)
		if n > 0 {
			d.n -= n
			if c.io != nil {
				c.io.tx.Add(uint64(n))
			}
			continue
		}
		if err != unix.EAGAIN {
			c.closeSocket(RemoteClose)
		}
		return false
	}
	return true
}

// kickSpliceSource resumes the source of c's inbound splice once c's backlog is gone:
// the source stopped reading with bytes left, and their edge will not come again.
func (c *Connection) kickSpliceSource() {
	d := c.spliceIn()
	if d == nil {
		return
	}
	if s := d.src; s.readReady && s.readDisable == 0 && s.state == stateOpen {
		c.w.deferRead(s)
	}
}

// releaseSplice gives back the pipe that feeds c when c closes. A pipe still holding bytes
// cannot be reused, so it is closed.
func (c *Connection) releaseSplice() {
	d := c.spliceIn()
	if d == nil || d.pr < 0 {
		return
	}
	if d.n == 0 {
		c.w.putPipe(d.pr, d.pw, d.size)
	} else {
		poller.RawClose(d.pr)
		poller.RawClose(d.pw)
	}
	d.pr, d.pw, d.n = -1, -1, 0
}

// getPipe returns an empty pipe of the given capacity, pooled if one is free.
func (w *Worker) getPipe(size int) (int, int, error) {
	if k := len(w.pipes); k > 0 {
		p := w.pipes[k-1]
		w.pipes = w.pipes[:k-1]
		if p[2] != size {
			// An empty pipe can be resized either way; a failure keeps the old size,
			// and the splice length still bounds what the pipe holds.
			unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size)
		}
		return p[0], p[1], nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return -1, -1, err
	}
	w.pipesMade++
	// A failure here leaves the default size, which still works.
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, size)
	return fds[0], fds[1], nil
}

func (w *Worker) putPipe(r, wr, size int) {
	if len(w.pipes) >= maxPooledPipes {
		poller.RawClose(r)
		poller.RawClose(wr)
		return
	}
	w.pipes = append(w.pipes, [3]int{r, wr, size})
}

func (w *Worker) closePipes() {
	for _, p := range w.pipes {
		poller.RawClose(p[0])
		poller.RawClose(p[1])
	}
	w.pipes = nil
}

func spliceFd(from, to int, n int) (int, error) {
	for {
		r, err := poller.RawSplice(from, to, n)
		if err != unix.EINTR {
			return r, err
		}
	}
}
