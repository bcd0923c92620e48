package config

import (
	ctls "crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/transport/tls"
)

// Envoy's names of the transport sockets Portico has.
const (
	tlsSocketName       = "envoy.transport_sockets.tls"
	rawBufferSocketName = "envoy.transport_sockets.raw_buffer"

	downstreamTLSType = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	upstreamTLSType   = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	rawBufferType     = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
)

// tlsCommon is the part of a CommonTlsContext both sides translate alike.
type tlsCommon struct {
	certs      []ctls.Certificate
	alpn       []string
	minVersion uint16
	maxVersion uint16
	ciphers    []uint16
	curves     []ctls.CurveID
	validation *tls.Validation // nil: no validation context (tls_validation.go)
}

// transportSocketKind tells a transport_socket's kind from its typed_config, or from its
// name when it has none (Envoy finds the factory by type first, then by name).
func (t *translator) transportSocketKind(ts *corev3.TransportSocket, at string) (kind string, ok bool) {
	url := ts.GetTypedConfig().GetTypeUrl()
	switch {
	case url == typeURLPrefix+downstreamTLSType, url == typeURLPrefix+upstreamTLSType:
		return tlsSocketName, true
	case url == typeURLPrefix+rawBufferType:
		return rawBufferSocketName, true
	case url == "" && ts.GetName() == rawBufferSocketName:
		return rawBufferSocketName, true
	case url == "" && ts.GetName() == tlsSocketName:
		// Envoy builds an empty context, which a server cannot use (no certificate).
		t.errorf(field(at, "typed_config"), "required: the tls transport socket needs a %s", "DownstreamTlsContext or UpstreamTlsContext")
		return "", false
	}
	// Any other type was refused by the subset check at typed_config.
	if !t.c.reported(field(at, "typed_config")) {
		t.errorf(at, "transport socket %q is not supported by Portico (it has %s and %s)", ts.GetName(), tlsSocketName, rawBufferSocketName)
	}
	return "", false
}

// downstreamTransport translates a filter chain's transport_socket and
// transport_socket_connect_timeout onto out. listenerStat names the listener's stats
// (listener.<name>.ssl.*).
func (t *translator) downstreamTransport(fc *listenerv3.FilterChain, at, listenerStat string, out *engine.FilterChain) bool {
	ts := fc.GetTransportSocket()
	if ts == nil {
		if fc.GetTransportSocketConnectTimeout() != nil {
			t.warnf(field(at, "transport_socket_connect_timeout"), "has no effect without a transport socket that handshakes: ignored")
		}
		return true
	}
	tat := field(at, "transport_socket")
	kind, ok := t.transportSocketKind(ts, tat)
	if !ok {
		return false
	}
	if kind == rawBufferSocketName {
		return true // the engine's own path
	}
	m, ok := t.typedConfig(ts.GetTypedConfig(), field(tat, "typed_config"))
	if !ok {
		return false
	}
	ctx, isDown := m.(*tlsv3.DownstreamTlsContext)
	if !isDown {
		t.errorf(field(tat, "typed_config"), "a filter chain terminates TLS with a DownstreamTlsContext, not %s", m.ProtoReflect().Descriptor().FullName())
		return false
	}
	cfg, ok := t.downstreamTLS(ctx, field(tat, "typed_config"))
	if !ok {
		return false
	}
	cfg.HandshakeTimeout = t.timeout(fc.GetTransportSocketConnectTimeout(), 0, field(at, "transport_socket_connect_timeout"), true)
	if chainHasHCM(fc) {
		cfg.ALPN = t.dropH2(cfg.ALPN, field(field(field(tat, "typed_config"), "common_tls_context"), "alpn_protocols"))
	}
	f, err := tls.NewDownstream(cfg)
	if err != nil {
		t.errorf(field(tat, "typed_config"), "%v", err)
		return false
	}
	out.TransportSocket = f
	t.addTLSStats(&f.Stats, "listener", [][2]string{{"listener", listenerStat}})
	return true
}

// chainHasHCM reports whether a filter chain's filters include the HTTP connection manager.
func chainHasHCM(fc *listenerv3.FilterChain) bool {
	for _, f := range fc.GetFilters() {
		if f.GetTypedConfig().GetTypeUrl() == typeURLPrefix+hcmType {
			return true
		}
	}
	return false
}

