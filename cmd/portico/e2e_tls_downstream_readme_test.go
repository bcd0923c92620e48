package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readmeHTTPS is the README's "HTTPS" section, its commands with their fixed ports.
type readmeHTTPS struct {
	setup []string // the sh block, comments removed
	curls []string // the `curl --cacert ...` commands, in the order the text gives them
	sc    string   // the `openssl s_client ...` command
}

// parseReadmeHTTPS reads the section from README.md at the repository's root.
func parseReadmeHTTPS(t *testing.T, root string) readmeHTTPS {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "### HTTPS")
	if i < 0 {
		t.Fatal("README.md has no HTTPS section")
	}
	s = s[i:]
	if j := strings.Index(s[4:], "\n#"); j >= 0 {
		s = s[:j+4]
	}
	var r readmeHTTPS
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(s)
	if block == nil {
		t.Fatalf("no sh block in the HTTPS section:\n%s", s)
	}
	for _, l := range strings.Split(block[1], "\n") {
		if c, _, _ := strings.Cut(l, "#"); strings.TrimSpace(c) != "" {
			r.setup = append(r.setup, strings.TrimSpace(c))
		}
	}
	// Inline code spans may wrap across lines in the prose.
	prose := strings.Join(strings.Fields(s[strings.Index(s, "```\n\n")+4:]), " ")
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(prose, -1) {
		switch {
		case strings.HasPrefix(m[1], "curl --cacert"):
			r.curls = append(r.curls, m[1])
		case strings.HasPrefix(m[1], "openssl s_client"):
			r.sc = m[1]
		}
	}
	if len(r.setup) != 2 || len(r.curls) != 2 || r.sc == "" {
		t.Fatalf("README HTTPS section: setup %q, curls %q, s_client %q", r.setup, r.curls, r.sc)
	}
	return r
}

// TestTLSDownREADMEExample: the README's HTTPS example as a new user runs it, in a copy of
// the files it names (so examples/certs lands in a temp dir): ./scripts/example-certs.sh,
// portico -c examples/https.yaml (its fixed ports 10443 and 9901 rewritten to free ones),
// then the README's two curl commands give the two sites' answers, each with the
// certificate the README says, and its openssl command shows the RSA wildcard one.
func TestTLSDownREADMEExample(t *testing.T) {
	t.Parallel()
	requireTool(t, "openssl")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	r := parseReadmeHTTPS(t, root)
	if r.setup[0] != "./scripts/example-certs.sh" || r.setup[1] != "./bin/portico -c examples/https.yaml" {
		t.Fatalf("the README's setup changed: %q", r.setup)
	}
	// The example file's header repeats the README's commands: they must agree.
	yml, err := os.ReadFile(filepath.Join(root, "examples/https.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(append([]string(nil), r.curls...), r.sc) {
		if !strings.Contains(string(yml), "#   "+c) {
			t.Errorf("examples/https.yaml's header does not show %q", c)
		}
	}

	dir := t.TempDir()
	for _, f := range []string{"scripts/example-certs.sh", "examples/https.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(filepath.Join(root, f))
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), b, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	port, admin := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	fix := strings.NewReplacer("10443", port, "9901", admin)
	cfg := filepath.Join(dir, "examples/https.yaml")
	b, _ := os.ReadFile(cfg)
	if n := strings.Count(string(b), "port_value: 10443") + strings.Count(string(b), "port_value: 9901"); n != 2 {
		t.Fatalf("examples/https.yaml has %d of the two ports to rewrite", n)
	}
	os.WriteFile(cfg, []byte(fix.Replace(string(b))), 0o644)

	// ./scripts/example-certs.sh, from the (copied) repository's root.
	script := exec.Command(r.setup[0])
	script.Dir = dir
	if out, err := runWithTimeout(script, 30*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", r.setup[0], err, out)
	}
	// ./bin/portico -c examples/https.yaml, from the same directory.
	p := startPorticoWith(t, "", "127.0.0.1:"+admin, func(c *exec.Cmd) { c.Dir = dir }, strings.Fields(r.setup[1])[1:]...)

	answers := []string{"hello from www.example.com, over TLS\n", "hello from *.example.org, over TLS\n"}
	for i, c := range r.curls {
		args := strings.Fields(fix.Replace(c))
		cmd := exec.Command(requireTool(t, "curl"), append([]string{"-sS"}, args[1:]...)...)
		cmd.Dir = dir
		out, err := runWithTimeout(cmd, 15*time.Second)
		if err != nil || out != answers[i] {
			t.Errorf("%s\n  got %q (%v), want %q", c, out, err, answers[i])
		}
	}

	// The certificates are the ones the README names.
	pem, err := os.ReadFile(filepath.Join(dir, "examples/certs/ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for _, tc := range []struct {
		sni, cn string
		alg     x509.PublicKeyAlgorithm
	}{{"www.example.com", "www.example.com", x509.ECDSA}, {"api.example.org", "*.example.org", x509.RSA}} {
		c := mustDialTLS(t, "127.0.0.1:"+port, &tls.Config{ServerName: tc.sni, RootCAs: pool})
		if leaf := c.ConnectionState().PeerCertificates[0]; leaf.Subject.CommonName != tc.cn || leaf.PublicKeyAlgorithm != tc.alg {
			t.Errorf("SNI %s: got %s, want %s %s", tc.sni, certName(leaf), tc.cn, tc.alg)
		}
		c.Close()
	}

	// openssl s_client -connect 127.0.0.1:10443 -servername api.example.org -brief </dev/null
	args := strings.Fields(fix.Replace(strings.TrimSuffix(r.sc, " </dev/null")))
	cmd := exec.Command(requireTool(t, "openssl"), args[1:]...)
	cmd.Stdin = strings.NewReader("")
	out, err := runWithTimeout(cmd, 10*time.Second)
	if err != nil || !strings.Contains(out, "CN = *.example.org") || !strings.Contains(out, "Protocol version: TLSv1.3") {
		t.Errorf("%s: %v\n%s", r.sc, err, out)
	}

	// curl -s 127.0.0.1:9901/stats | grep listener.https.ssl
	st := p.stats(t)
	if st["listener.https.ssl.handshake"] < 5 || st["listener.https.ssl.versions.TLSv1.3"] < 5 || st["listener.https.ssl.connection_error"] != 0 {
		var lines []string
		for k, v := range st {
			if strings.HasPrefix(k, "listener.https.ssl") {
				lines = append(lines, fmt.Sprintf("%s: %v", k, v))
			}
		}
		t.Errorf("listener.https.ssl stats after 5 handshakes:\n%s", strings.Join(lines, "\n"))
	}
}
