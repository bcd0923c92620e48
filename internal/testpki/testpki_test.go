package testpki

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	ptls "github.com/portico-proxy/portico/transport/tls"
)

// TestWriteConfigFilesOCSP: an ocsp_staple file named in a configuration gets a DER OCSP
// response for the certificate written beside it (a staple the server would accept).
func TestWriteConfigFilesOCSP(t *testing.T) {
	dir := t.TempDir()
	cfg := []byte(`certificate_chain: { "filename": "certs/servercert.pem" }
private_key: { "filename": "certs/serverkey.pem" }
ocsp_staple: { "filename": "certs/server_ocsp_resp.der" }`)
	wrote, err := WriteConfigFiles(dir, cfg)
	if err != nil || len(wrote) != 3 {
		t.Fatalf("wrote %v: %v", wrote, err)
	}
	der, err := os.ReadFile(filepath.Join(dir, "certs/server_ocsp_resp.der"))
	if err != nil || len(der) == 0 || der[0] != 0x30 {
		t.Fatalf("OCSP response %d bytes: %v", len(der), err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "certs/servercert.pem"), filepath.Join(dir, "certs/serverkey.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ptls.ParseOCSPStaple(der, cert.Leaf.SerialNumber); err != nil {
		t.Fatal(err)
	}
}
