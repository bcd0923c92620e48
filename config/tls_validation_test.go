package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	ctls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/internal/testpki"
	"github.com/portico-proxy/portico/transport/tls"
)

// translateValidation runs the stages of Parse on a CommonTlsContext document holding a
// validation context (paths are relative to it) and translates its validation part. The
// subset check starts at the validation message: CommonTlsContext's own table is tls.go's.
func translateValidation(t *testing.T, doc string) (*tls.Validation, []string, error) {
	t.Helper()
	root, marks, err := decodeYAML([]byte(doc))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	obj, ok := root.(object)
	if !ok {
		t.Fatalf("not a mapping")
	}
	c := &collector{}
	ctc := &tlsv3.CommonTlsContext{}
	k := &checker{c: c, marks: marks}
	var d any = obj
	k.message(&d, ctc.ProtoReflect().Descriptor(), rootLoc("", ""), nil)
	clean, err := appendJSON(nil, obj)
	if err == nil {
		err = protojson.Unmarshal(clean, ctc)
	}
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if vc := ctc.GetValidationContext(); vc != nil {
		c.subset(vc.ProtoReflect(), rootLoc("validation_context", "validation_context"))
	}
	if cv := ctc.GetCombinedValidationContext(); cv != nil {
		c.subset(cv.ProtoReflect(), rootLoc("combined_validation_context", "combined_validation_context"))
	}
	top := rootLoc("", "")
	c.validate(ctc, &top)
	tr := &translator{c: c, workers: 1, cfg: &Config{}}
	v, _ := tr.commonValidation(ctc, "")
	return v, tr.cfg.Warnings, c.result(ctc)
}

// testCAPEM makes a self-signed CA and returns it and its PEM.
func testCAPEM(t *testing.T) (*x509.Certificate, string) {
	c, _, p := testCAKey(t)
	return c, p
}

// testCAKey makes a self-signed CA (that may sign CRLs) and returns it, its key and its PEM.
func testCAKey(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "config test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func testCRLPEM(t *testing.T, ca *x509.Certificate, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// TestValidationContextCRL: crl (with only_verify_leaf_cert_crl) and CRLs inside the
// trusted_ca bundle both turn CRL checking on.
func TestValidationContextCRL(t *testing.T) {
	ca, key, caPEM := testCAKey(t)
	crl := testCRLPEM(t, ca, key)
	q := func(s string) string { return "\"" + strings.ReplaceAll(s, "\n", "\\n") + "\"" }
	v, _, err := translateValidation(t, "validation_context: {trusted_ca: {inline_string: "+q(caPEM)+"}, crl: {inline_string: "+q(crl)+"}, only_verify_leaf_cert_crl: true}")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.CRLs) != 1 || !v.OnlyVerifyLeafCRL || len(v.TrustedCA) != 1 {
		t.Errorf("crl: %+v", v)
	}
	v, _, err = translateValidation(t, "validation_context: {trusted_ca: {inline_string: "+q(caPEM+crl)+"}}")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.CRLs) != 1 || v.OnlyVerifyLeafCRL || len(v.TrustedCA) != 1 {
		t.Errorf("CRL in the bundle: %+v", v)
	}
	v, _, err = translateValidation(t, "validation_context: {trusted_ca: {inline_string: "+q(caPEM)+"}, crl: {inline_string: \"\"}}")
	if err != nil || len(v.CRLs) != 0 {
		t.Errorf("empty crl: %v %v", v, err)
	}
}

// indent indents every line of s by n spaces, for a YAML block scalar.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+pad) + "\n"
}

