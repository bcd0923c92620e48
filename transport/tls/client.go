package tls

import (
	ctls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// DefaultMaxSessionKeys is Envoy's max_session_keys default: one session kept per cluster
// for resumption.
const DefaultMaxSessionKeys = 1

// UpstreamConfig is an UpstreamTlsContext translated: how a cluster originates TLS to its
// endpoints.
type UpstreamConfig struct {
	// SNI is the server name sent in the ClientHello ("" sends none, as in Envoy).
	SNI string
	// ALPN is alpn_protocols, offered in this order.
	ALPN []string
	// Certificates are the client certificates offered when the server asks for one
	// (Envoy allows at most one in a client context).
	Certificates []ctls.Certificate
	// MinVersion and MaxVersion: 0 means Envoy's client defaults, TLS 1.2 for both.
	MinVersion, MaxVersion uint16
	// CipherSuites for TLS 1.2; nil means Envoy's default list.
	CipherSuites []uint16
	// Curves is ecdh_curves; nil means X25519, P-256.
	Curves []ctls.CurveID
	// Validation is common_tls_context.validation_context. nil verifies nothing at all
	// (Envoy's upstream default); with only TrustedCA the chain is verified but not the
	// name (Envoy checks names only against the SAN matchers, never against the SNI).
	Validation *Validation
	// MaxSessionKeys is max_session_keys: how many sessions the cluster keeps for
	// resumption. 0 means DefaultMaxSessionKeys; negative turns resumption off (Envoy's
	// max_session_keys: 0).
	MaxSessionKeys int
	// HandshakeTimeout, if positive, bounds the handshake on its own; 0 leaves it to the
	// cluster's connect_timeout, which covers the TCP connect and the handshake (Envoy).
	HandshakeTimeout time.Duration
	// MaxHandshakes, if positive, caps handshakes in flight per worker; a connection over
	// it fails as an overflow of the proxy's own resources. 0 sets no cap of its own: the
	// cluster's max_connections circuit breaker already bounds the connections being made
	// (Envoy has no such cap, and failing requests in a burst of new connections would
	// be worse than the short-lived goroutines).
	MaxHandshakes int
}

// UpstreamFactory is a cluster's TLS transport-socket factory
// (engine.UpstreamTransportSocketFactory). It is immutable but for its Stats and its
// session cache, and shared by every worker.
type UpstreamFactory struct {
	cfg     *ctls.Config
	timeout time.Duration
	max     int
	// Stats count what happened on every worker; show them with
	// Stats.Source("cluster", [][2]string{{"cluster", name}}).
	Stats Stats
}

// NewUpstream builds the factory for cfg.
func NewUpstream(cfg UpstreamConfig) (*UpstreamFactory, error) {
	f := &UpstreamFactory{timeout: cfg.HandshakeTimeout, max: cfg.MaxHandshakes}
	if f.max <= 0 {
		f.max = math.MaxInt // counted (HandshakesInFlight), not capped
	}
	if len(cfg.Certificates) > 1 {
		return nil, errors.New("tls_certificates: a client context takes at most one certificate")
	}
	certs := append([]ctls.Certificate(nil), cfg.Certificates...)
	for i := range certs {
		if len(certs[i].Certificate) == 0 {
			return nil, fmt.Errorf("tls_certificates[%d]: empty certificate chain", i)
		}
		if certs[i].Leaf == nil {
			leaf, err := x509.ParseCertificate(certs[i].Certificate[0])
			if err != nil {
				return nil, fmt.Errorf("tls_certificates[%d]: %v", i, err)
			}
			certs[i].Leaf = leaf
		}
	}
	c := &ctls.Config{
		ServerName:       cfg.SNI,
		NextProtos:       append([]string(nil), cfg.ALPN...),
		Certificates:     certs,
		MinVersion:       cfg.MinVersion,
		MaxVersion:       cfg.MaxVersion,
		CipherSuites:     cfg.CipherSuites,
		CurvePreferences: cfg.Curves,
		// Envoy's upstream default: no validation_context, no verification at all.
		InsecureSkipVerify: true,
	}
	if err := envoyDefaults(c, ctls.VersionTLS12); err != nil {
		return nil, err
	}
	switch n := cfg.MaxSessionKeys; {
	case n == 0:
		c.ClientSessionCache = ctls.NewLRUClientSessionCache(DefaultMaxSessionKeys)
	case n > 0:
		// crypto/tls keys sessions by server name (one per name, the latest): with a
		// cluster's one SNI that is Envoy's "the latest session of the cluster", and n
		// bounds how many names (auto_sni) keep one.
		c.ClientSessionCache = ctls.NewLRUClientSessionCache(n)
	default:
		c.SessionTicketsDisabled = true
	}
	if cfg.Validation != nil {
		cfg.Validation.apply(c, false, false, &f.Stats)
	}
	f.cfg = c
	return f, nil
}

// Name implements engine.UpstreamTransportSocketFactory.
func (f *UpstreamFactory) Name() string { return "envoy.transport_sockets.tls" }

// config is the tls.Config of one connection: the factory's, or a copy with the
// connection's own server name (auto_sni) and name check (auto_san_validation).
func (f *UpstreamFactory) config(o *engine.TransportOptions) *ctls.Config {
	if o == nil || (o.ServerName == "" || o.ServerName == f.cfg.ServerName) && o.VerifyName == "" {
		return f.cfg
	}
	c := f.cfg.Clone() // shares the session cache
	if o.ServerName != "" {
		c.ServerName = o.ServerName
	}
	if o.VerifyName != "" {
		name, st, verify := o.VerifyName, &f.Stats, c.VerifyConnection
		c.InsecureSkipVerify = true // crypto/tls would check the SNI; this checks name
		c.VerifyConnection = func(cs ctls.ConnectionState) error {
			if verify != nil {
				if err := verify(cs); err != nil {
					return err
				}
			}
			if len(cs.PeerCertificates) == 0 {
				st.FailVerifyNoCert.Add(1)
				return errNoPeerCertificate
			}
			if err := cs.PeerCertificates[0].VerifyHostname(name); err != nil {
				st.FailVerifySAN.Add(1)
				return err
			}
			return nil
		}
	}
	return c
}

// clientSocket is one upstream connection's TLS transport socket. It shares the server
// socket's established paths (OnRead, drain, the adapter) and adds what a client needs:
// the handshake starts when the TCP connect completes, and what the filters write before
// it is done is held, counted in the connection's watermarks, and encrypted after.
type clientSocket struct {
	socket
	uf      *UpstreamFactory
	held    []byte
	heldEnd bool
	started bool // OnConnected ran: a handshake slot was asked for
}

// NewUpstreamTransportSocket implements engine.UpstreamTransportSocketFactory.
func (f *UpstreamFactory) NewUpstreamTransportSocket(c *engine.Connection, o *engine.TransportOptions) engine.TransportSocket {
	s := &clientSocket{uf: f}
	s.st, s.c, s.w = &f.Stats, c, c.Worker()
	s.mc = newMemConn(true, s.postWrite)
	s.tc = ctls.Client(s.mc, f.config(o))
	return s
}

// OnConnected implements engine.TransportSocket: the TCP connect is done; the handshake
// starts on its own goroutine if the worker has a handshake slot free.
func (s *clientSocket) OnConnected() {
	s.started = true
	if !s.w.HandshakeSlot(s.uf.max) {
		s.st.HandshakeOverflow.Add(1)
		s.state = failed
		s.c.TransportFailed(engine.FailureOverflow)
		return
	}
	if s.uf.timeout > 0 {
		s.timer.InitFor(s.c, s)
		s.timer.Reset(s.uf.timeout)
	}
	go s.handshake()
}

// handshake runs off the worker, like the server's: its only ties to the worker are the
// posted flights and the posted result.
func (s *clientSocket) handshake() {
	err := s.tc.Handshake()
	s.w.Post(func() { s.done(err) })
}

// done runs on the worker when the handshake goroutine has finished.
func (s *clientSocket) done(err error) {
	s.w.ReleaseHandshakeSlot()
	s.timer.Stop()
	if s.state != handshaking {
		if s.leftInHandshake && err != nil && !isVerifyError(err) {
			s.st.ConnectionError.Add(1) // the backend left or reset during the handshake
		}
		return
	}
	if err != nil {
		s.state = failed
		s.held = nil
		if !isVerifyError(err) { // counted in its ssl.fail_verify_* only, as Envoy
			s.st.ConnectionError.Add(1)
		}
		// The alert crypto/tls wrote was posted before this result, so it was handed to
		// the connection already.
		s.c.TransportFailed(engine.FailureTransport)
		return
	}
	s.state = established
	s.mc.setNonBlocking(s.writeDirect)
	cs := s.tc.ConnectionState()
	s.st.RecordHandshake(&cs)
	info := &s.c.Info
	info.TransportProtocol = engine.TransportTLS
	info.ServerName = cs.ServerName
	if cs.NegotiatedProtocol != "" {
		info.SetApplicationProtocols(cs.NegotiatedProtocol)
	}
	// What the filters wrote while the handshake ran goes first, in order.
	held, end := s.held, s.heldEnd
	s.held, s.heldEnd = nil, false
	if len(held) > 0 || end {
		s.socket.Write(held, end)
		if !s.c.IsOpen() {
			return
		}
	}
	s.c.TransportReady() // Connected
	// The server's first bytes (a TLS 1.3 session ticket, early data) may already be here.
	s.drain()
	s.resumeReads()
}

// OnTimer is the handshake's own timeout (UpstreamConfig.HandshakeTimeout).
func (s *clientSocket) OnTimer() {
	if s.state == handshaking {
		s.st.HandshakeTimeout.Add(1)
		s.st.ConnectionError.Add(1)
		s.state = failed
		s.held = nil
		s.c.TransportFailed(engine.FailureConnectTimeout)
	}
}

// Write implements engine.TransportSocket: held until the handshake is done, then
// encrypted straight into the connection's write path.
func (s *clientSocket) Write(data []byte, endStream bool) {
	if s.state != handshaking {
		s.socket.Write(data, endStream)
		return
	}
	if s.heldEnd {
		return
	}
	s.held = append(s.held, data...)
	s.heldEnd = endStream
	// No bytes for the socket: this only makes the connection look at its watermarks
	// again, now that HeldBytes grew.
	s.c.WriteRaw(nil, false)
}

// HeldBytes implements engine.TransportHeld.
func (s *clientSocket) HeldBytes() int { return len(s.held) }

// OnClose implements engine.TransportSocket.
func (s *clientSocket) OnClose() {
	s.held = nil
	if !s.started {
		// The TCP connect itself failed or was given up: no handshake ever ran.
		s.state = closed
		return
	}
	if s.state == handshaking && s.c.FailureReason() == engine.FailureConnectTimeout {
		// connect_timeout ran out during the handshake.
		s.st.HandshakeTimeout.Add(1)
	}
	s.socket.OnClose()
}

// ClientConfig is a copy of the factory's crypto/tls configuration, for a client that
// runs its own handshake on a plain connection (the xDS client's gRPC stream to the
// management server's cluster).
func (f *UpstreamFactory) ClientConfig() *ctls.Config { return f.cfg.Clone() }
