package tls

import (
	ctls "crypto/tls"
	"sync/atomic"

	"github.com/portico-proxy/portico/engine"
)

// Stats are a TLS context's counters, with Envoy's names under the scope's "ssl." prefix
// (listener.<name>.ssl.* for a DownstreamTlsContext, cluster.<name>.ssl.* for an
// UpstreamTlsContext). They are shared by every worker: a handshake is rare enough next to
// its own cost that one atomic add per counter is nothing.
type Stats struct {
	Handshake          atomic.Uint64 // ssl.handshake: successful handshakes
	ConnectionError    atomic.Uint64 // ssl.connection_error: failed handshakes, TLS errors after it
	SessionReused      atomic.Uint64 // ssl.session_reused: resumed handshakes
	NoCertificate      atomic.Uint64 // ssl.no_certificate: handshakes without a peer certificate
	FailVerifyNoCert   atomic.Uint64 // ssl.fail_verify_no_cert: a required peer certificate missing
	FailVerifyError    atomic.Uint64 // ssl.fail_verify_error: chain verification failed
	FailVerifySAN      atomic.Uint64 // ssl.fail_verify_san: no subject alt name matched
	FailVerifyCertHash atomic.Uint64 // ssl.fail_verify_cert_hash: no SPKI or certificate hash matched
	OCSPStapleResponse atomic.Uint64 // ssl.ocsp_staple_responses: handshakes that stapled a response
	OCSPStapleRequest  atomic.Uint64 // ssl.ocsp_staple_requests: ClientHellos with status_request
	OCSPStapleOmitted  atomic.Uint64 // ssl.ocsp_staple_omitted: asked, served without a staple
	OCSPStapleFailed   atomic.Uint64 // ssl.ocsp_staple_failed: refused by the staple policy
	// Portico's own: handshakes cut by transport_socket_connect_timeout (also counted in
	// connection_error), and connections refused because the worker's cap on handshakes in
	// flight was reached.
	HandshakeTimeout  atomic.Uint64 // ssl.handshake_timeout
	HandshakeOverflow atomic.Uint64 // ssl.handshake_overflow

	versions [4]atomic.Uint64                // ssl.versions.TLSv1 ... TLSv1.3
	ciphers  [len(cipherNames)]atomic.Uint64 // ssl.ciphers.<BoringSSL name>
	curves   [len(curveNames)]atomic.Uint64  // ssl.curves.<name>
}

// RecordHandshake counts a successful handshake: handshake, session_reused,
// no_certificate, and the version, cipher and curve it negotiated.
func (s *Stats) RecordHandshake(cs *ctls.ConnectionState) {
	s.Handshake.Add(1)
	if cs.DidResume {
		s.SessionReused.Add(1)
	}
	if len(cs.PeerCertificates) == 0 {
		s.NoCertificate.Add(1)
	}
	if v := int(cs.Version) - ctls.VersionTLS10; v >= 0 && v < len(s.versions) {
		s.versions[v].Add(1)
	}
	if i := cipherIndex(cs.CipherSuite); i >= 0 {
		s.ciphers[i].Add(1)
	}
	for i := range curveNames {
		if curveNames[i].id == cs.CurveID {
			s.curves[i].Add(1)
			break
		}
	}
}

// Version is the ssl.versions counter of v (a crypto/tls version).
func (s *Stats) Version(v uint16) uint64 {
	if i := int(v) - ctls.VersionTLS10; i >= 0 && i < len(s.versions) {
		return s.versions[i].Load()
	}
	return 0
}

// Cipher is the ssl.ciphers counter of a suite.
func (s *Stats) Cipher(id uint16) uint64 {
	if i := cipherIndex(id); i >= 0 {
		return s.ciphers[i].Load()
	}
	return 0
}

// Visit reports the counters with Envoy's names ("ssl.handshake", ...). The per-version,
// per-cipher and per-curve counters appear once they are non-zero, as Envoy creates them
// on first use.
func (s *Stats) Visit(v engine.StatVisitor) {
	c := func(name string, x *atomic.Uint64) { v(name, engine.KindCounter, float64(x.Load())) }
	c("ssl.handshake", &s.Handshake)
	c("ssl.connection_error", &s.ConnectionError)
	c("ssl.session_reused", &s.SessionReused)
	c("ssl.no_certificate", &s.NoCertificate)
	c("ssl.fail_verify_no_cert", &s.FailVerifyNoCert)
	c("ssl.fail_verify_error", &s.FailVerifyError)
	c("ssl.fail_verify_san", &s.FailVerifySAN)
	c("ssl.fail_verify_cert_hash", &s.FailVerifyCertHash)
	c("ssl.ocsp_staple_responses", &s.OCSPStapleResponse)
	c("ssl.ocsp_staple_requests", &s.OCSPStapleRequest)
	c("ssl.ocsp_staple_omitted", &s.OCSPStapleOmitted)
	c("ssl.ocsp_staple_failed", &s.OCSPStapleFailed)
	c("ssl.handshake_timeout", &s.HandshakeTimeout)
	c("ssl.handshake_overflow", &s.HandshakeOverflow)
	for i := range s.versions {
		if s.versions[i].Load() != 0 {
			c("ssl.versions."+VersionName(uint16(ctls.VersionTLS10+i)), &s.versions[i])
		}
	}
	for i := range s.ciphers {
		if s.ciphers[i].Load() != 0 {
			c("ssl.ciphers."+cipherNames[i].name, &s.ciphers[i])
		}
	}
	for i := range s.curves {
		if s.curves[i].Load() != 0 {
			c("ssl.curves."+curveNames[i].name, &s.curves[i])
		}
	}
}

// Source makes the stats an engine.StatsSource in the given family and labels, for
// Server.AddStatsSource: {"listener", {{"listener", statName}}} puts them under
// listener.<statName>.ssl.*, {"cluster", {{"cluster", name}}} under cluster.<name>.ssl.*.
// Sources with the same family and labels add up (several filter chains of one listener).
// The counters are process-wide, so worker 0 reports them and the others nothing.
func (s *Stats) Source(family string, labels [][2]string) engine.StatsSource {
	return &statsSource{family: family, labels: labels, s: s}
}

type statsSource struct {
	family string
	labels [][2]string
	s      *Stats
}

func (x *statsSource) StatsFamily() string      { return x.family }
func (x *statsSource) StatsLabels() [][2]string { return x.labels }
func (x *statsSource) VisitStats(worker int, v engine.StatVisitor) {
	if worker == 0 {
		x.s.Visit(v)
	}
}
