package tls

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	ctls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issue signs a certificate made from tmpl (serial, key and issuer filled in) with a new
// ECDSA P-256 key. Without NotBefore/NotAfter it is valid from an hour ago for a day; without
// ExtKeyUsage it is a client certificate.
func (ca *testCA) issue(t testing.TB, tmpl x509.Certificate) ctls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if tmpl.ExtKeyUsage == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return ctls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) client(t testing.TB, cn string, dns ...string) ctls.Certificate {
	return ca.issue(t, x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns})
}

// mtlsRig is a TLS echo server with a validation context, and its CA.
type mtlsRig struct {
	*rig
	ca *testCA
}

func startMTLS(t *testing.T, v *Validation, require bool) *mtlsRig {
	t.Helper()
	ca := newTestCA(t)
	if v.TrustedCA == nil && v.CertHashes == nil && v.SPKIHashes == nil {
		v.TrustedCA = []*x509.Certificate{ca.cert}
	}
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		Validation: v, RequireClientCertificate: require})
	return &mtlsRig{rig: r, ca: ca}
}

// try handshakes with the client certificate (nil: none) at TLS version vers and sends a
// round trip: under TLS 1.3 a client learns that the server refused its certificate only
// when it reads.
func (r *mtlsRig) try(t *testing.T, cert *ctls.Certificate, vers uint16) error {
	t.Helper()
	c := &ctls.Config{ServerName: "srv.test", RootCAs: r.ca.pool, MinVersion: vers, MaxVersion: vers}
	if cert != nil {
		c.Certificates = []ctls.Certificate{*cert}
	}
	conn, err := r.dial(t, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(conn, b); err != nil {
		return err
	}
	if string(b) != "ping" {
		t.Fatalf("echo %q", b)
	}
	return nil
}

// counters is a snapshot of the counters these tests look at.
type counters struct{ handshake, noCert, failNoCert, failError, failSAN, failHash, connError uint64 }

func snap(s *Stats) counters {
	return counters{s.Handshake.Load(), s.NoCertificate.Load(), s.FailVerifyNoCert.Load(), s.FailVerifyError.Load(),
		s.FailVerifySAN.Load(), s.FailVerifyCertHash.Load(), s.ConnectionError.Load()}
}

// expect waits for the server's counters to reach want (they move on its worker, after
// the client has returned).
func expect(t *testing.T, s *Stats, want counters) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if snap(s) == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("counters %+v, want %+v", snap(s), want)
}

var bothVersions = []uint16{ctls.VersionTLS12, ctls.VersionTLS13}

// TestMTLSRequired: require_client_certificate with a trusted_ca: a good client certificate
// passes; none fails with fail_verify_no_cert, one of another CA with fail_verify_error,
// neither counted as connection_error (Envoy counts those apart).
func TestMTLSRequired(t *testing.T) {
	r := startMTLS(t, &Validation{}, true)
	good := r.ca.client(t, "client")
	other := newTestCA(t).client(t, "intruder")
	var want counters
	for _, v := range bothVersions {
		if err := r.try(t, &good, v); err != nil {
			t.Fatalf("%x good certificate: %v", v, err)
		}
		want.handshake++
		expect(t, &r.f.Stats, want)
		if err := r.try(t, nil, v); err == nil {
			t.Fatalf("%x: accepted without a certificate", v)
		}
		want.failNoCert++
		expect(t, &r.f.Stats, want)
		if err := r.try(t, &other, v); err == nil {
			t.Fatalf("%x: accepted a certificate of another CA", v)
		}
		want.failError++
		expect(t, &r.f.Stats, want)
	}
}

// TestMTLSOptional: a validation context without require_client_certificate asks for a
// certificate, accepts a client without one (ssl.no_certificate) and verifies one given.
func TestMTLSOptional(t *testing.T) {
	r := startMTLS(t, &Validation{}, false)
	good := r.ca.client(t, "client")
	other := newTestCA(t).client(t, "intruder")
	var want counters
	for _, v := range bothVersions {
		if err := r.try(t, nil, v); err != nil {
			t.Fatalf("%x without a certificate: %v", v, err)
		}
		want.handshake++
		want.noCert++
		expect(t, &r.f.Stats, want)
		if err := r.try(t, &good, v); err != nil {
			t.Fatalf("%x good certificate: %v", v, err)
		}
		want.handshake++
		expect(t, &r.f.Stats, want)
		if err := r.try(t, &other, v); err == nil {
			t.Fatalf("%x: accepted a certificate of another CA", v)
		}
		want.failError++
		expect(t, &r.f.Stats, want)
	}
}

