package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portico-proxy/portico/internal/testpki"
)

// TestTLSDownRaceDetector: portico built with -race (TestMain's binary is not) under a
// bounded mix of concurrent TLS clients on two workers — good handshakes of both versions
// and both SNI names with echoes, big echoes in both directions at once, clients that
// leave mid-handshake, garbage, handshakes cut by a short timeout and clients that close
// right after the handshake: the handshake goroutines and the workers share the adapter,
// and the race detector must find nothing. The counters add up afterwards.
func TestTLSDownRaceDetector(t *testing.T) {
	t.Parallel()
	raceBin := filepath.Join(t.TempDir(), "portico-race")
	if out, err := exec.Command("go", "build", "-race", "-o", raceBin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building portico with -race: %v\n%s", err, out)
	}
	pki := newTLSDownPKI(t)
	a := pki.leaf(testpki.ECDSA, "a", "a.example.com")
	b := pki.leaf(testpki.RSA, "b", "b.example.com")
	s := tlsDownSetup{Concurrency: 2, Listeners: []tlsListener{
		{Name: "echo", Chains: []tlsChain{{Certs: []tlsLeaf{a, b}, ALPN: []string{"x", "y"}, Filters: echoFilterYAML}}},
		{Name: "cut", Chains: []tlsChain{{Certs: []tlsLeaf{a}, ConnectTimeout: "0.3s", Filters: echoFilterYAML}}},
	}}
	admin := freePort(t)
	for i := range s.Listeners {
		s.Listeners[i].Port = freePort(t)
	}
	cfgFile := filepath.Join(t.TempDir(), "portico.yaml")
	if err := os.WriteFile(cfgFile, []byte(tlsDownYAML(s, admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPorticoWith(t, "", fmt.Sprintf("127.0.0.1:%d", admin), func(c *exec.Cmd) {
		c.Path, c.Args[0] = raceBin, raceBin
		c.Env = append(c.Environ(), "GORACE=halt_on_error=1", "GOTRACEBACK=all")
	}, "-c", cfgFile, "--concurrency", "2")
	baseFDs := p.fds(t)
	echoAddr := fmt.Sprintf("127.0.0.1:%d", s.Listeners[0].Port)
	cutAddr := fmt.Sprintf("127.0.0.1:%d", s.Listeners[1].Port)
	half := clientHello(t, &tls.Config{ServerName: "a.example.com"})
	half = half[:len(half)/2]

	var wg sync.WaitGroup
	var good, failed atomic.Int64
	errs := make(chan error, 1000)
	run := func(n int, f func(i int) error) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(i); err != nil {
					errs <- err
				}
			}()
		}
	}
	dial := func(i int, v uint16) (*tls.Conn, error) {
		sni := []string{"a.example.com", "b.example.com"}[i%2]
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second, Deadline: time.Now().Add(60 * time.Second)}, "tcp", echoAddr,
			&tls.Config{ServerName: sni, RootCAs: pki.ca.Pool, MaxVersion: v, NextProtos: []string{"y", "z"}})
		if err != nil {
			return nil, fmt.Errorf("handshake %d (%s): %w", i, sni, err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		return c, nil
	}
	// 48 clients × 4 connections: handshake, 16 KiB echo, close.
	run(48, func(i int) error {
		for k := 0; k < 4; k++ {
			c, err := dial(i+k, []uint16{tls.VersionTLS12, tls.VersionTLS13}[k%2])
			if err != nil {
				return err
			}
			msg := bytes.Repeat([]byte{byte(i), byte(k)}, 8<<10)
			if _, err := c.Write(msg); err != nil {
				c.Close()
				return err
			}
			got := make([]byte, len(msg))
			_, err = io.ReadFull(c, got)
			c.Close()
			if err != nil || !bytes.Equal(got, msg) {
				return fmt.Errorf("echo %d/%d: %v", i, k, err)
			}
			good.Add(1)
		}
		return nil
	})
	// 4 big echoes, written and read at once.
	run(4, func(i int) error {
		c, err := dial(i, tls.VersionTLS13)
		if err != nil {
			return err
		}
		defer c.Close()
		const n = 16 << 20
		go io.CopyBuffer(c, newDetStream(n), make([]byte, 64<<10))
		h := sha256.New()
		got, err := io.CopyN(h, c, n)
		if err != nil || fmt.Sprintf("%x", h.Sum(nil)) != detSHA(n) {
			return fmt.Errorf("big echo %d: %d bytes, %v", i, got, err)
		}
		good.Add(1)
		return nil
	})
	// Clients that leave mid-handshake, garbage, and ones that close right after it.
	run(20, func(i int) error {
		c, err := net.Dial("tcp", echoAddr)
		if err != nil {
			return err
		}
		if i%2 == 0 {
			c.Write(half)
		} else {
			c.Write([]byte("this is not TLS at all\r\n\r\n"))
		}
		time.Sleep(time.Duration(i) * time.Millisecond)
		c.Close()
		failed.Add(1)
		return nil
	})
	run(20, func(i int) error {
		c, err := dial(i, tls.VersionTLS13)
		if err != nil {
			return err
		}
		c.Write([]byte("bye"))
		c.Close()
		good.Add(1)
		return nil
	})
	// Stalled handshakes that the 0.3 s timeout cuts, while their goroutines wait.
	var cut atomic.Int64
	run(10, func(i int) error {
		c, err := net.Dial("tcp", cutAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write(half)
		if !closedWithin(c, 10*time.Second) {
			return fmt.Errorf("stalled handshake %d not cut", i)
		}
		cut.Add(1)
		return nil
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("the mix did not finish in 90 s")
	case <-p.done:
		t.Fatalf("portico exited: %v\n%s", p.err, p.stderr.String())
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if strings.Contains(p.stderr.String(), "DATA RACE") {
		t.Fatalf("the race detector fired:\n%s", p.stderr.String())
	}
	st := p.stats(t)
	t.Logf("handshakes %v, connection errors %v, timeouts %v", st["listener.echo.ssl.handshake"], st["listener.echo.ssl.connection_error"], st["listener.cut.ssl.handshake_timeout"])
	// Every connection to the echo listener ends its handshake once: completed or failed.
	// (A client that closes right after its Finished may be reset before the server read
	// it: then it failed; so the split may move, the sum may not.)
	eventually(t, "the counters to add up", func() bool {
		st := p.stats(t)
		hs, ce := st["listener.echo.ssl.handshake"], st["listener.echo.ssl.connection_error"]
		return hs+ce == float64(good.Load()+failed.Load()) && hs >= float64(good.Load()-20) &&
			st["listener.cut.ssl.handshake_timeout"] == float64(cut.Load())
	})
	// And it still serves.
	c := mustDialTLS(t, echoAddr, &tls.Config{ServerName: "a.example.com", RootCAs: pki.ca.Pool})
	echoTLS(t, c, "after the mix\n")
	c.Close()
	select {
	case <-p.done:
		t.Fatalf("portico exited: %v", p.err)
	default:
	}
	// Nothing is left behind: every connection's fd is closed, and no handshake goroutine
	// remains (SIGQUIT makes the runtime print every goroutine, then exit).
	eventually(t, "portico's fds back to their count before the mix", func() bool { return p.fds(t) <= baseFDs })
	p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGQUIT")
	}
	dump := p.stderr.String()
	if !strings.Contains(dump, "goroutine ") {
		t.Fatalf("no goroutine dump after SIGQUIT:\n%s", dump)
	}
	if n := strings.Count(dump, "transport/tls.(*socket).handshake"); n != 0 {
		t.Errorf("%d handshake goroutines left after every client went:\n%s", n, dump)
	}
}
