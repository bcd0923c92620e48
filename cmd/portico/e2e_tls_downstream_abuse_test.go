package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-proxy/portico/internal/testpki"
)

// TestTLSDownGarbage: bytes that are not TLS, instead of a ClientHello or right after a
// valid one, close that connection (counted in ssl.connection_error) and nothing else: on a
// single worker, a TLS connection established before keeps echoing and new clients are
// served. With and without the tls_inspector in front.
func TestTLSDownGarbage(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "g", "g.example.com")
	chain := tlsChain{Certs: []tlsLeaf{leaf}, Filters: echoFilterYAML}
	p := startTLSDown(t, tlsDownSetup{Concurrency: 1, Listeners: []tlsListener{
		{Name: "plain", Chains: []tlsChain{chain}},
		{Name: "inspect", Inspector: true, Chains: []tlsChain{chain}},
	}})
	cfg := &tls.Config{ServerName: "g.example.com", RootCAs: pki.ca.Pool}
	hello12 := clientHello(t, &tls.Config{ServerName: "g.example.com", MaxVersion: tls.VersionTLS12})
	hello13 := clientHello(t, &tls.Config{ServerName: "g.example.com", MinVersion: tls.VersionTLS13})
	junk := bytes.Repeat([]byte{0xff, 0x00, 0x17, 0x42}, 64)
	inputs := []struct {
		name string
		data []byte
		// hello: the server answers (a ServerHello) before it sees the garbage.
		hello bool
	}{
		{"tls1.2-hello+junk", append(append([]byte(nil), hello12...), junk...), true},
		{"tls1.3-hello+junk", append(append([]byte(nil), hello13...), junk...), true},
		// A well-formed record that is not a valid next handshake message.
		{"tls1.3-hello+bogus-record", append(append([]byte(nil), hello13...), 0x16, 0x03, 0x03, 0x00, 0x04, 0x14, 0x00, 0x00, 0x00), true},
		{"http", []byte("GET / HTTP/1.1\r\nHost: g.example.com\r\n\r\n"), false},
		{"junk", junk, false},
		{"oversized-record", []byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00}, false},
		{"bad-hello-body", []byte{0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef}, false},
	}
	for _, l := range []string{"plain", "inspect"} {
		t.Run(l, func(t *testing.T) {
			addr := p.Addr[l]
			established := mustDialTLS(t, addr, cfg)
			echoTLS(t, established, "before\n")
			for i, in := range inputs {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write(in.data); err != nil {
					t.Fatalf("%s: %v", in.name, err)
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, err := io.ReadAll(c)
				c.Close()
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("%s: still open after 5 s (read %d bytes)", in.name, len(got))
				}
				if in.hello && (len(got) == 0 || got[0] != 0x16) {
					t.Errorf("%s: the server did not answer the ClientHello before the garbage: % x", in.name, got[:min(len(got), 16)])
				}
				if !in.hello && len(got) > 0 && got[0] != 0x15 {
					t.Errorf("%s: the server sent % x, want nothing or an alert", in.name, got[:min(len(got), 16)])
				}
				p.sslStatEventually(t, l, "connection_error", float64(i+1))
				// The established connection on the same worker is untouched.
				echoTLS(t, established, fmt.Sprintf("after %s\n", in.name))
			}
			// And new clients are served.
			for i := 0; i < 3; i++ {
				echoTLS(t, mustDialTLS(t, addr, cfg), "new\n")
			}
			if n := p.sslStat(t, l, "connection_error"); n != float64(len(inputs)) {
				t.Errorf("connection_error = %v, want %d", n, len(inputs))
			}
		})
	}
}

// stallHandshakes opens n connections to addr that each send the first half of a
// ClientHello and then nothing. They are closed when the test ends.
func stallHandshakes(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	half := clientHello(t, &tls.Config{ServerName: "s.example.com"})
	half = half[:len(half)/2]
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("stalled client %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := c.Write(half); err != nil {
			t.Fatalf("stalled client %d: %v", i, err)
		}
	}
	return conns
}

