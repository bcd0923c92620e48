package tls

import (
	ctls "crypto/tls"
	"crypto/x509"
)

// Validation is a CertificateValidationContext translated: how a peer's certificate is
// checked, on either side.
type Validation struct {
	// TrustedCA is trusted_ca: the peer's chain must lead to one of these. nil: the chain
	// is not verified (Envoy without trusted_ca accepts any certificate, still subject to
	// the hash and SAN checks).
	TrustedCA *x509.CertPool
	// AcceptUntrusted is trust_chain_verification: ACCEPT_UNTRUSTED.
	AcceptUntrusted bool
	// AllowExpired is allow_expired_certificate.
	AllowExpired bool
}

// apply configures c to ask for (server) and verify the peer's certificate as v says,
// counting failures in st. Verification is done by Portico, not by crypto/tls, so that it
// follows Envoy's rules (an upstream's name is checked only against
// match_typed_subject_alt_names, never against the SNI).
func (v *Validation) apply(c *ctls.Config, server, requireClientCert bool, st *Stats) {
	if server {
		c.ClientAuth = ctls.RequestClientCert
		if requireClientCert {
			c.ClientAuth = ctls.RequireAnyClientCert
		}
	} else {
		c.InsecureSkipVerify = true // verified below, by Envoy's rules
	}
	c.VerifyConnection = func(cs ctls.ConnectionState) error {
		return v.verify(&cs, server, requireClientCert, st)
	}
}

// verify checks the peer's chain.
func (v *Validation) verify(cs *ctls.ConnectionState, server, requireClientCert bool, st *Stats) error {
	if len(cs.PeerCertificates) == 0 {
		if requireClientCert || !server {
			st.FailVerifyNoCert.Add(1)
			return errNoPeerCertificate
		}
		return nil
	}
	if v.TrustedCA != nil && !v.AcceptUntrusted {
		opts := x509.VerifyOptions{Roots: v.TrustedCA, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if server {
			opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			st.FailVerifyError.Add(1)
			return err
		}
	}
	return nil
}

var errNoPeerCertificate = errorString("peer did not return a certificate")

type errorString string

func (e errorString) Error() string { return string(e) }
