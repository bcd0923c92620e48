package engine

// TransportSocket sits between a Connection's socket and its read filters (Envoy's
// Network::TransportSocket). A Connection without one is raw_buffer: bytes go from the fd to
// the filters and back untouched, on the engine's own path (zero-copy reads into the
// worker's scratch buffer, direct writes, splice for bulk transfers); that path pays one
// nil check per read and per write for the existence of this interface, nothing more.
//
// A transport socket is made per connection by the TransportSocketFactory of the filter
// chain that was selected (downstream) or by the cluster's UpstreamTransportSocketFactory
// (upstream), and all its methods run on the connection's worker. Splicing is never used
// on a connection that has one, in either direction.
type TransportSocket interface {
	// OnConnected is called once, when the connection is registered and before any read.
	// The connection's network filters are built only when the transport socket calls
	// Connection.TransportReady (at once for a socket without a handshake, after it for
	// TLS), so they see the final SocketInfo in OnNewConnection. On an upstream connection
	// it is called when the TCP connect completes, and TransportReady raises Connected.
	OnConnected()
	// OnRead gets bytes read from the socket, valid only during the call. The transport
	// socket hands what it decodes to the filters with Connection.DeliverRead, and an end
	// of stream it decodes with Connection.TransportEOF.
	OnRead(data []byte)
	// Write encodes what a filter wrote (valid only during the call) and sends the result
	// with Connection.WriteRaw; endStream ends the write side (TLS: close_notify, then
	// FIN). Write(nil, true) is how a graceful Close asks for the end of stream.
	Write(data []byte, endStream bool)
	// OnRemoteEOF is called when the peer's FIN arrives before the transport socket
	// called TransportReady (during a handshake). Nothing more is read; the transport
	// socket either closes the connection (the handshake cannot complete) or, once ready,
	// delivers what it decoded and then calls TransportEOF.
	OnRemoteEOF()
	// OnClose is called once when the connection closes, from any state: the transport
	// socket releases what it holds.
	OnClose()
}

// TransportSocketFactory makes the transport socket of each connection of a filter chain
// (FilterChain.TransportSocket; nil is raw_buffer). It is shared by every worker and must
// be safe for concurrent use; per-worker state is indexed by Worker.ID.
type TransportSocketFactory interface {
	// Name is the Envoy name (envoy.transport_sockets.tls).
	Name() string
	// NewTransportSocket returns c's transport socket. It may close c (refuse it) and
	// return nil.
	NewTransportSocket(c *Connection) TransportSocket
}

// UpstreamTransportSocketFactory makes the transport socket of each upstream connection of
// a cluster (ClusterConfig.TransportSocket; nil is raw_buffer). It is shared by every
// worker and must be safe for concurrent use.
type UpstreamTransportSocketFactory interface {
	// Name is the Envoy name (envoy.transport_sockets.tls).
	Name() string
	// NewUpstreamTransportSocket returns c's transport socket. It is called when the
	// connect starts, so that what the filters write before the handshake is done reaches
	// it (a TLS socket holds it, counted by TransportHeld, and sends it encrypted once
	// ready). It must not close c; o holds the per-connection options (may be nil).
	// OnConnected follows when the TCP connect completes; a nil socket leaves c raw.
	NewUpstreamTransportSocket(c *Connection, o *TransportOptions) TransportSocket
}

// TransportOptions are per-connection settings for an upstream transport socket
// (Cluster.ConnectHostWith), which Envoy derives from the downstream request.
type TransportOptions struct {
	// ServerName, if set, replaces the factory's SNI (auto_sni: the request's host).
	ServerName string
	// VerifyName, if set, is a name the peer's certificate must be valid for, on top of
	// the factory's own checks (auto_san_validation: the request's host).
	VerifyName string
}

// TransportHeld is implemented by a transport socket that holds written bytes of its own
// (an upstream TLS socket before its handshake is done): BufferedBytes, and so the write
// buffer's watermarks, count them.
type TransportHeld interface {
	HeldBytes() int
}

// Transport is the connection's transport socket, nil for raw_buffer.
func (c *Connection) Transport() TransportSocket { return c.ts }

// TransportReady tells the connection that its transport socket is ready for the filters:
// downstream, the chain's network filters are built and OnNewConnection runs; upstream,
// the connect timer stops and Connected is raised. Called once.
func (c *Connection) TransportReady() {
	pending := c.tsPending
	c.tsPending = false
	if c.state != stateOpen {
		return
	}
	if c.chain == nil { // upstream: no filter chain, the callbacks wait for Connected
		if pending {
			if c.timer != nil {
				c.timer.Stop()
			}
			c.raise(Connected)
		}
		return
	}
	if c.filter != nil {
		return
	}
	c.startFilters(c.chain)
}

