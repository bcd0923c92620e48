package httpinspector

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in    string
		proto Protocol
		st    Status
	}{
		{"", ProtocolNone, NeedMore},
		{"GET / HTTP/1.1\r\n", HTTP11, Done},
		{"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", HTTP11, Done},
		{"GET / HTTP/1.0\r\n", HTTP10, Done},
		{"GET / HTTP/1.1\n", HTTP11, Done},
		{"POST /submit?x=1 HTTP/1.1\r\n", HTTP11, Done},
		{"get / HTTP/1.1\r\n", HTTP11, Done},      // custom methods are tokens: case is free
		{"FOO-BAR / HTTP/1.1\r\n", HTTP11, Done},  // custom method
		{"GET / HTTP/2.0\r\n", HTTP10, Done},      // unknown version → http/1.0, as Envoy
		{"GET / HTTP/9.9\r\n", HTTP10, Done},      // unknown version → http/1.0, as Envoy
		{"GET /\r\n", HTTP10, Done},               // HTTP/0.9: no version
		{"GET /HTTP/1.1\r\n", HTTP11, Done},       // Envoy only checks the line's suffix
		{"GET  /   HTTP/1.1  \r\n", HTTP11, Done}, // Balsa tolerates runs of whitespace
		{"GET\t/\tHTTP/1.1\r\n", HTTP11, Done},    // tabs separate too
		{"GET http://example.com/x HTTP/1.1\r\n", HTTP11, Done},
		{"GET h2+x.y://ex@ample.com:80?q HTTP/1.1\r\n", HTTP11, Done},
		{"CONNECT example.com:443 HTTP/1.1\r\n", HTTP11, Done},
		{"OPTIONS * HTTP/1.1\r\n", HTTP11, Done},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", H2C, Done},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", H2C, Done},
		{"PRI * HTTP/2.0\r\n\r\nSM", ProtocolNone, NeedMore},
		{"PRI * HTTP/2.0\r\n", ProtocolNone, NeedMore}, // still a preface prefix
		{"PRI * HTTP/2.0\r\nHost: x\r\n\r\n", HTTP10, Done},
		{"GET / HTTP/1.1", ProtocolNone, NeedMore},
		{"GET / HTTP/1.1\r", ProtocolNone, NeedMore},
		{"GET / HTT", ProtocolNone, NeedMore},
		{"GET /index", ProtocolNone, NeedMore},
		{"G", ProtocolNone, NeedMore},
		{"\r\nGET / HTTP/1.1\r\n", ProtocolNone, NotHTTP},
		{"\nGET / HTTP/1.1\r\n", ProtocolNone, NotHTTP},
		{"GET\r\n", ProtocolNone, NotHTTP},                  // no URI
		{"GET / HTTP/1.1 extra\r\n", ProtocolNone, NotHTTP}, // version is the rest of the line
		{"GET / HTTP/1.1 extra", ProtocolNone, NotHTTP},     // ... known before the newline
		{"GET / HTTP/1.10\r\n", ProtocolNone, NotHTTP},
		{"GET / HTTPS/1.1\r\n", ProtocolNone, NotHTTP},
		{"GET / HTTPS", ProtocolNone, NotHTTP},
		{"G{}T / HTTP/1.1\r\n", ProtocolNone, NotHTTP},
		{"G{", ProtocolNone, NotHTTP},
		{"GET example.com HTTP/1.1\r\n", ProtocolNone, NotHTTP}, // no scheme outside CONNECT
		{"GET http://a@@b/ HTTP/1.1\r\n", ProtocolNone, NotHTTP},
		{"GET /\x7f HTTP/1.1\r\n", ProtocolNone, NotHTTP},
		{"GET /\x80", ProtocolNone, NotHTTP},
		{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ProtocolNone, NotHTTP}, // TLS
		{"SSH-2.0-OpenSSH_9.6\r\n", ProtocolNone, NotHTTP},
		{"\x00\x00\x00\x00", ProtocolNone, NeedMore}, // NUL is Balsa whitespace: still nothing
	}
	for _, tt := range tests {
		proto, st := Parse([]byte(tt.in))
		if proto != tt.proto || st != tt.st {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tt.in, proto, st, tt.proto, tt.st)
		}
	}
}

// TestParsePrefixes checks that every strict prefix of a request line that ends up HTTP
// is NeedMore: an early NotHTTP would be a false negative Envoy does not have.
func TestParsePrefixes(t *testing.T) {
	for _, in := range []string{
		"GET /a/b?c=d HTTP/1.1\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\n",
		"PROPFIND http://example.com:8080/x HTTP/1.0\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET  /  \r\n",
	} {
		for i := range len(in) - 1 {
			if _, st := Parse([]byte(in[:i])); st != NeedMore {
				t.Errorf("Parse(%q) = %v, want NeedMore", in[:i], st)
			}
		}
		if _, st := Parse([]byte(in)); st != Done {
			t.Errorf("Parse(%q) = %v, want Done", in, st)
		}
	}
}

func TestParseLongLine(t *testing.T) {
	line := "GET /" + strings.Repeat("a", MaxInspectSize)
	if _, st := Parse([]byte(line)); st != NeedMore {
		t.Fatalf("long partial line: %v", st)
	}
}

func TestParseAllocs(t *testing.T) {
	for _, in := range []string{"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET /partial", "\x16\x03\x01"} {
		b := []byte(in)
		if a := testing.AllocsPerRun(1000, func() { Parse(b) }); a != 0 {
			t.Errorf("Parse(%q) allocates %v times", in, a)
		}
	}
}

func BenchmarkParseHTTP11(b *testing.B) {
	in := []byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if p, _ := Parse(in); p != HTTP11 {
			b.Fatal(p)
		}
	}
}

func BenchmarkParseH2C(b *testing.B) {
	in := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00")
	b.ReportAllocs()
	for b.Loop() {
		if p, _ := Parse(in); p != H2C {
			b.Fatal(p)
		}
	}
}

func BenchmarkParseNotHTTP(b *testing.B) {
	in := []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
	b.ReportAllocs()
	for b.Loop() {
		Parse(in)
	}
}
