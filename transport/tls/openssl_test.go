package tls

import (
	"bufio"
	ctls "crypto/tls"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenSSLClient: openssl s_client verifies the chain with the test's CA, gets the
// certificate for its SNI, negotiates h2 by ALPN on TLS 1.2 and 1.3, and gets its line
// echoed.
func TestOpenSSLClient(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	ca := newTestCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	r := startTLS(t, DownstreamConfig{Certificates: []ctls.Certificate{
		ca.leaf(t, "default", false, "default.test"),
		ca.leaf(t, "wild", true, "*.wild.test"),
	}, ALPN: []string{"h2", "http/1.1"}})
	for _, tc := range []struct{ vers, sni, cn string }{
		{"-tls1_3", "x.wild.test", "wild"},
		{"-tls1_2", "x.wild.test", "wild"},
		{"-tls1_3", "default.test", "default"},
	} {
		cmd := exec.Command(bin, "s_client", "-connect", r.addr, tc.vers, "-servername", tc.sni,
			"-alpn", "h2", "-CAfile", caFile, "-verify_return_error", "-quiet", "-no_ign_eof")
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Keep stdin open until the echo is back, then close it: s_client exits.
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
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v %s: %v\n%s", tc.vers, tc.sni, err, out.String())
		}
		if !strings.Contains(out.String(), "hello over tls") {
			t.Fatalf("%v %s: no echo:\n%s", tc.vers, tc.sni, out.String())
		}
		if !strings.Contains(out.String(), "CN = portico test CA") || !strings.Contains(out.String(), "CN = "+tc.cn+"\n") {
			t.Errorf("%v %s: expected chain to %s:\n%s", tc.vers, tc.sni, tc.cn, out.String())
		}
		s := <-r.seen
		if s.next != "h2" || s.sni != tc.sni {
			t.Errorf("%v %s: server saw next %q sni %q", tc.vers, tc.sni, s.next, s.sni)
		}
	}
}
