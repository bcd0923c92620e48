package engine_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/hotrestart"
)

// echoOnce sends a line on a new connection and reads it back.
func echoOnce(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "hi\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hi\n" {
		t.Fatalf("echo via %s: %q %v", addr, line, err)
	}
}

// TestInheritSocket: a second server takes the first one's listen sockets through
// InheritSocket instead of binding (in dup-fd mode a bind of the same address would fail),
// and serves on them once the first stops.
func TestInheritSocket(t *testing.T) {
	for _, reusePort := range []bool{true, false} {
		t.Run(fmt.Sprintf("reuse_port=%v", reusePort), func(t *testing.T) {
			a, ls := startServer(t, 2, nil, func(*engine.Server) []engine.ListenerConfig {
				return []engine.ListenerConfig{echoListener("echo", reusePort, false)}
			})
			addr := ls[0].Address()
			socks := a.ListenSockets()
			want := 1
			if reusePort {
				want = 2
			}
			if len(socks) != want {
				t.Fatalf("ListenSockets: %d sockets, want %d: %+v", len(socks), want, socks)
			}
			for _, s := range socks {
				if s.Listener != "echo" || s.Address != addr || s.ReusePort != reusePort {
					t.Fatalf("ListenSockets: %+v", s)
				}
			}
			asked := 0
			inherit := func(at netip.AddrPort, rp bool, worker int) (int, bool) {
				asked++
				for i, s := range socks {
					if s.Fd >= 0 && s.Address == at && s.ReusePort == rp && (!rp || s.Worker == worker) {
						socks[i].Fd = -1
						return s.Fd, true
					}
				}
				return -1, false
			}
			cfg := echoListener("echo", reusePort, false)
			cfg.Address = addr
			b, _ := serverWith(t, engine.ServerOptions{Concurrency: 2, InheritSocket: inherit}, nil, func(*engine.Server) []engine.ListenerConfig {
				return []engine.ListenerConfig{cfg}
			})
			if asked != want {
				t.Errorf("InheritSocket asked %d times, want %d", asked, want)
			}
			a.StopListeners()
			for i := 0; i < 20; i++ {
				echoOnce(t, addr.String())
			}
			if got := len(b.ListenSockets()); got != want {
				t.Errorf("the child lists %d sockets, want %d", got, want)
			}
		})
	}
}

// TestAdoptListenSocket: connections queued on a socket no worker owns are served by the
// listener once adopted; it is listed under its index while open and closed once idle.
func TestAdoptListenSocket(t *testing.T) {
	s, _ := startServer(t, 2, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{echoListener("echo", true, false)}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	fd := -1
	rc.Control(func(f uintptr) { fd, _ = unix.Dup(int(f)) })
	ln.Close() // the dup keeps the socket listening, with nobody accepting
	const queued = 20
	conns := make([]net.Conn, 0, queued)
	for i := 0; i < queued; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "queued %d\n", i)
		conns = append(conns, c)
	}
	if err := s.AdoptListenSocket("echo", fd, 3, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != fmt.Sprintf("queued %d\n", i) {
			t.Fatalf("queued connection %d: %q %v", i, line, err)
		}
	}
	found := false
	for _, ls := range s.ListenSockets() {
		unix.Close(ls.Fd)
		if ls.Worker == 3 && ls.Listener == "echo" {
			found = true
		}
	}
	if !found {
		t.Error("the adopted socket is not listed under its index")
	}
	// A probe that connects is accepted and restarts the idle period: probe less often
	// than the idle time.
	for i := 0; ; i++ {
		time.Sleep(time.Second)
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // closed after its idle time
		}
		c.Close()
		if i == 5 {
			t.Fatal("the adopted socket still accepts after its idle time")
		}
	}
	if err := s.AdoptListenSocket("nope", -1, 0, time.Second); err == nil {
		t.Error("adopting for an unknown listener succeeded")
	}
}

// TestShrinkKeepsQueued is the 4 → 2 worker hand-over with connections queued on every
// socket of a SO_REUSEPORT group: a server with 2 workers inherits sockets 0 and 1,
// steers the group to them, adopts 2 and 3, and the "parent" (the test) closes its
// copies. Every queued connection is served, none reset; new ones land on 0 and 1.
func TestShrinkKeepsQueued(t *testing.T) {
	var fds []int
	var addr netip.AddrPort
	for i := 0; i < 4; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(addr.Port())}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 1024); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			sa, _ := unix.Getsockname(fd)
			addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
		}
		fds = append(fds, fd)
	}
	// 200 clients queue over the 4 sockets (nobody accepts yet), each with a line sent.
	const queued = 200
	var conns []net.Conn
	for i := 0; i < queued; i++ {
		c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "queued %d\n", i)
		conns = append(conns, c)
	}
	// The child: sockets 0 and 1 through InheritSocket (dups: the parent keeps its own).
	inherit := func(at netip.AddrPort, rp bool, worker int) (int, bool) {
		if at != addr || !rp || worker > 1 {
			return -1, false
		}
		fd, err := unix.Dup(fds[worker])
		return fd, err == nil
	}
	cfg := echoListener("echo", true, false)
	cfg.Address = addr
	s, _ := serverWith(t, engine.ServerOptions{Concurrency: 2, InheritSocket: inherit}, nil, func(*engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{cfg}
	})
	if err := hotrestart.SteerReusePort(fds[2], 2); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 4; i++ {
		fd, _ := unix.Dup(fds[i])
		if err := s.AdoptListenSocket("echo", fd, i, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, fd := range fds { // the parent exits
		unix.Close(fd)
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != fmt.Sprintf("queued %d\n", i) {
			t.Fatalf("queued connection %d of %d: %q %v", i, queued, line, err)
		}
	}
	for i := 0; i < 50; i++ {
		echoOnce(t, addr.String())
	}
}
