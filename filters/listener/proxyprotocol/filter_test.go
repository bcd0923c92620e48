package proxyprotocol

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/listener/internal/peektest"
)

// drain consumes n bytes from the raw fd as engine.ActiveSocket.Drain does.
func drain(t *testing.T, conn *net.TCPConn, n int) {
	t.Helper()
	rc, _ := conn.SyscallConn()
	buf := make([]byte, n)
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for n > 0 {
			r, err := unix.Read(int(fd), buf[:n])
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			if err != nil || r == 0 {
				rerr = errors.Join(err, io.ErrUnexpectedEOF)
				return true
			}
			n -= r
		}
		return true
	})
	if err != nil || rerr != nil {
		t.Fatalf("drain: %v %v", err, rerr)
	}
}

const scratchSize = 64 << 10 // engine's worker scratch buffer

func TestFilterOnRealSocket(t *testing.T) {
	payload := "GET / HTTP/1.1\r\n\r\n"
	tests := []struct {
		name     string
		cfg      Config
		header   []byte
		fail     bool
		drained  int
		src, dst string // empty: unchanged
		restored bool
	}{
		{"v1 tcp4", Config{}, []byte("PROXY TCP4 192.0.2.1 198.51.100.7 40000 8443\r\n"), false, 46, "192.0.2.1:40000", "198.51.100.7:8443", true},
		{"v1 unknown", Config{}, []byte("PROXY UNKNOWN\r\n"), false, 15, "", "", false},
		{"v2 inet6 with tlvs", Config{}, v2(0x21, 0x21, inet("[2001:db8::1]:1000", "[2001:db8::2]:2000"), append(tlv(1, "h2"), tlv(0xE0, "x")...)), false, 16 + 36 + 5 + 4, "[2001:db8::1]:1000", "[2001:db8::2]:2000", true},
		{"v2 local", Config{}, v2(0x20, 0x00, nil, nil), false, 16, "", "", false},
		{"v2 same destination is not a restore", Config{}, v2(0x21, 0x11, inet("192.0.2.1:5", "127.0.0.1:1"), nil), false, 28, "192.0.2.1:5", "", false},
		{"no header rejected", Config{}, nil, true, 0, "", "", false},
		{"no header allowed", Config{AllowRequestsWithoutProxyProtocol: true}, nil, false, 0, "", "", false},
		{"v1 disallowed", Config{DisallowedVersions: V1}, []byte("PROXY UNKNOWN\r\n"), true, 0, "", "", false},
		{"malformed v2", Config{}, v2(0x21, 0x11, inet("192.0.2.1:5", "127.0.0.1:1"), []byte{9}), true, 0, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(tt.cfg)
			client, server := peektest.TCPPair(t)
			go client.Write(append(tt.header[:len(tt.header):len(tt.header)], payload...))
			var info engine.SocketInfo
			info.LocalAddr = netip.MustParseAddrPort("127.0.0.1:1")
			info.RemoteAddr = netip.MustParseAddrPort("127.0.0.1:2")
			info.DirectRemoteAddr = info.RemoteAddr
			before := info
			var v verdict
			peektest.RunLikeEngine(t, server, min(f.MaxReadBytes(), scratchSize), func(d []byte) (engine.FilterStatus, bool) {
				v = f.verdict(&info, d, scratchSize)
				return v.status, v.fail
			})
			if v.fail != tt.fail || v.drain != tt.drained {
				t.Fatalf("verdict %+v, want fail %v drain %d", v, tt.fail, tt.drained)
			}
			if v.fail {
				return
			}
			if v.drain > 0 {
				drain(t, server, v.drain)
			}
			// Exactly the header was consumed: the application bytes come next.
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(server, got); err != nil || string(got) != payload {
				t.Fatalf("after the header: %q, %v", got, err)
			}
			wantSrc, wantDst := before.RemoteAddr, before.LocalAddr
			if tt.src != "" {
				wantSrc = netip.MustParseAddrPort(tt.src)
			}
			if tt.dst != "" {
				wantDst = netip.MustParseAddrPort(tt.dst)
			}
			if info.RemoteAddr != wantSrc || info.LocalAddr != wantDst || info.LocalAddrRestored != tt.restored {
				t.Fatalf("info %+v", info)
			}
			if info.DirectRemoteAddr != before.DirectRemoteAddr {
				t.Fatal("direct remote address changed")
			}
		})
	}
}

func TestVerdictOversizedV2(t *testing.T) {
	f := New(Config{})
	hdr := append([]byte(V2Signature), 0x21, 0x11, 0xff, 0xff) // 16+65535 > 64 KiB peek
	var info engine.SocketInfo
	if v := f.verdict(&info, hdr, scratchSize); !v.fail {
		t.Fatalf("header larger than the peek buffer: %+v", v)
	}
	if v := f.verdict(&info, hdr, MaxV2Len); v.fail || v.status != engine.StopIteration {
		t.Fatalf("header within a large enough buffer: %+v", v)
	}
}

func TestVerdictAllocs(t *testing.T) {
	f := New(Config{})
	in := []byte("PROXY TCP4 192.0.2.1 198.51.100.7 40000 8443\r\n")
	var info engine.SocketInfo
	if a := testing.AllocsPerRun(1000, func() { f.verdict(&info, in, scratchSize) }); a != 0 {
		t.Fatalf("verdict allocates %v times", a)
	}
}
