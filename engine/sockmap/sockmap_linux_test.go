package sockmap

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/poller"
)

// rig is a proxied pair without a proxy: client <-> down ... up <-> server, where down and
// up are the proxy's sockets, paired in the map.
type rig struct {
	m              *Map
	client, server *net.TCPConn
	down, up       *net.TCPConn
	a, b           int // fds of down and up
	pair           Pair
	allow          [2]uint64 // Pair's; 0: no limit
}

func openMap(t *testing.T) *Map {
	t.Helper()
	m, err := Open(64)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip(err)
		}
		t.Fatal(err) // root must be able to load it: fail loudly
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func connPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	t.Cleanup(func() { d.Close(); s.Close() })
	return d.(*net.TCPConn), s.(*net.TCPConn)
}

func fdOf(t *testing.T, c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func newRig(t *testing.T, pair bool) *rig {
	r := &rig{m: openMap(t)}
	r.client, r.down = connPair(t)
	r.up, r.server = connPair(t)
	r.a, r.b = fdOf(t, r.down), fdOf(t, r.up)
	if pair {
		r.doPair(t)
	}
	return r
}

func (r *rig) doPair(t *testing.T) {
	t.Helper()
	var acked [2]uint64
	for i, fd := range []int{r.a, r.b} {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatal(err)
		}
		acked[i] = ti.Bytes_acked
	}
	p, err := r.m.Pair(r.a, r.b, acked, r.allow, [2]uint64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	r.pair = p
}

// waitBacklog waits until the kernel has delivered everything src received to dst.
func waitBacklog(t *testing.T, src, dst int, dstDialed bool) {
	t.Helper()
	if err := backlogDone(src, dst, dstDialed); err != nil {
		t.Fatal(err)
	}
}

func backlogDone(src, dst int, dstDialed bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := Backlog(src, dst, dstDialed)
		switch {
		case err != nil:
			return err
		case n == 0:
			return nil
		case n < 0:
			return fmt.Errorf("backlog %d < 0", n)
		case time.Now().After(deadline):
			return fmt.Errorf("backlog stuck at %d", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRDHup waits for EPOLLRDHUP on fd in an epoll of its own, registered without EPOLLIN
// (the way a worker watches a paired socket), and returns the events seen.
func waitRDHup(t *testing.T, fd int) uint32 {
	t.Helper()
	ev, err := rdHup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func rdHup(fd int) (uint32, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return 0, err
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return 0, err
	}
	evs := make([]unix.EpollEvent, 4)
	for {
		n, err := unix.EpollWait(ep, evs, 20000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != 1 {
			return 0, fmt.Errorf("epoll_wait: %d %v", n, err)
		}
		return evs[0].Events, nil
	}
}

func stream(seed uint64, n int) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), int64(n))
}

func sum(r io.Reader) ([32]byte, int64) {
	h := sha256.New()
	n, _ := io.Copy(h, r)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n
}

// halfClose forwards src's FIN to dst's peer once the kernel delivered all src received.
// It runs on its own goroutine, so it returns its error.
func halfClose(src, dst int, dstDialed bool) error {
	if _, err := rdHup(src); err != nil {
		return err
	}
	if err := backlogDone(src, dst, dstDialed); err != nil {
		return err
	}
	return unix.Shutdown(dst, unix.SHUT_WR)
}

func TestPairBytesInOrderBothWays(t *testing.T) {
	const size = 64 << 20
	r := newRig(t, true)
	var wg sync.WaitGroup
	var upSum, downSum [32]byte
	var upN, downN int64
	wg.Add(6)
	go func() { defer wg.Done(); io.Copy(r.client, stream(1, size)); r.client.CloseWrite() }()
	go func() { defer wg.Done(); io.Copy(r.server, stream(2, size)); r.server.CloseWrite() }()
	go func() { defer wg.Done(); upSum, upN = sum(r.server) }()
	go func() { defer wg.Done(); downSum, downN = sum(r.client) }()
	errs := make(chan error, 2)
	go func() { defer wg.Done(); errs <- halfClose(r.a, r.b, true) }()
	go func() { defer wg.Done(); errs <- halfClose(r.b, r.a, false) }()
	wg.Wait()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want1, _ := sum(stream(1, size))
	want2, _ := sum(stream(2, size))
	if upN != size || upSum != want1 {
		t.Fatalf("client->server: %d bytes, sum match %v", upN, upSum == want1)
	}
	if downN != size || downSum != want2 {
		t.Fatalf("server->client: %d bytes, sum match %v", downN, downSum == want2)
	}
	ca, _ := poller.ReadTCPCounts(r.a, false)
	cb, _ := poller.ReadTCPCounts(r.b, true)
	t.Logf("down: %+v", ca)
	t.Logf("up:   %+v", cb)
	if ca.Received != size || cb.Written != size || cb.Received != size || ca.Written != size {
		t.Fatalf("counts: down %+v up %+v", ca, cb)
	}
}

// TestBytesQueuedBeforePair: what arrived before Pair is forwarded without more traffic.
func TestBytesQueuedBeforePair(t *testing.T) {
	r := newRig(t, false)
	r.client.Write([]byte("early"))
	r.server.Write([]byte("banner"))
	time.Sleep(50 * time.Millisecond) // let both land in the receive queues
	r.doPair(t)
	for _, x := range []struct {
		c    *net.TCPConn
		want string
	}{{r.server, "early"}, {r.client, "banner"}} {
		x.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 16)
		n, err := x.c.Read(b)
		if err != nil || string(b[:n]) != x.want {
			t.Fatalf("got %q, %v; want %q", b[:n], err, x.want)
		}
	}
}

// TestBytesQueuedBeforePairWithoutKick shows why Pair pokes the sockets: without it,
// bytes queued before the pair wait for the next segment.
func TestBytesQueuedBeforePairWithoutKick(t *testing.T) {
	noKick = true
	defer func() { noKick = false }()
	r := newRig(t, false)
	r.client.Write([]byte("early"))
	time.Sleep(50 * time.Millisecond)
	r.doPair(t)
	r.server.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	b := make([]byte, 16)
	n, err := r.server.Read(b)
	t.Logf("without the kick: read %q, %v", b[:n], err)
	if err == nil {
		t.Skip("the kernel redirected queued bytes by itself (no kick needed here)")
	}
	r.client.Write([]byte("late"))
	r.server.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, 9)
	if _, err := io.ReadFull(r.server, got); err != nil || string(got) != "earlylate" {
		t.Fatalf("after the next segment: %q %v", got, err)
	}
}

