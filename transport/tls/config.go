package tls

import (
	ctls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Envoy's defaults for a server context (DownstreamTlsContext without tls_params).
const (
	// DefaultHandshakeTimeout bounds a handshake when the filter chain sets no
	// transport_socket_connect_timeout. Envoy has no default; a bound is what keeps a
	// flood of stalled handshakes from holding slots forever.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxHandshakes is the per-worker cap on handshakes in flight: each holds one
	// short-lived goroutine. Connections over it are refused and counted.
	DefaultMaxHandshakes = 256
)

// envoyServerCiphers is Envoy's default server cipher list for TLS 1.2 (no CBC, no RSA key
// exchange); TLS 1.3 suites are not configurable, as in Envoy.
func envoyServerCiphers() []uint16 {
	return []uint16{
		ctls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		ctls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		ctls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		ctls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		ctls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		ctls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	}
}

// envoyDefaults fills in what tls_params left unset as Envoy does: TLS 1.2 at least, at
// most maxVersion (1.3 for servers, 1.2 for clients), Envoy's cipher list (the same six
// suites on both sides) and curves.
func envoyDefaults(c *ctls.Config, maxVersion uint16) error {
	if c.MinVersion == 0 {
		c.MinVersion = ctls.VersionTLS12
	}
	if c.MaxVersion == 0 {
		c.MaxVersion = maxVersion
	}
	if c.MinVersion > c.MaxVersion {
		return errors.New("tls_params: tls_minimum_protocol_version is above tls_maximum_protocol_version")
	}
	if c.CipherSuites == nil {
		c.CipherSuites = envoyServerCiphers()
	}
	if c.CurvePreferences == nil {
		c.CurvePreferences = envoyCurves()
	}
	return nil
}

// envoyCurves is Envoy's default ecdh_curves.
func envoyCurves() []ctls.CurveID { return []ctls.CurveID{ctls.X25519, ctls.CurveP256} }

// DownstreamConfig is a DownstreamTlsContext translated: what a filter chain terminates TLS
// with.
type DownstreamConfig struct {
	// Certificates in configuration order; the first is the default. Leaf is filled in
	// when nil.
	Certificates []ctls.Certificate
	// ALPN is alpn_protocols, in the server's order of preference. A client whose list
	// has none of them gets a handshake without ALPN (Envoy's behaviour; Go would refuse).
	ALPN []string
	// MinVersion and MaxVersion: 0 means Envoy's TLS 1.2 and TLS 1.3.
	MinVersion, MaxVersion uint16
	// CipherSuites for TLS 1.2; nil means Envoy's default list.
	CipherSuites []uint16
	// Curves is ecdh_curves; nil means X25519, P-256.
	Curves []ctls.CurveID
	// HandshakeTimeout is transport_socket_connect_timeout; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxHandshakes caps handshakes in flight per worker; 0 means DefaultMaxHandshakes.
	MaxHandshakes int

	// RequireSNI is require_sni: a ClientHello without a server name fails the handshake.
	RequireSNI bool

	// Validation is common_tls_context.validation_context: with it the server asks for a
	// client certificate and verifies one if given; nil asks for none.
	Validation *Validation
	// RequireClientCertificate is require_client_certificate: a client without a
	// certificate fails the handshake (ssl.fail_verify_no_cert). As in Envoy it takes
	// effect only with a Validation that has a TrustedCA; SAN and hash checks require a
	// certificate by themselves (unless AcceptUntrusted).
	RequireClientCertificate bool

	// SessionTicketKeys are session_ticket_keys, each Envoy's 80-byte key (16 bytes of
	// name, 32 of HMAC secret, 32 of AES key); the first encrypts, all decrypt. nil: keys
	// of the process's own, rotated as crypto/tls does.
	SessionTicketKeys [][]byte
	// DisableStatelessSessionResumption is disable_stateless_session_resumption (no
	// tickets); DisableStatefulSessionResumption is disable_stateful_session_resumption,
	// which Portico always behaves as (crypto/tls has no server session cache;
	// session.go).
	DisableStatelessSessionResumption, DisableStatefulSessionResumption bool
	// SessionTimeout is session_timeout: how long a TLS 1.2 session may be resumed, in
	// whole seconds as BoringSSL counts (under a second: never, as Envoy's 0s); 0 is
	// BoringSSL's default of 2 hours. TLS 1.3 tickets keep BoringSSL's 2 days, as in
	// Envoy, whose session_timeout sets only the TLS 1.2 lifetime (session.go).
	SessionTimeout time.Duration
	// OCSP staples go in each Certificate's OCSPStaple; OCSPStaplePolicy is
	// ocsp_staple_policy (LENIENT_STAPLING by default).
	OCSPStaplePolicy OCSPStaplePolicy
}

// OCSPStaplePolicy is DownstreamTlsContext.ocsp_staple_policy.
type OCSPStaplePolicy uint8

// Envoy's OCSP staple policies.
const (
	LenientStapling OCSPStaplePolicy = iota
	StrictStapling
	MustStaple
)

// certSet picks the certificate for a ClientHello as Envoy does.
type certSet struct {
	all   []*ctls.Certificate
	exact map[string][]*ctls.Certificate
	wild  map[string][]*ctls.Certificate // by the suffix after "*", like ".example.com"
}

func newCertSet(certs []ctls.Certificate) (*certSet, error) {
	s := &certSet{exact: map[string][]*ctls.Certificate{}, wild: map[string][]*ctls.Certificate{}}
	for i := range certs {
		c := &certs[i]
		if len(c.Certificate) == 0 {
			return nil, fmt.Errorf("tls_certificates[%d]: empty certificate chain", i)
		}
		if c.Leaf == nil {
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				return nil, fmt.Errorf("tls_certificates[%d]: %v", i, err)
			}
			c.Leaf = leaf
		}
		names := c.Leaf.DNSNames
		if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
			names = []string{c.Leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if strings.HasPrefix(n, "*.") {
				s.wild[n[1:]] = append(s.wild[n[1:]], c)
			} else {
				s.exact[n] = append(s.exact[n], c)
			}
		}
		s.all = append(s.all, c)
	}
	if len(s.all) == 0 {
		return nil, errors.New("tls_certificates: at least one certificate is required")
	}
	return s, nil
}

