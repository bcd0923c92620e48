package engine_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// xorFactory is a toy upstream transport socket: a one-line handshake ("HELLO" out, "OK"
// or "NO" back), then every byte XORed with 0x55 both ways. It exercises the engine's
// side of an upstream transport socket without TLS: held writes, Connected after the
// handshake, failures and timeouts as connect failures, no splice.
type xorFactory struct{}

func (xorFactory) Name() string { return "xor" }
func (xorFactory) NewUpstreamTransportSocket(c *engine.Connection, _ *engine.TransportOptions) engine.TransportSocket {
	return &xorSocket{c: c}
}

type xorSocket struct {
	c     *engine.Connection
	ready bool
	line  []byte
	held  []byte
	end   bool
}

func xor(p []byte) []byte {
	out := make([]byte, len(p))
	for i, b := range p {
		out[i] = b ^ 0x55
	}
	return out
}

func (s *xorSocket) OnConnected() { s.c.WriteRaw([]byte("HELLO\n"), false) }

func (s *xorSocket) OnRead(data []byte) {
	if s.ready {
		s.c.DeliverRead(xor(data))
		return
	}
	s.line = append(s.line, data...)
	i := bytes.IndexByte(s.line, '\n')
	if i < 0 {
		return
	}
	if string(s.line[:i]) != "OK" {
		s.c.TransportFailed(engine.FailureTransport)
		return
	}
	rest := s.line[i+1:]
	s.ready = true
	if held := s.held; len(held) > 0 || s.end {
		s.held = nil // before the write, which looks at the watermarks again
		s.c.WriteRaw(xor(held), s.end)
	}
	s.c.TransportReady()
	if len(rest) > 0 && s.c.IsOpen() {
		s.c.DeliverRead(xor(rest))
	}
}

func (s *xorSocket) Write(data []byte, endStream bool) {
	if !s.ready {
		s.held = append(s.held, data...)
		s.end = s.end || endStream
		s.c.WriteRaw(nil, false)
		return
	}
	s.c.WriteRaw(xor(data), endStream)
}

func (s *xorSocket) HeldBytes() int { return len(s.held) }
func (s *xorSocket) OnRemoteEOF() {
	if !s.ready {
		s.c.TransportFailed(engine.FailureTransport)
	}
}
func (s *xorSocket) OnClose() {}

// xorBackend answers the toy handshake with reply, then (on "OK") XOR-echoes; with
// reply "" it reads the hello and never answers.
func xorBackend(t *testing.T, reply string) netip.AddrPort {
	return backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if l, err := br.ReadString('\n'); err != nil || l != "HELLO\n" {
			return
		}
		if reply == "" {
			io.Copy(io.Discard, br)
			return
		}
		c.Write([]byte(reply + "\n"))
		if reply != "OK" {
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				// Decode, re-encode: the bytes come back as the client sent them.
				c.Write(xor(xor(buf[:n])))
			}
			if err != nil {
				return
			}
		}
	})
}

// earlyClient connects on worker w, writes msg before Connected, and reports events and
// what it reads.
type earlyClient struct {
	conn      *engine.Connection
	connected bool
	events    chan string
	got       bytes.Buffer
	want      int
}

func (e *earlyClient) OnEvent(ev engine.ConnectionEvent) {
	if ev == engine.Connected {
		e.connected = true
		e.conn.AddReadFilter(e)
		e.events <- "Connected"
		return
	}
	e.events <- ev.String() + ":" + failureName(e.conn.FailureReason())
}
func (e *earlyClient) OnAboveWriteBufferHighWatermark() { e.events <- "above" }
func (e *earlyClient) OnBelowWriteBufferLowWatermark()  { e.events <- "below" }
func (e *earlyClient) OnNewConnection() engine.FilterStatus {
	return engine.Continue
}
func (e *earlyClient) OnData(data []byte, _ bool) engine.FilterStatus {
	e.got.Write(data)
	if e.got.Len() >= e.want {
		e.events <- "data:" + e.got.String()
		e.conn.Close(engine.CloseNoFlush)
	}
	return engine.StopIteration
}

func failureName(r engine.FailureReason) string {
	switch r {
	case engine.FailureNone:
		return "none"
	case engine.FailureConnectRefused:
		return "refused"
	case engine.FailureConnectTimeout:
		return "timeout"
	case engine.FailureTransport:
		return "transport"
	case engine.FailureOverflow:
		return "overflow"
	}
	return "other"
}

