package tls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	ctls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/internal/testpki"
)

// ocspFor makes a DER OCSP response, signed by the CA, saying "good" for the leaf's
// serial (or serial, when not nil) until next (zero: no nextUpdate).
func (ca *testCA) ocspFor(t *testing.T, leaf ctls.Certificate, next time.Time, serial *big.Int) []byte {
	t.Helper()
	if serial == nil {
		serial = leaf.Leaf.SerialNumber
	}
	der, err := (&testpki.CA{Cert: ca.cert, Key: ca.key}).OCSPResponse(serial, next)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func withStaple(c ctls.Certificate, der []byte) ctls.Certificate {
	c.OCSPStaple = der
	return c
}

// TestOCSPStaple: a valid staple reaches a crypto/tls client (which always asks) on TLS
// 1.2 and 1.3 and openssl s_client -status, and is counted in ssl.ocsp_staple_responses;
// a client that does not ask, and a TLS 1.2 resumption, get none and count nothing.
func TestOCSPStaple(t *testing.T) {
	ca := newTestCA(t)
	leaf := ca.leaf(t, "srv", false, "srv.test")
	der := ca.ocspFor(t, leaf, time.Now().Add(time.Hour), nil)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{withStaple(leaf, der)}})
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		if got := conn.ConnectionState().OCSPResponse; !bytes.Equal(got, der) {
			t.Fatalf("%s: staple %d bytes, want %d", ctls.VersionName(v), len(got), len(der))
		}
		roundTrip(t, conn)
		conn.Close()
	}
	waitFor(t, func() bool { return r.f.Stats.Handshake.Load() == 2 })
	if n := r.f.Stats.OCSPStapleResponse.Load(); n != 2 {
		t.Fatalf("ocsp_staple_responses %d, want 2", n)
	}
	c := clientConfig(ca, ctls.VersionTLS12)
	resumes(t, r, c)
	if !resumes(t, r, c) {
		t.Fatal("no resumption")
	}
	waitFor(t, func() bool { return r.f.Stats.Handshake.Load() == 4 })
	if n := r.f.Stats.OCSPStapleResponse.Load(); n != 3 {
		t.Fatalf("ocsp_staple_responses %d after a full handshake and a resumption, want 3", n)
	}

	bin := needTool(t, "openssl")
	out := sClientEcho(t, bin, r.addr, "-status")
	if !strings.Contains(out, "OCSP Response Status: successful") || !strings.Contains(out, "Cert Status: good") {
		t.Fatalf("s_client -status:\n%s", out)
	}
	waitFor(t, func() bool { return r.f.Stats.OCSPStapleResponse.Load() == 4 })
	out = sClientEcho(t, bin, r.addr)
	if strings.Contains(out, "OCSP Response Status") {
		t.Fatalf("staple sent to a client that did not ask:\n%s", out)
	}
	waitFor(t, func() bool { return r.f.Stats.Handshake.Load() == 6 })
	if n := r.f.Stats.OCSPStapleResponse.Load(); n != 4 {
		t.Fatalf("ocsp_staple_responses %d, want 4", n)
	}
	// Requests count every ClientHello with status_request that chose a certificate (the
	// TLS 1.2 resumption included, as in Envoy).
	st := &r.f.Stats
	if rq, om, fl := st.OCSPStapleRequest.Load(), st.OCSPStapleOmitted.Load(), st.OCSPStapleFailed.Load(); rq != 5 || om != 0 || fl != 0 {
		t.Fatalf("requests %d omitted %d failed %d, want 5 0 0", rq, om, fl)
	}
}

