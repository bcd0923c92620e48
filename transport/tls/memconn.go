package tls

import (
	"io"
	"net"
	"sync"
	"time"
)

// wouldBlockError is what memConn.Read returns, once the worker drives the tls.Conn, when it
// holds no bytes: the in-memory equivalent of EAGAIN.
//
// crypto/tls (Go 1.26, conn.go readRecordOrCCS) reads a record with readFromUntil, which
// appends into c.rawInput through bytes.Buffer.ReadFrom(&atLeastReader{...}): the bytes a
// Read returned before an error stay in rawInput. On an error, readRecordOrCCS makes it
// sticky (c.in.setErrorLocked) unless it is a net.Error whose Temporary() is true, so a
// temporary error leaves the half conn usable and the partial record in place; the next
// tls.Conn.Read goes on from it. Handshake errors, by contrast, are always sticky, which is
// why the handshake runs on a goroutine over a blocking Read instead. Writes never fail
// (the adapter hands ciphertext to the connection's own write path, which buffers what
// the kernel refuses), so the write half never records an error either.
//
// Timeout() is true as well so that nothing that treats timeouts as retryable
// (os.ErrDeadlineExceeded style) sees it as fatal. TestCryptoTLSResumesAfterWouldBlock pins
// the behaviour.
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "transport/tls: would block" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

var _ net.Error = wouldBlockError{}

// memConn is the net.Conn a tls.Conn runs over. The worker feeds it the ciphertext it read
// (feed) and takes the ciphertext written (out). While blocking is set (the handshake, on
// its own goroutine) Read waits for bytes or close; afterwards Read answers wouldBlockError
// when empty and the worker is the only caller.
type memConn struct {
	mu       sync.Mutex
	in       []byte
	wake     chan struct{} // capacity 1: a feed or close happened
	closed   bool
	blocking bool
	// out receives every Write; it must not keep p.
	out func(p []byte)
	// drained, if set, is called (once) when a Read leaves fewer than low bytes.
	low     int
	drained func()
	// clientALPN is the ClientHello's ALPN list, written by the handshake goroutine before
	// it posts its result and read by the worker after.
	clientALPN []string
	// stapled: the certificate chosen will carry an OCSP staple (set like clientALPN).
	stapled bool
}

func newMemConn(blocking bool, out func([]byte)) *memConn {
	return &memConn{wake: make(chan struct{}, 1), blocking: blocking, out: out}
}

// feed appends ciphertext read from the socket and returns how much the adapter now holds.
// It never blocks.
func (m *memConn) feed(p []byte) int {
	m.mu.Lock()
	m.in = append(m.in, p...)
	n := len(m.in)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return n
}

// pauseUntilDrained arms drained: the handshake goroutine calls it once its reads have
// brought what the adapter holds below low bytes (see socket.OnRead).
func (m *memConn) pauseUntilDrained(low int, drained func()) {
	m.mu.Lock()
	m.low, m.drained = low, drained
	m.mu.Unlock()
}

// setNonBlocking switches Read to answer wouldBlockError when empty.
func (m *memConn) setNonBlocking(out func([]byte)) {
	m.mu.Lock()
	m.blocking = false
	m.out = out
	m.mu.Unlock()
}

func (m *memConn) Read(p []byte) (int, error) {
	m.mu.Lock()
	for {
		if len(m.in) > 0 {
			n := copy(p, m.in)
			m.in = m.in[n:]
			if len(m.in) == 0 {
				m.in = m.in[:0:0] // release the backing array once drained
			}
			var drained func()
			if m.drained != nil && len(m.in) < m.low {
				drained, m.drained = m.drained, nil
			}
			m.mu.Unlock()
			if drained != nil {
				drained()
			}
			return n, nil
		}
		if m.closed {
			m.mu.Unlock()
			return 0, io.EOF
		}
		if !m.blocking {
			m.mu.Unlock()
			return 0, wouldBlockError{}
		}
		m.mu.Unlock()
		<-m.wake
		m.mu.Lock()
	}
}

func (m *memConn) Write(p []byte) (int, error) {
	m.mu.Lock()
	out := m.out
	m.mu.Unlock()
	out(p)
	return len(p), nil
}

func (m *memConn) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return nil
}

func (m *memConn) LocalAddr() net.Addr              { return memAddr{} }
func (m *memConn) RemoteAddr() net.Addr             { return memAddr{} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

type memAddr struct{}

func (memAddr) Network() string { return "memory" }
func (memAddr) String() string  { return "memory" }