// TestFinSeenByUserspace records what a paired socket shows when its peer half-closes.
func TestFinSeenByUserspace(t *testing.T) {
	r := newRig(t, true)
	r.client.Write([]byte("abc"))
	r.client.CloseWrite()
	ev := waitRDHup(t, r.a)
	time.Sleep(20 * time.Millisecond)
	tiA, _ := unix.GetsockoptTCPInfo(r.a, unix.IPPROTO_TCP, unix.TCP_INFO)
	tiB, _ := unix.GetsockoptTCPInfo(r.b, unix.IPPROTO_TCP, unix.TCP_INFO)
	outq, _ := unix.IoctlGetInt(r.b, unix.SIOCOUTQ)
	t.Logf("down: state %d bytes_received %d; up: bytes_acked %d outq %d", tiA.State, tiA.Bytes_received, tiB.Bytes_acked, outq)
	t.Logf("events on FIN: %#x (RDHUP=%#x IN=%#x)", ev, unix.EPOLLRDHUP, unix.EPOLLIN)
	waitBacklog(t, r.a, r.b, true)
	inq, _ := unix.IoctlGetInt(r.a, unix.SIOCINQ)
	b := make([]byte, 8)
	n, err := unix.Read(r.a, b)
	// SIOCINQ on a socket with a verdict program is the psock's own queue (tcp_bpf_ioctl).
	t.Logf("after FIN: SIOCINQ=%d read()=%d err=%v", inq, n, err)
	if n != 0 || err != nil {
		t.Fatalf("read on a paired socket after FIN: %d %v, want 0 (end of stream)", n, err)
	}
	got := make([]byte, 3)
	r.server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(r.server, got); err != nil || string(got) != "abc" {
		t.Fatalf("server got %q %v", got, err)
	}
	ti, _ := unix.GetsockoptTCPInfo(r.a, unix.IPPROTO_TCP, unix.TCP_INFO)
	t.Logf("tcpi_bytes_received after 3 bytes + FIN: %d (state %d)", ti.Bytes_received, ti.State)
}

