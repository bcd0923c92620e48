package http1

import (
	"net/http"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/http/header"
)

func TestReasonPhrasesMatchNetHTTP(t *testing.T) {
	for code := 100; code < 1000; code++ {
		want := http.StatusText(code)
		if want == "" {
			want = "Unknown"
		}
		if got := reasonPhrase(code); got != want {
			t.Errorf("%d: %q, net/http %q", code, got, want)
		}
	}
}

func TestAppendRequestHead(t *testing.T) {
	var h header.Map
	h.AddString(":method", "POST")
	h.AddString(":path", "/a?b")
	h.AddString(":authority", "example.com")
	h.AddString("content-length", "3")
	h.AddString("x-multi", "1")
	h.AddString("x-multi", "2")
	h.AddString("x-del", "gone")
	h.Del("x-del")
	got := string(AppendRequestHead([]byte("prefix|"), &h))
	want := "prefix|POST /a?b HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\nx-multi: 1\r\nx-multi: 2\r\n\r\n"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}

	var c header.Map
	c.AddString(":method", "CONNECT")
	c.AddString(":authority", "h:443")
	if got, want := string(AppendRequestHead(nil, &c)), "CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\n\r\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

// TestEncodeParseRoundTrip: what the encoder writes, the parser reads back unchanged.
func TestEncodeParseRoundTrip(t *testing.T) {
	for _, c := range validCorpus {
		if c.response || strings.Contains(c.name, "EOF") || strings.Contains(c.name, "underscore") {
			continue
		}
		var p Parser
		p.InitRequest(c.lim)
		var h1 header.Map
		p.SetHeaderMap(&h1)
		r := &recorder{}
		if _, err := p.Parse([]byte(c.in), r); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.lastStatus != 0 || len(r.events) == 0 {
			continue
		}
		first := r.events[0]
		if strings.Contains(first, "v=HTTP/1.0") || strings.Contains(first, "connect=true") {
			continue // re-encoded as HTTP/1.1 with a host line: a different message
		}
		enc := AppendRequestHead(nil, &h1)
		var q Parser
		q.InitRequest(c.lim)
		var h2 header.Map
		q.SetHeaderMap(&h2)
		r2 := &recorder{}
		if _, err := q.Parse(enc, r2); err != nil {
			t.Fatalf("%s: re-parse of %q: %v", c.name, enc, err)
		}
		if r2.events[0] != first {
			t.Errorf("%s:\n got %s\nwant %s", c.name, r2.events[0], first)
		}
	}
}

func TestAppendResponseHead(t *testing.T) {
	var h header.Map
	h.AddString(":status", "404")
	h.AddString("content-length", "0")
	if got, want := string(AppendResponseHead(nil, &h, HTTP11)), "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	h.SetString(":status", "299")
	if got, want := string(AppendResponseHead(nil, &h, HTTP10)), "HTTP/1.0 299 Unknown\r\ncontent-length: 0\r\n\r\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	var bad header.Map
	if got, want := string(AppendResponseHead(nil, &bad, HTTP11)), "HTTP/1.1 500 Internal Server Error\r\n\r\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestEncoderNeutralisesCRLF(t *testing.T) {
	var h header.Map
	h.AddString(":status", "200")
	h.AddString("x-evil", "a\r\nSet-Cookie: x\x00")
	if got, want := string(AppendResponseHead(nil, &h, HTTP11)), "HTTP/1.1 200 OK\r\nx-evil: a  Set-Cookie: x \r\n\r\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestChunkFraming(t *testing.T) {
	b := AppendChunkHeader(nil, 0x1a2b)
	b = append(b, strings.Repeat("x", 0x1a2b)...)
	b = append(b, CRLF...)
	b = append(b, LastChunk...)
	if !strings.HasPrefix(string(b), "1a2b\r\n") {
		t.Fatalf("chunk header %q", b[:8])
	}
	in := "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + string(b)
	ev := parseAll(t, false, DefaultLimits, one(in))
	if len(ev) != 4 || ev[1] != `body "`+strings.Repeat("x", 0x1a2b)+`"` {
		t.Fatalf("re-parse: %v", ev[len(ev)-2:])
	}
}