// countClosed is how many of conns the peer closes (EOF or reset) within d, all waited
// for at once.
func countClosed(conns []net.Conn, d time.Duration) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if closedWithin(c, d) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n
}

// TestTLSDownStalledHandshakes: on a single worker, 50 clients that send half a ClientHello
// and stall hold their handshakes open (transport_socket_connect_timeout 60s) while new curl
// clients complete; a short transport_socket_connect_timeout cuts stalled handshakes
// (ssl.handshake_timeout) and still serves a real client.
func TestTLSDownStalledHandshakes(t *testing.T) {
	t.Parallel()
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "s", "s.example.com")
	p := startTLSDown(t, tlsDownSetup{Concurrency: 1, Listeners: []tlsListener{
		{Name: "slow", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ConnectTimeout: "60s", ALPN: []string{"http/1.1"},
			Filters: hcmDirectYAML("slow", "served\n")}}},
		{Name: "fast", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ConnectTimeout: "1s", ALPN: []string{"http/1.1"},
			Filters: hcmDirectYAML("fast", "served fast\n")}}},
	}})
	curl := func(t *testing.T, l string) (string, error) {
		t.Helper()
		port := strings.TrimPrefix(p.Addr[l], "127.0.0.1:")
		out, verbose, err := runCurl(t, "-sS", "--max-time", "20", "--cacert", pki.CAFile,
			"--resolve", "s.example.com:"+port+":127.0.0.1", "https://s.example.com:"+port+"/")
		if err != nil {
			return out, fmt.Errorf("%v: %s", err, verbose)
		}
		return out, nil
	}

	t.Run("long-timeout", func(t *testing.T) {
		stalled := stallHandshakes(t, p.Addr["slow"], 50)
		eventually(t, "50 stalled connections accepted", func() bool {
			return p.stats(t)["listener.slow.downstream_cx_active"] >= 50
		})
		for i := 0; i < 5; i++ {
			if out, err := curl(t, "slow"); err != nil || out != "served\n" {
				t.Fatalf("curl %d while 50 handshakes stall: %q %v", i, out, err)
			}
		}
		if closed := countClosed(stalled, 100*time.Millisecond); closed != 0 {
			t.Errorf("%d of %d stalled handshakes were closed before their 60 s timeout", closed, len(stalled))
		}
		if n := p.sslStat(t, "slow", "handshake_timeout"); n != 0 {
			t.Errorf("handshake_timeout = %v before any timeout", n)
		}
		p.sslStatEventually(t, "slow", "handshake", 5)
	})

	t.Run("short-timeout", func(t *testing.T) {
		// A connection established before the stall, kept alive across the timeouts: the
		// timeout bounds the handshake only.
		alive := mustDialTLS(t, p.Addr["fast"], &tls.Config{ServerName: "s.example.com", RootCAs: pki.ca.Pool})
		aliveBR := bufio.NewReader(alive)
		get := func(what string) {
			t.Helper()
			alive.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(alive, "GET / HTTP/1.1\r\nHost: s.example.com\r\n\r\n")
			if resp, body, err := readRespErr(aliveBR, "GET"); err != nil || resp.StatusCode != 200 || body != "served fast\n" {
				t.Fatalf("keep-alive request %s: %v", what, err)
			}
		}
		get("before the stall")
		stalled := stallHandshakes(t, p.Addr["fast"], 10)
		// A real client's handshake takes far less than the timeout, meanwhile. (On a
		// machine so loaded that one takes a whole second, it is cut too: a few tries.)
		served := 0
		var last error
		for i := 0; i < 5 && served == 0; i++ {
			out, err := curl(t, "fast")
			if err == nil && out == "served fast\n" {
				served++
			} else {
				last = fmt.Errorf("%q %v", out, err)
			}
		}
		if served == 0 {
			t.Fatalf("curl while 10 handshakes stall, 5 tries: %v", last)
		}
		if closed := countClosed(stalled, 10*time.Second); closed != len(stalled) {
			t.Fatalf("%d of %d stalled handshakes were not cut by a 1 s timeout in 10 s", len(stalled)-closed, len(stalled))
		}
		eventually(t, "10 handshake timeouts, each a connection error", func() bool {
			st := p.stats(t)
			to, ce := st["listener.fast.ssl.handshake_timeout"], st["listener.fast.ssl.connection_error"]
			return to >= 10 && ce == to && st["listener.fast.ssl.handshake"] >= 2
		})
		// More than the 1 s timeout after its handshake.
		get("after the timeouts")
	})
}

