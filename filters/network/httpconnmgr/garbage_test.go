package httpconnmgr_test

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portico-proxy/portico/http/route"
)

// TestMutatedRequests sends 400 randomly mutated requests (bytes flipped, CR/LF/NUL/space
// inserted, cut short, framing headers duplicated), each on its own connection, while one
// keep-alive connection keeps making good requests: every bad connection gets an answer or
// a clean close (a panic in filter code would reset it, failing the read), and the
// bystander never fails.
func TestMutatedRequests(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	addr, f, _ := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, nil)
	seeds := []string{
		"GET /a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	}
	inserts := []string{"\r", "\n", "\x00", " ", "\t", ":", "\r\n", "Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n", "\xff"}
	rng := rand.New(rand.NewPCG(1, 2))

	good, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	gr := bufio.NewReader(good)
	bystander := func() {
		good.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(good, "GET /bystander HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(gr, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("bystander: %v %v", err, resp)
		}
		io.ReadAll(resp.Body)
	}
	for i := 0; i < 400; i++ {
		b := []byte(seeds[rng.IntN(len(seeds))])
		for m := 1 + rng.IntN(3); m > 0; m-- {
			p := rng.IntN(len(b) + 1)
			switch rng.IntN(4) {
			case 0:
				if p < len(b) {
					b[p] ^= byte(1 << rng.IntN(8))
				}
			case 1:
				ins := inserts[rng.IntN(len(inserts))]
				b = append(b[:p], append([]byte(ins), b[p:]...)...)
			case 2:
				b = b[:p]
			case 3:
				if p < len(b) {
					b = append(b[:p], b[p+1:]...)
				}
			}
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(b)
		c.(*net.TCPConn).CloseWrite()
		// Whatever the verdict, the proxy answers and/or closes: reading ends.
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("request %d %q: %v", i, b, err)
		}
		c.Close()
		if i%20 == 0 {
			bystander()
		}
	}
	bystander()
	if f.Stats(0).DownstreamCxActive.Value() > 1 {
		time.Sleep(100 * time.Millisecond)
	}
	if n := f.Stats(0).DownstreamCxActive.Value(); n != 1 {
		t.Fatalf("%d connections left open (only the bystander should be)", n)
	}
}