// TestResetSeenByUserspace: an RST from the client shows as EPOLLERR|EPOLLHUP on down.
func TestResetSeenByUserspace(t *testing.T) {
	for _, side := range []string{"client", "server"} {
		t.Run(side, func(t *testing.T) {
			r := newRig(t, true)
			c, fd := r.client, r.a
			if side == "server" {
				c, fd = r.server, r.b
			}
			c.SetLinger(0)
			c.Close()
			ev := waitRDHup(t, fd)
			soErr, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			t.Logf("events on RST: %#x (ERR=%#x HUP=%#x) SO_ERROR=%v", ev, unix.EPOLLERR, unix.EPOLLHUP, unix.Errno(soErr))
			if ev&unix.EPOLLERR == 0 {
				t.Fatal("no EPOLLERR")
			}
		})
	}
}

// TestNonReadingReceiver measures what the kernel queues for a server that stops reading.
func TestNonReadingReceiver(t *testing.T) {
	const size = 32 << 20
	r := newRig(t, true)
	before := memFree()
	r.client.SetWriteDeadline(time.Now().Add(3 * time.Second))
	n, err := io.Copy(r.client, stream(3, size))
	time.Sleep(200 * time.Millisecond)
	backlog, _ := Backlog(r.a, r.b, true)
	after := memFree()
	cb, _ := poller.ReadTCPCounts(r.b, true)
	t.Logf("client wrote %d of %d (%v); backlog in up's psock %d; up written %d; MemFree -%d KiB (machine-wide, noisy)",
		n, size, err, backlog, cb.Written, (before-after)/1024)
	if backlog <= 0 {
		t.Fatalf("backlog %d: the kernel bounded the psock queue after all; revisit docs/sockmap.md", backlog)
	}
	// What happens to the queue when the pair leaves the map: Release drops it.
	r.m.Release(r.pair)
	time.Sleep(100 * time.Millisecond)
	r.client.Close()
	r.server.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, _ := io.Copy(io.Discard, r.server)
	t.Logf("after Release, server could still read %d bytes (client wrote %d): %d lost", got, n, n-got)
}

// memFree is /proc/meminfo's MemFree in bytes (machine-wide: other work moves it too).
func memFree() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range bytes.Split(b, []byte("\n")) {
		var kb int64
		if _, err := fmt.Sscanf(string(l), "MemFree: %d kB", &kb); err == nil {
			return kb * 1024
		}
	}
	return 0
}