// TestRequireWithoutValidation: as in Envoy, require_client_certificate without a
// validation context is accepted and asks for no certificate.
func TestRequireWithoutValidation(t *testing.T) {
	ca := newTestCA(t)
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		RequireClientCertificate: true})
	m := &mtlsRig{rig: r, ca: ca}
	requested := false
	c := &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool,
		GetClientCertificate: func(*ctls.CertificateRequestInfo) (*ctls.Certificate, error) {
			requested = true
			return &ctls.Certificate{}, nil
		}}
	conn, err := m.dial(t, c)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	conn.Close()
	if requested {
		t.Fatal("the server asked for a client certificate")
	}
}

// TestMTLSSubjectAltNames: a SAN mismatch fails with fail_verify_san; Envoy's DNS wildcard
// rule (the certificate's "*.example.com" matches "foo.example.com") holds end to end.
func TestMTLSSubjectAltNames(t *testing.T) {
	m, _ := NewStringMatcher(StringExact, "foo.example.com", false)
	r := startMTLS(t, &Validation{SANs: []SANMatcher{{Type: SANDNS, Matcher: m}}}, false)
	wild := r.ca.client(t, "wild", "*.example.com")
	wrong := r.ca.client(t, "wrong", "foo.example.org")
	var want counters
	for _, v := range bothVersions {
		if err := r.try(t, &wild, v); err != nil {
			t.Fatalf("%x wildcard: %v", v, err)
		}
		want.handshake++
		expect(t, &r.f.Stats, want)
		if err := r.try(t, &wrong, v); err == nil {
			t.Fatalf("%x: accepted a SAN mismatch", v)
		}
		want.failSAN++
		expect(t, &r.f.Stats, want)
		// SAN checks require a certificate even without require_client_certificate.
		if err := r.try(t, nil, v); err == nil {
			t.Fatalf("%x: accepted no certificate under a SAN matcher", v)
		}
		want.failNoCert++
		expect(t, &r.f.Stats, want)
	}
}

// TestMTLSHashes: verify_certificate_hash and verify_certificate_spki, alone (no
// trusted_ca) and together (either may match).
func TestMTLSHashes(t *testing.T) {
	ca := newTestCA(t)
	a, b := ca.client(t, "a"), ca.client(t, "b")
	certHash := sha256.Sum256(a.Leaf.Raw)
	spki := sha256.Sum256(b.Leaf.RawSubjectPublicKeyInfo)
	for _, tc := range []struct {
		name     string
		v        Validation
		aOK, bOK bool
	}{
		{"hash", Validation{CertHashes: [][32]byte{certHash}}, true, false},
		{"spki", Validation{SPKIHashes: [][32]byte{spki}}, false, true},
		{"either", Validation{CertHashes: [][32]byte{certHash}, SPKIHashes: [][32]byte{spki}}, true, true},
	} {
		r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}, Validation: &tc.v})
		m := &mtlsRig{rig: r, ca: ca}
		var want counters
		for _, c := range []struct {
			cert *ctls.Certificate
			ok   bool
		}{{&a, tc.aOK}, {&b, tc.bOK}} {
			err := m.try(t, c.cert, ctls.VersionTLS13)
			if (err == nil) != c.ok {
				t.Fatalf("%s %s: err %v, want ok=%v", tc.name, c.cert.Leaf.Subject.CommonName, err, c.ok)
			}
			if c.ok {
				want.handshake++
			} else {
				want.failHash++
			}
			expect(t, &r.f.Stats, want)
		}
	}
}

