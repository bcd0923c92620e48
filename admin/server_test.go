package admin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// generous is how long a test waits for something that should take milliseconds; it only
// bounds a failure, nothing is asserted about how fast the server is.
const generous = 10 * time.Second

// startAdmin runs an admin server for a one-worker engine with the given sources on
// 127.0.0.1, port chosen by the kernel.
func startAdmin(t *testing.T, o Options, sources ...engine.StatsSource) (*Admin, string) {
	t.Helper()
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	for _, s := range sources {
		srv.AddStatsSource(s)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := New(srv, o)
	addr, err := a.Start(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, addr.String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends one keep-alive GET on c and reads the whole response.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, path string) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(generous))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: admin\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// closedByPeer reports whether the server closes c (EOF or reset) before the generous
// deadline; whatever the server sent first is discarded.
func closedByPeer(c net.Conn, r io.Reader) error {
	c.SetReadDeadline(time.Now().Add(generous))
	_, err := io.Copy(io.Discard, r)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// An idle keep-alive connection is closed after IdleTimeout, not held for ever.
func TestAdminClosesIdleConnections(t *testing.T) {
	_, addr := startAdmin(t, Options{IdleTimeout: 50 * time.Millisecond})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	if code, _ := roundTrip(t, c, br, "/ready"); code != 503 {
		t.Fatalf("/ready: %d", code)
	}
	if err := closedByPeer(c, br); err != nil {
		t.Fatalf("idle keep-alive connection still open after %v: %v", generous, err)
	}
}

// A connection that never completes its request headers is closed after
// ReadHeaderTimeout.
func TestAdminClosesSlowHeaders(t *testing.T) {
	_, addr := startAdmin(t, Options{ReadHeaderTimeout: 50 * time.Millisecond})
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET /ready HTTP/1.1\r\nHost: adm"); err != nil {
		t.Fatal(err)
	}
	// Half the generous bound: the old fixed 10 s header timeout must not pass this.
	c.SetReadDeadline(time.Now().Add(generous / 2))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection with unfinished headers still open: %v", err)
	}
}

// bigSource reports n long-named counters per worker: a response of several megabytes.
type bigSource struct{ names []string }

func newBigSource(n int) *bigSource {
	s := &bigSource{}
	for i := 0; i < n; i++ {
		s.names = append(s.names, fmt.Sprintf("a_rather_long_statistic_name_so_that_the_response_outgrows_socket_buffers_%d", i))
	}
	return s
}

func (*bigSource) StatsFamily() string      { return "big" }
func (*bigSource) StatsLabels() [][2]string { return [][2]string{{"stat_prefix", "big"}} }
func (s *bigSource) VisitStats(w int, v engine.StatVisitor) {
	for i, n := range s.names {
		v(n, engine.KindCounter, float64(i))
	}
}

// A client that does not read a large response does not hold its connection (and the
// response) past WriteTimeout.
func TestAdminWriteTimeout(t *testing.T) {
	_, addr := startAdmin(t, Options{WriteTimeout: 200 * time.Millisecond}, newBigSource(40000))
	// A small receive window: the ~10 MB response cannot fit in the kernel's buffers.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /stats HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Not reading for a while is the point of the test: the server's write deadline passes
	// while its writes are blocked. Whenever the read starts, the body must be cut short.
	time.Sleep(time.Second)
	c.SetReadDeadline(time.Now().Add(generous))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return // cut before the headers arrived: fine
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Fatalf("a %d-byte response was delivered whole to a client that stalled past WriteTimeout", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection neither finished nor closed: %v", err)
	}
}

// Connections beyond MaxConnections are closed at once and counted.
func TestAdminConnectionLimit(t *testing.T) {
	_, addr := startAdmin(t, Options{MaxConnections: 2})
	c1, c2 := dial(t, addr), dial(t, addr)
	br1, br2 := bufio.NewReader(c1), bufio.NewReader(c2)
	roundTrip(t, c1, br1, "/ready")
	roundTrip(t, c2, br2, "/ready")

	c3 := dial(t, addr)
	io.WriteString(c3, "GET /ready HTTP/1.1\r\nHost: admin\r\n\r\n")
	if err := closedByPeer(c3, c3); err != nil {
		t.Fatalf("third connection over a limit of 2 not closed: %v", err)
	}

	_, text := roundTrip(t, c1, br1, "/stats")
	for _, want := range []string{"server.admin.downstream_cx_overflow: 1\n", "server.admin.downstream_cx_active: 2\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("/stats lacks %q:\n%s", want, text)
		}
	}
	_, prom := roundTrip(t, c1, br1, "/stats/prometheus")
	for _, want := range []string{"# TYPE portico_server_admin_downstream_cx_overflow counter\nportico_server_admin_downstream_cx_overflow 1\n",
		"# TYPE portico_server_admin_downstream_cx_active gauge\nportico_server_admin_downstream_cx_active 2\n"} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q:\n%s", want, prom)
		}
	}

	// Once a connection closes, its slot is free again (the server sees the close when it
	// reads EOF, so retry for a while).
	c1.Close()
	deadline := time.Now().Add(generous)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /ready HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(generous))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err == nil && resp.StatusCode == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after one of two closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
