package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/internal/testpki"
)

// TestTLSDownHTTP: HTTPS through the HTTP connection manager to a plaintext backend (the
// echo backend, a Go server that tells what it received): the backend sees
// x-forwarded-proto: https; curl sends several requests over one TLS connection; a 10 MiB
// response (curl) and a 10 MiB request and response (net/http, one connection) arrive
// whole.
func TestTLSDownHTTP(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "www", "www.example.com")
	be := newEchoBackend(t, "be")
	vhosts := `
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: be, timeout: 0s }
`
	p := startTLSDown(t, tlsDownSetup{
		Listeners: []tlsListener{
			{Name: "https", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ALPN: []string{"http/1.1"},
				Filters: hcmFilterYAML("https", vhosts)}}},
			{Name: "edge", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ALPN: []string{"http/1.1"},
				Filters: hcmFilterYAMLWith("edge", "use_remote_address: true", vhosts)}}},
		},
		Clusters: []hcmCluster{{Name: "be", Ports: []int{be.Port}}},
	})
	port := strings.TrimPrefix(p.Addr["https"], "127.0.0.1:")
	base := "https://www.example.com:" + port
	curlTLS := []string{"-sS", "--cacert", pki.CAFile, "--resolve", "www.example.com:" + port + ":127.0.0.1"}

	t.Run("curl-keepalive", func(t *testing.T) {
		const n = 5
		args := append([]string{"-v"}, curlTLS...)
		for i := 0; i < n; i++ {
			args = append(args, fmt.Sprintf("%s/req/%d", base, i))
		}
		out, verbose, err := runCurl(t, args...)
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, verbose)
		}
		dec := json.NewDecoder(strings.NewReader(out))
		for i := 0; i < n; i++ {
			var seen echoSeen
			if err := dec.Decode(&seen); err != nil {
				t.Fatalf("answer %d: %v in %q", i, err, out)
			}
			if want := fmt.Sprintf("/req/%d", i); seen.URI != want {
				t.Errorf("answer %d is for %s, want %s", i, seen.URI, want)
			}
			if xfp := seen.Header["X-Forwarded-Proto"]; len(xfp) != 1 || xfp[0] != "https" {
				t.Errorf("backend saw x-forwarded-proto %q, want https", xfp)
			}
			if seen.Host != "www.example.com:"+port {
				t.Errorf("backend saw host %q", seen.Host)
			}
		}
		if k := strings.Count(verbose, "Re-using existing connection"); k != n-1 {
			t.Errorf("curl re-used its connection %d times, want %d:\n%s", k, n-1, verbose)
		}
		p.sslStatEventually(t, "https", "handshake", 1)
	})

	t.Run("curl-10MiB", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "body")
		size := 10 * mib
		_, verbose, err := runCurl(t, append(curlTLS, "-o", file, fmt.Sprintf("%s/big?size=%d", base, size))...)
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, verbose)
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		got, _ := io.Copy(h, f)
		if got != size || hex.EncodeToString(h.Sum(nil)) != detSHA(size) {
			t.Fatalf("curl got %d bytes, sha256 equal %v", got, hex.EncodeToString(h.Sum(nil)) == detSHA(size))
		}
	})

	t.Run("net/http-one-connection", func(t *testing.T) {
		before := p.sslStat(t, "https", "handshake")
		cl := hcmClient()
		cl.Transport.(*http.Transport).TLSClientConfig = &tls.Config{ServerName: "www.example.com", RootCAs: pki.ca.Pool, NextProtos: []string{"http/1.1"}}
		defer cl.CloseIdleConnections()
		url := "https://" + p.Addr["https"]
		size := 10 * mib
		req := newReq(t, "POST", url+"/upload", "www.example.com")
		req.Body, req.ContentLength = io.NopCloser(newDetStream(size)), size
		resp, seen := doEcho(t, cl, req)
		if resp.StatusCode != 200 || seen.BodyLen != size || seen.BodySHA != detSHA(size) {
			t.Fatalf("upload: status %d, backend got %d bytes, sha256 equal %v", resp.StatusCode, seen.BodyLen, seen.BodySHA == detSHA(size))
		}
		if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Errorf("response not over TLS with ALPN http/1.1: %+v", resp.TLS)
		}
		resp, err := cl.Do(newReq(t, "GET", fmt.Sprintf("%s/download?size=%d", url, size), "www.example.com"))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		got, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || got != size || hex.EncodeToString(h.Sum(nil)) != detSHA(size) {
			t.Fatalf("download: %d bytes (%v), sha256 equal %v", got, err, hex.EncodeToString(h.Sum(nil)) == detSHA(size))
		}
		for i := 0; i < 20; i++ {
			if resp, seen := doEcho(t, cl, newReq(t, "GET", fmt.Sprintf("%s/small/%d", url, i), "www.example.com")); resp.StatusCode != 200 || seen.URI != fmt.Sprintf("/small/%d", i) {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, seen.URI)
			}
		}
		if n := p.sslStat(t, "https", "handshake") - before; n != 1 {
			t.Errorf("22 requests took %v handshakes, want 1 (keep-alive)", n)
		}
	})

	t.Run("pipelined", func(t *testing.T) {
		// Three requests in one TLS record, the last one closing: three answers in order,
		// then the end of the connection.
		c := mustDialTLS(t, p.Addr["https"], &tls.Config{ServerName: "www.example.com", RootCAs: pki.ca.Pool})
		io.WriteString(c, "GET /p/1 HTTP/1.1\r\nHost: www.example.com\r\n\r\n"+
			"POST /p/2 HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 5\r\n\r\nhello"+
			"GET /p/3 HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
		br := bufio.NewReader(c)
		for i, method := range []string{"GET", "POST", "GET"} {
			resp, body, err := readRespErr(br, method)
			if err != nil {
				t.Fatalf("answer %d: %v", i+1, err)
			}
			var seen echoSeen
			decodeSeen(t, body, &seen)
			if resp.StatusCode != 200 || seen.URI != fmt.Sprintf("/p/%d", i+1) || seen.Method != method {
				t.Errorf("answer %d: %d for %s %s", i+1, resp.StatusCode, seen.Method, seen.URI)
			}
			if i == 1 && seen.BodyLen != 5 {
				t.Errorf("the POST's body reached the backend as %d bytes", seen.BodyLen)
			}
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Errorf("after Connection: close: %q, %v (want the end of the stream)", rest, err)
		}
	})

	t.Run("connection-close-10MiB", func(t *testing.T) {
		// The whole body, then close_notify and the end: nothing of it is lost to the close.
		// (HTTP/1.0 is answered 426 and closed, as Envoy does without accept_http_10.)
		for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
			c := mustDialTLS(t, p.Addr["https"], &tls.Config{ServerName: "www.example.com", RootCAs: pki.ca.Pool})
			size := 10 * mib
			fmt.Fprintf(c, "GET /big?size=%d %s\r\nHost: www.example.com\r\nConnection: close\r\n\r\n", size, proto)
			br := bufio.NewReaderSize(c, 256<<10)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: %v", proto, err)
			}
			h := sha256.New()
			got, err := io.Copy(h, resp.Body)
			if proto == "HTTP/1.0" {
				if resp.StatusCode != 426 || got != 0 || err != nil {
					t.Errorf("HTTP/1.0: %d with %d bytes (%v), want 426 and no body", resp.StatusCode, got, err)
				}
			} else if err != nil || got != size || hex.EncodeToString(h.Sum(nil)) != detSHA(size) {
				t.Fatalf("%s: %d bytes (%v), sha256 equal %v", proto, got, err, hex.EncodeToString(h.Sum(nil)) == detSHA(size))
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("%s: after the body: %q, %v (want the end of the stream)", proto, rest, err)
			}
		}
	})

	t.Run("x-forwarded-proto", func(t *testing.T) {
		// Without use_remote_address a client's own header goes on (Envoy trusts it only
		// then); with use_remote_address the edge overwrites it with the connection's scheme.
		for _, tc := range []struct{ listener, want string }{{"https", "http"}, {"edge", "https"}} {
			port := strings.TrimPrefix(p.Addr[tc.listener], "127.0.0.1:")
			out, verbose, err := runCurl(t, "-sS", "--cacert", pki.CAFile, "--resolve", "www.example.com:"+port+":127.0.0.1",
				"-H", "X-Forwarded-Proto: http", "https://www.example.com:"+port+"/xfp")
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, verbose)
			}
			var seen echoSeen
			decodeSeen(t, out, &seen)
			if xfp := seen.Header["X-Forwarded-Proto"]; len(xfp) != 1 || xfp[0] != tc.want {
				t.Errorf("%s: backend saw x-forwarded-proto %q for a client that sent http, want %s", tc.listener, xfp, tc.want)
			}
		}
	})
}