// TestStopReturnsBytesToUserspace: after Stop, what a socket receives is read as usual,
// and what the kernel had already redirected is still delivered.
func TestStopReturnsBytesToUserspace(t *testing.T) {
	r := newRig(t, true)
	r.client.Write([]byte("kernel"))
	r.server.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, 6)
	if _, err := io.ReadFull(r.server, got); err != nil || string(got) != "kernel" {
		t.Fatalf("paired: %q %v", got, err)
	}
	r.m.Stop(r.pair)
	r.client.Write([]byte("user"))
	time.Sleep(20 * time.Millisecond)
	// The socket still has a psock (it is in peers): SIOCINQ reports the psock's message
	// queue, not the 4 bytes in the receive queue (tcp_bpf_ioctl on 6.18).
	inq, _ := unix.IoctlGetInt(r.a, unix.SIOCINQ)
	t.Logf("stopped, 4 bytes in the receive queue: SIOCINQ=%d", inq)
	r.down.SetReadDeadline(time.Now().Add(2 * time.Second))
	got = make([]byte, 4)
	if _, err := io.ReadFull(r.down, got); err != nil || string(got) != "user" {
		t.Fatalf("stopped: down read %q %v", got, err)
	}
	r.m.Release(r.pair)
}

// TestWakeups counts the epoll events a paired socket reports while the kernel forwards
// 1 MiB in 64 KiB writes. sk_psock_verdict_data_ready calls the saved sk_data_ready after
// each batch, so the socket's wait queue is woken with EPOLLIN; epoll then polls the socket,
// finds nothing to read (the verdict consumed it) and reports nothing. Measured: no event
// either way. Without EPOLLIN in the mask, ep_poll_callback drops the wake-up by its key
// before waking a blocked epoll_wait (source reading, not measured here).
func TestWakeups(t *testing.T) {
	r := newRig(t, true)
	count := func(events uint32) (int, func() int) {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(ep) })
		ev := unix.EpollEvent{Events: events | unix.EPOLLET, Fd: int32(r.a)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, r.a, &ev); err != nil {
			t.Fatal(err)
		}
		return ep, func() int {
			evs := make([]unix.EpollEvent, 8)
			n, _ := unix.EpollWait(ep, evs, 0)
			return n
		}
	}
	_, withIn := count(unix.EPOLLIN | unix.EPOLLRDHUP)
	_, withoutIn := count(unix.EPOLLRDHUP)
	go io.Copy(io.Discard, r.server)
	chunk := make([]byte, 64<<10)
	in, out := 0, 0
	for range 16 {
		r.client.Write(chunk)
		time.Sleep(2 * time.Millisecond)
		in += withIn()
		out += withoutIn()
	}
	t.Logf("16 writes of 64 KiB: %d wake-ups with EPOLLIN in the mask, %d without", in, out)
	if out != 0 {
		t.Fatalf("%d wake-ups without EPOLLIN", out)
	}
}

// TestHalfCloseKeepsOtherDirection: after the client's FIN the server's bytes still reach
// the client, and neither proxy socket reports an error. A FIN that arrives alone is a
// zero-length skb; redirected, the peer's psock backlog would send 0 bytes, take that as a
// hard error (sk_psock_backlog: ret 0 -> EPIPE), set the peer's sk_err and stop sending.
func TestHalfCloseKeepsOtherDirection(t *testing.T) {
	r := newRig(t, true)
	r.client.Write([]byte("request"))
	r.client.CloseWrite()
	if err := halfClose(r.a, r.b, true); err != nil {
		t.Fatal(err)
	}
	r.server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if b, err := io.ReadAll(r.server); err != nil || string(b) != "request" {
		t.Fatalf("server got %q %v", b, err)
	}
	r.server.Write([]byte("response after the client's FIN"))
	r.client.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, 31)
	if _, err := io.ReadFull(r.client, got); err != nil {
		t.Fatalf("client got %q %v", got, err)
	}
	for _, fd := range []int{r.a, r.b} {
		if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
			t.Fatalf("fd %d: SO_ERROR %v", fd, unix.Errno(e))
		}
	}
}

// TestOpenUnprivileged: without privilege Open says why. Run it as another user:
//
//	go test -c -o /tmp/sm.test ./engine/sockmap && setpriv --reuid=65534 --regid=65534 --clear-groups /tmp/sm.test -test.run Unprivileged -test.v
func TestOpenUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root: run the binary as another user (see the comment)")
	}
	m, err := Open(1)
	if err == nil {
		m.Close()
		t.Skip("this user may load BPF (CAP_BPF or unprivileged BPF)")
	}
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("%T %v, want *UnsupportedError", err, err)
	}
	t.Log(err)
}

