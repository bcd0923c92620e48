package engine_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

// spliceServer runs one worker with a tcp_proxy listener in front of an echo backend.
func spliceServer(t *testing.T, backend netip.AddrPort, disable bool) (*engine.Server, *engine.Listener, *tcpproxy.Factory) {
	t.Helper()
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1, DisableSplice: disable, KernelPairs: kernelPairs})
	if err != nil {
		t.Fatal(err)
	}
	c, err := engine.NewCluster(engine.ClusterConfig{Name: "echo", Endpoints: []engine.Endpoint{{Address: backend}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddCluster(c); err != nil {
		t.Fatal(err)
	}
	lc, f := tcpProxyListener(s, tcpproxy.Config{StatPrefix: "bulk", IdleTimeout: time.Hour,
		Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("echo"), Weight: 1}}})
	l, err := s.AddListener(lc)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	return s, l, f
}

// copyEchoServer echoes with a plain buffer loop: io.Copy between two TCPConns would
// splice through pipes of Go's own, which the fd accounting below would count.
func copyEchoServer(t *testing.T) netip.AddrPort {
	return backend(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				c.(*net.TCPConn).CloseWrite()
				return
			}
		}
	})
}

// spliceModes runs a test with splicing on and off.
var spliceModes = []struct {
	name    string
	disable bool
}{{"splice", false}, {"copy", true}}

// randomPayload returns size pseudo-random bytes from seed and their SHA-256.
func randomPayload(size int, seed uint64) ([]byte, [32]byte) {
	p := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p, sha256.Sum256(p)
}

// TestTCPProxySplice: a bulk transfer both ways through tcp_proxy arrives intact and in
// order whether it is copied or spliced, including while the client stalls (the pipe backs
// up) and across a half-close; the byte counters see every byte; small request/response
// traffic never switches to splice; and closing the server leaves no pipe behind.
func TestTCPProxySplice(t *testing.T) {
	skipHeldOnKernelPath(t, kernelPairs != nil)
	const size = 24 << 20
	payload, want := randomPayload(size, 1)
	for _, tc := range spliceModes {
		t.Run(tc.name, func(t *testing.T) {
			backend := copyEchoServer(t)
			fds := fdCount(t)
			s, l, f := spliceServer(t, backend, tc.disable)
			c, err := net.Dial("tcp", l.Address().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))

			// Small round trips first: they must not start a splice.
			for i := 0; i < 50; i++ {
				roundTrip(t, c, "ping")
			}
			if n := s.Workers()[0].PipesMade(); n != 0 {
				t.Fatalf("%d pipes made for small request/response traffic", n)
			}

			werr := make(chan error, 1)
			go func() {
				_, err := io.Copy(c, bytes.NewReader(payload))
				if err == nil {
					err = c.(*net.TCPConn).CloseWrite()
				}
				werr <- err
			}()
			// Stall the reader so the proxy's client side fills up and the upstream's bytes
			// wait in the pipe (or the write buffer).
			time.Sleep(300 * time.Millisecond)
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				t.Fatalf("read after %d bytes: %v", n, err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if n != size {
				t.Fatalf("echoed %d bytes, want %d", n, size)
			}
			var got [32]byte
			copy(got[:], h.Sum(nil))
			if got != want {
				t.Fatal("echoed bytes differ from those sent")
			}
			st := f.Stats(0)
			const total = size + 50*4
			waitFor(t, "byte counters", func() bool {
				return st.DownstreamCxRxBytesTotal.Value() == total && st.DownstreamCxTxBytesTotal.Value() == total
			})
			pipes := s.Workers()[0].PipesMade()
			switch {
			case kernelPairs != nil && pipes != 0:
				t.Errorf("the kernel forwards the pair, yet %d pipes made", pipes)
			case kernelPairs != nil:
			case tc.disable && pipes != 0:
				t.Errorf("splice disabled, yet %d pipes made", pipes)
			case !tc.disable && pipes != 2:
				t.Errorf("%d pipes made, want one per direction", pipes)
			}
			c.Close()
			if kernelPairs != nil {
				waitFor(t, "the pair counted on the sockmap path", func() bool { return st.SockmapCx.Value() == 1 })
			}
			s.Close()
			waitFor(t, "fds released", func() bool { return fdCount(t) <= fds })
		})
	}
}

// TestTCPProxySpliceUpstreamCloses: the upstream sends a bulk response and closes while the
// client is not reading; everything still queued (in the pipe or the write buffer) reaches
// the client before its EOF.
func TestTCPProxySpliceUpstreamCloses(t *testing.T) {
	skipHeldOnKernelPath(t, kernelPairs != nil)
	const size = 16 << 20
	payload, want := randomPayload(size, 3)
	for _, tc := range spliceModes {
		t.Run(tc.name, func(t *testing.T) {
			up := backend(t, func(c net.Conn) { c.Write(payload) })
			s, l, _ := spliceServer(t, up, tc.disable)
			defer s.Close()
			c, err := net.Dial("tcp", l.Address().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			time.Sleep(300 * time.Millisecond) // the upstream finishes and closes meanwhile
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil || n != size {
				t.Fatalf("read %d bytes, err %v; want %d and EOF", n, err, size)
			}
			var got [32]byte
			copy(got[:], h.Sum(nil))
			if got != want {
				t.Fatal("bytes differ from those sent")
			}
			if pipes := s.Workers()[0].PipesMade(); kernelPairs == nil && tc.disable != (pipes == 0) {
				t.Errorf("splice disabled=%v, %d pipes made", tc.disable, pipes)
			}
		})
	}
}
