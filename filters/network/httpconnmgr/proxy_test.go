package httpconnmgr_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/http/route"
)

// raw sends req on a new connection and returns the first response read.
func raw(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestBodies: request and response bodies, Content-Length and chunked, of 1 MiB arrive
// whole (sha256 equal) both ways.
func TestBodies(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Len", strings.Repeat("x", int(n%7)))
		if r.URL.Query().Get("chunked") == "1" {
			w.(http.Flusher).Flush() // no Content-Length: chunked
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(1<<20))
		}
		io.Copy(w, bytes.NewReader(payload(1<<20)))
	}))
	defer be.Close()
	addr, _, _ := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, nil)
	body := payload(1 << 20)
	want := sha256.Sum256(body)
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = bytes.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // unknown length: chunked request
		}
		q := "0"
		if chunked {
			q = "1"
		}
		req, _ := http.NewRequest("POST", "http://"+addr+"/up?chunked="+q, rd)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := sha256.Sum256(got)
		if resp.StatusCode != 200 || s != want || resp.Header.Get("X-Sum") != fmt.Sprintf("%x", want) {
			t.Fatalf("chunked=%v: %d, %d bytes, sums equal %v/%v", chunked, resp.StatusCode, len(got), s == want, resp.Header.Get("X-Sum") == fmt.Sprintf("%x", want))
		}
		if chunked != (len(resp.TransferEncoding) > 0) {
			t.Fatalf("chunked=%v: transfer-encoding %v", chunked, resp.TransferEncoding)
		}
	}
}

// payload is n deterministic pseudo-random bytes (the same on both sides).
func payload(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// TestNoBodyResponses: HEAD keeps the length and sends no body; 204 and 304 have none;
// the upstream connection is reused across all of them.
func TestNoBodyResponses(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	defer be.Close()
	addr, _, up := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, nil)
	defer func() {
		if n := up.Cluster("backend").Stats(0).UpstreamRqReused.Value(); n != 3 {
			t.Errorf("upstream requests on a reused connection: %d, want 3", n)
		}
	}()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	for i, m := range []string{"HEAD", "GET", "GET", "GET"} {
		req, _ := http.NewRequest(m, "/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatal(i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		switch i {
		case 0:
			if resp.ContentLength != 5 || len(b) != 0 {
				t.Fatalf("HEAD: length %d body %q", resp.ContentLength, b)
			}
		case 1, 2:
			if len(b) != 0 || resp.StatusCode != []int{0, 204, 304}[i] {
				t.Fatalf("%d: %d %q", i, resp.StatusCode, b)
			}
		case 3:
			if string(b) != "hello" {
				t.Fatalf("after: %q", b)
			}
		}
	}
}

// TestHTTP10: without keep-alive the connection closes after the response; with it, the
// response says keep-alive and a second request is served.
func TestHTTP10(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		io.WriteString(w, "streamed")
	}))
	defer be.Close()
	addr, _, _ := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, func(c *httpconnmgr.Config) {
		c.Limits.AcceptHTTP10 = true
		c.Limits.DefaultHostForHTTP10 = "default.example"
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n") // no Host: default_host_for_http_10
	all, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(all), "HTTP/1.0 200") || !strings.HasSuffix(string(all), "\r\n\r\nstreamed") {
		t.Fatalf("%v %q", err, all)
	}
	resp, body := raw(t, addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: x\r\n\r\n")
	_ = resp
	if body != "streamed" {
		t.Fatalf("%q", body)
	}
}

// TestUpstreamFailures: refused → 503 UF; a slow upstream → 504 after the route timeout.
func TestUpstreamFailures(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	addr, _, up := proxy(t, []string{dead}, route.Config{}, nil)
	resp, body := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 503 || !strings.Contains(body, "connection_failure") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	_ = up

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Second) }))
	defer slow.Close()
	rc := route.Config{VirtualHosts: []route.VirtualHostConfig{{Name: "a", Domains: []string{"*"}, Routes: []route.RouteConfig{
		{Match: route.Match{Path: "/"}, Route: &route.Action{Cluster: "backend", Timeout: 200 * time.Millisecond}}}}}}
	addr2, _, up2 := proxy(t, []string{slow.Listener.Addr().String()}, rc, nil)
	resp, _ = raw(t, addr2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 504 || up2.Cluster("backend").Stats(0).UpstreamRqTimeout.Value() != 1 {
		t.Fatalf("%d", resp.StatusCode)
	}
}

// TestWebsocketUpgrade: after a 101 both sides carry raw bytes.
func TestWebsocketUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(req.Header.Get("Connection"), "upgrade") {
			io.WriteString(c, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, br)
	}()
	addr, _, _ := proxy(t, []string{ln.Addr().String()}, route.Config{}, func(c *httpconnmgr.Config) { c.Upgrades = []string{"websocket"} })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", err, resp)
	}
	for i := 0; i < 10; i++ {
		msg := strings.Repeat("ping", i+1)
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("%v %q", err, got)
		}
	}
	// An unconfigured upgrade is refused.
	addr2, _, _ := proxy(t, []string{ln.Addr().String()}, route.Config{}, nil)
	resp, _ = raw(t, addr2, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp.StatusCode != 403 {
		t.Fatalf("unconfigured upgrade: %d", resp.StatusCode)
	}
}

// TestExpectContinue: Portico answers 100 itself and the body follows.
func TestExpectContinue(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Header.Get("Expect")+"|"+string(b))
	}))
	defer be.Close()
	addr, _, _ := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("%q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "|hello" {
		t.Fatalf("%q", b)
	}
}
