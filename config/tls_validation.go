package config

import (
	"errors"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/portico-proxy/portico/http/route"
	"github.com/portico-proxy/portico/transport/tls"
)

// commonValidation translates a CommonTlsContext's validation_context_type, on either
// side: validation_context, or combined_validation_context's default_validation_context
// (its SDS part is refused by the subset check: Portico has no SDS). nil with true: no
// validation context, the peer's certificate is neither asked for nor verified.
func (t *translator) commonValidation(ctc *tlsv3.CommonTlsContext, at string) (*tls.Validation, bool) {
	switch v := ctc.GetValidationContextType().(type) {
	case nil:
		return nil, true
	case *tlsv3.CommonTlsContext_ValidationContext:
		return t.validationContext(v.ValidationContext, field(at, "validation_context"))
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		cat := field(at, "combined_validation_context")
		// Envoy checks the merged context: the trusted_ca may come from the SDS part, so
		// the checks that need one are not made on the default part alone.
		val, ok := t.certValidation(v.CombinedValidationContext.GetDefaultValidationContext(), field(cat, "default_validation_context"), true)
		if v.CombinedValidationContext.GetValidationContextSdsSecretConfig() != nil {
			// Reported by the subset check already (then this is silent); kept so that the
			// refusal does not depend on the table.
			t.unsupported(field(cat, "validation_context_sds_secret_config"), "", "SDS secrets are not supported by Portico: put the whole validation context in validation_context")
			ok = false
		}
		return val, ok
	default:
		t.unsupported(at, "", "this validation_context_type is not supported by Portico (validation_context only)")
		return nil, false
	}
}

// validationContext translates a CertificateValidationContext (Envoy's default certificate
// validator), with Envoy's load-time errors: a trusted_ca that is empty or not a PEM
// bundle of certificates; a CRL, SAN matchers or allow_expired_certificate without
// trusted_ca; a hash that is not a SHA-256. What each field does is in docs/config.md, "TLS certificate
// validation".
func (t *translator) validationContext(vc *tlsv3.CertificateValidationContext, at string) (*tls.Validation, bool) {
	return t.certValidation(vc, at, false)
}

