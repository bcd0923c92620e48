package engine_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/engine/sockmap"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
)

// sockmapProxy runs one worker with a tcp_proxy listener on the sockmap path in front of
// handle's backend. Without root the test is skipped; as root, a map that cannot load fails.
func sockmapProxy(t *testing.T, handle func(net.Conn)) (*engine.Listener, *tcpproxy.Factory) {
	l, f, _ := sockmapServer(t, handle, nil)
	return l, f
}

// sockmapProxyWith is sockmapProxy with mod applied to the tcp_proxy config.
func sockmapProxyWith(t *testing.T, handle func(net.Conn), mod func(*tcpproxy.Config)) (*engine.Listener, *tcpproxy.Factory) {
	l, f, _ := sockmapServer(t, handle, mod)
	return l, f
}

// kernelHolds reads worker 0's KernelHolds on the worker.
func kernelHolds(s *engine.Server) (holds, pairs int) {
	done := make(chan struct{})
	s.Workers()[0].Post(func() { holds, pairs = s.Workers()[0].KernelHolds(); close(done) })
	<-done
	return
}

// sockmapServer is sockmapProxyWith that also returns the server.
func sockmapServer(t *testing.T, handle func(net.Conn), mod func(*tcpproxy.Config)) (*engine.Listener, *tcpproxy.Factory, *engine.Server) {
	t.Helper()
	m, err := sockmap.Open(0)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // after the server's cleanup: registered first
	up := backend(t, handle)
	var f *tcpproxy.Factory
	s, ls := serverWith(t, engine.ServerOptions{Concurrency: 1, KernelPairs: m},
		[]engine.ClusterConfig{{Name: "b", Endpoints: []engine.Endpoint{{Address: up}}}},
		func(s *engine.Server) []engine.ListenerConfig {
			var lc engine.ListenerConfig
			cfg := tcpproxy.Config{StatPrefix: "sm", IdleTimeout: time.Hour,
				Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("b"), Weight: 1}}}
			if mod != nil {
				mod(&cfg)
			}
			lc, f = tcpProxyListener(s, cfg)
			return []engine.ListenerConfig{lc}
		})
	return ls[0], f, s
}

// logSink collects access-log entries.
type logSink struct {
	mu      sync.Mutex
	entries []accesslog.Entry
}

func (l *logSink) Log(e *accesslog.Entry) {
	l.mu.Lock()
	l.entries = append(l.entries, *e)
	l.mu.Unlock()
}

func (l *logSink) all() []accesslog.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]accesslog.Entry(nil), l.entries...)
}

// TestTCPProxySockmapIdleAndAccessLog: the worker sees none of a paired connection's bytes,
// yet traffic keeps idle_timeout away (tcpi_last_data_recv), silence ends it, and the access
// log's byte counts (TCP_INFO at close) are what the client sent and received.
func TestTCPProxySockmapIdleAndAccessLog(t *testing.T) {
	logs := &logSink{}
	l, f := sockmapProxyWith(t, func(c net.Conn) { io.Copy(c, c) }, func(cfg *tcpproxy.Config) {
		cfg.IdleTimeout = 300 * time.Millisecond
		cfg.AccessLogs = []accesslog.Logger{logs}
	})
	c := dial(t, l.Address())
	start := time.Now()
	trips := 0
	for time.Since(start) < 600*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
		roundTrip(t, c, "ping")
		trips++
	}
	st := f.Stats(0)
	if n := st.IdleTimeout.Value(); n != 0 {
		t.Fatalf("idle_timeout fired on a busy paired connection (%d)", n)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle paired connection not closed")
	}
	waitFor(t, "the access log entry", func() bool { return len(logs.all()) == 1 })
	e := logs.all()[0]
	want := uint64(trips * 4)
	if st.IdleTimeout.Value() != 1 || st.SockmapCx.Value() != 1 {
		t.Fatalf("idle_timeout %d, sockmap pairs %d; want 1, 1", st.IdleTimeout.Value(), st.SockmapCx.Value())
	}
	if e.BytesReceived != want || e.BytesSent != want {
		t.Fatalf("access log bytes %d/%d, want %d/%d", e.BytesReceived, e.BytesSent, want, want)
	}
	t.Logf("%d round trips: access log %d/%d, details %q", trips, e.BytesReceived, e.BytesSent, e.TerminationDetails)
}

