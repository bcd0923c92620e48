package tls

import (
	"crypto/sha256"
	ctls "crypto/tls"
	"crypto/x509"
	"encoding/hex"

	"github.com/portico-proxy/portico/engine"
)

// The socket is an engine.TLSInfoSource: what the filters (access logs, the HTTP
// connection manager) learn about the TLS it terminated. The version, cipher and ALPN are
// kept at the end of the handshake; the peer's names are computed when asked.

var (
	_ engine.TLSInfoSource = (*socket)(nil)
	_ engine.TLSInfo       = (*socket)(nil)
)

// TLSInfo implements engine.TLSInfoSource: the socket itself once its handshake has
// completed (also after close, for the access log), nil before.
func (s *socket) TLSInfo() engine.TLSInfo {
	if s.info.version == 0 {
		return nil
	}
	return s
}

// handshakeInfo is what the socket keeps of a completed handshake for TLSInfo.
type handshakeInfo struct {
	version, cipher uint16
	alpn            string
}

func (h *handshakeInfo) record(cs *ctls.ConnectionState) {
	h.version, h.cipher, h.alpn = cs.Version, cs.CipherSuite, cs.NegotiatedProtocol
}

func (s *socket) TLSVersion() string         { return VersionName(s.info.version) }
func (s *socket) TLSCipher() string          { return CipherName(s.info.cipher) }
func (s *socket) NegotiatedProtocol() string { return s.info.alpn }

// TLSSessionID is always "": crypto/tls does not expose a session ID, and its server
// never assigns one (tickets only; see session.go).
func (s *socket) TLSSessionID() string { return "" }

func (s *socket) peer() *x509.Certificate {
	if p := s.tc.ConnectionState().PeerCertificates; len(p) > 0 {
		return p[0]
	}
	return nil
}

// PeerSubject is the client certificate's subject, as Envoy prints it (RFC 2253 as
// OpenSSL does; validation.go).
func (s *socket) PeerSubject() string { return PeerSubject(s.peer()) }

// PeerIssuer is the client certificate's issuer (as PeerSubject).
func (s *socket) PeerIssuer() string { return PeerIssuer(s.peer()) }

// PeerFingerprintSHA256 is the hex SHA-256 of the client certificate (DER), as Envoy's
// %DOWNSTREAM_PEER_FINGERPRINT_256%.
func (s *socket) PeerFingerprintSHA256() string {
	if c := s.peer(); c != nil {
		sum := sha256.Sum256(c.Raw)
		return hex.EncodeToString(sum[:])
	}
	return ""
}