// TestOCSPStaplePolicy: an expired response is left out under LENIENT_STAPLING and
// fails the handshake under STRICT_STAPLING and MUST_STAPLE, for a client that asks; a
// client that does not ask is served under every policy.
func TestOCSPStaplePolicy(t *testing.T) {
	bin := needTool(t, "openssl")
	ca := newTestCA(t)
	leaf := ca.leaf(t, "srv", false, "srv.test")
	expired := withStaple(leaf, ca.ocspFor(t, leaf, time.Now().Add(-time.Hour), nil))
	for _, tc := range []struct {
		name   string
		policy OCSPStaplePolicy
		fails  bool
	}{
		{"lenient", LenientStapling, false},
		{"strict", StrictStapling, true},
		{"must", MustStaple, true},
	} {
		r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{expired}, OCSPStaplePolicy: tc.policy})
		conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool})
		if tc.fails {
			if err == nil {
				t.Fatalf("%s: handshake with an expired staple succeeded", tc.name)
			}
		} else {
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(conn.ConnectionState().OCSPResponse) != 0 {
				t.Fatalf("%s: expired staple sent", tc.name)
			}
			roundTrip(t, conn)
			conn.Close()
		}
		sClientEcho(t, bin, r.addr) // no status_request: served
		st := &r.f.Stats
		if n := st.OCSPStapleResponse.Load(); n != 0 {
			t.Fatalf("%s: ocsp_staple_responses %d", tc.name, n)
		}
		var om, fl uint64 = 1, 0
		if tc.fails {
			om, fl = 0, 1
		}
		if st.OCSPStapleRequest.Load() != 1 || st.OCSPStapleOmitted.Load() != om || st.OCSPStapleFailed.Load() != fl {
			t.Fatalf("%s: requests %d omitted %d failed %d", tc.name, st.OCSPStapleRequest.Load(), st.OCSPStapleOmitted.Load(), st.OCSPStapleFailed.Load())
		}
	}
	// STRICT_STAPLING serves a certificate without a response, without a staple.
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{leaf}, OCSPStaplePolicy: StrictStapling})
	conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := r.f.Stats.OCSPStapleOmitted.Load(); n != 1 {
		t.Fatalf("omitted %d", n)
	}
}

// TestOCSPStapleLoad: the checks NewDownstream makes, as Envoy makes them at load.
func TestOCSPStapleLoad(t *testing.T) {
	ca := newTestCA(t)
	leaf := ca.leaf(t, "srv", false, "srv.test")
	for _, tc := range []struct {
		name, want string
		cert       ctls.Certificate
		policy     OCSPStaplePolicy
	}{
		{"missing", "ocsp_staple is required", leaf, MustStaple},
		{"other serial", "does not match its TLS certificate",
			withStaple(leaf, ca.ocspFor(t, leaf, time.Time{}, big.NewInt(12345))), LenientStapling},
		{"garbage", "not an OCSP response", withStaple(leaf, []byte("not der")), LenientStapling},
		{"unsuccessful", "not successful", withStaple(leaf, []byte{0x30, 0x03, 0x0a, 0x01, 0x01}), LenientStapling},
	} {
		_, err := NewDownstream(DownstreamConfig{Certificates: []ctls.Certificate{tc.cert}, OCSPStaplePolicy: tc.policy})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "tls_certificates[0]") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// No nextUpdate: never expires, accepted under MUST_STAPLE.
	if _, err := NewDownstream(DownstreamConfig{Certificates: []ctls.Certificate{
		withStaple(leaf, ca.ocspFor(t, leaf, time.Time{}, nil))}, OCSPStaplePolicy: MustStaple}); err != nil {
		t.Fatal(err)
	}
}

// TestMustStapleCertificate: a certificate with the TLS feature extension for
// status_request (RFC 7633) needs a response whatever the policy.
func TestMustStapleCertificate(t *testing.T) {
	ca := newTestCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	features, _ := asn1.Marshal([]int{statusRequestExt})
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "must"},
		DNSNames: []string{"must.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{{Id: oidTLSFeature, Value: features}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	cert := ctls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	if _, err := NewDownstream(DownstreamConfig{Certificates: []ctls.Certificate{cert}}); err == nil ||
		!strings.Contains(err.Error(), "ocsp_staple is required") {
		t.Fatalf("must-staple certificate without a response: %v", err)
	}
	// With an expired response, LENIENT_STAPLING acts as MUST_STAPLE for it.
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{withStaple(cert, ca.ocspFor(t, cert, time.Now().Add(-time.Minute), nil))}})
	if _, err := r.dial(t, &ctls.Config{ServerName: "must.test", RootCAs: ca.pool}); err == nil {
		t.Fatal("an expired staple of a must-staple certificate was left out instead of failing")
	}
}