func TestValidationContextFields(t *testing.T) {
	ca, caPEM := testCAPEM(t)
	sum := sha256.Sum256([]byte("leaf"))
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var pairs []string
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	spki := base64.StdEncoding.EncodeToString(sum[:])
	doc := `
validation_context:
  trusted_ca:
    inline_string: |
` + indent(caPEM, 6) + `
  trust_chain_verification: ACCEPT_UNTRUSTED
  allow_expired_certificate: true
  suppress_client_ca_list: true
  match_typed_subject_alt_names:
  - san_type: DNS
    matcher: {exact: foo.example.com}
  - san_type: URI
    matcher: {prefix: "spiffe://cluster.local/", ignore_case: true}
  - san_type: EMAIL
    matcher: {suffix: "@example.com"}
  - san_type: IP_ADDRESS
    matcher: {safe_regex: {regex: "10\\.0\\..*"}}
  verify_certificate_hash: ["` + strings.Join(pairs, ":") + `", "` + strings.ToLower(h) + `"]
  verify_certificate_spki: ["` + spki + `"]
  max_verify_depth: 3
`
	v, warns, err := translateValidation(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings %v", warns)
	}
	if len(v.TrustedCA) != 1 || !v.TrustedCA[0].Equal(ca) {
		t.Errorf("trusted_ca %v", v.TrustedCA)
	}
	if !v.AcceptUntrusted || !v.AllowExpired || !v.SuppressClientCAList || v.MaxVerifyDepth == nil || *v.MaxVerifyDepth != 3 {
		t.Errorf("flags %+v", v)
	}
	if len(v.SANs) != 4 || v.SANs[0].Type != tls.SANDNS || v.SANs[1].Type != tls.SANURI || v.SANs[2].Type != tls.SANEmail || v.SANs[3].Type != tls.SANIP {
		t.Fatalf("SANs %+v", v.SANs)
	}
	if !v.SANs[1].Matcher.Match("SPIFFE://cluster.local/x") || !v.SANs[3].Matcher.Match("10.0.1.2") || v.SANs[3].Matcher.Match("110.0.1.2") {
		t.Errorf("matchers %+v", v.SANs)
	}
	if len(v.CertHashes) != 2 || v.CertHashes[0] != sum || v.CertHashes[1] != sum || len(v.SPKIHashes) != 1 || v.SPKIHashes[0] != sum {
		t.Errorf("hashes %x %x", v.CertHashes, v.SPKIHashes)
	}
}

