package tls

import (
	"bytes"
	ctls "crypto/tls"
	"io"
	"strings"

	"github.com/portico-proxy/portico/engine"
)

// socket states.
const (
	handshaking uint8 = iota
	established
	failed // the handshake failed; the connection is flushing its alert and closing
	closed
)

// socket is one connection's TLS transport socket.
type socket struct {
	f     *Factory // nil for an upstream (client) socket
	st    *Stats   // the context's stats, for the code both sides share
	c     *engine.Connection
	w     *engine.Worker
	mc    *memConn
	tc    *ctls.Conn
	timer engine.Timer
	state uint8
	// borrowed: mc.in aliases the worker's scratch buffer for the current OnRead.
	borrowed bool
	endSent  bool
	// readsPaused: OnRead turned reading off while the handshake holds too much.
	readsPaused bool
	// leftInHandshake: the connection closed while the handshake ran (see OnClose).
	leftInHandshake bool
	// collect is the worker's TransportBuffer while Write gathers records into it.
	collect *engine.TransportBuffer
	info    handshakeInfo // for TLSInfo (tlsinfo.go)
}

// NewTransportSocket implements engine.TransportSocketFactory: it takes a handshake slot
// of the connection's worker, or refuses the connection.
func (f *Factory) NewTransportSocket(c *engine.Connection) engine.TransportSocket {
	w := c.Worker()
	if !w.HandshakeSlot(f.max) {
		f.Stats.HandshakeOverflow.Add(1)
		c.Close(engine.CloseNoFlush)
		return nil
	}
	s := &socket{f: f, st: &f.Stats, c: c, w: w}
	s.mc = newMemConn(true, s.postWrite)
	s.tc = ctls.Server(s.mc, f.cfg)
	return s
}

// OnConnected starts the handshake on its own goroutine, under the timeout.
func (s *socket) OnConnected() {
	s.timer.InitFor(s.c, s)
	s.timer.Reset(s.f.timeout)
	go s.handshake()
}

// handshake runs off the worker. Its only ties to the worker are the posts: the flights it
// writes (postWrite) and its result, after which it exits.
func (s *socket) handshake() {
	err := s.tc.Handshake()
	s.w.Post(func() { s.done(err) })
}

// postWrite sends a handshake flight from the handshake goroutine, through the worker.
func (s *socket) postWrite(p []byte) {
	b := bytes.Clone(p)
	s.w.Post(func() {
		if s.state == handshaking || s.state == failed {
			s.c.WriteRaw(b, false)
		}
	})
}

// writeDirect is the established write path: on the worker, gathered into the worker's
// TransportBuffer while Write collects, else straight into the connection's write path
// (sent at once, buffered only if the kernel refuses).
func (s *socket) writeDirect(p []byte) {
	if s.collect != nil {
		s.collect.B = append(s.collect.B, p...)
		return
	}
	s.c.WriteRaw(p, false)
}

// maxHandshakeInput bounds the bytes a handshake holds unread before reading pauses: a
// ClientHello, a client's certificate chain and a request sent right after the Finished
// fit, a flood does not.
const maxHandshakeInput = 64 << 10

// resumeReads turns reading back on after OnRead paused it; it runs on the worker.
func (s *socket) resumeReads() {
	if s.readsPaused && s.state != closed {
		s.readsPaused = false
		s.c.ReadDisable(false)
	}
}

// maxKeptWriteBuffer bounds the worker's gathering buffer kept between writes.
const maxKeptWriteBuffer = 256 << 10

// done runs on the worker when the handshake goroutine has finished.
func (s *socket) done(err error) {
	s.w.ReleaseHandshakeSlot()
	s.timer.Stop()
	if s.state != handshaking {
		if s.leftInHandshake && err != nil && !isVerifyError(err) {
			s.f.Stats.ConnectionError.Add(1)
		}
		return
	}
	if err != nil {
		s.state = failed
		if !isVerifyError(err) { // counted in its ssl.fail_verify_* only, as Envoy
			s.f.Stats.ConnectionError.Add(1)
		}
		// Any alert crypto/tls wrote was posted before this: flush it, then close.
		s.c.Close(engine.CloseFlushWrite)
		return
	}
	s.state = established
	s.mc.setNonBlocking(s.writeDirect)
	cs := s.tc.ConnectionState()
	s.f.Stats.RecordHandshake(&cs)
	s.recordStaple(&cs)
	s.info.record(&cs)
	info := &s.c.Info
	info.TransportProtocol = engine.TransportTLS
	if info.ServerName == "" && cs.ServerName != "" {
		info.ServerName = strings.ToLower(cs.ServerName)
	}
	if len(info.ApplicationProtocols()) == 0 && len(s.mc.clientALPN) > 0 {
		info.SetApplicationProtocols(s.mc.clientALPN...)
	}
	s.mc.clientALPN = nil
	s.c.TransportReady()
	// Application data may have come with the client's Finished.
	s.drain()
	s.resumeReads()
}

// OnTimer is the handshake timeout (transport_socket_connect_timeout).
func (s *socket) OnTimer() {
	if s.state == handshaking {
		s.f.Stats.HandshakeTimeout.Add(1)
		s.f.Stats.ConnectionError.Add(1)
		s.state = failed
		s.c.Close(engine.CloseNoFlush)
	}
}

