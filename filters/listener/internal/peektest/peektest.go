// Package peektest drives a listener filter over a real loopback socket the way the
// engine's ActiveSocket does, for the listener filters' tests.
package peektest

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
)

// TCPPair returns both ends of a real loopback TCP connection, closed when the test ends.
func TCPPair(t testing.TB) (client net.Conn, server *net.TCPConn) {
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

// RunLikeEngine drives step the way engine.ActiveSocket.peek does: recv(MSG_PEEK) up to
// max bytes into one buffer, hand the filter everything peeked from the first byte, wait
// for the socket to become readable again while it says StopIteration, and give up when
// a full peek still leaves it undecided.
func RunLikeEngine(t testing.TB, conn *net.TCPConn, max int, step func(data []byte) (engine.FilterStatus, bool)) (st engine.FilterStatus, fail bool) {
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
