package tls

import (
	"bytes"
	"crypto/sha256"
	ctls "crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Validation is a CertificateValidationContext translated: how a peer's certificate is
// checked, on either side. The checks follow Envoy's default validator in order: the chain
// (when TrustedCA is set), then the subject alt names, then the certificate and SPKI
// hashes; the first that fails fails the handshake and counts its ssl.fail_verify_*.
type Validation struct {
	// TrustedCA is trusted_ca: the peer's chain must lead to one of these (any of them,
	// intermediates included, is a trust anchor: Envoy verifies with partial chains
	// allowed). Empty: the chain is not verified.
	TrustedCA []*x509.Certificate
	// AcceptUntrusted is trust_chain_verification: ACCEPT_UNTRUSTED: the checks run and
	// count their failures as usual (after a chain failure the others are skipped, as in
	// Envoy), but none fails the handshake.
	AcceptUntrusted bool
	// AllowExpired is allow_expired_certificate: a chain that verifies but for certificates
	// out of their validity period is accepted.
	AllowExpired bool
	// SANs are match_typed_subject_alt_names (or the deprecated match_subject_alt_names,
	// one matcher per type): at least one must match one of the leaf's names.
	SANs []SANMatcher
	// CertHashes are verify_certificate_hash (SHA-256 of the leaf's DER) and SPKIHashes
	// verify_certificate_spki (SHA-256 of its SubjectPublicKeyInfo): when either list is
	// given, the leaf must match an entry of one of them.
	CertHashes, SPKIHashes [][sha256.Size]byte
	// SuppressClientCAList is suppress_client_ca_list: a server does not name its
	// trusted CAs in its certificate request.
	SuppressClientCAList bool
	// CRLs are crl and the CRLs in trusted_ca's bundle: with any, the chain's
	// certificates must each be covered by a current CRL of their issuer that does not
	// list them (OpenSSL's X509_V_FLAG_CRL_CHECK_ALL, the trust anchor included); with
	// OnlyVerifyLeafCRL (only_verify_leaf_cert_crl) only the leaf is checked. A CRL
	// applies only with TrustedCA.
	CRLs              []*x509.RevocationList
	OnlyVerifyLeafCRL bool
	// MaxVerifyDepth is max_verify_depth: a client certificate's path may hold at most
	// this many certificates beyond the leaf, the trust anchor included (Envoy's
	// documented meaning). Envoy sets it on servers only: a client ignores it. nil: no
	// limit.
	MaxVerifyDepth *uint32
}

// SANType is SubjectAltNameMatcher.san_type.
type SANType uint8

// The subject alt name types Portico matches (OTHER_NAME is not one).
const (
	SANDNS SANType = iota + 1
	SANURI
	SANEmail
	SANIP
)

// SANMatcher is one SubjectAltNameMatcher.
type SANMatcher struct {
	Type    SANType
	Matcher StringMatcher
}

// StringKind is the match_pattern of a StringMatcher.
type StringKind uint8

// String match patterns.
const (
	StringExact StringKind = iota
	StringPrefix
	StringSuffix
	StringContains
	StringSafeRegex
)

// StringMatcher is Envoy's type.matcher.v3.StringMatcher, built by NewStringMatcher.
// IgnoreCase (ASCII) has no effect on a regex, as in Envoy.
type StringMatcher struct {
	Kind       StringKind
	Value      string
	IgnoreCase bool
	re         *regexp.Regexp
}

// NewStringMatcher builds a matcher; the error is a regex that does not compile (RE2
// syntax, matched against the whole name).
func NewStringMatcher(kind StringKind, value string, ignoreCase bool) (StringMatcher, error) {
	m := StringMatcher{Kind: kind, Value: value, IgnoreCase: ignoreCase}
	switch kind {
	case StringExact, StringPrefix, StringSuffix, StringContains:
	case StringSafeRegex:
		re, err := regexp.Compile(`^(?:` + value + `)$`)
		if err != nil {
			return m, err
		}
		m.re = re
	default:
		return m, fmt.Errorf("unknown string match kind %d", kind)
	}
	return m, nil
}

// Match reports whether s matches.
func (m *StringMatcher) Match(s string) bool {
	switch m.Kind {
	case StringExact:
		if m.IgnoreCase {
			return asciiEqualFold(s, m.Value)
		}
		return s == m.Value
	case StringPrefix:
		if m.IgnoreCase {
			return len(s) >= len(m.Value) && asciiEqualFold(s[:len(m.Value)], m.Value)
		}
		return strings.HasPrefix(s, m.Value)
	case StringSuffix:
		if m.IgnoreCase {
			return len(s) >= len(m.Value) && asciiEqualFold(s[len(s)-len(m.Value):], m.Value)
		}
		return strings.HasSuffix(s, m.Value)
	case StringContains:
		if m.IgnoreCase {
			return strings.Contains(asciiLower(s), asciiLower(m.Value))
		}
		return strings.Contains(s, m.Value)
	case StringSafeRegex:
		return m.re != nil && m.re.MatchString(s)
	}
	return false
}

// asciiEqualFold is Envoy's ASCII-only case folding (strings.EqualFold would also equate
// "K" and the Kelvin sign).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerByte(c)
	}
	return string(b)
}

