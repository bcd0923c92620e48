package httpinspector

import (
	"bytes"
	"testing"
)

// FuzzHTTPInspector checks that Parse never panics and never decides early: if a prefix
// is judged NotHTTP or Done, the longer input must get the same verdict (Envoy only
// judges once the first line is complete, so an early verdict must be final).
func FuzzHTTPInspector(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "CONNECT a:1 HTTP/1.0\r\n", "\x16\x03\x01", "GET /"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		proto, st := Parse(data)
		if (st == Done) != (proto != ProtocolNone) {
			t.Fatalf("status %v with protocol %v", st, proto)
		}
		if st == Done && proto != H2C && bytes.IndexByte(data, '\n') < 0 {
			t.Fatal("HTTP/1 decided without a complete first line")
		}
		for i := range min(len(data), 128) {
			pp, pst := Parse(data[:i])
			if pst != NeedMore && (pst != st || pp != proto) {
				t.Fatalf("prefix %q: %v %v, whole input: %v %v", data[:i], pp, pst, proto, st)
			}
		}
	})
}
