package tlsinspector

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
)

// captureClientHello runs a real crypto/tls client against one end of a net.Pipe and
// returns the first TLS record it writes: its ClientHello.
func captureClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		_ = tls.Client(c, cfg).Handshake() // fails when s closes; only its bytes matter
		c.Close()
	}()
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatalf("reading record header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:5]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatalf("reading record body: %v", err)
	}
	return append(hdr, body...)
}

// refragment re-cuts the handshake bytes of single-record hello into records carrying at
// most size bytes each.
func refragment(hello []byte, size int) []byte {
	hs := hello[recordHeaderLen:]
	var out []byte
	for len(hs) > 0 {
		n := min(size, len(hs))
		out = append(out, contentTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	return out
}

func alpnList(r Result) []string {
	var out []string
	for p, rest := NextALPN(r.ALPN); p != nil; p, rest = NextALPN(rest) {
		out = append(out, string(p))
	}
	return out
}

func TestParseRealClientHellos(t *testing.T) {
	tests := []struct {
		name     string
		cfg      *tls.Config
		wantSNI  string
		wantALPN []string
	}{
		{"tls13 sni alpn", &tls.Config{ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}}, "example.com", []string{"h2", "http/1.1"}},
		{"tls12 only", &tls.Config{ServerName: "api.internal", MaxVersion: tls.VersionTLS12}, "api.internal", nil},
		{"tls10 min", &tls.Config{ServerName: "old.example", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10, NextProtos: []string{"x"}}, "old.example", []string{"x"}},
		{"no sni (ip)", &tls.Config{ServerName: "10.0.0.1", NextProtos: []string{"h2"}}, "", []string{"h2"}},
		{"mixed case sni kept raw", &tls.Config{ServerName: "WWW.Example.COM"}, "WWW.Example.COM", nil},
		{"many alpn", &tls.Config{ServerName: "a.b", NextProtos: []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10"}}, "a.b", []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10"}},
		{"long sni", &tls.Config{ServerName: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example"}, strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.InsecureSkipVerify = true
			hello := captureClientHello(t, tt.cfg)
			r, st := ParseClientHello(hello)
			if st != Done {
				t.Fatalf("status %v, want Done", st)
			}
			if r.Fragmented {
				t.Errorf("single-record hello reported fragmented")
			}
			if string(r.ServerName) != tt.wantSNI {
				t.Errorf("SNI %q, want %q", r.ServerName, tt.wantSNI)
			}
			if got := alpnList(r); strings.Join(got, ",") != strings.Join(tt.wantALPN, ",") {
				t.Errorf("ALPN %q, want %q", got, tt.wantALPN)
			}
			// Every strict prefix is an incomplete ClientHello, never a verdict.
			for i := range len(hello) {
				if _, st := ParseClientHello(hello[:i]); st != NeedMore {
					t.Fatalf("prefix of %d/%d bytes: %v, want NeedMore", i, len(hello), st)
				}
			}
			// Bytes after the ClientHello (a pipelined next record) change nothing.
			if _, st := ParseClientHello(append(hello[:len(hello):len(hello)], 0x14, 3, 3, 0, 1, 1)); st != Done {
				t.Fatalf("with trailing record: %v", st)
			}
		})
	}
}

func TestParseFragmented(t *testing.T) {
	hello := captureClientHello(t, &tls.Config{ServerName: "frag.example", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	for _, size := range []int{1, 2, 3, 4, 5, 7, 64, 100, 511, len(hello) - 6} {
		rec := refragment(hello, size)
		r, st := ParseClientHello(rec)
		if st != Done {
			t.Fatalf("size %d: %v, want Done", size, st)
		}
		if !r.Fragmented || string(r.ServerName) != "frag.example" || strings.Join(alpnList(r), ",") != "h2,http/1.1" {
			t.Fatalf("size %d: got %+v sni=%q alpn=%q", size, r, r.ServerName, alpnList(r))
		}
		for i := range len(rec) {
			if _, st := ParseClientHello(rec[:i]); st != NeedMore {
				t.Fatalf("size %d prefix %d/%d: %v, want NeedMore", size, i, len(rec), st)
			}
		}
	}
	// Empty records between fragments are tolerated up to BoringSSL's limit.
	withEmpty := append([]byte{contentTypeHandshake, 3, 1, 0, 0}, refragment(hello, 50)...)
	if _, st := ParseClientHello(withEmpty); st != Done {
		t.Fatalf("leading empty record: %v", st)
	}
	var many []byte
	for range maxEmptyRecords + 1 {
		many = append(many, contentTypeHandshake, 3, 1, 0, 0)
	}
	if _, st := ParseClientHello(append(many, hello...)); st != Error {
		t.Fatalf("%d empty records: %v, want Error", maxEmptyRecords+1, st)
	}
	// A non-handshake record in the middle of the ClientHello is a protocol error.
	bad := refragment(hello, 50)
	bad[55] = 21 // second record becomes an alert
	if _, st := ParseClientHello(bad); st != Error {
		t.Fatalf("alert in the middle: %v, want Error", st)
	}
}

// hello builds a synthetic ClientHello body from extensions (type, body) pairs.
type ext struct {
	typ  uint16
	body []byte
}

func helloBody(version uint16, exts ...ext) []byte {
	b := binary.BigEndian.AppendUint16(nil, version)
	b = append(b, make([]byte, 32)...) // random
	b = append(b, 0)                   // session id
	b = append(b, 0, 2, 0x13, 0x01)    // one cipher suite
	b = append(b, 1, 0)                // null compression
	if exts != nil {
		var e []byte
		for _, x := range exts {
			e = binary.BigEndian.AppendUint16(e, x.typ)
			e = binary.BigEndian.AppendUint16(e, uint16(len(x.body)))
			e = append(e, x.body...)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b
}

// wrap puts a ClientHello body into a handshake message and that into records of at
// most 16384 bytes.
func wrap(body []byte) []byte {
	msg := append([]byte{handshakeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	var out []byte
	for len(msg) > 0 {
		n := min(len(msg), maxPlaintextRecord)
		out = append(out, contentTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func sniExt(names ...string) ext {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	return ext{extServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...)}
}

func alpnExt(raw []byte) ext {
	return ext{extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(raw))), raw...)}
}

func TestParseSynthetic(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		want     Status
		wantSNI  string
		wantALPN string
	}{
		{"empty", nil, NeedMore, "", ""},
		{"one handshake byte", []byte{22}, NeedMore, "", ""},
		{"http", []byte("GET / HTTP/1.1\r\n"), NotTLS, "", ""},
		{"h2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), NotTLS, "", ""},
		{"alert record", []byte{21, 3, 1, 0, 2, 2, 40}, NotTLS, "", ""},
		{"bad record major", []byte{22, 2, 0, 0, 4}, NotTLS, "", ""},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, NotTLS, "", ""},
		{"record too long", []byte{22, 3, 1, 0x40, 0x01}, Error, "", ""},
		{"not a client hello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, Error, "", ""},
		{"hello body too large", []byte{22, 3, 1, 0, 4, 1, 0, 0x40, 0x01}, Error, "", ""},
		{"minimal no extensions", wrap(helloBody(0x0303)), Done, "", ""},
		{"sslv3 only", wrap(helloBody(0x0300)), Error, "", ""},
		{"supported_versions tls13", wrap(helloBody(0x0303, ext{extSupportedVersions, []byte{2, 0x03, 0x04}})), Done, "", ""},
		{"supported_versions none usable", wrap(helloBody(0x0303, ext{extSupportedVersions, []byte{2, 0x7f, 0x1c}})), Error, "", ""},
		{"sni", wrap(helloBody(0x0303, sniExt("Foo.Example"))), Done, "Foo.Example", ""},
		{"sni two names", wrap(helloBody(0x0303, sniExt("a.example", "b.example"))), Error, "", ""},
		{"sni empty name", wrap(helloBody(0x0303, sniExt(""))), Error, "", ""},
		{"sni NUL", wrap(helloBody(0x0303, sniExt("a\x00b"))), Error, "", ""},
		{"sni 256 bytes", wrap(helloBody(0x0303, sniExt(strings.Repeat("a", 256)))), Error, "", ""},
		{"sni 255 bytes", wrap(helloBody(0x0303, sniExt(strings.Repeat("a", 255)))), Done, strings.Repeat("a", 255), ""},
		{"duplicate sni", wrap(helloBody(0x0303, sniExt("a"), sniExt("b"))), Error, "", ""},
		{"alpn", wrap(helloBody(0x0303, alpnExt([]byte("\x02h2\x08http/1.1")))), Done, "", "h2,http/1.1"},
		{"alpn empty name ignored", wrap(helloBody(0x0303, alpnExt([]byte("\x02h2\x00")))), Done, "", ""},
		{"alpn overrun ignored", wrap(helloBody(0x0303, alpnExt([]byte("\x05h2")))), Done, "", ""},
		{"alpn too short ignored", wrap(helloBody(0x0303, alpnExt([]byte("\x00")))), Done, "", ""},
		{"extensions trailing byte", wrapTrailing(), Error, "", ""},
		{"cipher suites odd", wrap(badSuites()), Error, "", ""},
		{"hello padded to limit", wrap(helloBody(0x0303, sniExt("big.example"), ext{21, make([]byte, maxClientHelloBody-70)})), Done, "big.example", ""},
		{"hello over limit", wrap(helloBody(0x0303, ext{21, make([]byte, maxClientHelloBody)})), Error, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, st := ParseClientHello(tt.in)
			if st != tt.want {
				t.Fatalf("status %v, want %v", st, tt.want)
			}
			if string(r.ServerName) != tt.wantSNI {
				t.Errorf("SNI %q, want %q", r.ServerName, tt.wantSNI)
			}
			if got := strings.Join(alpnList(r), ","); got != tt.wantALPN {
				t.Errorf("ALPN %q, want %q", got, tt.wantALPN)
			}
		})
	}
}

func wrapTrailing() []byte {
	b := helloBody(0x0303, ext{0xff01, nil})
	return wrap(append(b, 0))
}

func badSuites() []byte {
	b := helloBody(0x0303)
	// version(2) random(32) sid-len(1) → suites length at 35..36; make it 3 bytes.
	b = append(b[:35:35], append([]byte{0, 3, 0x13, 0x01, 0x13}, b[39:]...)...)
	return b
}

func TestParseGarbageNeverPanics(t *testing.T) {
	hello := captureClientHello(t, &tls.Config{ServerName: "x.example", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	// Flip every byte of a real ClientHello in turn: any verdict is fine, a panic is not,
	// and a flipped byte in the random must still parse.
	for i := range hello {
		m := bytes.Clone(hello)
		m[i] ^= 0xff
		_, st := ParseClientHello(m)
		if i >= recordHeaderLen+handshakeHeaderLen+2 && i < recordHeaderLen+handshakeHeaderLen+2+32 && st != Done {
			t.Fatalf("flipping random byte %d gave %v", i, st)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	hello := captureClientHello(t, &tls.Config{ServerName: "alloc.example", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	allocs := testing.AllocsPerRun(1000, func() {
		if _, st := ParseClientHello(hello); st != Done {
			t.Fatal(st)
		}
	})
	if allocs != 0 {
		t.Fatalf("ParseClientHello allocates %v times per run, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		if _, st := ParseClientHello(hello[:len(hello)/2]); st != NeedMore {
			t.Fatal(st)
		}
	})
	if allocs != 0 {
		t.Fatalf("NeedMore path allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	hello := captureClientHello(b, &tls.Config{ServerName: "bench.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true})
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		if _, st := ParseClientHello(hello); st != Done {
			b.Fatal(st)
		}
	}
}

func BenchmarkParseClientHelloFragmented(b *testing.B) {
	hello := refragment(captureClientHello(b, &tls.Config{ServerName: "bench.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true}), 256)
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		if _, st := ParseClientHello(hello); st != Done {
			b.Fatal(st)
		}
	}
}