// TestMTLSExpired: an expired client certificate fails the chain check, and passes with
// allow_expired_certificate; one of another CA still fails then.
func TestMTLSExpired(t *testing.T) {
	for _, allow := range []bool{false, true} {
		r := startMTLS(t, &Validation{AllowExpired: allow}, true)
		expired := r.ca.issue(t, x509.Certificate{Subject: pkix.Name{CommonName: "old"},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
		err := r.try(t, &expired, ctls.VersionTLS13)
		if (err == nil) != allow {
			t.Fatalf("allow_expired %v: err %v", allow, err)
		}
		want := counters{handshake: 1}
		if !allow {
			want = counters{failError: 1}
		}
		expect(t, &r.f.Stats, want)
		other := newTestCA(t).issue(t, x509.Certificate{Subject: pkix.Name{CommonName: "old"},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
		if err := r.try(t, &other, ctls.VersionTLS13); err == nil {
			t.Fatalf("allow_expired %v: accepted an expired certificate of another CA", allow)
		}
	}
}

// TestMTLSAcceptUntrusted: ACCEPT_UNTRUSTED lets a certificate of another CA through (and
// a client without one), still counting the failure.
func TestMTLSAcceptUntrusted(t *testing.T) {
	r := startMTLS(t, &Validation{AcceptUntrusted: true}, false)
	other := newTestCA(t).client(t, "stranger")
	if err := r.try(t, &other, ctls.VersionTLS13); err != nil {
		t.Fatal(err)
	}
	expect(t, &r.f.Stats, counters{handshake: 1, failError: 1})
	if err := r.try(t, nil, ctls.VersionTLS12); err != nil {
		t.Fatal(err)
	}
	expect(t, &r.f.Stats, counters{handshake: 2, noCert: 1, failError: 1})
}

// TestVerifyOrderAndCounters runs verify itself over Envoy's order: chain, then SAN, then
// hashes; the first failure is the one counted.
func TestVerifyOrderAndCounters(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	good := ca.client(t, "good", "a.test")
	bad := other.client(t, "bad", "b.test")
	san := func(s string) SANMatcher {
		m, _ := NewStringMatcher(StringExact, s, false)
		return SANMatcher{Type: SANDNS, Matcher: m}
	}
	wrongHash := [32]byte{1}
	for _, tc := range []struct {
		name string
		v    Validation
		cert ctls.Certificate
		want string // "" passes, else the counter
	}{
		{"chain first", Validation{TrustedCA: []*x509.Certificate{ca.cert}, SANs: []SANMatcher{san("x.test")}, CertHashes: [][32]byte{wrongHash}}, bad, "error"},
		{"san before hash", Validation{TrustedCA: []*x509.Certificate{ca.cert}, SANs: []SANMatcher{san("x.test")}, CertHashes: [][32]byte{wrongHash}}, good, "san"},
		{"hash last", Validation{TrustedCA: []*x509.Certificate{ca.cert}, SANs: []SANMatcher{san("a.test")}, CertHashes: [][32]byte{wrongHash}}, good, "hash"},
		{"all pass", Validation{TrustedCA: []*x509.Certificate{ca.cert}, SANs: []SANMatcher{san("x.test"), san("a.test")}, CertHashes: [][32]byte{sha256.Sum256(good.Leaf.Raw)}}, good, ""},
		{"untrusted san", Validation{TrustedCA: []*x509.Certificate{ca.cert}, AcceptUntrusted: true, SANs: []SANMatcher{san("x.test")}}, good, "san-pass"},
	} {
		var st Stats
		err := tc.v.verify([]*x509.Certificate{tc.cert.Leaf}, true, true, tc.v.roots(), &st, time.Now())
		got := ""
		switch {
		case st.FailVerifyError.Load() == 1:
			got = "error"
		case st.FailVerifySAN.Load() == 1:
			got = "san"
		case st.FailVerifyCertHash.Load() == 1:
			got = "hash"
		}
		want := tc.want
		if want == "san-pass" {
			want = "san"
			if err != nil {
				t.Errorf("%s: ACCEPT_UNTRUSTED failed: %v", tc.name, err)
			}
		} else if (err == nil) != (want == "") {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if got != want {
			t.Errorf("%s: counted %q, want %q", tc.name, got, want)
		}
		if err != nil && !isVerifyError(err) {
			t.Errorf("%s: %v is not a VerifyError", tc.name, err)
		}
	}
}

// TestSANMatchers: every SAN type and match pattern against a certificate with one name of
// each type.
func TestSANMatchers(t *testing.T) {
	ca := newTestCA(t)
	u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/Frontend")
	cert := ca.issue(t, x509.Certificate{DNSNames: []string{"*.Example.com", "api.test"}, URIs: []*url.URL{u},
		EmailAddresses: []string{"ops@example.com"}, IPAddresses: []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("2001:db8::1")}})
	names := certSANs(cert.Leaf)
	mk := func(typ SANType, k StringKind, v string, ic bool) SANMatcher {
		m, err := NewStringMatcher(k, v, ic)
		if err != nil {
			t.Fatal(err)
		}
		return SANMatcher{Type: typ, Matcher: m}
	}
	for _, tc := range []struct {
		m    SANMatcher
		want bool
	}{
		{mk(SANDNS, StringExact, "foo.example.com", false), true},  // wildcard, any case
		{mk(SANDNS, StringExact, "a.b.example.com", false), false}, // one label only
		{mk(SANDNS, StringExact, "example.com", false), false},
		{mk(SANDNS, StringExact, "API.test", false), true},
		{mk(SANDNS, StringSuffix, ".example.com", false), false}, // not exact: raw string, case-sensitive
		{mk(SANDNS, StringSuffix, ".example.com", true), true},
		{mk(SANDNS, StringPrefix, "api.", false), true},
		{mk(SANURI, StringPrefix, "spiffe://cluster.local/", false), true},
		{mk(SANURI, StringExact, "spiffe://cluster.local/ns/default/sa/frontend", false), false},
		{mk(SANURI, StringExact, "spiffe://cluster.local/ns/default/sa/frontend", true), true},
		{mk(SANURI, StringContains, "/SA/", true), true},
		{mk(SANURI, StringSafeRegex, `spiffe://[^/]+/ns/default/sa/\w+`, false), true},
		{mk(SANURI, StringSafeRegex, `cluster\.local`, false), false}, // a full match
		{mk(SANEmail, StringSuffix, "@example.com", false), true},
		{mk(SANEmail, StringExact, "api.test", false), false}, // not the DNS name
		{mk(SANIP, StringExact, "10.1.2.3", false), true},
		{mk(SANIP, StringExact, "2001:db8::1", false), true},
		{mk(SANIP, StringPrefix, "10.1.", false), true},
		{mk(SANDNS, StringExact, "10.1.2.3", false), false},
	} {
		if got := tc.m.match(names); got != tc.want {
			t.Errorf("type %d %d %q ignore_case %v: %v, want %v", tc.m.Type, tc.m.Matcher.Kind, tc.m.Matcher.Value, tc.m.Matcher.IgnoreCase, got, tc.want)
		}
	}
	if _, err := NewStringMatcher(StringSafeRegex, "(", false); err == nil {
		t.Error("a bad regex compiled")
	}
}

func TestDNSNameMatch(t *testing.T) {
	for _, tc := range []struct {
		name, pattern string
		want          bool
	}{
		{"foo.example.com", "foo.example.com", true},
		{"FOO.example.com", "foo.EXAMPLE.com", true},
		{"foo.example.com", "*.example.com", true},
		{"foo.bar.example.com", "*.example.com", false},
		{"example.com", "*.example.com", false},
		{"foo.example.com", "f*.example.com", true},
		{"foo.example.com", "*o.example.com", true},
		{"foo.example.com", "b*.example.com", false},
		{"foo.example.com", "*.*.com", false},
		{"xn--foo.example.com", "xn--*.example.com", false},
		{"foo", "*", false},
		{"foo.example.com", "*.example.com.", false},
	} {
		if got := dnsNameMatch(tc.name, tc.pattern); got != tc.want {
			t.Errorf("dnsNameMatch(%q, %q) = %v", tc.name, tc.pattern, got)
		}
	}
}

func TestParseHashes(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	h := hex.EncodeToString(sum[:])
	var colons []string
	for i := 0; i < len(h); i += 2 {
		colons = append(colons, strings.ToUpper(h[i:i+2]))
	}
	for _, s := range []string{h, strings.ToUpper(h), strings.Join(colons, ":")} {
		got, err := ParseCertHash(s)
		if err != nil || got != sum {
			t.Errorf("ParseCertHash(%q): %x %v", s, got, err)
		}
	}
	for _, s := range []string{h[:62], h + "00", strings.Join(colons, "-"), "zz" + h[2:], h[:30] + ":" + h[30:]} {
		if _, err := ParseCertHash(s); err == nil {
			t.Errorf("ParseCertHash(%q) accepted", s)
		}
	}
	b := base64.StdEncoding.EncodeToString(sum[:])
	if got, err := ParseSPKIHash(b); err != nil || got != sum {
		t.Errorf("ParseSPKIHash: %v", err)
	}
	for _, s := range []string{base64.StdEncoding.EncodeToString(sum[:31]), "!" + b[1:], base64.RawStdEncoding.EncodeToString(sum[:])} {
		if _, err := ParseSPKIHash(s); err == nil {
			t.Errorf("ParseSPKIHash(%q) accepted", s)
		}
	}
}

func TestParseTrustedCA(t *testing.T) {
	a, b := newTestCA(t), newTestCA(t)
	certs, err := ParseTrustedCA(append(append([]byte("# comment\n"), a.pem...), b.pem...))
	if err != nil || len(certs) != 2 || !certs[1].Equal(b.cert) {
		t.Fatalf("two CAs: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("not pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}})} {
		if _, err := ParseTrustedCA(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestUpstreamValidation: a client configured by apply (as the upstream socket is)
// verifies the backend's chain against trusted_ca and its SANs, never its name against
// the SNI, and counts failures.
func TestUpstreamValidation(t *testing.T) {
	ca := newTestCA(t)
	srv := ca.leaf(t, "backend", false, "backend.internal")
	ln, err := ctls.Listen("tcp", "127.0.0.1:0", &ctls.Config{Certificates: []ctls.Certificate{srv}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.(*ctls.Conn).Handshake()
			}()
		}
	}()
	m, _ := NewStringMatcher(StringExact, "backend.internal", false)
	wrongSAN, _ := NewStringMatcher(StringExact, "other.internal", false)
	for _, tc := range []struct {
		name string
		v    *Validation
		ok   bool
		fail func(*Stats) uint64
	}{
		{"none", nil, true, nil},
		{"chain", &Validation{TrustedCA: []*x509.Certificate{ca.cert}}, true, nil},
		{"chain+san", &Validation{TrustedCA: []*x509.Certificate{ca.cert}, SANs: []SANMatcher{{Type: SANDNS, Matcher: m}}}, true, nil},
		{"other CA", &Validation{TrustedCA: []*x509.Certificate{newTestCA(t).cert}}, false, func(s *Stats) uint64 { return s.FailVerifyError.Load() }},
		{"san mismatch", &Validation{TrustedCA: []*x509.Certificate{ca.cert}, SANs: []SANMatcher{{Type: SANDNS, Matcher: wrongSAN}}}, false, func(s *Stats) uint64 { return s.FailVerifySAN.Load() }},
		{"spki", &Validation{SPKIHashes: [][32]byte{sha256.Sum256(srv.Leaf.RawSubjectPublicKeyInfo)}}, true, nil},
		{"hash mismatch", &Validation{CertHashes: [][32]byte{{}}}, false, func(s *Stats) uint64 { return s.FailVerifyCertHash.Load() }},
	} {
		var st Stats
		c := &ctls.Config{ServerName: "sni-that-is-not-in-the-certificate.test"}
		tc.v.apply(c, false, false, &st)
		nc, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		err = ctls.Client(nc, c).Handshake()
		nc.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s: handshake %v", tc.name, err)
		}
		if tc.fail != nil && tc.fail(&st) != 1 {
			t.Errorf("%s: failure not counted: %+v", tc.name, snap(&st))
		}
		if err != nil && !isVerifyError(err) {
			t.Errorf("%s: %v is not a VerifyError", tc.name, err)
		}
	}
}

// TestOpenSSLClientCertificate: openssl s_client with -cert/-key passes a required client
// certificate check; without one, or with one of another CA, the server refuses it.
func TestOpenSSLClientCertificate(t *testing.T) {
	bin := needTool(t, "openssl")
	r := startMTLS(t, &Validation{}, true)
	dir := t.TempDir()
	write := func(name string, c ctls.Certificate) (string, string) {
		cf, kf := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
		os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		return cf, kf
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, r.ca.pem, 0o600)
	goodC, goodK := write("good", r.ca.client(t, "client"))
	otherC, otherK := write("other", newTestCA(t).client(t, "intruder"))
	var want counters
	for _, vers := range []string{"-tls1_2", "-tls1_3"} {
		out, err := sClient(t, bin, r.addr, vers, caFile, "-cert", goodC, "-key", goodK)
		if err != nil || !strings.Contains(out, "hello over tls") {
			t.Fatalf("%s good certificate: %v\n%s", vers, err, out)
		}
		want.handshake++
		expect(t, &r.f.Stats, want)
		if out, err := sClient(t, bin, r.addr, vers, caFile); err == nil && strings.Contains(out, "hello over tls") {
			t.Fatalf("%s: echo without a certificate:\n%s", vers, out)
		}
		want.failNoCert++
		expect(t, &r.f.Stats, want)
		if out, err := sClient(t, bin, r.addr, vers, caFile, "-cert", otherC, "-key", otherK); err == nil && strings.Contains(out, "hello over tls") {
			t.Fatalf("%s: echo with another CA's certificate:\n%s", vers, out)
		}
		want.failError++
		expect(t, &r.f.Stats, want)
	}
}

// sClient runs openssl s_client, sends a line and returns what it printed once the line
// came back or the connection ended. stdin stays open until then: at its end s_client
// would close before the echo.
func sClient(t *testing.T, bin, addr, vers, caFile string, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"s_client", "-connect", addr, vers, "-servername", "srv.test", "-CAfile", caFile,
		"-verify_return_error", "-quiet", "-no_ign_eof"}, extra...)
	cmd := command(t, bin, args...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("hello over tls\n"))
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "hello over tls" {
			break
		}
	}
	stdin.Close()
	go io.Copy(io.Discard, stdout)
	err := cmd.Wait()
	return out.String(), err
}