// TestHoldBoundsAndForwards: with a limit, a receiver that does not read makes the
// program hold the sender's bytes on the proxy's own socket, so the client blocks after a
// bounded amount; the event names the socket; the test, doing the engine's part (wait for
// the peer's psock to empty, read the held bytes, write them, SetForwarded), then moves
// every byte, in order, once the server reads, while the program goes back to redirecting.
func TestHoldBoundsAndForwards(t *testing.T) {
	const size = 64 << 20
	const limit = 1 << 20
	m := openMap(t)
	events := make(chan uint64, 1024)
	base, err := m.Notify(func(tag uint64) { events <- tag })
	if err != nil {
		t.Fatal(err)
	}
	if base != 0 {
		t.Fatalf("first receiver's base %#x", base)
	}
	r := &rig{m: m, allow: [2]uint64{limit, limit}}
	r.client, r.down = connPair(t)
	r.up, r.server = connPair(t)
	r.a, r.b = fdOf(t, r.down), fdOf(t, r.up)
	r.doPair(t)

	want := sha256.New()
	wrote := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(r.client, io.TeeReader(stream(9, size), want))
		r.client.CloseWrite()
		wrote <- n
	}()
	var tag uint64
	select {
	case tag = <-events:
	case <-time.After(10 * time.Second):
		t.Fatal("no hold event")
	}
	if tag != 1 {
		t.Fatalf("event tag %d, want 1 (the down socket's)", tag)
	}
	// Let the client run into the closed window, then measure.
	var before uint64
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		if h, _ := m.Held(r.pair, 0); h == before {
			break
		} else {
			before = h
		}
	}
	held, _ := m.Held(r.pair, 0)
	ci, _ := unix.GetsockoptTCPInfo(fdOf(t, r.client), unix.IPPROTO_TCP, unix.TCP_INFO)
	written := ci.Bytes_acked // what left the client
	t.Logf("non-reading server: client's bytes acked %d of %d; sent by the kernel %d, held %d", written, size, m.Sent(r.pair, 0), held)
	if written >= size/2 {
		t.Fatalf("the client got %d bytes out with a server that reads nothing: not bounded", written)
	}

	// The engine's part: forward held bytes once the up socket's psock is empty.
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, r.server)
		got <- [32]byte(h.Sum(nil))
	}()
	m.SetListening(r.pair, 0, true)
	buf := make([]byte, 256<<10)
	var fwd uint64
	deadline := time.Now().Add(60 * time.Second)
	unix.SetNonblock(r.a, true)
	unix.SetNonblock(r.b, true)
	done := false
	for !done && time.Now().Before(deadline) {
		// The psock queue of up is what was redirected less what up's TCP was given
		// besides the forwarded bytes.
		ub, _ := poller.ReadTCPCounts(r.b, true)
		if ub.Written-fwd < m.Sent(r.pair, 0) {
			time.Sleep(time.Millisecond)
			continue
		}
		n, err := unix.Read(r.a, buf)
		switch {
		case n > 0:
			for off := 0; off < n; {
				k, err := unix.Write(r.b, buf[off:n])
				if k > 0 {
					off += k
				}
				if err == unix.EAGAIN {
					time.Sleep(time.Millisecond)
				} else if err != nil {
					t.Fatal(err)
				}
			}
			fwd += uint64(n)
			m.SetForwarded(r.pair, 0, fwd)
		case n == 0:
			done = true // the client's FIN, after everything
		case err == unix.EAGAIN:
			if h, f := m.Held(r.pair, 0); h == f {
				// Caught up: the program redirects again; stop listening, then look
				// once more (the program may have held bytes meanwhile).
				m.SetListening(r.pair, 0, false)
				if h2, _ := m.Held(r.pair, 0); h2 != f {
					m.SetListening(r.pair, 0, true)
					continue
				}
				select {
				case <-events:
					m.SetListening(r.pair, 0, true)
				case <-time.After(20 * time.Millisecond):
					if bl, _ := Backlog(r.a, r.b, true); bl == 0 {
						if ri, _ := poller.ReadTCPCounts(r.a, false); ri.Received > 0 && isFin(r.a) {
							done = true
						}
					}
				}
			} else {
				time.Sleep(time.Millisecond)
			}
		default:
			t.Fatal(err)
		}
	}
	n := <-wrote
	waitBacklog(t, r.a, r.b, true)
	halfClose(r.a, r.b, true)
	sum := <-got
	h, f := m.Held(r.pair, 0)
	t.Logf("client wrote %d; redirected %d, held and forwarded %d (%d), lost events %d", n, m.Sent(r.pair, 0), h, f, m.LostEvents(r.pair, 0))
	if n != size || sum != [32]byte(want.Sum(nil)) {
		t.Fatalf("wrote %d of %d; sha256 equal: %v", n, size, sum == [32]byte(want.Sum(nil)))
	}
	if h == 0 || h != f || m.Sent(r.pair, 0)+h != size {
		t.Fatalf("held %d forwarded %d sent %d: want held = forwarded > 0, sent + held = %d", h, f, m.Sent(r.pair, 0), size)
	}
}