// pick: SNI exact, then a one-level wildcard, among those ECDSA before RSA when the client
// supports it; the first certificate when the SNI matches nothing; all certificates scanned
// by key type when there is no SNI.
func (s *certSet) pick(hello *ctls.ClientHelloInfo) *ctls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return choose(s.all, hello)
	}
	if l, ok := s.exact[name]; ok {
		return choose(l, hello)
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if l, ok := s.wild[name[i:]]; ok {
			return choose(l, hello)
		}
	}
	return s.all[0]
}

// choose prefers an ECDSA certificate the client supports, then any it supports, else
// the first (the handshake then fails on its own terms).
func choose(l []*ctls.Certificate, hello *ctls.ClientHelloInfo) *ctls.Certificate {
	for _, c := range l {
		if c.Leaf.PublicKeyAlgorithm == x509.ECDSA && hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	for _, c := range l {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return l[0]
}

// Factory is the transport-socket factory of a filter chain that terminates TLS
// (engine.TransportSocketFactory). It is immutable but for its Stats, and shared by all
// workers.
type Factory struct {
	cfg     *ctls.Config // with ALPN
	noALPN  *ctls.Config // for clients whose ALPN list has none of ours
	alpn    []string
	timeout time.Duration
	max     int
	certs   *certSet
	sess    *sessions // nil: no tickets (session.go)
	// staples: the certificates with an OCSP response (ocsp.go); nil when none has one.
	staples    map[*ctls.Certificate]*staple
	ocspPolicy OCSPStaplePolicy
	// requireSNI refuses a ClientHello without a server name (require_sni).
	requireSNI bool
	// Stats count what happened on every worker.
	Stats Stats
}

// NewDownstream builds the factory for cfg.
func NewDownstream(cfg DownstreamConfig) (*Factory, error) {
	certs, err := newCertSet(append([]ctls.Certificate(nil), cfg.Certificates...))
	if err != nil {
		return nil, err
	}
	f := &Factory{certs: certs, alpn: append([]string(nil), cfg.ALPN...),
		timeout: cfg.HandshakeTimeout, max: cfg.MaxHandshakes, requireSNI: cfg.RequireSNI,
		ocspPolicy: cfg.OCSPStaplePolicy}
	if f.staples, err = newStaples(certs.all, cfg.OCSPStaplePolicy); err != nil {
		return nil, err
	}
	if f.timeout <= 0 {
		f.timeout = DefaultHandshakeTimeout
	}
	if f.max <= 0 {
		f.max = DefaultMaxHandshakes
	}
	c := &ctls.Config{
		MinVersion:       cfg.MinVersion,
		MaxVersion:       cfg.MaxVersion,
		CipherSuites:     cfg.CipherSuites,
		CurvePreferences: cfg.Curves,
		NextProtos:       f.alpn,
		GetCertificate:   f.getCertificate,
	}
	if err := envoyDefaults(c, ctls.VersionTLS13); err != nil {
		return nil, err
	}
	// Without a validation context (or one with no trusted_ca) require_client_certificate
	// has no effect: Envoy accepts the configuration and asks for no certificate.
	cfg.Validation.apply(c, true, cfg.RequireClientCertificate, &f.Stats)
	if f.sess, err = newSessions(&cfg, c); err != nil {
		return nil, err
	}
	f.noALPN = c.Clone()
	f.noALPN.NextProtos = nil
	c.GetConfigForClient = f.sessionConfigForClient
	f.cfg = c
	return f, nil
}

// configForClient drops ALPN for a client that offers protocols but none of ours: Envoy
// goes on without ALPN, Go's server would send no_application_protocol. It also records
// the client's list for SocketInfo.
func (f *Factory) configForClient(h *ctls.ClientHelloInfo) (*ctls.Config, error) {
	if f.requireSNI && h.ServerName == "" {
		return nil, errNoSNI
	}
	if m, ok := h.Conn.(*memConn); ok {
		m.clientALPN = h.SupportedProtos
	}
	if len(h.SupportedProtos) == 0 || len(f.alpn) == 0 {
		return nil, nil
	}
	for _, p := range f.alpn {
		for _, q := range h.SupportedProtos {
			if p == q {
				return nil, nil
			}
		}
	}
	return f.noALPN, nil
}

var errNoSNI = errorString("require_sni: the client sent no server name")

// Name implements engine.TransportSocketFactory.
func (f *Factory) Name() string { return "envoy.transport_sockets.tls" }

// CertificateFor is the certificate the factory serves a client that asks for sni
// (empty: none) and supports every key type, TLS 1.3 and 1.2: what `portico explain`
// reports.
func (f *Factory) CertificateFor(sni string) *x509.Certificate {
	hello := &ctls.ClientHelloInfo{ServerName: sni,
		SupportedVersions: []uint16{ctls.VersionTLS13, ctls.VersionTLS12},
		SupportedCurves:   []ctls.CurveID{ctls.X25519, ctls.CurveP256, ctls.CurveP384, ctls.CurveP521},
		SignatureSchemes: []ctls.SignatureScheme{ctls.ECDSAWithP256AndSHA256, ctls.ECDSAWithP384AndSHA384,
			ctls.ECDSAWithP521AndSHA512, ctls.Ed25519, ctls.PSSWithSHA256, ctls.PSSWithSHA384, ctls.PSSWithSHA512,
			ctls.PKCS1WithSHA256, ctls.PKCS1WithSHA384, ctls.PKCS1WithSHA512},
		SupportedPoints: []uint8{0}, CipherSuites: envoyServerCiphers()}
	return f.certs.pick(hello).Leaf
}

// ALPN is the factory's alpn_protocols.
func (f *Factory) ALPN() []string { return append([]string(nil), f.alpn...) }