// match reports whether the matcher accepts one of the names of its type. A DNS name with
// an exact matcher follows Envoy's DNS rules: case-insensitive, and a certificate's
// wildcard in the left-most label ("*.example.com", "foo*.example.com") matches one label.
func (m *SANMatcher) match(n *sanNames) bool {
	var names []string
	switch m.Type {
	case SANDNS:
		names = n.dns
	case SANURI:
		names = n.uri
	case SANEmail:
		names = n.email
	case SANIP:
		names = n.ip
	}
	for _, s := range names {
		if m.Type == SANDNS && m.Matcher.Kind == StringExact {
			if dnsNameMatch(m.Matcher.Value, s) {
				return true
			}
		} else if m.Matcher.Match(s) {
			return true
		}
	}
	return false
}

// dnsNameMatch is Envoy's: name (configured) against pattern (the certificate's).
func dnsNameMatch(name, pattern string) bool {
	name, pattern = asciiLower(name), asciiLower(pattern)
	if name == pattern {
		return true
	}
	pl, pr, ok1 := strings.Cut(pattern, ".")
	nl, nr, ok2 := strings.Cut(name, ".")
	if !ok1 || !ok2 {
		return false // both need more than one label
	}
	if !strings.Contains(pl, "*") || strings.Contains(pr, "*") || strings.HasPrefix(pl, "xn--") {
		return false
	}
	return nr == pr && labelWildcardMatch(nl, pl)
}

func labelWildcardMatch(label, pattern string) bool {
	if pattern == "*" {
		return true
	}
	if strings.Count(pattern, "*") != 1 {
		return false
	}
	before, after, _ := strings.Cut(pattern, "*")
	return len(pattern) <= len(label)+1 && strings.HasPrefix(label, before) && strings.HasSuffix(label, after)
}

// sanNames are a certificate's subject alt names as Envoy prints them: DNS, URI and email
// as written, IP addresses in their text form.
type sanNames struct {
	dns, uri, email, ip []string
}

var oidSubjectAltName = []int{2, 5, 29, 17}

// certSANs reads the subjectAltName extension itself rather than through x509's parsed
// fields, which rewrite URIs and fold IPv4-mapped addresses.
func certSANs(c *x509.Certificate) *sanNames {
	n := &sanNames{}
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq []asn1.RawValue
		if rest, err := asn1.Unmarshal(e.Value, &seq); err != nil || len(rest) > 0 {
			return n
		}
		for _, g := range seq {
			if g.Class != asn1.ClassContextSpecific {
				continue
			}
			switch g.Tag {
			case 1:
				n.email = append(n.email, string(g.Bytes))
			case 2:
				n.dns = append(n.dns, string(g.Bytes))
			case 6:
				n.uri = append(n.uri, string(g.Bytes))
			case 7:
				if a, ok := netip.AddrFromSlice(g.Bytes); ok {
					n.ip = append(n.ip, a.String())
				}
			}
		}
	}
	return n
}