// TestTLSDownHandshakeOverflow: the cap on handshakes in flight per worker
// (tls.DefaultMaxHandshakes, 256, not configurable from YAML) refuses the connections above
// it (ssl.handshake_overflow) on a single worker flooded with 300 stalled handshakes, while
// an established TLS connection keeps echoing; once the flood goes, new handshakes are
// served again.
func TestTLSDownHandshakeOverflow(t *testing.T) {
	t.Parallel()
	const flood, capacity = 300, 256 // tls.DefaultMaxHandshakes
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "s", "s.example.com")
	p := startTLSDown(t, tlsDownSetup{Concurrency: 1, Listeners: []tlsListener{
		{Name: "flood", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ConnectTimeout: "60s", Filters: echoFilterYAML}}},
		{Name: "cut", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ConnectTimeout: "1s", Filters: echoFilterYAML}}},
	}})
	addr := p.Addr["flood"]
	cfg := &tls.Config{ServerName: "s.example.com", RootCAs: pki.ca.Pool}
	established := mustDialTLS(t, addr, cfg)
	echoTLS(t, established, "before the flood\n")

	stalled := stallHandshakes(t, addr, flood)
	p.sslStatEventually(t, "flood", "handshake_overflow", flood-capacity)
	echoTLS(t, established, "during the flood\n")

	// The refused ones are exactly the connections closed; the others still wait.
	if closed := countClosed(stalled, time.Second); closed != flood-capacity {
		t.Errorf("%d stalled connections closed, want the %d over the cap", closed, flood-capacity)
	}
	// A new handshake while the slots are full is refused too.
	if _, err := dialTLS(t, addr, cfg); err == nil {
		t.Error("a handshake above the cap was served")
	}
	p.sslStatEventually(t, "flood", "handshake_overflow", flood-capacity+1)
	echoTLS(t, established, "still during the flood\n")

	for _, c := range stalled {
		c.Close()
	}
	// Closing the stalled connections ends their handshakes and frees the slots.
	var served *tls.Conn
	eventually(t, "a handshake after the flood", func() bool {
		c, err := dialTLS(t, addr, cfg)
		served = c
		return err == nil
	})
	echoTLS(t, served, "after the flood\n")
	echoTLS(t, established, "after the flood\n")
	if n := p.sslStat(t, "flood", "handshake_timeout"); n != 0 {
		t.Errorf("handshake_timeout = %v", n)
	}
	for _, c := range append(stalled, served) {
		c.Close()
	}

	// The slots are the worker's, whatever the listener: a flood on a listener whose
	// timeout is 1 s fills them, and the timeouts free them again while the clients
	// stay.
	eventually(t, "the first flood's slots to be free", func() bool {
		c, err := dialTLS(t, p.Addr["cut"], cfg)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	overflowBefore := p.sslStat(t, "cut", "handshake_overflow")
	stallHandshakes(t, p.Addr["cut"], flood) // closed when the test ends
	// Each stalled connection is either refused or cut: 44 and 256 when all 300 arrive
	// within the first second, and the sum whatever the machine's load.
	eventually(t, "every stalled handshake refused or cut", func() bool {
		st := p.stats(t)
		over, cut := st["listener.cut.ssl.handshake_overflow"]-overflowBefore, st["listener.cut.ssl.handshake_timeout"]
		return over+cut == flood && cut >= capacity
	})
	// The clients are still connected (they never close), but their slots came back.
	echoTLS(t, mustDialTLS(t, p.Addr["flood"], cfg), "slots back after the timeouts\n")
	echoTLS(t, established, "after the second flood\n")
}
