package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/internal/testpki"
)

// tlsPeer builds testdata/tlsdown/tlspeer (without the race detector: it encrypts and
// hashes GiB streams) and checks that its stream is the tests' detStream.
func tlsPeer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tlspeer")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/tlsdown/tlspeer").CombinedOutput()
	if err != nil {
		t.Fatalf("building tlspeer: %v\n%s", err, out)
	}
	if got := runBodyPeer(t, bin, "sum", strconv.FormatInt(mib, 10)); got != detSHA(mib) {
		t.Fatalf("tlspeer's stream differs from detStream: %s vs %s", got, detSHA(mib))
	}
	return bin
}

// TestTLSDownTCPProxyBulk: TLS terminated in front of tcp_proxy and a plaintext backend
// (tlspeer serve): 1 GiB up and 1 GiB down arrive whole (sha256, generated on the fly on
// both sides, by tlspeer as the TLS client); a client that stops reading a 1 GiB download
// (256 MiB, far above every buffer on the way) keeps portico's RSS bounded (the watermarks stop the upstream reads while the TLS write
// side is full), and the transfer completes once it reads.
func TestTLSDownTCPProxyBulk(t *testing.T) {
	t.Parallel()
	peer := tlsPeer(t)
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "bulk", "bulk.example.com")
	p := startTLSDown(t, tlsDownSetup{Concurrency: 1,
		Listeners: []tlsListener{{Name: "bulk", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: tcpProxyFilterYAML("sink")}}}},
		Clusters:  []hcmCluster{{Name: "sink", Ports: []int{serveBodyPeer(t, peer)}}},
	})
	target := []string{p.Addr["bulk"], "bulk.example.com", pki.CAFile}
	size := func(n int64) string { return strconv.FormatInt(n, 10) }
	sum := bodyPeerSum(t, peer, gib)

	t.Run("upload-1GiB", func(t *testing.T) {
		start := time.Now()
		// "<sent sha> <len> <received sha>"
		f := strings.Fields(runBodyPeer(t, peer, append(append([]string{"up"}, target...), size(gib))...))
		if len(f) != 3 || f[0] != sum || f[1] != size(gib) || f[2] != sum {
			t.Fatalf("upload: %q, want %d bytes with sha256 %s received", f, gib, sum)
		}
		t.Logf("1 GiB up in %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("download-1GiB", func(t *testing.T) {
		start, cpu := time.Now(), cpuTicks(t, p.cmd.Process.Pid)
		f := strings.Fields(runBodyPeer(t, peer, append(append([]string{"down"}, target...), size(gib))...))
		if len(f) != 2 || f[0] != size(gib) || f[1] != sum {
			t.Fatalf("download: %q, want %d bytes with sha256 %s", f, gib, sum)
		}
		t.Logf("1 GiB down in %v, portico CPU %d ticks", time.Since(start).Round(time.Millisecond), cpuTicks(t, p.cmd.Process.Pid)-cpu)
	})
	t.Run("stalled-reader", func(t *testing.T) {
		// The transfers above warmed the buffers up: the idle figure includes them.
		time.Sleep(200 * time.Millisecond)
		idle := p.rss(t)
		rxBefore := p.stats(t)["cluster.sink.upstream_cx_rx_bytes_total"]

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		const big = 256 * mib
		cmd := exec.CommandContext(ctx, peer, append(append([]string{"down"}, target...), size(big), "stall")...)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		out := bufio.NewReader(stdout)
		if l, err := out.ReadString('\n'); err != nil || l != "asked\n" {
			t.Fatalf("tlspeer: %q %v %s", l, err, stderr.String())
		}
		var peak int64
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
			peak = max(peak, p.rss(t))
			time.Sleep(50 * time.Millisecond)
		}
		rx := p.stats(t)["cluster.sink.upstream_cx_rx_bytes_total"] - rxBefore
		t.Logf("idle RSS %d MiB, peak while stalled %d MiB, read from the backend meanwhile %.1f MiB", idle>>20, peak>>20, rx/float64(mib))
		if peak-idle > 64*mib {
			t.Errorf("RSS grew by %d MiB while the client did not read; want < 64 MiB", (peak-idle)>>20)
		}
		if rx > float64(64*mib) {
			t.Errorf("portico read %.0f MiB from the backend for a client that reads nothing", rx/float64(mib))
		}
		start, cpu := time.Now(), cpuTicks(t, p.cmd.Process.Pid)
		stdin.Write([]byte("go\n"))
		l, err := out.ReadString('\n')
		if f := strings.Fields(l); err != nil || len(f) != 2 || f[0] != size(big) || f[1] != bodyPeerSum(t, peer, big) {
			t.Fatalf("after the stall: %q %v %s", l, err, stderr.String())
		}
		t.Logf("256 MiB down after the stall in %v, portico CPU %d ticks", time.Since(start).Round(time.Millisecond), cpuTicks(t, p.cmd.Process.Pid)-cpu)
	})
}

