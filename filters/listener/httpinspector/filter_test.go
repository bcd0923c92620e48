package httpinspector

import (
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/listener/internal/peektest"
)

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
			client, server := peektest.TCPPair(t)
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
			st, fail := peektest.RunLikeEngine(t, server, f.MaxReadBytes(), func(d []byte) (engine.FilterStatus, bool) {
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
