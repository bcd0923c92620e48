package tls

import (
	ctls "crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// OCSP stapling as Envoy's DownstreamTlsContext.ocsp_staple_policy describes it, on
// crypto/tls, which staples a Certificate's OCSPStaple whenever the client sends
// status_request. The policy is applied when the certificate is chosen (GetCertificate),
// with the client's extensions from ClientHelloInfo.Extensions:
//
//   - a client that did not ask for a staple gets the certificate, whatever the state of
//     its response (as in Envoy);
//   - LENIENT_STAPLING: an expired response is left out, the certificate still served;
//   - STRICT_STAPLING: a certificate without a response is served without a staple, one
//     whose response has expired fails the handshake;
//   - MUST_STAPLE (and any certificate carrying the OCSP must-staple extension, RFC
//     7633): every certificate must have a response at load time, and an expired one
//     fails the handshake.
//
// Envoy, when a certificate is unusable, tries the other certificates that match the
// SNI before it rejects the connection; Portico rejects at once when the one it chose is
// unusable (its choice already prefers the certificate type the client supports). A
// response without nextUpdate never expires (RFC 6960: newer information is always
// available, so this one is as good as any). At load, a response must be "successful"
// and name the certificate's serial number, as Envoy checks.

// staple is what NewDownstream learned of one certificate's OCSP response.
type staple struct {
	next time.Time // nextUpdate; zero: none
	must bool      // MUST_STAPLE, by policy or by the certificate's extension
	// bare is the certificate without its staple, served by LENIENT_STAPLING once the
	// response has expired.
	bare *ctls.Certificate
}

// statusRequestExt is the TLS status_request extension (RFC 6066).
const statusRequestExt = 5

var (
	oidOCSPBasic  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidTLSFeature = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}
)

// The OCSP response, as far as Portico reads it (RFC 6960, section 4.2.1).
type ocspResponse struct {
	Status asn1.Enumerated
	Bytes  ocspResponseBytes `asn1:"explicit,tag:0,optional"`
}

type ocspResponseBytes struct {
	Type     asn1.ObjectIdentifier
	Response []byte
}

