package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"time"
)

// OCSPResponse makes a DER OCSP response (RFC 6960), signed by the CA with ECDSA-SHA256,
// saying "good" for serial, produced now, with nextUpdate next (zero: none).
func (ca *CA) OCSPResponse(serial *big.Int, next time.Time) ([]byte, error) {
	type certID struct {
		HashAlg  pkix.AlgorithmIdentifier
		NameHash []byte
		KeyHash  []byte
		Serial   *big.Int
	}
	type single struct {
		CertID     certID
		Status     asn1.RawValue
		ThisUpdate time.Time `asn1:"generalized"`
		NextUpdate time.Time `asn1:"generalized,explicit,tag:0,optional"`
	}
	type responseData struct {
		ResponderID asn1.RawValue
		ProducedAt  time.Time `asn1:"generalized"`
		Responses   []single
	}
	nameHash := sha1.Sum(ca.Cert.RawSubject)
	keyHash := sha1.Sum(ca.Cert.RawSubjectPublicKeyInfo) // a test responder needs no more
	keyID, err := asn1.Marshal(keyHash[:])
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	if !next.IsZero() {
		next = next.UTC().Truncate(time.Second)
	}
	tbs, err := asn1.Marshal(responseData{
		ResponderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: keyID},
		ProducedAt:  now,
		Responses: []single{{
			CertID: certID{
				HashAlg:  pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, Parameters: asn1.NullRawValue},
				NameHash: nameHash[:], KeyHash: keyHash[:], Serial: serial,
			},
			Status:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0}, // good
			ThisUpdate: now.Add(-2 * time.Hour),
			NextUpdate: next,
		}},
	})
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(tbs)
	sig, err := ca.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	basic, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		SigAlg    pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}},
		asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Status asn1.Enumerated
		Bytes  struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0"`
	}{Bytes: struct {
		Type     asn1.ObjectIdentifier
		Response []byte
	}{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}, basic}})
}

// Serial is a PEM or DER leaf's serial number, for OCSPResponse.
func Serial(der []byte) (*big.Int, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return c.SerialNumber, nil
}