// ParseTrustedCA reads a PEM bundle of CA certificates (trusted_ca). A bundle with no
// certificate, or one that does not parse, is an error, as in Envoy. PEM blocks of other
// types (a CRL in the same file, as Envoy allows) are skipped.
func ParseTrustedCA(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the bundle: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, errors.New("not a PEM bundle of certificates")
		}
		return nil, errors.New("no CA certificate in the bundle")
	}
	return certs, nil
}

// ParseCertHash reads a verify_certificate_hash entry: 64 hex digits, or 95 characters of
// colon-separated pairs ("AB:CD:..."), either case.
func ParseCertHash(s string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	h := s
	if len(h) == 95 {
		h = strings.ReplaceAll(h, ":", "")
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return out, fmt.Errorf("invalid hex-encoded SHA-256 %q", s)
	}
	copy(out[:], b)
	return out, nil
}

// ParseSPKIHash reads a verify_certificate_spki entry: the base64 (standard, padded) of a
// SHA-256.
func ParseSPKIHash(s string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return out, fmt.Errorf("invalid base64-encoded SHA-256 %q", s)
	}
	copy(out[:], b)
	return out, nil
}

// checks reports whether v checks the peer beyond its chain; Envoy then requires a
// certificate (unless ACCEPT_UNTRUSTED).
func (v *Validation) checks() bool {
	return len(v.SANs) > 0 || len(v.CertHashes) > 0 || len(v.SPKIHashes) > 0
}

// requests reports whether a server with v asks clients for a certificate (Envoy's
// SSL_VERIFY_PEER): with anything to check, or ACCEPT_UNTRUSTED.
func (v *Validation) requests() bool {
	return len(v.TrustedCA) > 0 || v.AcceptUntrusted || v.checks()
}

// requires reports whether a server with v fails a client without a certificate (Envoy's
// SSL_VERIFY_FAIL_IF_NO_PEER_CERT): require_client_certificate counts only with a
// trusted_ca, and SAN or hash checks require one by themselves unless ACCEPT_UNTRUSTED.
func (v *Validation) requires(requireClientCert bool) bool {
	return (len(v.TrustedCA) > 0 && requireClientCert) || (v.checks() && !v.AcceptUntrusted)
}

// apply configures c to ask for (server) and verify the peer's certificate as v says,
// counting failures in st. Verification is done by Portico, not by crypto/tls, so that it
// follows Envoy's rules (an upstream's name is checked only against
// match_typed_subject_alt_names, never against the SNI). A nil v (no validation context)
// asks for nothing and verifies nothing, as Envoy; require_client_certificate alone has
// no effect there either.
func (v *Validation) apply(c *ctls.Config, server, requireClientCert bool, st *Stats) {
	if !server {
		c.InsecureSkipVerify = true // verified below, by Envoy's rules
	}
	if v == nil {
		return
	}
	if server {
		if !v.requests() {
			return
		}
		// Never RequireAnyClientCert: crypto/tls would refuse a client without one
		// itself, before VerifyConnection could count it.
		c.ClientAuth = ctls.RequestClientCert
	} else if !v.requests() {
		return
	}
	roots := v.roots()
	if server && roots != nil && !v.SuppressClientCAList {
		// Only named in the CertificateRequest, as Envoy does: Go verifies nothing with
		// ClientCAs under RequestClientCert.
		c.ClientCAs = roots
	}
	require := v.requires(requireClientCert)
	c.VerifyConnection = func(cs ctls.ConnectionState) error {
		return v.verify(cs.PeerCertificates, server, require, roots, st, time.Now())
	}
}

// roots is the pool of TrustedCA, nil without one.
func (v *Validation) roots() *x509.CertPool {
	if len(v.TrustedCA) == 0 {
		return nil
	}
	p := x509.NewCertPool()
	for _, c := range v.TrustedCA {
		if v.AllowExpired {
			c = timeless(c)
		}
		p.AddCert(c)
	}
	return p
}