// OnRead implements engine.TransportSocket.
func (s *socket) OnRead(data []byte) {
	switch s.state {
	case handshaking:
		if n := s.mc.feed(data); n > maxHandshakeInput && !s.readsPaused {
			// The handshake has not taken what came: stop reading (the rest waits in the
			// kernel) until it has, so a peer cannot make a handshake hold more memory.
			s.readsPaused = true
			s.c.ReadDisable(true)
			s.mc.pauseUntilDrained(maxHandshakeInput/2, func() { s.w.Post(s.resumeReads) })
		}
	case established:
		m := s.mc
		m.mu.Lock()
		if len(m.in) == 0 {
			m.in, s.borrowed = data, true // no copy: crypto/tls copies it into its own buffer
		} else {
			m.in = append(m.in, data...)
		}
		m.mu.Unlock()
		s.drain()
		m.mu.Lock()
		if s.borrowed {
			if len(m.in) > 0 {
				m.in = bytes.Clone(m.in)
			} else {
				m.in = nil
			}
			s.borrowed = false
		}
		m.mu.Unlock()
	}
}

// drain decrypts all that the adapter and crypto/tls hold and hands it to the filters.
//
// tls.Conn.Read returns one record (at most 16 KiB) a call: the records are gathered in the
// worker's scratch buffer and handed over together, so that a filter sees what one socket
// read brought (and tcp_proxy writes it upstream in one syscall, not one per record).
func (s *socket) drain() {
	buf := s.w.TransportScratch()
	n := 0
	for s.state == established && s.c.IsOpen() {
		m, err := s.tc.Read(buf[n:])
		n += m
		if err == nil {
			if n < len(buf) {
				continue
			}
			s.c.DeliverRead(buf[:n])
			n = 0
			continue
		}
		if n > 0 {
			s.c.DeliverRead(buf[:n])
			n = 0
		}
		if _, ok := err.(wouldBlockError); ok {
			return // crypto/tls returns the adapter's error as it is (see wouldBlockError)
		}
		if s.state != established || !s.c.IsOpen() {
			return
		}
		if err == io.EOF {
			s.c.TransportEOF()
			return
		}
		s.st.ConnectionError.Add(1)
		s.state = failed
		s.c.Close(engine.CloseFlushWrite) // the alert crypto/tls wrote goes out
		return
	}
}

// Write implements engine.TransportSocket.
func (s *socket) Write(data []byte, endStream bool) {
	if s.state != established || s.endSent {
		return
	}
	if len(data) > 0 {
		// The records of one Write go out in one WriteRaw (one syscall for up to 64 KiB
		// of records, not one per 16 KiB record).
		tb := s.w.TransportBuffer()
		if !tb.Busy {
			tb.Busy, tb.B, s.collect = true, tb.B[:0], tb
		}
		_, err := s.tc.Write(data)
		if s.collect != nil {
			s.collect = nil
			if err == nil {
				s.c.WriteRaw(tb.B, false)
			}
			if cap(tb.B) > maxKeptWriteBuffer {
				tb.B = nil
			}
			tb.Busy = false
		}
		if err != nil {
			s.c.Close(engine.CloseNoFlush)
			return
		}
	}
	if endStream {
		s.endSent = true
		s.tc.CloseWrite() // close_notify, written through writeDirect
		s.c.WriteRaw(nil, true)
	}
}

// OnRemoteEOF implements engine.TransportSocket: the peer's FIN came during the handshake.
// The handshake goes on with the bytes it has, then sees the end; if it completes, drain
// delivers what followed and then the end of stream (memConn answers io.EOF once empty).
func (s *socket) OnRemoteEOF() {
	if s.state == handshaking {
		s.mc.Close()
	}
}

// OnClose implements engine.TransportSocket. A handshake still running sees EOF and
// ends; its result then only returns the slot.
func (s *socket) OnClose() {
	if s.state == handshaking {
		// The peer left (or reset) during the handshake: counted when its result comes
		// (done), which tells a certificate the validation context refused (the peer
		// left on our alert: not a connection_error) from any other end.
		s.leftInHandshake = true
	}
	s.state = closed
	s.timer.Stop()
	s.mc.Close()
}

// ConnectionState is the handshake's outcome (zero until it completes).
func (s *socket) ConnectionState() ctls.ConnectionState {
	if s.state != established {
		return ctls.ConnectionState{}
	}
	return s.tc.ConnectionState()
}

// State returns the TLS state of a connection terminated by this package, and false for
// any other connection (raw_buffer) or before the handshake completed. The negotiated ALPN
// (Envoy's nextProtocol) is its NegotiatedProtocol; SocketInfo holds the SNI, the client's
// ALPN list and TransportProtocol "tls".
func State(c *engine.Connection) (ctls.ConnectionState, bool) {
	s, ok := c.Transport().(*socket)
	if cs, up := c.Transport().(*clientSocket); up {
		s, ok = &cs.socket, true
	}
	if !ok || s.state != established {
		return ctls.ConnectionState{}, false
	}
	return s.tc.ConnectionState(), true
}