// certValidation is validationContext; partial: vc is a combined context's default part,
// whose trusted_ca may come from elsewhere.
func (t *translator) certValidation(vc *tlsv3.CertificateValidationContext, at string, partial bool) (*tls.Validation, bool) {
	v := &tls.Validation{}
	ok := true
	if ds := vc.GetTrustedCa(); ds != nil {
		tat := field(at, "trusted_ca")
		data, p, read := t.dataSource(ds, tat)
		switch {
		case !read:
			ok = false
		case len(data) == 0:
			t.errorf(p, "the trusted CA bundle is empty")
			ok = false
		default:
			certs, err := tls.ParseTrustedCA(data)
			if err != nil {
				t.errorf(p, "failed to load trusted CA certificates: %v", err)
				ok = false
			}
			v.TrustedCA = certs
			// CRLs in the bundle turn CRL checking on, as in Envoy.
			crls, err := tls.ParseCRLs(data)
			if err != nil {
				t.errorf(p, "failed to load the CRLs of the trusted CA bundle: %v", err)
				ok = false
			}
			v.CRLs = crls
		}
	}
	hasCA := vc.GetTrustedCa() != nil || partial // an unreadable one is reported above, not again below
	if ds := vc.GetCrl(); ds != nil {
		cat := field(at, "crl")
		data, p, read := t.dataSource(ds, cat)
		switch {
		case !read:
			ok = false
		case len(data) == 0:
			// Envoy reads an empty crl as none.
		case !hasCA:
			t.errorf(cat, "a CRL cannot be checked without trusted_ca")
			ok = false
		default:
			crls, err := tls.ParseCRLs(data)
			if err == nil && len(crls) == 0 {
				// Envoy would check against no CRL and so fail every handshake.
				err = errors.New("no CRL (PEM \"X509 CRL\" block) in it")
			}
			if err != nil {
				t.errorf(p, "failed to load CRL: %v", err)
				ok = false
			}
			v.CRLs = append(v.CRLs, crls...)
		}
	}
	v.OnlyVerifyLeafCRL = vc.GetOnlyVerifyLeafCertCrl()
	if d := vc.GetMaxVerifyDepth(); d != nil {
		depth := d.GetValue()
		v.MaxVerifyDepth = &depth
	}
	v.AcceptUntrusted = vc.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED
	v.SuppressClientCAList = vc.GetSuppressClientCaList()
	if vc.GetAllowExpiredCertificate() {
		if !hasCA {
			t.errorf(field(at, "allow_expired_certificate"), "certificate validity period is always ignored without trusted_ca")
			ok = false
		}
		v.AllowExpired = true
	}

	// SAN matchers: the typed ones, else the deprecated untyped ones, each as a matcher
	// for DNS, URI, email and IP address (Envoy's expansion; never other names).
	//lint:ignore SA1019 deprecated but read, as Envoy still does
	untyped := vc.GetMatchSubjectAltNames()
	if typed := vc.GetMatchTypedSubjectAltNames(); len(typed) > 0 {
		sat := field(at, "match_typed_subject_alt_names")
		if len(untyped) > 0 {
			t.warnf(field(at, "match_subject_alt_names"), "ignored: match_typed_subject_alt_names is also given (as in Envoy)")
		}
		for i, m := range typed {
			mat := index(sat, i)
			var typ tls.SANType
			switch m.GetSanType() {
			case tlsv3.SubjectAltNameMatcher_DNS:
				typ = tls.SANDNS
			case tlsv3.SubjectAltNameMatcher_URI:
				typ = tls.SANURI
			case tlsv3.SubjectAltNameMatcher_EMAIL:
				typ = tls.SANEmail
			case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
				typ = tls.SANIP
			default:
				t.unsupported(field(mat, "san_type"), m.GetSanType().String(), "%s is not supported by Portico (DNS, URI, EMAIL, IP_ADDRESS)", m.GetSanType())
				ok = false
				continue
			}
			sm, smOK := t.tlsStringMatcher(m.GetMatcher(), field(mat, "matcher"))
			if !smOK {
				ok = false
				continue
			}
			v.SANs = append(v.SANs, tls.SANMatcher{Type: typ, Matcher: sm})
		}
		if !hasCA {
			t.errorf(sat, "SAN-based verification of peer certificates without trusted_ca is insecure and not allowed")
			ok = false
		}
	} else if len(untyped) > 0 {
		uat := field(at, "match_subject_alt_names")
		for i, m := range untyped {
			sm, smOK := t.tlsStringMatcher(m, index(uat, i))
			if !smOK {
				ok = false
				continue
			}
			for _, typ := range [...]tls.SANType{tls.SANDNS, tls.SANURI, tls.SANEmail, tls.SANIP} {
				v.SANs = append(v.SANs, tls.SANMatcher{Type: typ, Matcher: sm})
			}
		}
		if !hasCA {
			t.errorf(uat, "SAN-based verification of peer certificates without trusted_ca is insecure and not allowed")
			ok = false
		}
	}

	for i, s := range vc.GetVerifyCertificateHash() {
		h, err := tls.ParseCertHash(s)
		if err != nil {
			t.errorf(index(field(at, "verify_certificate_hash"), i), "%v", err)
			ok = false
			continue
		}
		v.CertHashes = append(v.CertHashes, h)
	}
	for i, s := range vc.GetVerifyCertificateSpki() {
		h, err := tls.ParseSPKIHash(s)
		if err != nil {
			t.errorf(index(field(at, "verify_certificate_spki"), i), "%v", err)
			ok = false
			continue
		}
		v.SPKIHashes = append(v.SPKIHashes, h)
	}
	return v, ok
}

// tlsStringMatcher translates a StringMatcher as routes do (stringMatcher), for the TLS
// package's own matcher type; a regex that does not compile is an error at its regex.
func (t *translator) tlsStringMatcher(m *matcherv3.StringMatcher, at string) (tls.StringMatcher, bool) {
	rm := stringMatcher(m)
	var kind tls.StringKind
	kat := at
	switch rm.Kind {
	case route.StringExact:
		kind, kat = tls.StringExact, field(at, "exact")
	case route.StringPrefix:
		kind, kat = tls.StringPrefix, field(at, "prefix")
	case route.StringSuffix:
		kind, kat = tls.StringSuffix, field(at, "suffix")
	case route.StringContains:
		kind, kat = tls.StringContains, field(at, "contains")
	case route.StringSafeRegex:
		kind, kat = tls.StringSafeRegex, field(field(at, "safe_regex"), "regex")
	}
	sm, err := tls.NewStringMatcher(kind, rm.Value, rm.IgnoreCase)
	if err != nil {
		t.errorf(kat, "%v", err)
		return sm, false
	}
	return sm, true
}
