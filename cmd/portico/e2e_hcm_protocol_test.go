package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHCMNoBodyResponses: HEAD keeps the length and sends no body, 204 and 304 have
// none, and the connection stays in step for the next request.
func TestHCMNoBodyResponses(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}})
	c, br := rawConn(t, h.Addr)
	for _, tc := range []struct {
		method, path string
		status       int
		cl           int64 // -2: don't care
	}{
		{"HEAD", "/x?size=12345", 200, 12345},
		{"HEAD", "/x?size=12345&chunked=1", 200, -2},
		{"GET", "/x?status=204", 204, -2},
		{"GET", "/x?status=304", 304, -2},
		{"GET", "/x?size=7", 200, 7},
	} {
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: h\r\n\r\n", tc.method, tc.path)
		resp, body := readResp(t, br, tc.method)
		if resp.StatusCode != tc.status || tc.cl != -2 && resp.ContentLength != tc.cl {
			t.Errorf("%s %s: %d content-length %d, want %d %d", tc.method, tc.path, resp.StatusCode, resp.ContentLength, tc.status, tc.cl)
		}
		if tc.method == "HEAD" || tc.status != 200 {
			if body != "" {
				t.Errorf("%s %s: body %q", tc.method, tc.path, body)
			}
			if tc.status == 204 && (resp.Header.Get("Content-Length") != "" || len(resp.TransferEncoding) > 0) {
				t.Errorf("204 with framing headers: %v %v", resp.Header, resp.TransferEncoding)
			}
		} else if int64(len(body)) != tc.cl {
			t.Errorf("%s %s: %d body bytes", tc.method, tc.path, len(body))
		}
	}
	// Nothing stray is left on the connection.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := br.Read(make([]byte, 1)); n > 0 {
		t.Errorf("stray bytes after the responses")
	}
}

// TestHCMPipelining: several requests in one write are answered in order, a slow one
// included, and a request body between them does not confuse the framing.
func TestHCMPipelining(t *testing.T) {
	be := newEchoBackend(t, "a")
	h := startHCM(t, hcmSetup{Clusters: []hcmCluster{{Name: "a", Ports: []int{be.Port}}}})
	c, br := rawConn(t, h.Addr)
	reqs := "GET /p1?sleep=300 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /p2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
		"HEAD /p3?size=10 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /p4 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /p5 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, reqs); err != nil {
		t.Fatal(err)
	}
	for i, m := range []string{"GET", "POST", "HEAD", "POST", "GET"} {
		resp, body := readResp(t, br, m)
		if resp.StatusCode != 200 {
			t.Fatalf("response %d: %d %q", i+1, resp.StatusCode, body)
		}
		if m == "HEAD" {
			if resp.ContentLength != 10 || body != "" {
				t.Errorf("HEAD in the pipeline: length %d body %q", resp.ContentLength, body)
			}
			continue
		}
		var seen echoSeen
		decodeSeen(t, body, &seen)
		want := fmt.Sprintf("/p%d", i+1)
		if !strings.HasPrefix(seen.URI, want) {
			t.Errorf("response %d is for %q, want %s", i+1, seen.URI, want)
		}
		if i == 1 && (seen.BodyLen != 5 || seen.BodySHA != sha256hex("hello")) {
			t.Errorf("/p2 body: %d bytes", seen.BodyLen)
		}
		if i == 3 && (seen.BodyLen != 3 || seen.BodySHA != sha256hex("abc")) {
			t.Errorf("/p4 body: %d bytes", seen.BodyLen)
		}
	}
	if !closedSoon(c, br) {
		t.Errorf("connection still open after Connection: close")
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestHCMHTTP10: HTTP/1.0 is refused with 426 unless accept_http_10; with it, a request
// without keep-alive gets an HTTP/1.0 response and the close, one with keep-alive keeps
// its connection; default_host_for_http_10 fills a missing Host.
func TestHCMHTTP10(t *testing.T) {
	be := newEchoBackend(t, "a")
	clusters := []hcmCluster{{Name: "a", Ports: []int{be.Port}}}

	t.Run("refused by default", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters})
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, "GET / HTTP/1.0\r\nHost: h\r\n\r\n")
		resp, _ := readResp(t, br, "GET")
		if resp.StatusCode != 426 {
			t.Errorf("HTTP/1.0 without accept_http_10: %d, want 426", resp.StatusCode)
		}
	})

	h := startHCM(t, hcmSetup{Clusters: clusters,
		HCM: "http_protocol_options: { accept_http_10: true, default_host_for_http_10: default.example }"})
	t.Run("without keep-alive", func(t *testing.T) {
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, "GET /ten HTTP/1.0\r\nHost: h\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode != 200 || resp.Proto != "HTTP/1.0" {
			t.Fatalf("%s %d %q", resp.Proto, resp.StatusCode, body)
		}
		var seen echoSeen
		decodeSeen(t, body, &seen)
		if seen.URI != "/ten" || seen.Host != "h" {
			t.Errorf("backend saw %q host %q", seen.URI, seen.Host)
		}
		if !closedSoon(c, br) {
			t.Errorf("HTTP/1.0 without keep-alive: connection not closed")
		}
	})
	t.Run("with keep-alive", func(t *testing.T) {
		c, br := rawConn(t, h.Addr)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(c, "GET /ka%d HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", i)
			resp, body := readResp(t, br, "GET")
			if resp.StatusCode != 200 || !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") {
				t.Fatalf("request %d: %s %d Connection %q %q", i, resp.Proto, resp.StatusCode, resp.Header.Get("Connection"), body)
			}
			if resp.ContentLength < 0 {
				t.Fatalf("keep-alive HTTP/1.0 response without a length")
			}
		}
	})
	t.Run("default host", func(t *testing.T) {
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, "GET /nohost HTTP/1.0\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		var seen echoSeen
		if resp.StatusCode == 200 {
			decodeSeen(t, body, &seen)
		}
		if resp.StatusCode != 200 || seen.Host != "default.example" {
			t.Errorf("HTTP/1.0 without Host: %d host %q, want 200 default.example", resp.StatusCode, seen.Host)
		}
	})
	t.Run("chunked response to HTTP/1.0", func(t *testing.T) {
		// The backend answers chunked; an HTTP/1.0 client gets the body close-delimited.
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, "GET /c?size=100000&chunked=1 HTTP/1.0\r\nHost: h\r\n\r\n")
		resp, body := readResp(t, br, "GET")
		if resp.StatusCode != 200 || len(resp.TransferEncoding) > 0 || int64(len(body)) != 100000 || sha256hex(body) != detSHA(100000) {
			t.Errorf("%d TE %v, %d bytes", resp.StatusCode, resp.TransferEncoding, len(body))
		}
	})
}