// TestValidationContextSources: trusted_ca from a file and from inline_bytes; no
// validation context at all is nil.
func TestValidationContextSources(t *testing.T) {
	ca, caPEM := testCAPEM(t)
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, []byte(caPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORTICO_TEST_CA", caPEM)
	for _, doc := range []string{
		"validation_context: {trusted_ca: {environment_variable: PORTICO_TEST_CA}}",
		"validation_context: {trusted_ca: {filename: " + f + "}}",
		"validation_context: {trusted_ca: {inline_bytes: " + base64.StdEncoding.EncodeToString([]byte(caPEM)) + "}}",
	} {
		v, _, err := translateValidation(t, doc)
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if len(v.TrustedCA) != 1 || !v.TrustedCA[0].Equal(ca) {
			t.Errorf("%s: trusted_ca %v", doc, v.TrustedCA)
		}
	}
	v, _, err := translateValidation(t, "alpn_protocols: [h2]")
	if err != nil || v != nil {
		t.Errorf("no validation context: %v %v", v, err)
	}
}

// TestValidationContextDeprecatedSANs: match_subject_alt_names is one matcher per DNS,
// URI, email and IP; beside match_typed_subject_alt_names it is ignored with a warning.
func TestValidationContextDeprecatedSANs(t *testing.T) {
	_, caPEM := testCAPEM(t)
	ca := "  trusted_ca: {inline_string: \"" + strings.ReplaceAll(caPEM, "\n", "\\n") + "\"}\n"
	v, warns, err := translateValidation(t, "validation_context:\n"+ca+"  match_subject_alt_names: [{exact: a.test}, {prefix: spiffe://}]\n")
	if err != nil || len(warns) != 0 {
		t.Fatal(err, warns)
	}
	if len(v.SANs) != 8 {
		t.Fatalf("SANs %+v", v.SANs)
	}
	for i, typ := range []tls.SANType{tls.SANDNS, tls.SANURI, tls.SANEmail, tls.SANIP} {
		if v.SANs[i].Type != typ || v.SANs[i].Matcher.Value != "a.test" || v.SANs[4+i].Matcher.Value != "spiffe://" {
			t.Errorf("SAN %d: %+v", i, v.SANs[i])
		}
	}
	v, warns, err = translateValidation(t, "validation_context:\n"+ca+
		"  match_subject_alt_names: [{exact: a.test}]\n  match_typed_subject_alt_names: [{san_type: URI, matcher: {exact: b}}]\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.SANs) != 1 || v.SANs[0].Type != tls.SANURI || len(warns) != 1 || !strings.Contains(warns[0], "validation_context.match_subject_alt_names: ignored") {
		t.Errorf("SANs %+v warnings %v", v.SANs, warns)
	}
}

func TestValidationContextErrors(t *testing.T) {
	_, caPEM := testCAPEM(t)
	ca := "  trusted_ca: {inline_string: \"" + strings.ReplaceAll(caPEM, "\n", "\\n") + "\"}\n"
	hex64 := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		doc   string
		wants []want
	}{
		{"validation_context: {trusted_ca: {inline_string: \"\"}}",
			[]want{{"validation_context.trusted_ca.inline_string", "the trusted CA bundle is empty"}}},
		{"validation_context: {trusted_ca: {inline_string: \"not a certificate\"}}",
			[]want{{"validation_context.trusted_ca.inline_string", "failed to load trusted CA certificates: not a PEM bundle"}}},
		{"validation_context: {trusted_ca: {inline_string: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"}}",
			[]want{{"validation_context.trusted_ca.inline_string", "failed to load trusted CA certificates: certificate 1 of the bundle"}}},
		{"validation_context: {trusted_ca: {filename: /nonexistent/ca.pem}}",
			[]want{{"validation_context.trusted_ca.filename", "open /nonexistent/ca.pem"}}},
		{"validation_context: {match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: a}}]}",
			[]want{{"validation_context.match_typed_subject_alt_names", "SAN-based verification of peer certificates without trusted_ca is insecure"}}},
		{"validation_context: {match_subject_alt_names: [{exact: a}]}",
			[]want{{"validation_context.match_subject_alt_names", "SAN-based verification of peer certificates without trusted_ca is insecure"}}},
		{"validation_context: {allow_expired_certificate: true}",
			[]want{{"validation_context.allow_expired_certificate", "certificate validity period is always ignored without trusted_ca"}}},
		{"validation_context:\n" + ca + "  match_typed_subject_alt_names: [{san_type: OTHER_NAME, oid: 1.2.3, matcher: {exact: a}}]\n",
			[]want{{"validation_context.match_typed_subject_alt_names[0].san_type", "OTHER_NAME is not supported by Portico"}}},
		{"validation_context:\n" + ca + "  match_typed_subject_alt_names: [{san_type: DNS, matcher: {safe_regex: {regex: \"(\"}}}]\n",
			[]want{{"validation_context.match_typed_subject_alt_names[0].matcher.safe_regex.regex", "error parsing regexp"}}},
		{"validation_context:\n" + ca + "  match_subject_alt_names: [{exact: ok}, {safe_regex: {regex: \"[\"}}]\n",
			[]want{{"validation_context.match_subject_alt_names[1].safe_regex.regex", "error parsing regexp"}}},
		{"validation_context: {verify_certificate_hash: [\"" + hex64 + "\", \"zz" + hex64[2:] + "\"]}",
			[]want{{"validation_context.verify_certificate_hash[1]", "invalid hex-encoded SHA-256"}}},
		{"validation_context: {verify_certificate_spki: [\"" + strings.Repeat("!", 44) + "\"]}",
			[]want{{"validation_context.verify_certificate_spki[0]", "invalid base64-encoded SHA-256"}}},
		{"validation_context:\n" + ca + "  crl: {inline_string: x}\n",
			[]want{{"validation_context.crl.inline_string", "failed to load CRL: no CRL"}}},
		{"validation_context:\n" + ca + "  crl: {inline_string: \"-----BEGIN X509 CRL-----\\nAAAA\\n-----END X509 CRL-----\\n\"}\n",
			[]want{{"validation_context.crl.inline_string", "failed to load CRL: CRL 1"}}},
		{"validation_context: {crl: {inline_string: x}}",
			[]want{{"validation_context.crl", "a CRL cannot be checked without trusted_ca"}}},
		{"validation_context:\n" + ca + "  watched_directory: {path: /tmp}\n",
			[]want{{"validation_context.watched_directory", "not supported by Portico"}}},
		{"validation_context:\n" + ca + "  system_root_certs: {}\n",
			[]want{{"validation_context.system_root_certs", "not supported by Portico"}}},
		{"validation_context: {custom_validator_config: {name: spiffe}}",
			[]want{{"validation_context.custom_validator_config", "not supported by Portico"}}},
		{"combined_validation_context: {default_validation_context: {verify_certificate_hash: [\"zz" + hex64[2:] + "\"]}, validation_context_sds_secret_config: {name: ca}}",
			[]want{{"combined_validation_context.default_validation_context.verify_certificate_hash[0]", "invalid hex-encoded SHA-256"},
				{"combined_validation_context.validation_context_sds_secret_config", "not supported by Portico"}}},
		// Istio's form: the trusted CA comes from SDS, so SANs without one are not an error
		// of their own (Envoy checks the merged context); only the SDS part is refused.
		{"combined_validation_context: {default_validation_context: {match_subject_alt_names: [{exact: spiffe://a}], allow_expired_certificate: true}, validation_context_sds_secret_config: {name: ca}}",
			[]want{{"combined_validation_context.validation_context_sds_secret_config", "not supported by Portico"}}},
	} {
		_, _, err := translateValidation(t, tc.doc)
		if err == nil {
			t.Errorf("%s: accepted", tc.doc)
			continue
		}
		checkErrors(t, err, tc.wants)
	}
}

