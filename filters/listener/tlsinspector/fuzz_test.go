package tlsinspector

import (
	"bytes"
	"testing"
)

// FuzzClientHello checks that no input panics and that the verdicts are consistent:
// a Done result's views lie inside the input (or its copy), ALPN walks cleanly, and a
// prefix of an input is never judged "Done" or "NotTLS" where the whole input needs more.
func FuzzClientHello(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(wrap(helloBody(0x0303, sniExt("seed.example"), alpnExt([]byte("\x02h2\x08http/1.1")), ext{extSupportedVersions, []byte{2, 3, 4}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, st := ParseClientHello(data)
		if st != Done && (r.ServerName != nil || r.ALPN != nil) {
			t.Fatalf("status %v with a result %+v", st, r)
		}
		if st == Done {
			if !r.Fragmented && r.ServerName != nil && !within(data, r.ServerName) {
				t.Fatal("server name does not alias the input")
			}
			if len(r.ServerName) > maxHostName || bytes.IndexByte(r.ServerName, 0) >= 0 {
				t.Fatalf("bad server name %q", r.ServerName)
			}
			n := 0
			for p, rest := NextALPN(r.ALPN); p != nil; p, rest = NextALPN(rest) {
				if len(p) == 0 {
					t.Fatal("empty ALPN name")
				}
				n += 1 + len(p)
			}
			if n != len(r.ALPN) {
				t.Fatalf("ALPN walk covered %d of %d bytes", n, len(r.ALPN))
			}
		}
		// Once decided, more bytes cannot change a NotTLS verdict, and a prefix of data is
		// never "NotTLS" when data itself still needs more.
		if st == NeedMore {
			// What the engine is told to wait for (WantBytes) is at least a record header.
			if n := NeedBytes(data); n < recordHeaderLen {
				t.Fatalf("NeedBytes %d", n)
			}
			for i := range min(len(data), 64) {
				if _, pst := ParseClientHello(data[:i]); pst != NeedMore {
					t.Fatalf("prefix %d: %v but whole input NeedMore", i, pst)
				}
			}
		}
	})
}

func within(outer, inner []byte) bool {
	if len(inner) == 0 {
		return true
	}
	for i := 0; i+len(inner) <= len(outer); i++ {
		if &outer[i] == &inner[0] {
			return true
		}
	}
	return false
}
