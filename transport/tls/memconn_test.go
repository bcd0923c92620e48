package tls

import (
	"bytes"
	ctls "crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
)

// TestCryptoTLSResumesAfterWouldBlock pins the crypto/tls behaviour the worker-driven
// established connection relies on (implied by crypto/tls's source, not documented): after
// the handshake, a tls.Conn over memConn whose Read answers wouldBlockError (a net.Error,
// Temporary and Timeout) when empty keeps the partial record across the error; fed one byte
// at a time, with a Read after every byte, it returns the application data intact, and
// Write goes on working. If this fails on a new Go release, the established path must
// change (see wouldBlockError).
func TestCryptoTLSResumesAfterWouldBlock(t *testing.T) {
	ca := newTestCA(t)
	for _, v := range []uint16{ctls.VersionTLS12, ctls.VersionTLS13} {
		t.Run(ctls.VersionName(v), func(t *testing.T) {
			var sc, cc *memConn
			sc = newMemConn(true, func(p []byte) { cc.feed(p) })
			cc = newMemConn(true, func(p []byte) { sc.feed(p) })
			srv := ctls.Server(sc, &ctls.Config{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")}, MinVersion: v, MaxVersion: v})
			cli := ctls.Client(cc, &ctls.Config{RootCAs: ca.pool, ServerName: "srv.test"})
			var wg sync.WaitGroup
			var cerr error
			wg.Add(1)
			go func() { defer wg.Done(); cerr = cli.Handshake() }()
			if err := srv.Handshake(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if cerr != nil {
				t.Fatal(cerr)
			}

			// The worker now drives the server: Read answers would-block when empty, and the
			// client's records are captured instead of fed.
			var wire bytes.Buffer
			var srvOut bytes.Buffer
			sc.setNonBlocking(func(p []byte) { srvOut.Write(p) })
			cc.mu.Lock()
			cc.out = func(p []byte) { wire.Write(p) }
			cc.mu.Unlock()

			msg := bytes.Repeat([]byte("0123456789abcdef"), 300) // 4800 bytes, one record
			if _, err := cli.Write(msg); err != nil {
				t.Fatal(err)
			}
			rec := wire.Bytes()
			buf := make([]byte, 64<<10)
			var got []byte
			blocks := 0
			for i := range rec {
				sc.feed(rec[i : i+1])
				for {
					n, err := srv.Read(buf)
					got = append(got, buf[:n]...)
					if err != nil {
						var ne net.Error
						//lint:ignore SA1019 crypto/tls itself decides on Temporary(), so the test checks it
						if !errors.As(err, &ne) || !ne.Temporary() || !ne.Timeout() {
							t.Fatalf("byte %d: Read error %T %v", i, err, err)
						}
						if _, ok := err.(wouldBlockError); !ok {
							t.Fatalf("byte %d: error %T is not the adapter's", i, err)
						}
						blocks++
						break
					}
					if n == 0 {
						break
					}
				}
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("read %d bytes, want %d intact", len(got), len(msg))
			}
			if blocks < len(rec)-1 {
				t.Fatalf("only %d would-blocks for %d bytes", blocks, len(rec))
			}

			// Write still works after all those temporary errors.
			if _, err := srv.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			cc.feed(srvOut.Bytes())
			p := make([]byte, 16)
			n, err := cli.Read(p)
			if err != nil || string(p[:n]) != "pong" {
				t.Fatalf("client read %q, %v", p[:n], err)
			}
		})
	}
}
