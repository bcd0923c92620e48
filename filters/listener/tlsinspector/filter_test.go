package tlsinspector

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"

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

func newWorker(t *testing.T) *engine.Worker {
	t.Helper()
	w, err := engine.NewWorker(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestFilterOnRealSocket(t *testing.T) {
	w := newWorker(t)
	f := New(Config{})
	if f.Name() != Name || f.MaxReadBytes() != DefaultMaxClientHelloSize {
		t.Fatalf("Name %q MaxReadBytes %d", f.Name(), f.MaxReadBytes())
	}

	t.Run("tls client", func(t *testing.T) {
		client, server := tcpPair(t)
		go tls.Client(client, &tls.Config{ServerName: "Sni.Example.COM", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true}).Handshake()
		var info engine.SocketInfo
		st, fail := runLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
			return f.inspect(w, &info, d)
		})
		if st != engine.Continue || fail {
			t.Fatalf("status %v fail %v", st, fail)
		}
		if info.TransportProtocol != engine.TransportTLS || info.ServerName != "sni.example.com" {
			t.Fatalf("transport %q server name %q", info.TransportProtocol, info.ServerName)
		}
		if got := info.ApplicationProtocols(); len(got) != 2 || got[0] != "h2" || got[1] != "http/1.1" {
			t.Fatalf("ALPN %q", got)
		}
	})

	t.Run("client hello dribbled byte by byte", func(t *testing.T) {
		hello := refragment(captureClientHello(t, &tls.Config{ServerName: "slow.example", InsecureSkipVerify: true}), 40)
		client, server := tcpPair(t)
		client.(*net.TCPConn).SetNoDelay(true)
		go func() {
			for i := range hello {
				client.Write(hello[i : i+1])
			}
		}()
		var info engine.SocketInfo
		st, fail := runLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
			return f.inspect(w, &info, d)
		})
		if st != engine.Continue || fail || info.ServerName != "slow.example" || info.TransportProtocol != engine.TransportTLS {
			t.Fatalf("status %v fail %v info %+v", st, fail, info)
		}
	})

	t.Run("plaintext", func(t *testing.T) {
		client, server := tcpPair(t)
		client.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		var info engine.SocketInfo
		st, fail := runLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
			return f.inspect(w, &info, d)
		})
		if st != engine.Continue || fail || info.TransportProtocol != "" || info.ServerName != "" {
			t.Fatalf("status %v fail %v info %+v", st, fail, info)
		}
		// With close_connection_on_client_hello_parsing_errors the same bytes are rejected.
		strict := New(Config{CloseConnectionOnClientHelloParsingErrors: true})
		if _, fail := strict.inspect(w, &info, []byte("GET / HTTP/1.1\r\n")); !fail {
			t.Fatal("strict filter accepted plaintext")
		}
	})

	t.Run("client hello larger than max_client_hello_size", func(t *testing.T) {
		small := New(Config{MaxClientHelloSize: 512})
		hello := wrap(helloBody(0x0303, sniExt("big.example"), ext{21, make([]byte, 2000)}))
		client, server := tcpPair(t)
		client.Write(hello)
		var info engine.SocketInfo
		_, fail := runLikeEngine(t, server, small.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
			return small.inspect(w, &info, d)
		})
		if !fail || info.TransportProtocol != "" {
			t.Fatalf("oversized ClientHello: fail %v info %+v", fail, info)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{MaxClientHelloSize: 256}, true},
		{Config{MaxClientHelloSize: 16384, InitialReadBufferSize: 1024}, true},
		{Config{MaxClientHelloSize: 255}, false},
		{Config{MaxClientHelloSize: 16385}, false},
		{Config{InitialReadBufferSize: 10}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v", c.cfg, err)
		}
	}
	if New(Config{MaxClientHelloSize: 1 << 20}).MaxReadBytes() != DefaultMaxClientHelloSize {
		t.Error("out-of-range size not clamped")
	}
}

func TestInspectAllocs(t *testing.T) {
	w := newWorker(t)
	f := New(Config{})
	hello := captureClientHello(t, &tls.Config{ServerName: "Alloc.Example", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	var info engine.SocketInfo
	f.inspect(w, &info, hello) // first sight of the names interns them
	allocs := testing.AllocsPerRun(1000, func() {
		info.Reset()
		if st, fail := f.inspect(w, &info, hello); st != engine.Continue || fail {
			t.Fatal(st, fail)
		}
	})
	if allocs != 0 {
		t.Fatalf("inspect allocates %v times per run with interned names, want 0", allocs)
	}
	if info.ServerName != "alloc.example" {
		t.Fatalf("server name %q", info.ServerName)
	}
}

func BenchmarkInspect(b *testing.B) {
	w, err := engine.NewWorker(0, nil)
	if err != nil {
		b.Fatal(err)
	}
	f := New(Config{})
	hello := captureClientHello(b, &tls.Config{ServerName: "bench.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	var info engine.SocketInfo
	b.ReportAllocs()
	for b.Loop() {
		info.Reset()
		f.inspect(w, &info, hello)
	}
}
