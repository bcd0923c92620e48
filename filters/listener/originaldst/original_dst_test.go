package originaldst

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// accepted dials addr (which may be redirected) after listening on listenAddr, and
// returns the accepted side's raw fd, valid until the test ends.
func accepted(t *testing.T, network, listenAddr, dialAddr string) (fd int, local netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen(network, listenAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if dialAddr == "" {
		dialAddr = ln.Addr().String()
	}
	client, err := net.Dial("tcp", dialAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); c.Close() })
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd, c.LocalAddr().(*net.TCPAddr).AddrPort()
}

func TestFilterBasics(t *testing.T) {
	f := New()
	if f.Name() != Name || f.MaxReadBytes() != 0 {
		t.Fatalf("Name %q MaxReadBytes %d", f.Name(), f.MaxReadBytes())
	}
}

// Without NAT the socket either has no conntrack entry (nothing changes) or, when the
// conntrack module tracks loopback, the original destination is the real one.
func TestLoopbackWithoutRedirect(t *testing.T) {
	fd, local := accepted(t, "tcp4", "127.0.0.1:0", "")
	var info engine.SocketInfo
	if restore(fd, &info) {
		if info.LocalAddr != local || !info.LocalAddrRestored {
			t.Fatalf("restored %v, socket's local address is %v", info.LocalAddr, local)
		}
	} else if info.LocalAddr.IsValid() || info.LocalAddrRestored {
		t.Fatalf("failed restore changed info: %+v", info)
	}
	if a := testing.AllocsPerRun(1000, func() { restore(fd, &info) }); a != 0 {
		t.Fatalf("restore allocates %v times", a)
	}
}

func TestNotASocket(t *testing.T) {
	var info engine.SocketInfo
	if restore(int(os.Stdin.Fd()), &info) || info.LocalAddr.IsValid() || info.LocalAddrRestored {
		t.Fatalf("non-socket fd restored: %+v", info)
	}
}

const netnsEnv = "PORTICO_ORIGINALDST_IN_NETNS"

// TestRedirect runs the real thing: inside a fresh network namespace, iptables REDIRECT
// sends connections for :1111 to a listener on :2222, and the filter must recover :1111.
// It re-executes the test binary under unshare(1) and skips where that is not permitted.
func TestRedirect(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		// In CI (root, tools installed by .ci/run) a missing piece is a failure, not a skip.
		skip := t.Skipf
		if os.Getenv("CI") == "true" {
			skip = t.Fatalf
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			skip("unshare not found")
		}
		if _, err := exec.LookPath("iptables"); err != nil {
			skip("iptables not found")
		}
		script := strings.Join([]string{
			"set -e",
			"ip link set lo up",
			"iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 1111 -j REDIRECT --to-ports 2222",
			"iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 1112 -j REDIRECT --to-ports 2223",
			"ip6tables -t nat -A OUTPUT -p tcp -d ::1 --dport 1111 -j REDIRECT --to-ports 2222 || echo NO_IP6TABLES",
			`exec "$0" -test.run '^TestRedirect$' -test.v`,
		}, "\n")
		cmd := exec.Command("unshare", "-n", "sh", "-c", script, os.Args[0])
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil && strings.Contains(string(out), "unshare") && !strings.Contains(string(out), "--- ") {
			skip("no network namespace here: %s", out)
		}
		t.Logf("in netns:\n%s", out)
		if err != nil {
			t.Fatalf("redirect test in netns failed: %v", err)
		}
		return
	}

	t.Run("ipv4", func(t *testing.T) {
		fd, local := accepted(t, "tcp4", "127.0.0.1:2222", "127.0.0.1:1111")
		info := engine.SocketInfo{LocalAddr: local}
		if !restore(fd, &info) || info.LocalAddr != netip.MustParseAddrPort("127.0.0.1:1111") || !info.LocalAddrRestored {
			t.Fatalf("restore: %+v (socket local %v)", info, local)
		}
	})
	t.Run("ipv4 on dual-stack socket, local address unknown", func(t *testing.T) {
		fd, _ := accepted(t, "tcp", "[::]:2223", "127.0.0.1:1112")
		var info engine.SocketInfo
		if !restore(fd, &info) || info.LocalAddr != netip.MustParseAddrPort("127.0.0.1:1112") {
			t.Fatalf("restore: %+v", info)
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Skip("no IPv6 loopback")
		}
		ln.Close()
		fd, local := accepted(t, "tcp6", "[::1]:2222", "[::1]:1111")
		info := engine.SocketInfo{LocalAddr: local}
		if !restore(fd, &info) {
			t.Skip("no IPv6 conntrack/REDIRECT here")
		}
		if info.LocalAddr != netip.MustParseAddrPort("[::1]:1111") {
			t.Fatalf("restore: %+v", info)
		}
	})
}

func BenchmarkRestoreNoConntrackEntry(b *testing.B) {
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	defer ln.Close()
	c, _ := net.Dial("tcp4", ln.Addr().String())
	defer c.Close()
	s, _ := ln.Accept()
	defer s.Close()
	rc, _ := s.(*net.TCPConn).SyscallConn()
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	var info engine.SocketInfo
	b.ReportAllocs()
	for b.Loop() {
		info.Reset()
		restore(fd, &info)
	}
}