// TestTLSDownMixedPort: HTTPS and plain HTTP on one port, as Envoy configs often have it:
// the tls_inspector sends TLS to the chain with transport_protocol "tls" (terminated, then
// the HTTP connection manager) and plaintext to the other; the backend sees
// x-forwarded-proto https and http respectively.
func TestTLSDownMixedPort(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "www", "www.example.com")
	be := newEchoBackend(t, "be")
	vhosts := `
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: be }
`
	p := startTLSDown(t, tlsDownSetup{
		Listeners: []tlsListener{{Name: "mixed", Inspector: true, Chains: []tlsChain{
			{Name: "tls", Match: "{ transport_protocol: tls }", Certs: []tlsLeaf{leaf}, ALPN: []string{"http/1.1"},
				Filters: hcmFilterYAML("mixed_tls", vhosts)},
			{Name: "plain", Plain: true, Filters: hcmFilterYAML("mixed_plain", vhosts)},
		}}},
		Clusters: []hcmCluster{{Name: "be", Ports: []int{be.Port}}},
	})
	port := strings.TrimPrefix(p.Addr["mixed"], "127.0.0.1:")
	for _, tc := range []struct{ url, want string }{
		{"https://www.example.com:" + port + "/s", "https"},
		{"http://www.example.com:" + port + "/p", "http"},
		{"https://www.example.com:" + port + "/s2", "https"},
	} {
		out, verbose, err := runCurl(t, "-sS", "--cacert", pki.CAFile, "--resolve", "www.example.com:"+port+":127.0.0.1", tc.url)
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", tc.url, err, verbose)
		}
		var seen echoSeen
		decodeSeen(t, out, &seen)
		if xfp := seen.Header["X-Forwarded-Proto"]; len(xfp) != 1 || xfp[0] != tc.want {
			t.Errorf("%s: backend saw x-forwarded-proto %q, want %s", tc.url, xfp, tc.want)
		}
	}
	p.sslStatEventually(t, "mixed", "handshake", 2)
}
