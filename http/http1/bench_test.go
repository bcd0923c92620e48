package http1

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/http/header"
)

type nopHandler struct{ body, complete int }

func (h *nopHandler) OnHeaders(*header.Map, *Message) {}
func (h *nopHandler) OnBody(b []byte)                 { h.body += len(b) }
func (h *nopHandler) OnComplete()                     { h.complete++ }

const smallGET = "GET /api/v1/items?id=42&sort=asc HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n" +
	"Accept: application/json, text/plain, */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Referer: https://www.example.com/page\r\n" +
	"Cookie: session=abcdef0123456789; theme=dark\r\n" +
	"Cache-Control: no-cache\r\n" +
	"X-Request-Id: 4f1c2e7a-9b3d-4c5e-8f6a-1b2c3d4e5f60\r\n" +
	"\r\n"

// bigGET is a 40-header, ~4 KiB request head.
var bigGET = func() string {
	var b strings.Builder
	b.WriteString("GET /static/assets/app.bundle.js?v=1700000000 HTTP/1.1\r\nHost: cdn.example.com\r\n")
	for i := 0; b.Len() < 4000 || i < 39; i++ {
		fmt.Fprintf(&b, "X-Custom-Header-%02d: %s\r\n", i, strings.Repeat("v", 70+i))
		if i >= 38 && b.Len() >= 4000 {
			break
		}
	}
	b.WriteString("\r\n")
	return b.String()
}()

const chunkedPOST = "POST /upload HTTP/1.1\r\n" +
	"Host: up.example.com\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Transfer-Encoding: chunked\r\n" +
	"\r\n" +
	"400\r\n" + "%s" + "\r\n" +
	"400\r\n" + "%s" + "\r\n" +
	"0\r\n\r\n"

var chunkedPOSTMsg = fmt.Sprintf(chunkedPOST, strings.Repeat("a", 1024), strings.Repeat("b", 1024))

var respCL = "HTTP/1.1 200 OK\r\n" +
	"Server: backend\r\n" +
	"Date: Mon, 01 Dec 2026 11:33:30 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Cache-Control: max-age=60\r\n" +
	"Content-Length: 1024\r\n" +
	"\r\n" + strings.Repeat("r", 1024)

// parseLoop parses msg (possibly several pipelined messages) to the end.
func parseLoop(tb testing.TB, p *Parser, msg []byte, h Handler) {
	for len(msg) > 0 {
		n, err := p.Parse(msg, h)
		if err != nil {
			tb.Fatal(err)
		}
		msg = msg[n:]
	}
}

func TestZeroAllocs(t *testing.T) {
	cases := []struct {
		name     string
		response bool
		msg      string
	}{
		{"small GET", false, smallGET},
		{"40-header GET", false, bigGET},
		{"chunked POST", false, chunkedPOSTMsg},
		{"response CL", true, respCL},
	}
	if n := strings.Count(bigGET, "\r\n") - 2; n < 40 || len(bigGET) < 4000 {
		t.Fatalf("bigGET has %d headers, %d bytes", n, len(bigGET))
	}
	for _, c := range cases {
		var p Parser
		if c.response {
			p.InitResponse(DefaultLimits)
		} else {
			p.InitRequest(DefaultLimits)
		}
		var m header.Map
		p.SetHeaderMap(&m)
		h := &nopHandler{}
		msg := []byte(c.msg)
		for _, pieces := range []int{1, 7} { // whole, and in 7 pieces (the line buffer)
			step := (len(msg) + pieces - 1) / pieces
			allocs := testing.AllocsPerRun(100, func() {
				for i := 0; i < len(msg); i += step {
					parseLoop(t, &p, msg[i:min(i+step, len(msg))], h)
				}
			})
			if allocs != 0 {
				t.Errorf("%s in %d pieces: %v allocs per message", c.name, pieces, allocs)
			}
		}
		if h.complete == 0 {
			t.Fatalf("%s: never completed", c.name)
		}
	}

	var m header.Map
	var p Parser
	p.InitRequest(DefaultLimits)
	p.SetHeaderMap(&m)
	parseLoop(t, &p, []byte(bigGET), &nopHandler{})
	buf := make([]byte, 0, 8192)
	if a := testing.AllocsPerRun(100, func() { buf = AppendRequestHead(buf[:0], &m) }); a != 0 {
		t.Errorf("AppendRequestHead: %v allocs", a)
	}
	var r header.Map
	r.AddString(":status", "200")
	r.AddString("content-length", "1024")
	r.AddString("content-type", "application/json")
	if a := testing.AllocsPerRun(100, func() {
		buf = AppendResponseHead(buf[:0], &r, HTTP11)
		buf = AppendChunkHeader(buf, 1024)
	}); a != 0 {
		t.Errorf("AppendResponseHead: %v allocs", a)
	}
}

func benchParse(b *testing.B, response bool, msg string) {
	var p Parser
	if response {
		p.InitResponse(DefaultLimits)
	} else {
		p.InitRequest(DefaultLimits)
	}
	var m header.Map
	p.SetHeaderMap(&m)
	h := &nopHandler{}
	data := []byte(msg)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		parseLoop(b, &p, data, h)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	b.Run("small", func(b *testing.B) { benchParse(b, false, smallGET) })
	b.Run("40headers", func(b *testing.B) { benchParse(b, false, bigGET) })
	b.Run("chunkedPOST", func(b *testing.B) { benchParse(b, false, chunkedPOSTMsg) })
}

func BenchmarkParseResponse(b *testing.B) { benchParse(b, true, respCL) }

func BenchmarkAppendRequestHead(b *testing.B) {
	var m header.Map
	var p Parser
	p.InitRequest(DefaultLimits)
	p.SetHeaderMap(&m)
	parseLoop(b, &p, []byte(smallGET), &nopHandler{})
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequestHead(buf[:0], &m)
	}
}

func BenchmarkAppendResponseHead(b *testing.B) {
	var m header.Map
	var p Parser
	p.InitResponse(DefaultLimits)
	p.SetHeaderMap(&m)
	parseLoop(b, &p, []byte(respCL), &nopHandler{})
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponseHead(buf[:0], &m, HTTP11)
	}
}