// TestHCMExpectContinue: with proxy_100_continue false (the default) portico answers
// 100 itself and the expectation does not go upstream; with true, the backend's 100
// comes through and portico sends none of its own.
func TestHCMExpectContinue(t *testing.T) {
	be := newEchoBackend(t, "a")
	clusters := []hcmCluster{{Name: "a", Ports: []int{be.Port}}}
	body := strings.Repeat("continue", 1000)

	send := func(t *testing.T, h *hcmProxy, path string) (first *http.Response, c net.Conn, br *bufio.Reader) {
		c, br = rawConn(t, h.Addr)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", path, len(body))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, c, br
	}

	t.Run("proxy_100_continue false", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters})
		first, c, br := send(t, h, "/up")
		if first.StatusCode != 100 {
			t.Fatalf("first response %d, want 100 before the body", first.StatusCode)
		}
		io.WriteString(c, body)
		resp, got := readResp(t, br, "POST")
		var seen echoSeen
		decodeSeen(t, got, &seen)
		if resp.StatusCode != 200 || seen.BodySHA != sha256hex(body) {
			t.Errorf("%d, body equal %v", resp.StatusCode, seen.BodySHA == sha256hex(body))
		}
		if v := joined(seen, "Expect"); v != "" {
			t.Errorf("backend saw Expect: %q", v)
		}
		// curl waits for the 100 and shows it.
		curl := requireTool(t, "curl")
		cmd := exec.Command(curl, "-sS", "-v", "--max-time", "10", "-H", "Expect: 100-continue", "--data-binary", "@-",
			fmt.Sprintf("http://%s/curl", h.Addr))
		cmd.Stdin = strings.NewReader(body)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || !strings.Contains(stderr.String(), "< HTTP/1.1 100 Continue") {
			t.Fatalf("curl: %v\n%s", err, stderr.String())
		}
		decodeSeen(t, string(out), &seen)
		if seen.BodySHA != sha256hex(body) || joined(seen, "Expect") != "" {
			t.Errorf("curl: backend body equal %v, Expect %q", seen.BodySHA == sha256hex(body), joined(seen, "Expect"))
		}
	})

	t.Run("proxy_100_continue true", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters, HCM: "proxy_100_continue: true"})
		first, c, br := send(t, h, "/up")
		if first.StatusCode != 100 {
			t.Fatalf("first response %d, want the backend's 100", first.StatusCode)
		}
		io.WriteString(c, body)
		resp, got := readResp(t, br, "POST")
		var seen echoSeen
		decodeSeen(t, got, &seen)
		if resp.StatusCode != 200 || seen.BodySHA != sha256hex(body) || !strings.EqualFold(joined(seen, "Expect"), "100-continue") {
			t.Errorf("%d, body equal %v, backend saw Expect %q", resp.StatusCode, seen.BodySHA == sha256hex(body), joined(seen, "Expect"))
		}
		// A backend that answers without reading: the client gets its final answer and
		// no 100 from portico.
		first, _, _ = send(t, h, "/up?expect=ignore")
		if first.StatusCode != 417 {
			t.Errorf("backend that refuses the body: first response %d, want its 417 (no 100 of portico's)", first.StatusCode)
		}
		// curl through the backend's 100.
		curl := requireTool(t, "curl")
		cmd := exec.Command(curl, "-sS", "-v", "--max-time", "10", "-H", "Expect: 100-continue", "--data-binary", "@-",
			fmt.Sprintf("http://%s/curl", h.Addr))
		cmd.Stdin = strings.NewReader(body)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || !strings.Contains(stderr.String(), "< HTTP/1.1 100 Continue") {
			t.Fatalf("curl: %v\n%s", err, stderr.String())
		}
		decodeSeen(t, string(out), &seen)
		if seen.BodySHA != sha256hex(body) {
			t.Errorf("curl: body not equal")
		}
	})
}

