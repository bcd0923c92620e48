package hotrestart

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
)

// listenReusePort binds n SO_REUSEPORT listen sockets on one loopback port (the first
// picks it), in order, so that socket i is at index i of the kernel's group.
func listenReusePort(t *testing.T, n int) ([]int, netip.AddrPort) {
	t.Helper()
	var fds []int
	var addr netip.AddrPort
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			t.Fatal(err)
		}
		sa := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(addr.Port())}
		if err := unix.Bind(fd, sa); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 1024); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			got, err := unix.Getsockname(fd)
			if err != nil {
				t.Fatal(err)
			}
			addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(got.(*unix.SockaddrInet4).Port))
		}
		fds = append(fds, fd)
	}
	return fds, addr
}

// drainQueue accepts everything queued on fd and returns how many.
func drainQueue(t *testing.T, fd int) int {
	n := 0
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return n
			}
			t.Fatal(err)
		}
		unix.Close(nfd)
		n++
	}
}

// TestSteerReusePort checks the kernel behaviour the 4 → 2 hand-over relies on: once the
// program is attached, connections land only on the group's first n sockets; detached,
// every socket gets some again.
func TestSteerReusePort(t *testing.T) {
	fds, addr := listenReusePort(t, 4)
	dial := func(k int) {
		for i := 0; i < k; i++ {
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
	}
	counts := func() []int {
		var out []int
		for _, fd := range fds {
			out = append(out, drainQueue(t, fd))
		}
		return out
	}
	if err := SteerReusePort(fds[3], 2); err != nil { // any socket of the group will do
		t.Fatal(err)
	}
	dial(200)
	got := counts()
	if got[2] != 0 || got[3] != 0 || got[0]+got[1] != 200 {
		t.Fatalf("steered to 2 of 4: queues %v, want all 200 on the first two", got)
	}
	if got[0] == 0 || got[1] == 0 {
		t.Logf("unbalanced (flow hash 0?): %v", got)
	}
	if err := UnsteerReusePort(fds[0]); err != nil {
		t.Fatal(err)
	}
	if err := UnsteerReusePort(fds[0]); err != nil {
		t.Fatalf("detaching twice: %v", err)
	}
	dial(200)
	got = counts()
	if got[2]+got[3] == 0 {
		t.Fatalf("after detach: queues %v, want the last two used again", got)
	}
}

// pipeSockets makes n connected socket pairs and returns one end of each as the "listen
// sockets" a parent hands over (any fd travels the same way) and the other ends.
func pipeSockets(t *testing.T, n int) (mine, theirs []int) {
	for i := 0; i < n; i++ {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(p[1]) })
		mine, theirs = append(mine, p[0]), append(theirs, p[1])
	}
	return
}

func TestProtocol(t *testing.T) {
	base := 1000 + rand.IntN(1<<20)
	p, err := Listen(base, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := Listen(base, 3); err == nil {
		t.Fatal("a second Listen on the same epoch succeeded")
	}
	send, peers := pipeSockets(t, 3)
	addr := netip.MustParseAddrPort("127.0.0.1:8080")
	admin := netip.MustParseAddrPort("127.0.0.1:9901")
	drained := make(chan struct{})
	terminated := make(chan struct{})
	failed := make(chan struct{}, 4)
	go p.Serve(ParentHooks{
		Epoch: 3, Generation: 7,
		Sockets: func() []engine.ListenSocket {
			var out []engine.ListenSocket
			for i := 0; i < 2; i++ {
				fd, _ := unix.Dup(send[i])
				out = append(out, engine.ListenSocket{Listener: "l", Address: addr, ReusePort: true, Worker: i, Fd: fd})
			}
			return out
		},
		Admin: func() (int, netip.AddrPort, bool) {
			fd, _ := unix.Dup(send[2])
			return fd, admin, true
		},
		Drain:       func() { close(drained) },
		Terminate:   func() { close(terminated) },
		ChildFailed: func() { failed <- struct{}{} },
	})

	// A child of the wrong epoch is refused, and the parent serves the next one.
	if _, err := Dial(base, 5); !errors.Is(err, ErrNoParent) {
		t.Fatalf("epoch 5 with no epoch 4: %v, want ErrNoParent", err)
	}
	// A child that fails after taking the sockets leaves the parent serving.
	c, err := Dial(base, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FetchSockets(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-failed

	c, err = Dial(base, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ParentEpoch != 3 || c.ParentGeneration != 7 || c.ParentPID != os.Getpid() {
		t.Fatalf("hello: epoch %d generation %d pid %d", c.ParentEpoch, c.ParentGeneration, c.ParentPID)
	}
	if err := c.FetchSockets(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Inherit(addr, false, 0); ok {
		t.Fatal("a reuse_port socket was offered to a dup-fd listener")
	}
	fd1, ok := c.Inherit(addr, true, 1)
	if !ok {
		t.Fatal("worker 1's socket not offered")
	}
	// The fd received is the same socket: what is written on its peer reads from it.
	checkSame := func(fd, peer int, what string) {
		t.Helper()
		if _, err := unix.Write(peer, []byte(what)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, err := unix.Read(fd, buf)
		if err != nil || string(buf[:n]) != what {
			t.Fatalf("%s: read %q, %v", what, buf[:n], err)
		}
	}
	checkSame(fd1, peers[1], "worker1")
	unix.Close(fd1)
	rest := c.TakeUnclaimed()
	if len(rest) != 1 || rest[0].Worker != 0 {
		t.Fatalf("unclaimed: %+v", rest)
	}
	checkSame(rest[0].Fd, peers[0], "worker0")
	unix.Close(rest[0].Fd)
	afd, aaddr, ok := c.TakeAdmin()
	if !ok || aaddr != admin {
		t.Fatalf("admin: %v %v", aaddr, ok)
	}
	checkSame(afd, peers[2], "admin")
	unix.Close(afd)

	if err := c.Drain(); err != nil {
		t.Fatal(err)
	}
	<-drained
	// Stats big enough to need several packets; the child sees only whole snapshots.
	big := map[string]uint64{}
	for i := 0; i < 5000; i++ {
		big[fmt.Sprintf("listener.l.worker_%d.downstream_cx_total", i)] = uint64(i)
	}
	if err := p.SendStats(big, false); err != nil {
		t.Fatal(err)
	}
	if err := p.SendStats(map[string]uint64{"a": 1, "b": 2}, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Terminate(); err != nil {
		t.Fatal(err)
	}
	<-terminated
	p.Close()
	<-c.Gone()
	got := c.Counters()
	if len(got) != 2 || got["a"] != 1 || got["b"] != 2 {
		t.Fatalf("counters after the parent went: %d entries, a=%d b=%d", len(got), got["a"], got["b"])
	}
}

func TestSplitCounters(t *testing.T) {
	all := map[string]uint64{}
	for i := 0; i < 3000; i++ {
		all[fmt.Sprintf("cluster.c%d.upstream_cx_total", i)] = uint64(i)
	}
	parts := splitCounters(all)
	if len(parts) < 2 {
		t.Fatalf("%d parts", len(parts))
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n != len(all) {
		t.Fatalf("%d of %d counters in the parts", n, len(all))
	}
	if got := splitCounters(nil); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("empty: %v", got)
	}
}