// dropH2 removes "h2" from the ALPN list of a chain whose HTTP connection manager speaks
// HTTP/1.1 only. Envoy's codec_type AUTO would serve HTTP/2 to a client that negotiates h2;
// Portico advertising it would make every such client (curl, browsers) send an HTTP/2
// preface that the HTTP/1.1 codec refuses, so the connection would fail. Not advertising
// it, clients pick http/1.1 (or no ALPN) and are served. A warning names each dropped one.
func (t *translator) dropH2(alpn []string, at string) []string {
	out := alpn[:0:0]
	for i, p := range alpn {
		if p == "h2" {
			t.warnf(index(at, i), "h2 is not advertised: Portico's HTTP connection manager speaks HTTP/1.1 only, and clients that offer h2 fall back to http/1.1")
			continue
		}
		out = append(out, p)
	}
	return out
}

// addTLSStats registers a TLS context's stats once per scope: chains of one listener share
// the scope and add up, as Envoy's listener.<name>.ssl.* do.
func (t *translator) addTLSStats(st *tls.Stats, family string, labels [][2]string) {
	t.cfg.StatsSources = append(t.cfg.StatsSources, st.Source(family, labels))
}

// downstreamTLS translates a DownstreamTlsContext.
func (t *translator) downstreamTLS(ctx *tlsv3.DownstreamTlsContext, at string) (tls.DownstreamConfig, bool) {
	var cfg tls.DownstreamConfig
	cat := field(at, "common_tls_context")
	common, ok := t.commonTLS(ctx.GetCommonTlsContext(), cat)
	if !ok {
		return cfg, false
	}
	if len(common.certs) == 0 {
		if !t.c.reported(cat) {
			t.errorf(field(cat, "tls_certificates"), "a server needs at least one certificate")
		}
		return cfg, false
	}
	cfg.Certificates = common.certs
	cfg.ALPN = common.alpn
	cfg.MinVersion, cfg.MaxVersion = common.minVersion, common.maxVersion
	cfg.CipherSuites, cfg.Curves = common.ciphers, common.curves
	cfg.Validation = common.validation
	cfg.RequireClientCertificate = ctx.GetRequireClientCertificate().GetValue()
	if cfg.RequireClientCertificate {
		// Accepted as Envoy accepts it, with no effect.
		switch {
		case cfg.Validation == nil:
			t.warnf(field(at, "require_client_certificate"), "has no effect without a validation_context (as in Envoy): no client certificate is asked for")
		case len(cfg.Validation.TrustedCA) == 0:
			t.warnf(field(at, "require_client_certificate"), "has no effect without a trusted_ca in the validation context (as in Envoy)")
		}
	}
	cfg.RequireSNI = ctx.GetRequireSni().GetValue()
	if !t.downstreamSession(ctx, at, &cfg) { // tls_session.go
		return cfg, false
	}
	if !t.versionRange(common, ctls.VersionTLS13, field(cat, "tls_params"), "") {
		return cfg, false
	}
	return cfg, true
}

// versionRange checks that tls_minimum_protocol_version is not above the maximum once the
// side's defaults (TLS 1.2 at least, at most maxDefault) fill what tls_params left unset;
// tlsParams has checked the case where both are set. transport/tls applies the defaults.
func (t *translator) versionRange(c tlsCommon, maxDefault uint16, paramsAt, note string) bool {
	lo, hi := c.minVersion, c.maxVersion
	if lo == 0 {
		lo = ctls.VersionTLS12
	}
	if hi == 0 {
		hi = maxDefault
	}
	if lo > hi {
		t.errorf(field(paramsAt, "tls_minimum_protocol_version"), "is above tls_maximum_protocol_version%s", note)
		return false
	}
	return true
}

// commonTLS translates what a CommonTlsContext says alike for both sides: certificates,
// ALPN, tls_params and the validation context.
func (t *translator) commonTLS(c *tlsv3.CommonTlsContext, at string) (tlsCommon, bool) {
	var out tlsCommon
	ok := true
	for i, tc := range c.GetTlsCertificates() {
		cert, cok := t.tlsCertificate(tc, index(field(at, "tls_certificates"), i))
		if !cok {
			ok = false
			continue
		}
		out.certs = append(out.certs, cert)
	}
	out.alpn = append([]string(nil), c.GetAlpnProtocols()...)
	for i, p := range out.alpn {
		if p == "" || len(p) > 255 {
			t.errorf(index(field(at, "alpn_protocols"), i), "an ALPN protocol name is 1 to 255 bytes")
			ok = false
		}
	}
	if p := c.GetTlsParams(); p != nil {
		if !t.tlsParams(p, field(at, "tls_params"), &out) {
			ok = false
		}
	}
	if c.GetValidationContextType() != nil {
		v, vok := t.commonValidation(c, at)
		if !vok {
			ok = false
		}
		out.validation = v
	}
	return out, ok
}