// TransportFailed closes the connection because its transport socket failed before it was
// ready (a handshake that failed). On an upstream connection the callbacks see a connect
// failure with reason r (FailureTransport, or FailureOverflow when the proxy itself had no
// room for the handshake), as for a refused connect; what the socket wrote last (a TLS
// alert) is sent if the kernel takes it at once.
func (c *Connection) TransportFailed(r FailureReason) {
	if c.state == stateClosed {
		return
	}
	if c.out != nil && c.out.len() > 0 {
		writeFd(c.fd, c.out.b[c.out.off:]) // best effort: the peer learns why
	}
	if c.tsPending && c.chain == nil {
		c.failure = r
		c.tsPending = false
		c.closeSocket(RemoteClose)
		return
	}
	c.closeSocket(LocalClose)
}

// startUpstreamTransport runs an upstream transport socket's OnConnected once the TCP
// connect completed. A panic resets the connection.
func (c *Connection) startUpstreamTransport() {
	defer c.recoverFilter()
	c.ts.OnConnected()
}

// DeliverRead hands decoded bytes to the read filters, as a read does on raw_buffer. data
// must stay valid during the call only.
func (c *Connection) DeliverRead(data []byte) {
	if c.state != stateOpen || len(data) == 0 {
		return
	}
	c.dispatch(data, false)
}

// TransportEOF is the decoded end of stream (a TLS close_notify): the filters see it as
// the peer's FIN, and no further read is made.
func (c *Connection) TransportEOF() {
	if c.state != stateOpen || (c.remoteEOF && !c.eofHeld) {
		return
	}
	c.eofHeld = false
	c.readReady = false
	c.onRemoteEOF()
}

// WriteRaw sends bytes on the socket below the transport socket, buffering what the
// kernel refuses (the write buffer and its watermarks hold encoded bytes); endStream
// shuts the write side down once everything is sent.
func (c *Connection) WriteRaw(data []byte, endStream bool) {
	if c.state == stateClosed || c.localShutdown {
		return
	}
	c.writeRaw(data, endStream)
}

// HandshakeSlot takes one of the worker's handshake slots if fewer than limit are in use:
// a transport socket holds one while its handshake runs off the worker, so a flood of
// handshakes cannot become a flood of goroutines. It runs on the worker.
func (w *Worker) HandshakeSlot(limit int) bool {
	if w.handshakes >= limit {
		return false
	}
	w.handshakes++
	return true
}

// ReleaseHandshakeSlot returns a slot HandshakeSlot gave; it runs on the worker.
func (w *Worker) ReleaseHandshakeSlot() {
	if w.handshakes > 0 {
		w.handshakes--
	}
}

// HandshakesInFlight is how many handshake slots are taken on the worker.
func (w *Worker) HandshakesInFlight() int { return w.handshakes }

// TransportScratch is a second worker buffer (64 KiB) for a transport socket's decoded
// bytes, valid until the next call on the worker: OnRead's data lives in Scratch.
func (w *Worker) TransportScratch() []byte {
	if w.tscratch == nil {
		w.tscratch = make([]byte, scratchSize)
	}
	return w.tscratch
}

// TransportBuffer is a worker's buffer for a transport socket to gather what one Write
// encodes (a TLS record per 16 KiB) and send it with one WriteRaw, one syscall, instead of
// one per record. Busy guards it: a write made while it is in use (from a callback that
// WriteRaw raised) must not use it.
type TransportBuffer struct {
	B    []byte
	Busy bool
}

// TransportBuffer is the worker's TransportBuffer; it runs on the worker.
func (w *Worker) TransportBuffer() *TransportBuffer { return &w.tbuf }

// TLSInfo is what a transport socket that terminated TLS tells the filters above it
// (Envoy's Ssl::ConnectionInfo): access-log operators (%DOWNSTREAM_TLS_VERSION% ...), the
// HTTP connection manager's x-forwarded-proto, the negotiated ALPN. Strings other than
// the version, cipher and protocol may be computed on each call.
type TLSInfo interface {
	// TLSVersion is "TLSv1.2" or "TLSv1.3".
	TLSVersion() string
	// TLSCipher is the suite's BoringSSL name ("ECDHE-ECDSA-AES128-GCM-SHA256").
	TLSCipher() string
	// TLSSessionID is the session ID in hex, "" when there is none.
	TLSSessionID() string
	// NegotiatedProtocol is the protocol chosen by ALPN, "" if none.
	NegotiatedProtocol() string
	// PeerSubject and PeerIssuer are the peer certificate's names (RFC 2253), and
	// PeerFingerprintSHA256 the lower-case hex SHA-256 of its DER; "" without one.
	PeerSubject() string
	PeerIssuer() string
	PeerFingerprintSHA256() string
}

// TLSInfoSource is implemented by transport sockets that may terminate TLS.
type TLSInfoSource interface {
	// TLSInfo is nil until the handshake has completed, and stays valid after close.
	TLSInfo() TLSInfo
}

// TLS returns the TLS info of a connection whose transport socket terminated TLS and
// completed its handshake, nil otherwise (raw_buffer, a TLS connection passed through).
func (c *Connection) TLS() TLSInfo {
	if s, ok := c.ts.(TLSInfoSource); ok {
		return s.TLSInfo()
	}
	return nil
}