const mtlsListener = `
static_resources:
  listeners:
  - name: mtls
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: SRV_CERT }
              private_key: { filename: SRV_KEY }
            VALIDATION
      filters:
      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
`

// TestDownstreamMTLSFromConfig: a bootstrap's validation_context reaches the listener:
// a client certificate of the trusted CA with the matching SAN is echoed; another SAN,
// another CA or none is refused, each in its counter.
func TestDownstreamMTLSFromConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewCA("mtls CA")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := testpki.NewCA("other CA")
	srv, _ := ca.Issue(testpki.ECDSA, "srv.example.com")
	good, _ := ca.Issue(testpki.ECDSA, "client.example.com")
	wrongSAN, _ := ca.Issue(testpki.ECDSA, "intruder.example.com")
	wrongCA, _ := other.Issue(testpki.ECDSA, "client.example.com")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	doc := strings.NewReplacer("SRV_CERT", write("srv.pem", srv.CertPEM), "SRV_KEY", write("srv.key", srv.KeyPEM),
		"VALIDATION", `validation_context:
              trusted_ca: { filename: `+write("ca.pem", ca.PEM)+` }
              match_typed_subject_alt_names: [{ san_type: DNS, matcher: { exact: client.example.com } }]`).Replace(mtlsListener)
	cfg, err := Parse([]byte(doc), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings %q", cfg.Warnings)
	}
	fac := cfg.Chains["mtls"].FindFilterChain(&engine.SocketInfo{}).TransportSocket.(*tls.Factory)
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.AddListener(cfg.Listeners[0])
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	try := func(cert *testpki.Leaf) error {
		c := &ctls.Config{ServerName: "srv.example.com", RootCAs: ca.Pool}
		if cert != nil {
			// Sent whatever CAs the server names (Go's client would keep back one of
			// another CA).
			c.GetClientCertificate = func(*ctls.CertificateRequestInfo) (*ctls.Certificate, error) { return &cert.TLS, nil }
		}
		conn, err := ctls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", l.Address().String(), c)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		b := make([]byte, 4)
		_, err = io.ReadFull(conn, b)
		return err
	}
	if err := try(good); err != nil {
		t.Fatalf("good client: %v", err)
	}
	for name, c := range map[string]*testpki.Leaf{"wrong SAN": wrongSAN, "wrong CA": wrongCA, "none": nil} {
		if err := try(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	st := &fac.Stats
	for i := 0; i < 2000 && st.FailVerifySAN.Load()+st.FailVerifyError.Load()+st.FailVerifyNoCert.Load() < 3; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if st.Handshake.Load() != 1 || st.FailVerifySAN.Load() != 1 || st.FailVerifyError.Load() != 1 || st.FailVerifyNoCert.Load() != 1 || st.ConnectionError.Load() != 0 {
		t.Errorf("stats: handshake %d san %d error %d no_cert %d connection_error %d", st.Handshake.Load(),
			st.FailVerifySAN.Load(), st.FailVerifyError.Load(), st.FailVerifyNoCert.Load(), st.ConnectionError.Load())
	}
}

// TestRequireClientCertificateWithoutValidationWarns: accepted, as Envoy accepts it, with
// a warning that it does nothing.
func TestRequireClientCertificateWithoutValidationWarns(t *testing.T) {
	dir := t.TempDir()
	ca, _ := testpki.NewCA("ca")
	srv, _ := ca.Issue(testpki.ECDSA, "srv.example.com")
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cf, srv.CertPEM, 0o600)
	os.WriteFile(kf, srv.KeyPEM, 0o600)
	doc := strings.NewReplacer("SRV_CERT", cf, "SRV_KEY", kf, "VALIDATION", "alpn_protocols: [http/1.1]").Replace(mtlsListener)
	cfg, err := Parse([]byte(doc), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "typed_config.require_client_certificate: has no effect without a validation_context") {
		t.Errorf("warnings %q", cfg.Warnings)
	}
}