type ocspBasicResponse struct {
	TBS       ocspResponseData
	SigAlg    pkix.AlgorithmIdentifier
	Signature asn1.BitString
	Certs     []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type ocspResponseData struct {
	Raw         asn1.RawContent
	Version     int `asn1:"optional,default:0,explicit,tag:0"`
	ResponderID asn1.RawValue
	ProducedAt  time.Time `asn1:"generalized"`
	Responses   []ocspSingleResponse
	Extensions  []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type ocspSingleResponse struct {
	CertID     ocspCertID
	CertStatus asn1.RawValue
	ThisUpdate time.Time        `asn1:"generalized"`
	NextUpdate time.Time        `asn1:"generalized,explicit,tag:0,optional"`
	Extensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type ocspCertID struct {
	HashAlg   pkix.AlgorithmIdentifier
	NameHash  []byte
	KeyHash   []byte
	SerialNum *big.Int
}

// ParseOCSPStaple checks an OCSP response (DER) for a certificate with the given serial
// number as Envoy does at load (successful, a basic response naming the serial) and
// returns its nextUpdate, zero when it has none. NewDownstream makes the same check; the
// configuration calls it first to report the field's own path.
func ParseOCSPStaple(der []byte, serial *big.Int) (nextUpdate time.Time, err error) {
	return parseStaple(der, serial)
}

func parseStaple(der []byte, serial *big.Int) (time.Time, error) {
	var r ocspResponse
	if rest, err := asn1.Unmarshal(der, &r); err != nil {
		return time.Time{}, fmt.Errorf("not an OCSP response: %v", err)
	} else if len(rest) > 0 {
		return time.Time{}, errors.New("trailing bytes after the OCSP response")
	}
	if r.Status != 0 {
		return time.Time{}, fmt.Errorf("OCSP response status %d is not successful", r.Status)
	}
	if !r.Bytes.Type.Equal(oidOCSPBasic) {
		return time.Time{}, fmt.Errorf("OCSP response type %v is not id-pkix-ocsp-basic", r.Bytes.Type)
	}
	var b ocspBasicResponse
	if _, err := asn1.Unmarshal(r.Bytes.Response, &b); err != nil {
		return time.Time{}, fmt.Errorf("OCSP basic response: %v", err)
	}
	for _, s := range b.TBS.Responses {
		if s.CertID.SerialNum != nil && s.CertID.SerialNum.Cmp(serial) == 0 {
			return s.NextUpdate, nil
		}
	}
	return time.Time{}, errors.New("OCSP response does not match its TLS certificate (serial number)")
}

// mustStapleExt reports whether a certificate carries the TLS feature extension with
// status_request (RFC 7633, "OCSP must-staple").
func mustStapleExt(c *ctls.Certificate) bool {
	for _, e := range c.Leaf.Extensions {
		if e.Id.Equal(oidTLSFeature) {
			var features []int
			if _, err := asn1.Unmarshal(e.Value, &features); err == nil && slices.Contains(features, statusRequestExt) {
				return true
			}
		}
	}
	return false
}

// newStaples checks the certificates' responses against the policy; it returns nil when
// no certificate has one (nothing to do per handshake).
func newStaples(certs []*ctls.Certificate, policy OCSPStaplePolicy) (map[*ctls.Certificate]*staple, error) {
	var out map[*ctls.Certificate]*staple
	for i, c := range certs {
		must := policy == MustStaple || mustStapleExt(c)
		if len(c.OCSPStaple) == 0 {
			if must {
				return nil, fmt.Errorf("tls_certificates[%d]: ocsp_staple is required (MUST_STAPLE or a must-staple certificate)", i)
			}
			continue
		}
		next, err := parseStaple(c.OCSPStaple, c.Leaf.SerialNumber)
		if err != nil {
			return nil, fmt.Errorf("tls_certificates[%d].ocsp_staple: %v", i, err)
		}
		bare := *c
		bare.OCSPStaple = nil
		if out == nil {
			out = map[*ctls.Certificate]*staple{}
		}
		out[c] = &staple{next: next, must: must, bare: &bare}
	}
	return out, nil
}

// getCertificate is the base Config's GetCertificate: Envoy's choice by SNI, then the
// staple policy. It marks the connection when the chosen certificate's staple will be
// sent, for ssl.ocsp_staple_responses.
//
// The requests, omitted and failed counters move here, when the certificate is chosen,
// as Envoy counts them (a TLS 1.2 resumption included, a TLS 1.3 one, which chooses no
// certificate, not).
func (f *Factory) getCertificate(h *ctls.ClientHelloInfo) (*ctls.Certificate, error) {
	c := f.certs.pick(h)
	if !slices.Contains(h.Extensions, statusRequestExt) {
		return c, nil
	}
	f.Stats.OCSPStapleRequest.Add(1)
	st := f.staples[c]
	if st == nil {
		f.Stats.OCSPStapleOmitted.Add(1)
		return c, nil
	}
	if !st.next.IsZero() && !time.Now().Before(st.next) {
		if f.ocspPolicy == LenientStapling && !st.must {
			f.Stats.OCSPStapleOmitted.Add(1)
			return st.bare, nil
		}
		f.Stats.OCSPStapleFailed.Add(1)
		return nil, fmt.Errorf("OCSP response of certificate %q expired at %v", c.Leaf.Subject.CommonName, st.next)
	}
	if m, ok := h.Conn.(*memConn); ok {
		m.stapled = true
	}
	return c, nil
}

// recordStaple counts a staple sent: the chosen certificate had one for a client that
// asked, and the handshake was a full one (a resumption sends no certificate; TLS 1.2
// chooses one anyway).
func (s *socket) recordStaple(cs *ctls.ConnectionState) {
	if s.mc.stapled && !cs.DidResume {
		s.f.Stats.OCSPStapleResponse.Add(1)
	}
}