// timeless is a copy of c valid at any time. crypto/x509 has no flag to skip the validity
// check as OpenSSL does for allow_expired_certificate; it checks the parsed NotBefore and
// NotAfter fields but signatures over the raw TBSCertificate, so widening the fields of a
// copy ignores the periods and nothing else.
func timeless(c *x509.Certificate) *x509.Certificate {
	w := *c
	w.NotBefore, w.NotAfter = time.Time{}, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	return &w
}

// VerifyError is a handshake failed by the validation context. Envoy counts such failures
// only in their ssl.fail_verify_* counter, not in ssl.connection_error.
type VerifyError struct {
	Reason string // "no certificate", "chain", "san", "hash"
	Err    error
}

func (e *VerifyError) Error() string {
	if e.Err != nil {
		return "certificate verification failed (" + e.Reason + "): " + e.Err.Error()
	}
	return "certificate verification failed (" + e.Reason + ")"
}

func (e *VerifyError) Unwrap() error { return e.Err }

// isVerifyError reports whether a handshake error is the validation context's.
func isVerifyError(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve)
}

var errNoPeerCertificate = errorString("peer did not return a certificate")

// errorString is a constant error (config.go's errNoSNI is one too).
type errorString string

func (e errorString) Error() string { return string(e) }

// verify checks the peer's chain as Envoy's default validator does, at time now; roots is
// TrustedCA's pool (v.roots()).
func (v *Validation) verify(certs []*x509.Certificate, server, require bool, roots *x509.CertPool, st *Stats, now time.Time) error {
	if len(certs) == 0 {
		if require {
			st.FailVerifyNoCert.Add(1)
			return &VerifyError{Reason: "no certificate", Err: errNoPeerCertificate}
		}
		return nil // ssl.no_certificate counts it with the handshake
	}
	leaf := certs[0]
	if roots != nil {
		if err := v.verifyChain(certs, server, roots, now); err != nil {
			st.FailVerifyError.Add(1)
			if v.AcceptUntrusted {
				return nil // Envoy stops here: no SAN or hash check on an untrusted chain
			}
			return &VerifyError{Reason: "chain", Err: err}
		}
	}
	if len(v.SANs) > 0 {
		names := certSANs(leaf)
		ok := false
		for i := range v.SANs {
			if v.SANs[i].match(names) {
				ok = true
				break
			}
		}
		if !ok {
			st.FailVerifySAN.Add(1)
			if v.AcceptUntrusted {
				return nil
			}
			return &VerifyError{Reason: "san", Err: errors.New("no subject alt name matched")}
		}
	}
	if len(v.CertHashes) > 0 || len(v.SPKIHashes) > 0 {
		if !hashIn(sha256.Sum256(leaf.Raw), v.CertHashes) && !hashIn(sha256.Sum256(leaf.RawSubjectPublicKeyInfo), v.SPKIHashes) {
			st.FailVerifyCertHash.Add(1)
			if v.AcceptUntrusted {
				return nil
			}
			return &VerifyError{Reason: "hash", Err: errors.New("neither the certificate hash nor the SPKI hash matched")}
		}
	}
	return nil
}

func hashIn(h [sha256.Size]byte, l [][sha256.Size]byte) bool {
	for i := range l {
		if l[i] == h {
			return true
		}
	}
	return false
}