func chacha(seed byte, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
}

func hashOf(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n, err
}

// TestTCPProxySockmapBulk: 64 MiB each way at once through a pair the kernel forwards, each
// side half-closing after its last byte: both streams arrive whole and in order, both FINs
// are passed on, the pair is counted on the sockmap path and the byte counters (from
// TCP_INFO at close) equal what the peers sent.
func TestTCPProxySockmapBulk(t *testing.T) {
	skipHeldOnKernelPath(t, true)
	const size = 64 << 20
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	fromClient := make(chan result, 1)
	l, f, srv := sockmapServer(t, func(c net.Conn) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, n, err := hashOf(c)
			fromClient <- result{s, n, err}
		}()
		io.Copy(c, chacha(2, size))
		c.(*net.TCPConn).CloseWrite()
		wg.Wait()
	}, nil)
	c := dial(t, l.Address())
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() { io.Copy(c, chacha(1, size)); c.CloseWrite() }()
	gotDown, nDown, err := hashOf(c)
	if err != nil {
		holds, _ := kernelHolds(srv)
		t.Fatalf("after %d bytes from the backend: %v (%d holds)", nDown, err, holds)
	}
	up := <-fromClient
	want1, _, _ := hashOf(chacha(1, size))
	want2, _, _ := hashOf(chacha(2, size))
	if up.n != size || up.sum != want1 {
		t.Fatalf("client->backend: %d bytes, same sha256: %v (%v)", up.n, up.sum == want1, up.err)
	}
	if nDown != size || gotDown != want2 {
		t.Fatalf("backend->client: %d bytes, same sha256: %v", nDown, gotDown == want2)
	}
	c.Close()
	st := f.Stats(0)
	waitFor(t, "the pair counted on the sockmap path", func() bool { return st.SockmapCx.Value() == 1 })
	if rx, tx := st.DownstreamCxRxBytesTotal.Value(), st.DownstreamCxTxBytesTotal.Value(); rx != size || tx != size {
		t.Fatalf("byte counters rx %d tx %d, want %d each", rx, tx, size)
	}
	if n := st.UserspaceCx.Value(); n != 0 {
		t.Fatalf("%d pairs on the userspace path", n)
	}
}

// TestTCPProxySockmapHalfClose: a FIN from either side reaches the other once the kernel
// delivered what came before it, and the other direction keeps working after it.
func TestTCPProxySockmapHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		l, f := sockmapProxy(t, func(c net.Conn) {
			c.Write([]byte("ready"))
			b, _ := io.ReadAll(c) // up to the client's FIN
			c.Write(append([]byte("got "), b...))
		})
		c := dial(t, l.Address())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// A FIN that comes before the upstream connects keeps the pair in userspace (a
		// half-closed socket cannot enter a sockmap): wait for the backend's greeting.
		ready := make([]byte, 5)
		if _, err := io.ReadFull(c, ready); err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("request"))
		c.CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "got request" {
			t.Fatalf("client read %q, %v", b, err)
		}
		waitFor(t, "sockmap pair", func() bool { return f.Stats(0).SockmapCx.Value() == 1 })
	})
	t.Run("upstream first", func(t *testing.T) {
		got := make(chan string, 1)
		l, f := sockmapProxy(t, func(c net.Conn) {
			// Only once the client's first byte came through, so that the proxy has paired
			// the sockets before this FIN reaches it (else the pair stays in userspace).
			io.ReadFull(c, make([]byte, 1))
			c.Write([]byte("banner"))
			c.(*net.TCPConn).CloseWrite()
			b, _ := io.ReadAll(c)
			got <- string(b)
		})
		c := dial(t, l.Address())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("A"))
		b, err := io.ReadAll(c) // up to the backend's FIN
		if err != nil || string(b) != "banner" {
			t.Fatalf("client read %q, %v", b, err)
		}
		c.Write([]byte("after the banner's FIN"))
		c.CloseWrite()
		if s := <-got; s != "after the banner's FIN" {
			t.Fatalf("backend read %q", s)
		}
		waitFor(t, "sockmap pair", func() bool { return f.Stats(0).SockmapCx.Value() == 1 })
	})
}

