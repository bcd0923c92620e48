package httpinspector

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (client net.Conn, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); c.Close() })
	return client, c.(*net.TCPConn)
}

// runLikeEngine drives step the way engine.ActiveSocket.peek does: recv(MSG_PEEK) up to
// max bytes into one buffer, hand the filter everything peeked from the first byte, wait
// for the socket to become readable again while it says StopIteration, and give up when
// a full peek still leaves it undecided.
func runLikeEngine(t *testing.T, conn *net.TCPConn, max int, step func(data []byte) (engine.FilterStatus, bool)) (st engine.FilterStatus, fail bool) {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, max)
	var opErr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK)
		if errors.Is(err, unix.EAGAIN) {
			return false
		}
		if err != nil || n == 0 {
			opErr = errors.Join(err, errors.New("peer closed before the filter decided"))
			return true
		}
		st, fail = step(buf[:n])
		if st == engine.StopIteration && !fail {
			if n >= max {
				fail = true // the engine closes: the filter had all it may see
				return true
			}
			return false
		}
		return true
	})
	if err != nil || opErr != nil {
		t.Fatalf("peek loop: %v %v", err, opErr)
	}
	return st, fail
}

func TestFilterOnRealSocket(t *testing.T) {
	f := New(Config{})
	if f.Name() != Name || f.MaxReadBytes() != MaxInspectSize {
		t.Fatalf("Name %q MaxReadBytes %d", f.Name(), f.MaxReadBytes())
	}
	tests := []struct {
		name   string
		chunks []string
		want   []string
		fail   bool
	}{
		{"http/1.1 in one write", []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n"}, []string{"http/1.1"}, false},
		{"http/1.0 split mid-line", []string{"GET /x", "yz HT", "TP/1.0\r\n\r\n"}, []string{"http/1.0"}, false},
		{"h2c preface split", []string{"PRI * HTTP/2.0\r\n", "\r\nSM\r\n\r\n"}, []string{"h2c"}, false},
		{"not http", []string{"SSH-2.0-OpenSSH_9.6\r\n"}, nil, false},
		{"first line never ends", []string{"GET /" + strings.Repeat("a", MaxInspectSize)}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			go func() {
				for _, c := range tt.chunks {
					client.Write([]byte(c))
					time.Sleep(5 * time.Millisecond)
				}
			}()
			var info engine.SocketInfo
			info.TransportProtocol = engine.TransportRawBuffer
			if accept(&info) != engine.StopIteration {
				t.Fatal("raw_buffer socket not inspected")
			}
			st, fail := runLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
				return inspect(&info, d)
			})
			if fail != tt.fail || (!fail && st != engine.Continue) {
				t.Fatalf("status %v fail %v", st, fail)
			}
			if got := info.ApplicationProtocols(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("application protocols %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSkipsTLS(t *testing.T) {
	var info engine.SocketInfo
	info.TransportProtocol = engine.TransportTLS
	if accept(&info) != engine.Continue {
		t.Fatal("http_inspector must step aside on a TLS socket")
	}
	info.TransportProtocol = ""
	if accept(&info) != engine.StopIteration {
		t.Fatal("undetected transport must be inspected")
	}
}

func TestInspectAllocs(t *testing.T) {
	var info engine.SocketInfo
	in := []byte("GET / HTTP/1.1\r\n")
	if a := testing.AllocsPerRun(1000, func() { info.Reset(); inspect(&info, in) }); a != 0 {
		t.Fatalf("inspect allocates %v times", a)
	}
}
