package config

import (
	ctls "crypto/tls"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/portico-proxy/portico/transport/tls"
)

// Envoy's OCSP staple policies, as transport/tls's.
var ocspPolicies = map[tlsv3.DownstreamTlsContext_OcspStaplePolicy]tls.OCSPStaplePolicy{
	tlsv3.DownstreamTlsContext_LENIENT_STAPLING: tls.LenientStapling,
	tlsv3.DownstreamTlsContext_STRICT_STAPLING:  tls.StrictStapling,
	tlsv3.DownstreamTlsContext_MUST_STAPLE:      tls.MustStaple,
}

// downstreamSession translates a DownstreamTlsContext's session resumption settings and
// ocsp_staple_policy onto cfg (what they mean on crypto/tls: transport/tls/session.go and
// ocsp.go).
func (t *translator) downstreamSession(ctx *tlsv3.DownstreamTlsContext, at string, cfg *tls.DownstreamConfig) bool {
	ok := true
	switch k := ctx.GetSessionTicketKeysType().(type) {
	case *tlsv3.DownstreamTlsContext_SessionTicketKeys:
		kat := field(field(at, "session_ticket_keys"), "keys")
		for i, ds := range k.SessionTicketKeys.GetKeys() {
			b, p, dok := t.dataSource(ds, index(kat, i))
			if !dok {
				ok = false
				continue
			}
			if len(b) != tls.EnvoyTicketKeyLen {
				t.errorf(p, "a session ticket key is %d bytes (16 of name, 32 of HMAC secret, 32 of AES key), this one has %d",
					tls.EnvoyTicketKeyLen, len(b))
				ok = false
				continue
			}
			cfg.SessionTicketKeys = append(cfg.SessionTicketKeys, b)
		}
	case *tlsv3.DownstreamTlsContext_SessionTicketKeysSdsSecretConfig:
		// Not in the supported table, so the subset check has refused it already; this
		// is the reason, should it get here.
		if p := field(at, "session_ticket_keys_sds_secret_config"); !t.c.reported(p) {
			t.unsupported(p, "", "SDS is not supported by Portico: give the keys in session_ticket_keys (inline_bytes, filename or environment_variable)")
		}
		ok = false
	case *tlsv3.DownstreamTlsContext_DisableStatelessSessionResumption:
		cfg.DisableStatelessSessionResumption = k.DisableStatelessSessionResumption
	}
	// Portico never resumes by session ID (crypto/tls has no server session cache), which
	// is what disable_stateful_session_resumption asks for; without it, Envoy would,
	// and a client that can only resume that way does a full handshake here instead.
	// Nothing else about the traffic differs, so the default is not worth a warning.
	cfg.DisableStatefulSessionResumption = ctx.GetDisableStatefulSessionResumption()
	if d := ctx.GetSessionTimeout(); d != nil {
		// Envoy takes whole seconds (PGV bounds it to [0, 2^32) s); 0s expires TLS 1.2
		// sessions at once, which DownstreamConfig spells as anything under a second.
		cfg.SessionTimeout = time.Duration(d.GetSeconds()) * time.Second
		if cfg.SessionTimeout == 0 {
			cfg.SessionTimeout = time.Nanosecond
		}
	}
	cfg.OCSPStaplePolicy = ocspPolicies[ctx.GetOcspStaplePolicy()]
	if cfg.OCSPStaplePolicy == tls.MustStaple {
		cat := field(field(at, "common_tls_context"), "tls_certificates")
		for i, tc := range ctx.GetCommonTlsContext().GetTlsCertificates() {
			if tc.GetOcspStaple() == nil {
				t.errorf(index(cat, i), "ocsp_staple is required by ocsp_staple_policy MUST_STAPLE")
				ok = false
			}
		}
	}
	return ok
}

// ocspStaple reads a TlsCertificate's ocsp_staple (a DER OCSP response) into cert, whose
// Leaf is parsed, and checks it against the certificate as Envoy does at load. Envoy
// refuses it as inline_string (binary data); so does Portico.
func (t *translator) ocspStaple(tc *tlsv3.TlsCertificate, at string, cert *ctls.Certificate) bool {
	ds := tc.GetOcspStaple()
	if ds == nil {
		return true
	}
	p := field(at, "ocsp_staple")
	if _, isString := ds.GetSpecifier().(*corev3.DataSource_InlineString); isString {
		t.errorf(field(p, "inline_string"), "an OCSP response is binary (DER): give it as inline_bytes or filename")
		return false
	}
	b, dp, ok := t.dataSource(ds, p)
	if !ok {
		return false
	}
	next, err := tls.ParseOCSPStaple(b, cert.Leaf.SerialNumber)
	if err != nil {
		t.errorf(dp, "%v", err)
		return false
	}
	if !next.IsZero() && time.Now().After(next) {
		t.warnf(dp, "the OCSP response expired on %s (LENIENT_STAPLING serves the certificate without it, the other policies refuse clients that ask for it)",
			next.UTC().Format(time.RFC3339))
	}
	cert.OCSPStaple = b
	return true
}