// TestTCPProxySockmapReset: an RST from either side closes the pair; the other side sees
// its connection end.
func TestTCPProxySockmapReset(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		ended := make(chan error, 1)
		l, _ := sockmapProxy(t, func(c net.Conn) {
			c.Write([]byte("hi"))
			_, err := io.Copy(io.Discard, c)
			ended <- err
		})
		c := dial(t, l.Address())
		b := make([]byte, 2)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadFull(c, b)
		c.SetLinger(0)
		c.Close()
		select {
		case err := <-ended:
			t.Logf("backend's read ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("the backend's connection stayed open after the client's RST")
		}
		waitFor(t, "pair closed", func() bool { return active(l, 1) == 0 })
	})
	t.Run("upstream", func(t *testing.T) {
		l, _ := sockmapProxy(t, func(c net.Conn) {
			c.Write([]byte("hi"))
			c.(*net.TCPConn).SetLinger(0)
		})
		c := dial(t, l.Address())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		t.Logf("client read %q, then %v", b, err)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the client's connection stayed open after the backend's RST")
		}
		waitFor(t, "pair closed", func() bool { return active(l, 1) == 0 })
	})
}

// TestTCPProxySockmapConcurrent: 50 pairs at once, each echoing its own bytes.
func TestTCPProxySockmapConcurrent(t *testing.T) {
	const pairs, size = 50, 256 << 10
	l, f := sockmapProxy(t, func(c net.Conn) { io.Copy(c, c) })
	var wg sync.WaitGroup
	errs := make(chan error, pairs)
	for i := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", l.Address().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			go func() { io.Copy(c, chacha(byte(i), size)); c.(*net.TCPConn).CloseWrite() }()
			got, n, err := hashOf(c)
			want, _, _ := hashOf(chacha(byte(i), size))
			if err != nil || n != size || got != want {
				errs <- errors.New("a pair's echo differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "all pairs on the sockmap path", func() bool { return f.Stats(0).SockmapCx.Value() == pairs })
}

// TestTCPProxySockmapWorkerCPU logs (asserts nothing about time) the proxy worker thread's
// own CPU (getrusage RUSAGE_THREAD, read on the worker) over 2,000 100-byte round trips on
// one connection, on the userspace path and on the sockmap path. On the sockmap path the
// kernel does the forwarding in softirq and in the psock's work item (a kworker), which are
// not charged to the worker: this is the proxy's own share, not the machine's.
func TestTCPProxySockmapWorkerCPU(t *testing.T) {
	skipHeldOnKernelPath(t, true)
	const trips = 2000
	for _, on := range []bool{false, true} {
		m, err := sockmap.Open(0)
		if err != nil {
			if os.Geteuid() != 0 {
				t.Skip(err)
			}
			t.Fatal(err)
		}
		var kp engine.KernelPairs
		if on {
			kp = m
		}
		up := backend(t, func(c net.Conn) { io.Copy(c, c) })
		s, ls := serverWith(t, engine.ServerOptions{Concurrency: 1, KernelPairs: kp},
			[]engine.ClusterConfig{{Name: "b", Endpoints: []engine.Endpoint{{Address: up}}}},
			func(s *engine.Server) []engine.ListenerConfig {
				lc, _ := tcpProxyListener(s, tcpproxy.Config{StatPrefix: "cpu", IdleTimeout: time.Hour,
					Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("b"), Weight: 1}}})
				return []engine.ListenerConfig{lc}
			})
		c := dial(t, ls[0].Address())
		c.SetDeadline(time.Now().Add(60 * time.Second))
		msg := make([]byte, 100)
		buf := make([]byte, 100)
		trip := func() {
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 { // warm up; the pair is made at connect
			trip()
		}
		cpu := func() time.Duration {
			ch := make(chan time.Duration, 1)
			s.Workers()[0].Post(func() {
				var ru unix.Rusage
				unix.Getrusage(unix.RUSAGE_THREAD, &ru)
				ch <- time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			})
			return <-ch
		}
		before, kw0, start := cpu(), kworkerNanos(), time.Now()
		for range trips {
			trip()
		}
		used, kw, wall := cpu()-before, kworkerNanos()-kw0, time.Since(start)
		t.Logf("sockmap=%v: worker CPU %v for %d round trips (%.2f µs each); all kworker threads %.2f µs each (machine-wide, shared); wall %.1f µs each",
			on, used, trips, float64(used.Nanoseconds())/1e3/trips, float64(kw.Nanoseconds())/1e3/trips, float64(wall.Microseconds())/trips)

		// Bulk: 4 MiB one way (client -> backend, echoed back), read as it comes.
		const bulk = 4 << 20
		before, kw0, start = cpu(), kworkerNanos(), time.Now()
		go io.Copy(c, chacha(9, bulk))
		if _, err := io.CopyN(io.Discard, c, bulk); err != nil {
			t.Fatal(err)
		}
		used, kw, wall = cpu()-before, kworkerNanos()-kw0, time.Since(start)
		mb := float64(bulk) / (1 << 20) * 2 // each byte crosses the proxy twice (echo)
		t.Logf("sockmap=%v: bulk echo of %d MiB: worker CPU %.1f µs/MiB, all kworkers %.1f µs/MiB, %.0f MiB/s through the proxy",
			on, bulk>>20, float64(used.Microseconds())/mb, float64(kw.Microseconds())/mb, mb/wall.Seconds())
		c.Close()
		s.Close()
		m.Close()
	}
}

// kworkerNanos sums the on-CPU time (/proc/PID/schedstat, ns) of every kworker thread: the
// psock's work item, which sends redirected bytes, runs there (shared with the rest of the
// machine, so it is an upper bound for this test's share).
func kworkerNanos() time.Duration {
	var sum int64
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		comm, err := os.ReadFile("/proc/" + p.Name() + "/comm")
		if err != nil || !strings.HasPrefix(string(comm), "kworker") {
			continue
		}
		b, err := os.ReadFile("/proc/" + p.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

// TestTCPProxySockmapResetAfterData: bytes the proxy took in before the client's RST still
// reach the backend, every one: the upstream's close waits for the kernel's backlog, counted
// from the reset socket's last TCP_INFO (TCP_CLOSE there is a reset, not two FINs).
func TestTCPProxySockmapResetAfterData(t *testing.T) {
	const size = 100 << 10
	got := make(chan int64, 1)
	l, _ := sockmapProxy(t, func(c net.Conn) {
		c.Write([]byte("ready"))
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	c := dial(t, l.Address())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil { // paired from here on
		t.Fatal(err)
	}
	if _, err := io.Copy(c, chacha(7, size)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let them reach the proxy before the RST
	c.SetLinger(0)
	c.Close()
	select {
	case n := <-got:
		if n != size {
			t.Fatalf("backend got %d bytes, want %d", n, size)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's connection stayed open")
	}
}

// TestTCPProxySockmapSlowReader: a backend that does not read holds the client back: the
// kernel holds the proxy's bytes once the upstream's buffer limit (1 MiB) beyond its send
// buffer is in flight, the client's window closes, and it blocks after a bounded amount
// (what TCP buffers on the way: the client's send buffer, the proxy's receive buffer, the
// limit, the upstream's send buffer and the backend's receive buffer). When the backend
// reads, every byte arrives in order, the held ones through the worker, and the client's
// FIN after them. It runs with 16 MiB, where the client is still writing when the backend
// starts, and 256 MiB, far more than all those buffers.
func TestTCPProxySockmapSlowReader(t *testing.T) {
	skipHeldOnKernelPath(t, true)
	for _, size := range []int64{16 << 20, 256 << 20} {
		t.Run(fmt.Sprintf("%dMiB", size>>20), func(t *testing.T) {
			start := make(chan struct{})
			type result struct {
				sum [32]byte
				n   int64
			}
			done := make(chan result, 1)
			l, f, s := sockmapServer(t, func(c net.Conn) {
				c.Write([]byte("ready"))
				<-start
				sum, n, _ := hashOf(c)
				done <- result{sum, n}
			}, nil)
			c := dial(t, l.Address())
			c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
				t.Fatal(err)
			}
			var written atomic.Int64
			wrote := make(chan error, 1)
			go func() {
				_, err := io.Copy(writerFunc(func(p []byte) (int, error) {
					n, err := c.Write(p)
					written.Add(int64(n))
					return n, err
				}), chacha(3, size))
				if err == nil {
					err = c.CloseWrite()
				}
				wrote <- err
			}()
			// Wait until the client stops making progress (bounded: 5 s).
			var last int64 = -1
			for k := 0; k < 50; k++ {
				time.Sleep(100 * time.Millisecond)
				if n := written.Load(); n == last {
					break
				} else {
					last = n
				}
			}
			stuck := written.Load()
			holds, _ := kernelHolds(s)
			t.Logf("with the backend not reading: the client wrote %d of %d bytes; %d holds", stuck, size, holds)
			if holds == 0 {
				t.Fatal("the kernel never held the client's bytes")
			}
			// The bound: tcp_wmem's and tcp_rmem's maxima here are 4 and 32 MiB, autotuned
			// buffers stay well below (the receivers do not read); 48 MiB is far below the
			// 256 MiB the client would write without backpressure.
			if size > 64<<20 && stuck > 48<<20 {
				t.Fatalf("the client wrote %d bytes to a backend that reads nothing: not bounded", stuck)
			}
			close(start)
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			r := <-done
			want, _, _ := hashOf(chacha(3, size))
			if r.n != size || r.sum != want {
				t.Fatalf("backend got %d bytes, same sha256: %v", r.n, r.sum == want)
			}
			holds, _ = kernelHolds(s)
			t.Logf("in all: %d holds", holds)
			c.Close()
			waitFor(t, "the pair on the sockmap path", func() bool { return f.Stats(0).SockmapCx.Value() == 1 })
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// halfPairing is a KernelPairs whose Pair leaves the second socket out of the verdict,
// as when its peer's FIN comes between the two activations (sock_map_sk_state_allowed
// then refuses it): the first socket's bytes go through the kernel, the second's must be
// read and written by the worker.
type halfPairing struct{ *sockmap.Map }

func (h halfPairing) Pair(a, b int, acked, allow, tags [2]uint64) ([2]uint64, error) {
	p, err := h.Map.Pair(a, b, acked, allow, tags)
	if err != nil {
		return p, err
	}
	if err := h.Map.Deactivate(p, 1); err != nil {
		return p, err
	}
	return p, sockmap.ErrHalfPaired
}

// TestTCPProxySockmapHalfPaired: a half-paired connection (the upstream could not enter
// the verdict) still carries every byte both ways, in order, and both half-closes: the
// client's bytes through the kernel, the backend's through the worker.
func TestTCPProxySockmapHalfPaired(t *testing.T) {
	m, err := sockmap.Open(0)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	const size = 8 << 20
	up := backend(t, func(c net.Conn) {
		io.Copy(c, c) // an echo, then a FIN once the client's came
		c.(*net.TCPConn).CloseWrite()
	})
	var f *tcpproxy.Factory
	s, ls := serverWith(t, engine.ServerOptions{Concurrency: 1, KernelPairs: halfPairing{m}},
		[]engine.ClusterConfig{{Name: "b", Endpoints: []engine.Endpoint{{Address: up}}}},
		func(s *engine.Server) []engine.ListenerConfig {
			var lc engine.ListenerConfig
			lc, f = tcpProxyListener(s, tcpproxy.Config{StatPrefix: "hp", IdleTimeout: time.Hour,
				Clusters: []tcpproxy.WeightedCluster{{Cluster: s.Cluster("b"), Weight: 1}}})
			return []engine.ListenerConfig{lc}
		})
	c := dial(t, ls[0].Address())
	c.SetDeadline(time.Now().Add(30 * time.Second))
	roundTrip(t, c, "hello")
	go func() { io.Copy(c, chacha(5, size)); c.CloseWrite() }()
	got, n, err := hashOf(c)
	want, _, _ := hashOf(chacha(5, size))
	if err != nil || n != size || got != want {
		t.Fatalf("echo through a half pair: %d of %d bytes, same sha256 %v, %v", n, size, got == want, err)
	}
	c.Close()
	done := make(chan int, 1)
	s.Workers()[0].Post(func() { done <- s.Workers()[0].KernelHalfPairs() })
	if h := <-done; h != 1 {
		t.Fatalf("%d half pairs, want 1", h)
	}
	waitFor(t, "the pair counted on the sockmap path", func() bool { return f.Stats(0).SockmapCx.Value() == 1 })
	st := f.Stats(0)
	waitFor(t, "byte counters", func() bool {
		return st.DownstreamCxRxBytesTotal.Value() == size+5 && st.DownstreamCxTxBytesTotal.Value() == size+5
	})
}
