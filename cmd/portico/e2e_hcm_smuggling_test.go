package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// smuggleCase is a request sent raw through portico and its verdict: status != 0 is a
// local reply with that status and the connection closed, and the request never
// completes at the backend; status 0 means it is forwarded, and check looks at what the
// backend received.
type smuggleCase struct {
	name   string
	in     string
	status int
	// bodyError: the head is valid and may already be upstream when the body turns out
	// bad, so the backend may see the start of the request (never its completion).
	bodyError bool
	check     func(t *testing.T, seen []echoSeen)
}

// inner is a whole request, as a body: it must stay a body.
const inner = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"

const (
	post = "POST /s HTTP/1.1\r\nHost: h\r\n"
	chk  = post + "Transfer-Encoding: chunked\r\n\r\n"
)

var smuggleCases = []smuggleCase{
	// Framing ambiguities.
	{name: "CL then TE", in: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
	{name: "TE then CL", in: post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", status: 400},
	{name: "two CL equal", in: post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", status: 400},
	{name: "two CL differ", in: post + "Content-Length: 5\r\nContent-Length: 3\r\n\r\nhello", status: 400},
	{name: "CL list", in: post + "Content-Length: 5, 5\r\n\r\nhello", status: 400},
	{name: "CL signed", in: post + "Content-Length: +5\r\n\r\nhello", status: 400},
	{name: "CL negative", in: post + "Content-Length: -1\r\n\r\n", status: 400},
	{name: "CL inner space", in: post + "Content-Length: 1 0\r\n\r\n0123456789", status: 400},
	{name: "CL overflow", in: post + "Content-Length: 18446744073709551616\r\n\r\n", status: 400},
	{name: "TE gzip, chunked", in: post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", status: 501},
	{name: "TE chunked, chunked", in: post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", status: 501},
	{name: "TE twice", in: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 501},
	{name: "TE xchunked", in: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", status: 501},
	{name: "TE identity", in: post + "Transfer-Encoding: identity\r\n\r\n", status: 501},
	{name: "TE space before colon", in: post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", status: 400},
	{name: "TE obs-folded", in: post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", status: 400},
	{name: "TE non-ASCII name", in: post + "Transfer-Encod\xc4\xb1ng: chunked\r\n\r\n0\r\n\r\n", status: 400},
	// Header syntax.
	{name: "obs-fold", in: "GET /s HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", status: 400},
	{name: "bare LF", in: "GET /s HTTP/1.1\nHost: h\n\n", status: 400},
	{name: "bare LF in headers", in: "GET /s HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", status: 400},
	{name: "space before colon", in: "GET /s HTTP/1.1\r\nHost : h\r\n\r\n", status: 400},
	{name: "NUL in value", in: "GET /s HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", status: 400},
	{name: "CR in value", in: "GET /s HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", status: 400},
	{name: "NUL in target", in: "GET /s\x00x HTTP/1.1\r\nHost: h\r\n\r\n", status: 400},
	{name: "two Host", in: "GET /s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400},
	{name: "Host with space", in: "GET /s HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400},
	{name: "no Host", in: "GET /s HTTP/1.1\r\n\r\n", status: 400},
	{name: "HTTP/1.2", in: "GET /s HTTP/1.2\r\nHost: h\r\n\r\n", status: 505},
	{name: "too many headers", in: "GET /s HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-H: v\r\n", 101) + "\r\n", status: 431},
	{name: "head too large", in: "GET /s HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 61<<10) + "\r\n\r\n", status: 431},
	// Chunked bodies (the head is fine).
	{name: "chunk size not hex", in: chk + "z\r\nhello\r\n0\r\n\r\n", status: 400, bodyError: true},
	{name: "chunk size 0x", in: chk + "0x5\r\nhello\r\n0\r\n\r\n", status: 400, bodyError: true},
	{name: "chunk size overflow", in: chk + "10000000000000000\r\nx\r\n0\r\n\r\n", status: 400, bodyError: true},
	{name: "chunk size negative", in: chk + "-1\r\nx\r\n0\r\n\r\n", status: 400, bodyError: true},
	{name: "chunk data longer than size", in: chk + "3\r\nhello\r\n0\r\n\r\n", status: 400, bodyError: true},
	{name: "chunk line bare LF", in: chk + "5\nhello\r\n0\r\n\r\n", status: 400, bodyError: true},

	// Forwarded, with the framing the backend must see.
	{name: "chunked with extensions", in: chk + "5;a=b\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", check: func(t *testing.T, s []echoSeen) {
		if len(s) != 1 || s[0].BodySHA != sha256hex("hello world") || strings.Join(s[0].TE, ",") != "chunked" {
			t.Errorf("backend saw %+v", s)
		}
	}},
	{name: "TE Chunked mixed case", in: post + "Transfer-Encoding: ChUnKeD\r\n\r\n3\r\nabc\r\n0\r\n\r\n", check: func(t *testing.T, s []echoSeen) {
		if len(s) != 1 || s[0].BodySHA != sha256hex("abc") {
			t.Errorf("backend saw %+v", s)
		}
	}},
	{name: "GET with a body", in: "GET /s HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", check: func(t *testing.T, s []echoSeen) {
		if len(s) != 1 || s[0].Method != "GET" || s[0].CL != 2 || s[0].BodySHA != sha256hex("hi") {
			t.Errorf("backend saw %+v", s)
		}
	}},
	{name: "request inside a chunked body", in: chk + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(inner), inner), check: func(t *testing.T, s []echoSeen) {
		if len(s) != 1 || s[0].BodySHA != sha256hex(inner) || s[0].URI != "/s" {
			t.Errorf("backend saw %+v", s)
		}
	}},
	{name: "request inside a CL body", in: post + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(inner), inner), check: func(t *testing.T, s []echoSeen) {
		if len(s) != 1 || s[0].BodySHA != sha256hex(inner) || s[0].URI != "/s" {
			t.Errorf("backend saw %+v", s)
		}
	}},
	{name: "pipelined after a CL body", in: post + "Content-Length: 5\r\n\r\nhelloGET /second HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", check: func(t *testing.T, s []echoSeen) {
		if len(s) != 2 || s[0].BodySHA != sha256hex("hello") || s[1].URI != "/second" || s[1].Method != "GET" || s[1].BodyLen != 0 {
			t.Errorf("backend saw %+v", s)
		}
	}},
	{name: "underscore header", in: "GET /s HTTP/1.1\r\nHost: h\r\nX_Under: 1\r\n\r\n", check: func(t *testing.T, s []echoSeen) {
		// headers_with_underscores_action defaults to ALLOW.
		if len(s) != 1 || joined(s[0], "X_under") != "1" {
			t.Errorf("backend saw %+v", s)
		}
	}},
}

// TestHCMRequestSmuggling: each vector on its own connection through the binary, while
// another client keeps using one keep-alive connection, which must not notice.
func TestHCMRequestSmuggling(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}})

	// The bystander: one keep-alive connection, requests in a loop until the vectors are done.
	stop := make(chan struct{})
	var served atomic.Int64
	var wg sync.WaitGroup
	bc, bbr := rawConn(t, h.Addr)
	bc.SetDeadline(time.Now().Add(120 * time.Second))
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, br := bc, bbr
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			fmt.Fprintf(c, "GET /bystander/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
			resp, body, err := readRespErr(br, "GET")
			if err != nil || resp.StatusCode != 200 || !strings.Contains(body, fmt.Sprintf(`"uri":"/bystander/%d"`, i)) {
				t.Errorf("bystander request %d on its keep-alive connection: %v %v %q", i, resp, err, body)
				return
			}
			served.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	eventually(t, "the bystander's first answer", func() bool { return served.Load() > 0 })

	protoErrs := 0
	for _, tc := range smuggleCases {
		t.Run(tc.name, func(t *testing.T) {
			// Only this case's requests (not the bystander's) count.
			mine := func() []string {
				var out []string
				for _, u := range be.seenURIs() {
					if !strings.HasPrefix(u, "/bystander/") {
						out = append(out, u)
					}
				}
				return out
			}
			before := len(mine())
			c, br := rawConn(t, h.Addr)
			io.WriteString(c, tc.in)
			if tc.status != 0 {
				protoErrs++
				resp, body, err := readRespErr(br, "POST")
				if err != nil {
					t.Fatalf("no response: %v", err)
				}
				if resp.StatusCode != tc.status {
					t.Errorf("status %d %q, want %d", resp.StatusCode, body, tc.status)
				}
				if !closedSoon(c, br) {
					t.Errorf("connection left open after a %d", resp.StatusCode)
				}
				time.Sleep(20 * time.Millisecond)
				got := mine()[before:]
				if !tc.bodyError && len(got) > 0 {
					t.Errorf("the backend received %q", got)
				}
				if slices.Contains(mine(), "/smuggled") {
					t.Errorf("a smuggled request reached the backend")
				}
				return
			}
			var seen []echoSeen
			for {
				resp, body, err := readRespErr(br, "POST")
				if err != nil {
					break
				}
				var s echoSeen
				if resp.StatusCode != 200 {
					t.Errorf("status %d %q, want it forwarded", resp.StatusCode, body)
					break
				}
				decodeSeen(t, body, &s)
				seen = append(seen, s)
				if resp.Close || len(seen) == 2 {
					break
				}
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			}
			tc.check(t, seen)
			if slices.Contains(mine(), "/smuggled") {
				t.Errorf("a smuggled request reached the backend")
			}
		})
	}
	close(stop)
	wg.Wait()
	if served.Load() < 2 {
		t.Errorf("the bystander was served %d times", served.Load())
	}
	t.Logf("bystander served %d requests on one connection", served.Load())
	t.Logf("downstream_cx_protocol_error %v for %d rejected vectors", h.stats(t)["http.ingress_http.downstream_cx_protocol_error"], protoErrs)
}