func connectEarly(t *testing.T, s *engine.Server, cluster, msg string) *earlyClient {
	t.Helper()
	e := &earlyClient{events: make(chan string, 16), want: len(msg)}
	w := s.Workers()[0]
	cl := s.Cluster(cluster)
	w.Post(func() {
		e.conn = cl.ConnectHost(w, cl.ChooseHost(w, nil), e)
		e.conn.Write([]byte(msg), false) // before the connect, let alone the handshake
	})
	return e
}

func nextEvent(t *testing.T, e *earlyClient) string {
	t.Helper()
	select {
	case ev := <-e.events:
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no connection event")
	}
	return ""
}

// TestUpstreamTransportSocket: an upstream transport socket's handshake comes before
// Connected; bytes written before it are held and sent through it afterwards; a failed
// handshake is a connect failure (FailureTransport, upstream_cx_connect_fail) and a
// handshake that never ends is cut by connect_timeout (upstream_cx_connect_timeout).
func TestUpstreamTransportSocket(t *testing.T) {
	s, _ := startServer(t, 1, []engine.ClusterConfig{
		{Name: "ok", TransportSocket: xorFactory{}, Endpoints: []engine.Endpoint{{Address: xorBackend(t, "OK")}}},
		{Name: "no", TransportSocket: xorFactory{}, Endpoints: []engine.Endpoint{{Address: xorBackend(t, "NO")}}},
		{Name: "small", TransportSocket: xorFactory{}, PerConnectionBufferLimit: 4 << 10,
			Endpoints: []engine.Endpoint{{Address: xorBackend(t, "OK")}}},
		{Name: "mute", TransportSocket: xorFactory{}, ConnectTimeout: 200 * time.Millisecond,
			Endpoints: []engine.Endpoint{{Address: xorBackend(t, "")}}},
	}, func(*engine.Server) []engine.ListenerConfig { return nil })

	e := connectEarly(t, s, "ok", "early bytes")
	if ev := nextEvent(t, e); ev != "Connected" {
		t.Fatalf("ok: first event %q", ev)
	}
	// The backend decodes what it gets: plaintext sent around the transport socket would
	// come back garbled.
	if ev := nextEvent(t, e); ev != "data:early bytes" {
		t.Fatalf("ok: %q", ev)
	}

	// Held bytes count toward the watermarks: 8 KiB written before the handshake, over a
	// 4 KiB limit, pause the writer until the handshake sends them.
	big := string(bytes.Repeat([]byte("0123456789abcdef"), 512))
	e = connectEarly(t, s, "small", big)
	for i, want := range []string{"above", "below", "Connected", "data:" + big} {
		if ev := nextEvent(t, e); ev != want {
			t.Fatalf("small, event %d: %.40q, want %.40q", i, ev, want)
		}
	}

	e = connectEarly(t, s, "no", "x")
	if ev := nextEvent(t, e); ev != "RemoteClose:transport" {
		t.Fatalf("no: %q", ev)
	}
	e = connectEarly(t, s, "mute", "x")
	if ev := nextEvent(t, e); ev != "RemoteClose:timeout" {
		t.Fatalf("mute: %q", ev)
	}
	no, mute := s.Cluster("no").Stats(0), s.Cluster("mute").Stats(0)
	waitFor(t, "counters", func() bool {
		return no.UpstreamCxConnectFail.Value() == 1 && mute.UpstreamCxConnectTimeout.Value() == 1
	})
	if v := s.Cluster("ok").Stats(0).UpstreamCxConnectFail.Value(); v != 0 {
		t.Errorf("ok: upstream_cx_connect_fail = %d", v)
	}
}

// TestUpstreamTransportTCPProxy: tcp_proxy through an upstream transport socket carries
// 4 MiB intact both ways, and never splices (every byte must pass the socket).
func TestUpstreamTransportTCPProxy(t *testing.T) {
	s, ls := startServer(t, 1, []engine.ClusterConfig{
		{Name: "xor", TransportSocket: xorFactory{}, Endpoints: []engine.Endpoint{{Address: xorBackend(t, "OK")}}},
	}, func(s *engine.Server) []engine.ListenerConfig {
		return []engine.ListenerConfig{proxyListener(s, "xor", time.Hour)}
	})
	c, err := net.Dial("tcp", ls[0].Address().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	const n = 4 << 20
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*7 + i>>9)
	}
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	h := sha256.New()
	got, err := io.Copy(h, c)
	if err != nil || got != n {
		t.Fatalf("read %d bytes: %v", got, err)
	}
	if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("payload changed on the way")
	}
	if p := s.Workers()[0].PipesMade(); p != 0 {
		t.Errorf("%d splice pipes made for a transport-socket upstream", p)
	}
}