// verifyChain verifies the chain to roots for the peer's role (a client certificate on a
// server, a server certificate on a client); with AllowExpired, at any time.
func (v *Validation) verifyChain(certs []*x509.Certificate, server bool, roots *x509.CertPool, now time.Time) error {
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), CurrentTime: now}
	leaf := certs[0]
	if v.AllowExpired {
		leaf = timeless(leaf)
	}
	for _, c := range certs[1:] {
		if v.AllowExpired {
			c = timeless(c)
		}
		opts.Intermediates.AddCert(c)
	}
	if server {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	chains, err := leaf.Verify(opts)
	depth := v.MaxVerifyDepth
	if !server {
		depth = nil
	}
	if err != nil || (len(v.CRLs) == 0 && depth == nil) {
		return err
	}
	var first error
	for _, ch := range chains {
		if depth != nil && len(ch)-1 > int(*depth) {
			err = fmt.Errorf("certificate chain too long: %d certificates beyond the leaf, max_verify_depth %d", len(ch)-1, *depth)
		} else if err = v.checkCRLs(ch, now); err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// checkCRLs checks a verified chain against the CRLs as OpenSSL does: each certificate
// (the leaf only, with OnlyVerifyLeafCRL) needs a CRL of its issuer signed by the issuer
// (the next certificate of the chain; the anchor's own key for a self-signed anchor, none
// for one that is not), current at now, that does not list its serial number.
func (v *Validation) checkCRLs(chain []*x509.Certificate, now time.Time) error {
	if len(v.CRLs) == 0 {
		return nil
	}
	last := len(chain) - 1
	if v.OnlyVerifyLeafCRL {
		last = 0
	}
	for i := 0; i <= last; i++ {
		c := chain[i]
		var issuer *x509.Certificate
		switch {
		case i+1 < len(chain):
			issuer = chain[i+1]
		case bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil:
			issuer = c
		default:
			return fmt.Errorf("certificate %d of the chain (%s): unable to get CRL issuer certificate", i, PeerSubject(c))
		}
		var crl *x509.RevocationList
		stale := false
		for _, l := range v.CRLs {
			if !bytes.Equal(l.RawIssuer, c.RawIssuer) || l.CheckSignatureFrom(issuer) != nil {
				continue
			}
			if now.Before(l.ThisUpdate) || (!l.NextUpdate.IsZero() && now.After(l.NextUpdate)) {
				stale = true
				continue
			}
			if crl == nil || l.ThisUpdate.After(crl.ThisUpdate) {
				crl = l
			}
		}
		if crl == nil {
			if stale {
				return fmt.Errorf("certificate %d of the chain (%s): CRL has expired or is not yet valid", i, PeerSubject(c))
			}
			return fmt.Errorf("certificate %d of the chain (%s): unable to get certificate CRL", i, PeerSubject(c))
		}
		for _, r := range crl.RevokedCertificateEntries {
			if r.SerialNumber != nil && r.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return fmt.Errorf("certificate %d of the chain (%s): certificate revoked", i, PeerSubject(c))
			}
		}
	}
	return nil
}

// ParseCRLs reads the CRLs ("X509 CRL" blocks) of a PEM file, skipping any other block
// (trusted_ca bundles may hold CRLs beside the certificates, as Envoy reads them). A CRL
// that does not parse is an error; none at all is an empty list.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		if b.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %v", len(out)+1, err)
		}
		out = append(out, l)
	}
}

// PeerSubject formats a certificate's subject as Envoy does for %DOWNSTREAM_PEER_SUBJECT%
// and the x-forwarded-client-cert Subject: RFC 2253 as OpenSSL's X509_NAME_print_ex with
// XN_FLAG_RFC2253 prints it. The last RDN comes first, values within a multi-valued RDN are
// joined by "+" (also last first), attributes go by OpenSSL's short names ("CN",
// "emailAddress"), unknown ones by dotted OID with the value as "#" and the hex of its DER;
// ",+\"\\<>;" are escaped with a backslash, as are a leading "#" or space and a trailing
// space, and control characters and every byte of a non-ASCII character as "\XX". x509's
// pkix.Name.String differs in names (emailAddress, UID, DC ...), in escaping and in
// order within an RDN.
func PeerSubject(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	return formatName(cert.RawSubject)
}

// PeerIssuer is PeerSubject for the issuer (%DOWNSTREAM_PEER_ISSUER%).
func PeerIssuer(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	return formatName(cert.RawIssuer)
}

type atv struct {
	oid   asn1.ObjectIdentifier
	value asn1.RawValue
	rdn   int
}

func formatName(der []byte) string {
	var rdns []asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &rdns); err != nil || len(rest) > 0 {
		return ""
	}
	var flat []atv
	for i, set := range rdns {
		rest := set.Bytes
		for len(rest) > 0 {
			var a struct {
				Type  asn1.ObjectIdentifier
				Value asn1.RawValue
			}
			var err error
			if rest, err = asn1.Unmarshal(rest, &a); err != nil {
				return ""
			}
			flat = append(flat, atv{oid: a.Type, value: a.Value, rdn: i})
		}
	}
	var b strings.Builder
	for i := len(flat) - 1; i >= 0; i-- {
		a := &flat[i]
		if i < len(flat)-1 {
			if flat[i+1].rdn == a.rdn {
				b.WriteByte('+')
			} else {
				b.WriteByte(',')
			}
		}
		name, known := shortName(a.oid)
		b.WriteString(name)
		b.WriteByte('=')
		writeValue(&b, &a.value, known)
	}
	return b.String()
}