// TestPeerSubject compares PeerSubject with `openssl x509 -subject -nameopt RFC2253` on
// names with escapes, multi-valued RDNs, non-ASCII text, emailAddress, DC, UID and an OID
// OpenSSL does not know.
func TestPeerSubject(t *testing.T) {
	bin := needTool(t, "openssl")
	ca := newTestCA(t)
	for _, name := range []pkix.Name{
		{CommonName: "client"},
		{CommonName: "L. Eagle", Organization: []string{"Sue, Grabbit and Runn"}, Country: []string{"GB"}},
		{CommonName: "#hash ", OrganizationalUnit: []string{" lead", "a+b", `q"u<o>t;e\s`}, Province: []string{"Île-de-France"},
			Locality: []string{"Zürich"}, StreetAddress: []string{"1 Main St"}, PostalCode: []string{"8001"}, SerialNumber: "42"},
		{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: []int{0, 9, 2342, 19200300, 100, 1, 25}, Value: "example"},
			{Type: []int{0, 9, 2342, 19200300, 100, 1, 25}, Value: "com"},
			{Type: []int{0, 9, 2342, 19200300, 100, 1, 1}, Value: "jdoe"},
			{Type: []int{1, 2, 840, 113549, 1, 9, 1}, Value: "jdoe@example.com"},
			{Type: []int{1, 2, 3, 4, 5}, Value: "private"},
			{Type: []int{2, 5, 4, 3}, Value: "multi"},
		}},
	} {
		cert := ca.issue(t, x509.Certificate{Subject: name})
		f := filepath.Join(t.TempDir(), "c.pem")
		os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
		out, err := command(t, bin, "x509", "-in", f, "-noout", "-subject", "-nameopt", "RFC2253").Output()
		if err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSuffix(strings.TrimPrefix(string(out), "subject="), "\n")
		if got := PeerSubject(cert.Leaf); got != want {
			t.Errorf("PeerSubject\n got %s\nwant %s", got, want)
		}
	}
	if PeerSubject(nil) != "" {
		t.Error("nil certificate")
	}
}

