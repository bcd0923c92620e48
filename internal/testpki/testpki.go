// Package testpki makes throwaway certificate authorities and certificates for tests, and
// fills in the certificate files a configuration names.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
	Pool *x509.CertPool
}

// NewCA makes a P-256 CA valid for a day around now.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	return ca, nil
}

// Leaf is an issued certificate with its key, in PEM and as a tls.Certificate.
type Leaf struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
}

// KeyType chooses a leaf's key.
type KeyType int

// Key types.
const (
	ECDSA KeyType = iota // P-256
	RSA                  // 2048 bits
)

// Issue makes a leaf for names (DNS names or IP addresses; the first is the common name),
// usable by servers and clients.
func (ca *CA) Issue(kt KeyType, names ...string) (*Leaf, error) {
	return ca.IssueValid(kt, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), names...)
}

// IssueValid is Issue with the given validity period.
func (ca *CA) IssueValid(kt KeyType, notBefore, notAfter time.Time, names ...string) (*Leaf, error) {
	var key crypto.Signer
	var err error
	if kt == RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), NotBefore: notBefore,
		NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if len(names) > 0 {
		tmpl.Subject = pkix.Name{CommonName: names[0]}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	l := &Leaf{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
	l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	return l, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

var filenameRE = regexp.MustCompile(`filename"?\s*:\s*"?([^"\s,}]+)`)

// WriteConfigFiles creates, under dir, every relative file a configuration names in a
// `filename:` field that looks like TLS material: private keys (a name with "key"), CA
// bundles (a name with "ca"), certificates (.pem, .crt) and OCSP responses (a .der with
// "ocsp"), all from one CA, so that a
// configuration taken from elsewhere can be loaded without its files. It returns the
// paths it wrote.
func WriteConfigFiles(dir string, config []byte) ([]string, error) {
	ca, err := NewCA("testpki CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(ECDSA, "localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	var wrote []string
	for _, m := range filenameRE.FindAllSubmatch(config, -1) {
		name := string(m[1])
		if filepath.IsAbs(name) || strings.Contains(name, "..") {
			continue
		}
		base := strings.ToLower(filepath.Base(name))
		var data []byte
		switch {
		case strings.Contains(base, "ocsp") && strings.HasSuffix(base, ".der"):
			// An OCSP response (ocsp_staple) for the leaf, good for a day.
			if data, err = ca.OCSPResponse(leaf.TLS.Leaf.SerialNumber, time.Now().Add(24*time.Hour)); err != nil {
				return wrote, err
			}
		case !strings.HasSuffix(base, ".pem") && !strings.HasSuffix(base, ".crt") && !strings.HasSuffix(base, ".key"):
			continue
		case strings.Contains(base, "key"):
			data = leaf.KeyPEM
		case strings.Contains(base, "ca"):
			data = ca.PEM
		default:
			data = leaf.CertPEM
		}
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return wrote, err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return wrote, err
		}
		wrote = append(wrote, p)
	}
	return wrote, nil
}
