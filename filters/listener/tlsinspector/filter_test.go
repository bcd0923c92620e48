package tlsinspector

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/listener/internal/peektest"
)

func newWorker(*testing.T) *engine.Interner { return new(engine.Interner) }

func TestFilterOnRealSocket(t *testing.T) {
	w := newWorker(t)
	f := New(Config{})
	if f.Name() != Name || f.MaxReadBytes() != DefaultMaxClientHelloSize {
		t.Fatalf("Name %q MaxReadBytes %d", f.Name(), f.MaxReadBytes())
	}

	t.Run("tls client", func(t *testing.T) {
		client, server := peektest.TCPPair(t)
		go tls.Client(client, &tls.Config{ServerName: "Sni.Example.COM", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true}).Handshake()
		var info engine.SocketInfo
		st, fail := peektest.RunLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
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
		client, server := peektest.TCPPair(t)
		client.(*net.TCPConn).SetNoDelay(true)
		go func() {
			for i := range hello {
				client.Write(hello[i : i+1])
			}
		}()
		var info engine.SocketInfo
		st, fail := peektest.RunLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
			return f.inspect(w, &info, d)
		})
		if st != engine.Continue || fail || info.ServerName != "slow.example" || info.TransportProtocol != engine.TransportTLS {
			t.Fatalf("status %v fail %v info %+v", st, fail, info)
		}
	})

	t.Run("plaintext", func(t *testing.T) {
		client, server := peektest.TCPPair(t)
		client.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		var info engine.SocketInfo
		st, fail := peektest.RunLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
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
		client, server := peektest.TCPPair(t)
		client.Write(hello)
		var info engine.SocketInfo
		_, fail := peektest.RunLikeEngine(t, server, small.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
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
	w := new(engine.Interner)
	f := New(Config{})
	hello := captureClientHello(b, &tls.Config{ServerName: "bench.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	var info engine.SocketInfo
	b.ReportAllocs()
	for b.Loop() {
		info.Reset()
		f.inspect(w, &info, hello)
	}
}

// TestNeedBytesNeverOverstates: for every prefix of real ClientHellos (whole, and cut into
// small records) on which the parser wants more, NeedBytes asks for more than the prefix
// and never more than the whole first flight: the engine may sleep until that many bytes
// arrived without ever waiting for bytes that will not come.
func TestNeedBytesNeverOverstates(t *testing.T) {
	hello := captureClientHello(t, &tls.Config{ServerName: "need.example", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	for _, flight := range [][]byte{hello, refragment(hello, 40), refragment(hello, 3)} {
		for p := 0; p < len(flight); p++ {
			if _, st := ParseClientHello(flight[:p]); st != NeedMore {
				continue
			}
			need := NeedBytes(flight[:p])
			if need <= p || need > len(flight) {
				t.Fatalf("prefix %d of %d: NeedBytes %d", p, len(flight), need)
			}
		}
	}
}