// TestTLSDownHTTPSlowReader: the same through the HTTP connection manager: an HTTPS
// client (tlspeer get) that stops reading a 256 MiB response from bodypeer keeps portico's
// RSS bounded, and the whole body arrives once it reads.
func TestTLSDownHTTPSlowReader(t *testing.T) {
	t.Parallel()
	peer, body := tlsPeer(t), bodyPeer(t)
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "www", "www.example.com")
	p := startTLSDown(t, tlsDownSetup{Concurrency: 1,
		Listeners: []tlsListener{{Name: "https", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, ALPN: []string{"http/1.1"},
			Filters: hcmFilterYAML("https", `
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: peer, timeout: 0s }
`)}}}},
		Clusters: []hcmCluster{{Name: "peer", Ports: []int{serveBodyPeer(t, body)}}},
	})
	url := func(n int64) string { return fmt.Sprintf("https://%s/download?size=%d", p.Addr["https"], n) }
	// Warm up, so that the idle figure includes the pools and buffers.
	for i := 0; i < 3; i++ {
		if f := strings.Fields(runBodyPeer(t, peer, "get", url(16*mib), "www.example.com", pki.CAFile)); len(f) != 3 || f[0] != "200" || f[2] != bodyPeerSum(t, peer, 16*mib) {
			t.Fatalf("warm-up: %q", f)
		}
	}
	time.Sleep(200 * time.Millisecond)
	idle := p.rss(t)

	const big = 256 * mib
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, peer, "get", url(big), "www.example.com", pki.CAFile, "stall")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	out := bufio.NewReader(stdout)
	if l, err := out.ReadString('\n'); err != nil || l != "headers\n" {
		t.Fatalf("tlspeer: %q %v %s", l, err, stderr.String())
	}
	var peak int64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		peak = max(peak, p.rss(t))
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("idle RSS %d MiB, peak while stalled %d MiB", idle>>20, peak>>20)
	if peak-idle > 64*mib {
		t.Errorf("RSS grew by %d MiB while the client did not read; want < 64 MiB", (peak-idle)>>20)
	}
	stdin.Write([]byte("go\n"))
	l, err := out.ReadString('\n')
	if f := strings.Fields(l); err != nil || len(f) != 3 || f[0] != "200" || f[1] != strconv.FormatInt(big, 10) || f[2] != bodyPeerSum(t, peer, big) {
		t.Fatalf("after the stall: %q %v %s", l, err, stderr.String())
	}
}

// TestTLSDownHalfCloseFromBackend: the backend ends its side first (FIN) and goes on
// reading: the TLS client gets close_notify after the greeting, can still send, and what
// it sends after that reaches the backend whole; then its own close_notify ends the
// backend's read.
func TestTLSDownHalfCloseFromBackend(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	backend := serveTCP(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, "greeting, then my FIN\n")
		c.(*net.TCPConn).CloseWrite()
		h := sha256.New()
		n, err := io.Copy(h, c)
		got <- fmt.Sprintf("%d %x %v", n, h.Sum(nil), err)
	})
	pki := newTLSDownPKI(t)
	leaf := pki.leaf(testpki.ECDSA, "h", "h.example.com")
	p := startTLSDown(t, tlsDownSetup{
		Listeners: []tlsListener{{Name: "half", Chains: []tlsChain{{Certs: []tlsLeaf{leaf}, Filters: tcpProxyFilterYAML("be")}}}},
		Clusters:  []hcmCluster{{Name: "be", Ports: []int{backend}}},
	})
	c := mustDialTLS(t, p.Addr["half"], &tls.Config{ServerName: "h.example.com", RootCAs: pki.ca.Pool})
	greeting, err := io.ReadAll(c)
	if err != nil || string(greeting) != "greeting, then my FIN\n" {
		t.Fatalf("read %q, %v; want the greeting, then the end of the stream", greeting, err)
	}
	const n = 4 << 20
	if _, err := io.CopyBuffer(c, newDetStream(n), make([]byte, 64<<10)); err != nil {
		t.Fatalf("writing after the server's close_notify: %v", err)
	}
	c.CloseWrite()
	select {
	case s := <-got:
		if want := fmt.Sprintf("%d %s <nil>", n, detSHA(n)); s != want {
			t.Errorf("backend read %s, want %s", s, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the backend did not see the client's data and end in 20 s")
	}
}