// TestValidationErrorPaths: errors inside a listener's validation context name the whole
// path, as the user wrote it.
func TestValidationErrorPaths(t *testing.T) {
	dir := t.TempDir()
	ca, _ := testpki.NewCA("ca")
	srv, _ := ca.Issue(testpki.ECDSA, "srv.example.com")
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cf, srv.CertPEM, 0o600)
	os.WriteFile(kf, srv.KeyPEM, 0o600)
	doc := strings.NewReplacer("SRV_CERT", cf, "SRV_KEY", kf, "VALIDATION", `validationContext:
              matchTypedSubjectAltNames: [{ sanType: OTHER_NAME, matcher: { exact: a } }, { san_type: DNS, matcher: { exact: b } }]
              verify_certificate_hash: ["`+strings.Repeat("0", 63)+`g"]`).Replace(mtlsListener)
	_, err := Parse([]byte(doc), 1)
	const p = "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.validationContext."
	checkErrors(t, err, []want{
		{p + "verify_certificate_hash[0]", "invalid hex-encoded SHA-256"},
		{p + "matchTypedSubjectAltNames[0].sanType", "OTHER_NAME is not supported by Portico"},
		{p + "matchTypedSubjectAltNames", "SAN-based verification of peer certificates without trusted_ca"},
	})
	var es Errors
	if errors.As(err, &es) {
		for _, e := range es {
			if strings.HasSuffix(e.Path, "sanType") && e.Feature != "static_resources.listeners.filter_chains.transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names.san_type=OTHER_NAME" {
				t.Errorf("feature %q", e.Feature)
			}
		}
	}
}