// isFin reports whether fd's peer has sent its FIN (CLOSE_WAIT).
func isFin(fd int) bool {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && ti.State == 8 // TCP_CLOSE_WAIT
}

// TestPairAfterPartialRead shows why the engine pairs a socket only after a short read:
// bytes read from a segment that is still partly in the receive queue are forwarded
// again, since tcp_read_skb hands the verdict the whole segment, whatever was read of it.
func TestPairAfterPartialRead(t *testing.T) {
	r := newRig(t, false)
	msg := make([]byte, 48<<10)
	for i := range msg {
		msg[i] = byte(i % 251)
	}
	if _, err := r.client.Write(msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // all of it queued on down
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r.down, head); err != nil {
		t.Fatal(err)
	}
	r.up.Write(head) // as a proxy would: what it read goes on
	r.doPair(t)
	// Read what arrives until nothing more does for 300 ms.
	var got []byte
	buf := make([]byte, 64<<10)
	var err error
	for {
		r.server.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, rerr := r.server.Read(buf)
		got = append(got, buf[:n]...)
		if rerr != nil {
			err = rerr
			break
		}
	}
	t.Logf("the server got %d bytes for %d sent (%v)", len(got), len(msg), err)
	if len(got) == len(msg) && bytes.Equal(got, msg) {
		t.Fatal("no byte came twice: the kernel now honours a partly read segment; PairInKernel's partialRead rule can go")
	}
	if len(got) != len(msg)+len(head) || !bytes.Equal(got[len(head):2*len(head)], head) {
		t.Fatalf("got %d bytes: not the read part twice", len(got))
	}
}

// Backlog (for the tests' bare pairs; the engine has its own, kernelBacklog) is how many bytes src received that dst has not yet been given to send: the
// bytes queued in dst's psock (or not yet through the verdict), given that everything
// written to dst came from src (as in a proxied pair, where userspace forwarded all it
// read before Pair). 0 means the kernel has delivered all it redirected, so dst's write
// side may be shut down or the pair released without losing a byte.
// dstDialed is poller.ReadTCPCounts's flag for dst.
func Backlog(src, dst int, dstDialed bool) (int64, error) {
	s, err := poller.ReadTCPCounts(src, false) // Received does not depend on it
	if err != nil {
		return 0, err
	}
	d, err := poller.ReadTCPCounts(dst, dstDialed)
	if err != nil {
		return 0, err
	}
	return int64(s.Received) - int64(d.Written), nil
}
