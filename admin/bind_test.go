package admin

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// canListen6 reports whether IPv6 loopback is usable here.
func canListen6() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// 0.0.0.0 binds IPv4 only and :: binds IPv6 only; Go's "tcp" would make both dual-stack.
func TestAdminBindsOnlyTheFamilyAsked(t *testing.T) {
	if !canListen6() {
		t.Skip("no IPv6 loopback")
	}
	for _, tc := range []struct{ bind, same, other string }{
		{"0.0.0.0:0", "127.0.0.1", "::1"},
		{"[::]:0", "::1", "127.0.0.1"},
	} {
		srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		a := New(srv, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		addr, err := a.Start(netip.MustParseAddrPort(tc.bind))
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(addr.(*net.TCPAddr).Port)
		other := net.JoinHostPort(tc.other, port)
		if c, err := net.DialTimeout("tcp", other, generous); err == nil {
			c.Close()
			t.Errorf("admin bound to %s (%s) also accepts on %s", tc.bind, addr, other)
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(tc.same, port), generous); err != nil {
			t.Errorf("admin bound to %s: %v", tc.bind, err)
		} else {
			c.Close()
		}
		a.Close()
		srv.Close()
	}
}

// A non-loopback admin address is allowed, with a warning; loopback is quiet.
func TestAdminWarnsWhenNotLoopback(t *testing.T) {
	for _, tc := range []struct {
		bind string
		warn bool
	}{
		{"127.0.0.1:0", false},
		{"0.0.0.0:0", true},
	} {
		var logs syncBuffer
		srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		a := New(srv, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if _, err := a.Start(netip.MustParseAddrPort(tc.bind)); err != nil {
			t.Fatal(err)
		}
		a.Close()
		srv.Close()
		got := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "loopback")
		if got != tc.warn {
			t.Errorf("admin on %s: warned %v, want %v; log:\n%s", tc.bind, got, tc.warn, logs.String())
		}
	}
}