// TestPeerSubjectMultiValued: an RDN of two values prints them joined by "+", the last
// first, as OpenSSL does with XN_FLAG_DN_REV.
func TestPeerSubjectMultiValued(t *testing.T) {
	bin := needTool(t, "openssl")
	ca := newTestCA(t)
	// subject = C=US, (OU=Sales + CN=J. Smith), O=Widget\, Inc.
	rdn := pkix.RDNSequence{
		{{Type: []int{2, 5, 4, 6}, Value: "US"}},
		{{Type: []int{2, 5, 4, 10}, Value: "Widget, Inc."}},
		{{Type: []int{2, 5, 4, 11}, Value: "Sales"}, {Type: []int{2, 5, 4, 3}, Value: "J. Smith"}},
	}
	raw, err := asn1.Marshal(rdn)
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.issue(t, x509.Certificate{RawSubject: raw})
	f := filepath.Join(t.TempDir(), "c.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	out, err := command(t, bin, "x509", "-in", f, "-noout", "-subject", "-nameopt", "RFC2253").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(strings.TrimPrefix(string(out), "subject="), "\n")
	if got := PeerSubject(cert.Leaf); got != want {
		t.Errorf("PeerSubject\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(want, "+") {
		t.Errorf("openssl printed no multi-valued RDN: %s", want)
	}
}

// command is a tool's run, killed (by its own PID, through the context) if it outlives
// 30 seconds or the test.
func command(t *testing.T, bin string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, bin, args...)
}

// newCRLCA makes a CA that may sign CRLs, under parent (nil: self-signed).
func newCRLCA(t *testing.T, cn string, parent *testCA) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	signer, signKey := tmpl, any(key)
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// crl makes a CRL of ca revoking serials, current from thisUpdate for a day.
func (ca *testCA) crl(t *testing.T, thisUpdate time.Time, serials ...*big.Int) *x509.RevocationList {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(24 * time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseCRLs(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	if err != nil || len(l) != 1 {
		t.Fatalf("CRL: %v", err)
	}
	return l[0]
}

// TestCRL: revoked, unrevoked, missing and stale CRLs; CRL_CHECK_ALL needs a CRL for each
// issuer of the chain, only_verify_leaf_cert_crl only the leaf's.
func TestCRL(t *testing.T) {
	root := newCRLCA(t, "root", nil)
	inter := newCRLCA(t, "intermediate", root)
	leaf := inter.client(t, "leaf")
	direct := root.client(t, "direct")
	now := time.Now()
	fresh := now.Add(-time.Hour)
	for _, tc := range []struct {
		name     string
		cert     ctls.Certificate
		crls     []*x509.RevocationList
		leafOnly bool
		ok       bool
	}{
		{"not revoked", direct, []*x509.RevocationList{root.crl(t, fresh, big.NewInt(99))}, false, true},
		{"revoked", direct, []*x509.RevocationList{root.crl(t, fresh, direct.Leaf.SerialNumber)}, false, false},
		{"no CRL of the issuer", direct, []*x509.RevocationList{inter.crl(t, fresh)}, false, false},
		{"expired CRL", direct, []*x509.RevocationList{root.crl(t, now.Add(-48*time.Hour))}, false, false},
		{"CRL not yet valid", direct, []*x509.RevocationList{root.crl(t, now.Add(time.Hour))}, false, false},
		{"newest of two", direct, []*x509.RevocationList{root.crl(t, now.Add(-2*time.Hour)), root.crl(t, fresh, direct.Leaf.SerialNumber)}, false, false},
		{"chain: root CRL only", leaf, []*x509.RevocationList{root.crl(t, fresh)}, false, false},
		{"chain: both", leaf, []*x509.RevocationList{root.crl(t, fresh), inter.crl(t, fresh)}, false, true},
		{"chain: intermediate revoked", leaf, []*x509.RevocationList{root.crl(t, fresh, inter.cert.SerialNumber), inter.crl(t, fresh)}, false, false},
		{"leaf only: intermediate CRL", leaf, []*x509.RevocationList{inter.crl(t, fresh)}, true, true},
		{"leaf only: intermediate revoked is not looked at", leaf, []*x509.RevocationList{root.crl(t, fresh, inter.cert.SerialNumber), inter.crl(t, fresh)}, true, true},
		{"leaf only: leaf revoked", leaf, []*x509.RevocationList{inter.crl(t, fresh, leaf.Leaf.SerialNumber)}, true, false},
	} {
		v := Validation{TrustedCA: []*x509.Certificate{root.cert}, CRLs: tc.crls, OnlyVerifyLeafCRL: tc.leafOnly}
		var st Stats
		certs := []*x509.Certificate{tc.cert.Leaf}
		if tc.cert.Leaf.Issuer.CommonName == "intermediate" {
			certs = append(certs, inter.cert)
		}
		err := v.verify(certs, true, true, v.roots(), &st, now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && st.FailVerifyError.Load() != 1 {
			t.Errorf("%s: fail_verify_error %d", tc.name, st.FailVerifyError.Load())
		}
	}
}

// TestCRLHandshake: a revoked client certificate is refused end to end, its neighbour
// accepted.
func TestCRLHandshake(t *testing.T) {
	root := newCRLCA(t, "root", nil)
	good, revoked := root.client(t, "good"), root.client(t, "revoked")
	v := &Validation{TrustedCA: []*x509.Certificate{root.cert}, CRLs: []*x509.RevocationList{root.crl(t, time.Now().Add(-time.Hour), revoked.Leaf.SerialNumber)}}
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{root.leaf(t, "srv", false, "srv.test")}, Validation: v, RequireClientCertificate: true})
	root.pool = x509.NewCertPool()
	root.pool.AddCert(root.cert)
	m := &mtlsRig{rig: r, ca: root}
	if err := m.try(t, &good, ctls.VersionTLS13); err != nil {
		t.Fatal(err)
	}
	if err := m.try(t, &revoked, ctls.VersionTLS12); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	expect(t, &r.f.Stats, counters{handshake: 1, failError: 1})
}

// TestMaxVerifyDepth: the depth counts the certificates beyond the leaf, the anchor
// included; only a server applies it.
func TestMaxVerifyDepth(t *testing.T) {
	root := newCRLCA(t, "root", nil)
	inter := newCRLCA(t, "intermediate", root)
	leaf := inter.client(t, "leaf")
	chain := []*x509.Certificate{leaf.Leaf, inter.cert} // root is 2 beyond the leaf
	for _, tc := range []struct {
		depth  uint32
		server bool
		ok     bool
	}{{2, true, true}, {1, true, false}, {1, false, true}} {
		v := Validation{TrustedCA: []*x509.Certificate{root.cert}, MaxVerifyDepth: &tc.depth}
		var st Stats
		// A client verifies a server certificate: issue one for that case.
		certs := chain
		if !tc.server {
			srv := inter.issue(t, x509.Certificate{DNSNames: []string{"b.test"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			certs = []*x509.Certificate{srv.Leaf, inter.cert}
		}
		err := v.verify(certs, tc.server, true, v.roots(), &st, time.Now())
		if (err == nil) != tc.ok {
			t.Errorf("depth %d server %v: %v", tc.depth, tc.server, err)
		}
	}
}

// TestClientCAList: the certificate request names the trusted CAs, or none with
// suppress_client_ca_list.
func TestClientCAList(t *testing.T) {
	for _, suppress := range []bool{false, true} {
		r := startMTLS(t, &Validation{SuppressClientCAList: suppress}, false)
		var named [][]byte
		c := &ctls.Config{ServerName: "srv.test", RootCAs: r.ca.pool,
			GetClientCertificate: func(cri *ctls.CertificateRequestInfo) (*ctls.Certificate, error) {
				named = cri.AcceptableCAs
				return &ctls.Certificate{}, nil
			}}
		conn, err := r.dial(t, c)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, conn)
		conn.Close()
		if suppress && len(named) != 0 || !suppress && (len(named) != 1 || !bytes.Equal(named[0], r.ca.cert.RawSubject)) {
			t.Errorf("suppress %v: CAs named %q", suppress, named)
		}
	}
}

func TestPeerSANsAndFingerprint(t *testing.T) {
	ca := newTestCA(t)
	u, _ := url.Parse("spiffe://td/ns/a")
	c := ca.issue(t, x509.Certificate{DNSNames: []string{"a.test", "*.b.test"}, URIs: []*url.URL{u}})
	if got := PeerDNSSANs(c.Leaf); strings.Join(got, ",") != "a.test,*.b.test" {
		t.Errorf("DNS %q", got)
	}
	if got := PeerURISANs(c.Leaf); len(got) != 1 || got[0] != "spiffe://td/ns/a" {
		t.Errorf("URI %q", got)
	}
	sum := sha256.Sum256(c.Certificate[0])
	if PeerFingerprint256(c.Leaf) != hex.EncodeToString(sum[:]) || PeerFingerprint256(nil) != "" || PeerDNSSANs(nil) != nil {
		t.Error("fingerprint")
	}
}

// TestMTLSResumption: a resumed session keeps its client certificate, which is verified
// again, on TLS 1.2 and 1.3.
func TestMTLSResumption(t *testing.T) {
	r := startMTLS(t, &Validation{}, true)
	good := r.ca.client(t, "client")
	for _, v := range bothVersions {
		cache := ctls.NewLRUClientSessionCache(4)
		for i := 0; i < 2; i++ {
			c := &ctls.Config{ServerName: "srv.test", RootCAs: r.ca.pool, MinVersion: v, MaxVersion: v,
				Certificates: []ctls.Certificate{good}, ClientSessionCache: cache}
			conn, err := r.dial(t, c)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, conn) // TLS 1.3 tickets arrive with the first read
			resumed := conn.ConnectionState().DidResume
			conn.Close()
			if i == 1 && !resumed {
				t.Errorf("%x: not resumed", v)
			}
		}
	}
	waitFor(t, func() bool { return r.f.Stats.SessionReused.Load() == 2 && r.f.Stats.Handshake.Load() == 4 })
	if r.f.Stats.FailVerifyNoCert.Load()+r.f.Stats.FailVerifyError.Load() != 0 {
		t.Errorf("%+v", snap(&r.f.Stats))
	}
}