// shortNames are OpenSSL's short names for the attributes found in certificate names.
var shortNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.4": "SN", "2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L",
	"2.5.4.8": "ST", "2.5.4.9": "street", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "title",
	"2.5.4.13": "description", "2.5.4.15": "businessCategory", "2.5.4.16": "postalAddress",
	"2.5.4.17": "postalCode", "2.5.4.18": "postOfficeBox", "2.5.4.41": "name", "2.5.4.42": "GN",
	"2.5.4.43": "initials", "2.5.4.44": "generationQualifier", "2.5.4.45": "x500UniqueIdentifier",
	"2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym", "2.5.4.72": "role",
	"2.5.4.97":             "organizationIdentifier",
	"1.2.840.113549.1.9.1": "emailAddress", "1.2.840.113549.1.9.2": "unstructuredName",
	"0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.25": "DC",
	"1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL", "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
	"1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}

func shortName(oid asn1.ObjectIdentifier) (string, bool) {
	s := oid.String()
	if n, ok := shortNames[s]; ok {
		return n, true
	}
	return s, false
}

// writeValue prints a value as ASN1_STRFLGS_RFC2253 does: character strings as text,
// anything else (and any value of an unknown attribute) as "#" and its DER in hex.
func writeValue(b *strings.Builder, v *asn1.RawValue, known bool) {
	var s string
	text := known && v.Class == asn1.ClassUniversal
	if text {
		switch v.Tag {
		case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagNumericString, asn1.TagIA5String,
			asn1.TagUTCTime, asn1.TagGeneralizedTime, 26: // VisibleString
			s = string(v.Bytes)
		case asn1.TagT61String: // one byte a character: Latin-1
			r := make([]rune, len(v.Bytes))
			for i, c := range v.Bytes {
				r[i] = rune(c)
			}
			s = string(r)
		case asn1.TagBMPString:
			s = decodeUCS(v.Bytes, 2)
		case 28: // UniversalString
			s = decodeUCS(v.Bytes, 4)
		default:
			text = false
		}
	}
	if !text {
		b.WriteByte('#')
		const digits = "0123456789ABCDEF"
		for _, c := range v.FullBytes {
			b.WriteByte(digits[c>>4])
			b.WriteByte(digits[c&15])
		}
		return
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80 || c < 0x20 || c == 0x7f:
			fmt.Fprintf(b, "\\%02X", c)
		case strings.IndexByte(",+\"\\<>;", c) >= 0,
			i == 0 && (c == '#' || c == ' '),
			i == len(s)-1 && c == ' ':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

// decodeUCS reads big-endian code units of n bytes (BMPString, UniversalString).
func decodeUCS(p []byte, n int) string {
	var r []rune
	for len(p) >= n {
		var c rune
		for _, x := range p[:n] {
			c = c<<8 | rune(x)
		}
		r = append(r, c)
		p = p[n:]
	}
	return string(r)
}

// PeerURISANs and PeerDNSSANs are a certificate's URI and DNS subject alt names as it
// holds them (Envoy's %DOWNSTREAM_PEER_URI_SAN% and %DOWNSTREAM_PEER_DNS_SAN% join them
// with ","; x-forwarded-client-cert has one URI= or DNS= element each).
func PeerURISANs(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	return certSANs(cert).uri
}

// PeerDNSSANs: see PeerURISANs.
func PeerDNSSANs(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	return certSANs(cert).dns
}

// PeerFingerprint256 is the lowercase hex SHA-256 of the certificate's DER (Envoy's
// %DOWNSTREAM_PEER_FINGERPRINT_256% and x-forwarded-client-cert's Hash).
func PeerFingerprint256(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	h := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(h[:])
}