// wsBackend answers a websocket handshake with 101 and echoes every frame (unmasked),
// recording the handshake's headers.
type wsBackend struct {
	port    int
	mu      sync.Mutex
	handshk http.Header
}

func newWSBackend(t *testing.T) *wsBackend {
	ws := &wsBackend{}
	ws.port = serveTCP(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		ws.mu.Lock()
		ws.handshk = req.Header.Clone()
		ws.mu.Unlock()
		key := req.Header.Get("Sec-WebSocket-Key")
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		for {
			op, payload, err := readFrame(br)
			if err != nil {
				return
			}
			if op == 8 { // close: answer it and stop
				c.Write(frame(8, payload, nil))
				return
			}
			if _, err := c.Write(frame(op, payload, nil)); err != nil {
				return
			}
		}
	})
	return ws
}

// frame encodes a final websocket frame; mask is nil for a server's frame.
func frame(op byte, payload, mask []byte) []byte {
	b := []byte{0x80 | op}
	mbit := byte(0)
	if mask != nil {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n < 1<<16:
		b = append(b, mbit|126, byte(n>>8), byte(n))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask != nil {
		b = append(b, mask...)
		for i, x := range payload {
			b = append(b, x^mask[i%4])
		}
		return b
	}
	return append(b, payload...)
}

// readFrame reads one frame, unmasking it.
func readFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		return
	}
	op = h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err = io.ReadFull(br, x[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err = io.ReadFull(br, x[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	var mask []byte
	if h[1]&0x80 != 0 {
		mask = make([]byte, 4)
		if _, err = io.ReadFull(br, mask); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(br, payload); err != nil {
		return
	}
	for i := range payload {
		if mask != nil {
			payload[i] ^= mask[i%4]
		}
	}
	return
}

const wsHandshake = "GET /chat HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// TestHCMWebsocket: with upgrade_configs websocket, a raw client's handshake gets the
// backend's 101 and frames are echoed both ways through portico; without it (or for an
// upgrade type not configured), 403.
func TestHCMWebsocket(t *testing.T) {
	ws := newWSBackend(t)
	clusters := []hcmCluster{{Name: "ws", Ports: []int{ws.port}}}

	t.Run("configured", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters, HCM: "upgrade_configs: [{ upgrade_type: websocket }]"})
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, wsHandshake)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
			resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
		}
		ws.mu.Lock()
		hs := ws.handshk
		ws.mu.Unlock()
		if !strings.EqualFold(hs.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(hs.Get("Connection")), "upgrade") {
			t.Errorf("backend's handshake lacks Upgrade/Connection: %v", hs)
		}
		mask := []byte{1, 2, 3, 4}
		for _, msg := range []string{"hello", strings.Repeat("m", 300), strings.Repeat("big", 30000)} {
			if _, err := c.Write(frame(1, []byte(msg), mask)); err != nil {
				t.Fatal(err)
			}
			op, p, err := readFrame(br)
			if err != nil || op != 1 || string(p) != msg {
				t.Fatalf("echo of a %d-byte frame: op %d %d bytes, %v", len(msg), op, len(p), err)
			}
		}
		c.Write(frame(8, []byte{3, 232}, mask))
		if op, _, err := readFrame(br); err != nil || op != 8 {
			t.Errorf("close frame: op %d %v", op, err)
		}
		if !closedSoon(c, br) {
			t.Errorf("tunnel not closed after the backend closed")
		}
		h.statEventually(t, "http.ingress_http.downstream_cx_upgrades_total", 1)
	})

	t.Run("not configured", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters})
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, wsHandshake)
		resp, _ := readResp(t, br, "GET")
		if resp.StatusCode != 403 {
			t.Errorf("websocket without upgrade_configs: %d, want 403", resp.StatusCode)
		}
		h.statEventually(t, "http.ingress_http.downstream_rq_ws_on_non_ws_route", 1)
	})

	t.Run("other upgrade type", func(t *testing.T) {
		h := startHCM(t, hcmSetup{Clusters: clusters, HCM: "upgrade_configs: [{ upgrade_type: websocket }]"})
		c, br := rawConn(t, h.Addr)
		io.WriteString(c, strings.Replace(wsHandshake, "Upgrade: websocket", "Upgrade: foo", 1))
		resp, _ := readResp(t, br, "GET")
		if resp.StatusCode != 403 {
			t.Errorf("Upgrade: foo with only websocket configured: %d, want 403", resp.StatusCode)
		}
	})
}
