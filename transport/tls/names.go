package tls

import (
	ctls "crypto/tls"
	"fmt"
	"strings"
)

// Envoy configures and reports TLS with BoringSSL's names: cipher suites in OpenSSL's
// spelling ("ECDHE-ECDSA-AES128-GCM-SHA256"), TLS 1.3 suites in IANA's, curves as
// "X25519" and "P-256", versions as "TLSv1.2". These tables map them to crypto/tls.

// cipherNames are the suites crypto/tls implements, by their BoringSSL names.
var cipherNames = [...]struct {
	id   uint16
	name string
}{
	{ctls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256"},
	{ctls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256"},
	{ctls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDHE-ECDSA-AES256-GCM-SHA384"},
	{ctls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE-RSA-AES256-GCM-SHA384"},
	{ctls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-ECDSA-CHACHA20-POLY1305"},
	{ctls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-RSA-CHACHA20-POLY1305"},
	{ctls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, "ECDHE-ECDSA-AES128-SHA"},
	{ctls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, "ECDHE-RSA-AES128-SHA"},
	{ctls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, "ECDHE-ECDSA-AES256-SHA"},
	{ctls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, "ECDHE-RSA-AES256-SHA"},
	{ctls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, "ECDHE-ECDSA-AES128-SHA256"},
	{ctls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, "ECDHE-RSA-AES128-SHA256"},
	{ctls.TLS_RSA_WITH_AES_128_GCM_SHA256, "AES128-GCM-SHA256"},
	{ctls.TLS_RSA_WITH_AES_256_GCM_SHA384, "AES256-GCM-SHA384"},
	{ctls.TLS_RSA_WITH_AES_128_CBC_SHA, "AES128-SHA"},
	{ctls.TLS_RSA_WITH_AES_256_CBC_SHA, "AES256-SHA"},
	{ctls.TLS_RSA_WITH_AES_128_CBC_SHA256, "AES128-SHA256"},
	{ctls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, "ECDHE-RSA-DES-CBC3-SHA"},
	{ctls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, "DES-CBC3-SHA"},
	// TLS 1.3: reported, not configurable (as in Envoy).
	{ctls.TLS_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256"},
	{ctls.TLS_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384"},
	{ctls.TLS_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256"},
}

// numTLS12Ciphers is how many entries of cipherNames are TLS 1.2 suites.
const numTLS12Ciphers = len(cipherNames) - 3

// CipherName is a suite's BoringSSL name, as Envoy prints it (ssl.ciphers.*,
// %DOWNSTREAM_TLS_CIPHER%); unknown suites get crypto/tls's name.
func CipherName(id uint16) string {
	if i := cipherIndex(id); i >= 0 {
		return cipherNames[i].name
	}
	return ctls.CipherSuiteName(id)
}

func cipherIndex(id uint16) int {
	for i := range cipherNames {
		if cipherNames[i].id == id {
			return i
		}
	}
	return -1
}

// ParseCipherSuites reads tls_params.cipher_suites: BoringSSL names (or IANA names, which
// crypto/tls uses), with Envoy's equal-preference groups "[A|B]" flattened, since crypto/tls
// orders suites itself. TLS 1.3 suite names are refused, as Envoy refuses them (they are
// not configurable).
func ParseCipherSuites(names []string) ([]uint16, error) {
	var out []uint16
	for _, entry := range names {
		for _, n := range strings.Split(strings.Trim(entry, "[]"), "|") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			id, ok := cipherByName(n)
			if !ok {
				return nil, fmt.Errorf("unknown cipher suite %q (Portico, with Go's crypto/tls, has %s)", n, strings.Join(tls12CipherNames(), ", "))
			}
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no cipher suite left in %q", names)
	}
	return out, nil
}

func cipherByName(n string) (uint16, bool) {
	for i := range cipherNames[:numTLS12Ciphers] {
		if cipherNames[i].name == n {
			return cipherNames[i].id, true
		}
	}
	for _, s := range append(ctls.CipherSuites(), ctls.InsecureCipherSuites()...) {
		if s.Name == n && !isTLS13Only(s.SupportedVersions) {
			return s.ID, true
		}
	}
	return 0, false
}

func isTLS13Only(v []uint16) bool { return len(v) == 1 && v[0] == ctls.VersionTLS13 }

func tls12CipherNames() []string {
	out := make([]string, numTLS12Ciphers)
	for i := range out {
		out[i] = cipherNames[i].name
	}
	return out
}

// curveNames are the groups crypto/tls implements, by Envoy's (BoringSSL's) names.
var curveNames = [...]struct {
	id   ctls.CurveID
	name string
}{
	{ctls.X25519, "X25519"},
	{ctls.CurveP256, "P-256"},
	{ctls.CurveP384, "P-384"},
	{ctls.CurveP521, "P-521"},
	{ctls.X25519MLKEM768, "X25519MLKEM768"},
}

// CurveName is a group's BoringSSL name (ssl.curves.*).
func CurveName(id ctls.CurveID) string {
	for _, c := range curveNames {
		if c.id == id {
			return c.name
		}
	}
	return id.String()
}

// ParseCurves reads tls_params.ecdh_curves (BoringSSL names; "prime256v1" and "secp384r1"
// as OpenSSL spells them too).
func ParseCurves(names []string) ([]ctls.CurveID, error) {
	var out []ctls.CurveID
	for _, n := range names {
		switch n {
		case "prime256v1", "secp256r1":
			n = "P-256"
		case "secp384r1":
			n = "P-384"
		case "secp521r1":
			n = "P-521"
		}
		found := false
		for _, c := range curveNames {
			if c.name == n {
				out, found = append(out, c.id), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown curve %q (Portico has X25519, P-256, P-384, P-521, X25519MLKEM768)", n)
		}
	}
	return out, nil
}

// VersionName is Envoy's name for a TLS version (ssl.versions.*, %DOWNSTREAM_TLS_VERSION%).
func VersionName(v uint16) string {
	switch v {
	case ctls.VersionTLS10:
		return "TLSv1"
	case ctls.VersionTLS11:
		return "TLSv1.1"
	case ctls.VersionTLS12:
		return "TLSv1.2"
	case ctls.VersionTLS13:
		return "TLSv1.3"
	}
	return "unknown"
}