// Envoy's TlsProtocol values, as crypto/tls versions (TLS_AUTO is 0: the side's default).
var tlsVersions = map[tlsv3.TlsParameters_TlsProtocol]uint16{
	tlsv3.TlsParameters_TLSv1_0: ctls.VersionTLS10,
	tlsv3.TlsParameters_TLSv1_1: ctls.VersionTLS11,
	tlsv3.TlsParameters_TLSv1_2: ctls.VersionTLS12,
	tlsv3.TlsParameters_TLSv1_3: ctls.VersionTLS13,
}

// tlsParams translates tls_params.
func (t *translator) tlsParams(p *tlsv3.TlsParameters, at string, out *tlsCommon) bool {
	ok := true
	out.minVersion = tlsVersions[p.GetTlsMinimumProtocolVersion()]
	out.maxVersion = tlsVersions[p.GetTlsMaximumProtocolVersion()]
	if out.minVersion != 0 && out.maxVersion != 0 && out.minVersion > out.maxVersion {
		t.errorf(field(at, "tls_minimum_protocol_version"), "%s is above tls_maximum_protocol_version %s",
			p.GetTlsMinimumProtocolVersion(), p.GetTlsMaximumProtocolVersion())
		ok = false
	}
	if cs := p.GetCipherSuites(); len(cs) > 0 {
		ids, err := tls.ParseCipherSuites(cs)
		if err != nil {
			t.errorf(field(at, "cipher_suites"), "%v", err)
			ok = false
		}
		out.ciphers = ids
	}
	if cv := p.GetEcdhCurves(); len(cv) > 0 {
		ids, err := tls.ParseCurves(cv)
		if err != nil {
			t.errorf(field(at, "ecdh_curves"), "%v", err)
			ok = false
		}
		out.curves = ids
	}
	return ok
}

// tlsCertificate reads a TlsCertificate: its chain and key (PEM), checked against each
// other at load as Envoy does.
func (t *translator) tlsCertificate(tc *tlsv3.TlsCertificate, at string) (ctls.Certificate, bool) {
	if tc.GetCertificateChain() == nil {
		t.errorf(field(at, "certificate_chain"), "required")
		return ctls.Certificate{}, false
	}
	if tc.GetPrivateKey() == nil {
		t.errorf(field(at, "private_key"), "required")
		return ctls.Certificate{}, false
	}
	chainPEM, cp, ok1 := t.dataSource(tc.GetCertificateChain(), field(at, "certificate_chain"))
	keyPEM, kp, ok2 := t.dataSource(tc.GetPrivateKey(), field(at, "private_key"))
	if !ok1 || !ok2 {
		return ctls.Certificate{}, false
	}
	if !hasPEM(chainPEM, "CERTIFICATE") {
		t.errorf(cp, "no PEM certificate found")
		return ctls.Certificate{}, false
	}
	if !hasPEMKey(keyPEM) {
		t.errorf(kp, "no PEM private key found")
		return ctls.Certificate{}, false
	}
	cert, err := ctls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		t.errorf(at, "certificate_chain and private_key: %v", err)
		return ctls.Certificate{}, false
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			t.errorf(cp, "%v", err)
			return ctls.Certificate{}, false
		}
		cert.Leaf = leaf
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		t.warnf(cp, "the certificate %q expired on %s", leaf.Subject.String(), leaf.NotAfter.UTC().Format(time.RFC3339))
	} else if now.Before(leaf.NotBefore) {
		t.warnf(cp, "the certificate %q is not valid before %s", leaf.Subject.String(), leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if !t.ocspStaple(tc, at, &cert) { // tls_session.go
		return ctls.Certificate{}, false
	}
	return cert, true
}

// hasPEM reports whether b holds a PEM block of the given type.
func hasPEM(b []byte, typ string) bool {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false
		}
		if blk.Type == typ {
			return true
		}
	}
}

// hasPEMKey reports whether b holds a PEM private key of a kind crypto/tls reads.
func hasPEMKey(b []byte) bool {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false
		}
		switch blk.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return true
		}
	}
}
