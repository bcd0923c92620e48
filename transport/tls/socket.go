package tls

import (
	"bytes"
	ctls "crypto/tls"
	"errors"
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
	f     *Factory
	c     *engine.Connection
	w     *engine.Worker
	mc    *memConn
	tc    *ctls.Conn
	timer engine.Timer
	state uint8
	// borrowed: mc.in aliases the worker's scratch buffer for the current OnRead.
	borrowed bool
	endSent  bool
	info     handshakeInfo // for TLSInfo (tlsinfo.go)
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
	s := &socket{f: f, c: c, w: w}
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

// writeDirect is the established write path: on the worker, straight into the
// connection's write path (sent at once, buffered only if the kernel refuses).
func (s *socket) writeDirect(p []byte) {
	s.c.WriteRaw(p, false)
}

// done runs on the worker when the handshake goroutine has finished.
func (s *socket) done(err error) {
	s.w.ReleaseHandshakeSlot()
	s.timer.Stop()
	if s.state != handshaking {
		return
	}
	if err != nil {
		s.state = failed
		s.f.Stats.ConnectionError.Add(1)
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
		s.mc.feed(data)
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
func (s *socket) drain() {
	buf := s.w.TransportScratch()
	for s.state == established && s.c.IsOpen() {
		n, err := s.tc.Read(buf)
		if n > 0 {
			s.c.DeliverRead(buf[:n])
		}
		switch {
		case err == nil:
			continue
		case errors.As(err, new(wouldBlockError)):
			return
		case err == io.EOF:
			s.c.TransportEOF()
			return
		default:
			s.f.Stats.ConnectionError.Add(1)
			s.state = failed
			s.c.Close(engine.CloseFlushWrite) // the alert crypto/tls wrote goes out
			return
		}
	}
}

// Write implements engine.TransportSocket.
func (s *socket) Write(data []byte, endStream bool) {
	if s.state != established || s.endSent {
		return
	}
	if len(data) > 0 {
		if _, err := s.tc.Write(data); err != nil {
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

// OnClose implements engine.TransportSocket. A handshake still running sees EOF and
// ends; its result then only returns the slot.
func (s *socket) OnClose() {
	if s.state == handshaking {
		// The peer left (or reset) during the handshake.
		s.f.Stats.ConnectionError.Add(1)
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
	if !ok || s.state != established {
		return ctls.ConnectionState{}, false
	}
	return s.tc.ConnectionState(), true
}
