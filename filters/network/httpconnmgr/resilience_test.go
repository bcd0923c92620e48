package httpconnmgr_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-proxy/portico/http/route"
)

func oneRoute(a *route.Action) route.Config {
	return route.Config{VirtualHosts: []route.VirtualHostConfig{{Name: "a", Domains: []string{"*"}, Routes: []route.RouteConfig{
		{Match: route.Match{Path: "/"}, Route: a}}}}}
}

// TestRetryOn5xx: the first attempt's 503 is retried and the client sees the 200.
func TestRetryOn5xx(t *testing.T) {
	var n atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(503)
			io.WriteString(w, "try again")
			return
		}
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	addr, _, up := proxy(t, []string{be.Listener.Addr().String()}, oneRoute(&route.Action{Cluster: "backend", Timeout: 5 * time.Second,
		RetryPolicy: &route.RetryPolicy{RetryOn: route.Retry5xx, NumRetries: 2}}), nil)
	resp, body := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	st := up.Cluster("backend").Stats(0)
	if resp.StatusCode != 200 || body != "ok" || st.UpstreamRqRetry.Value() != 1 || st.UpstreamRqRetrySuccess.Value() != 1 {
		t.Fatalf("%d %q retry=%d success=%d", resp.StatusCode, body, st.UpstreamRqRetry.Value(), st.UpstreamRqRetrySuccess.Value())
	}
}

// TestKeepAliveRace: a pooled connection the backend closed while idle is evicted (the
// pool's socket stays registered), and a request is never failed for it.
func TestKeepAliveRace(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	be.Config.IdleTimeout = 50 * time.Millisecond
	be.Start()
	defer be.Close()
	addr, f, _ := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, nil)
	client := &http.Client{}
	for i := 0; i < 20; i++ {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		time.Sleep(time.Duration(i%3) * 40 * time.Millisecond)
	}
	if n := f.Stats(0).DownstreamRq5xx.Value(); n != 0 {
		t.Fatalf("%d 5xx", n)
	}
}

// TestCircuitBreakerOverflow: with max_connections 1 and max_pending_requests 1, a third
// concurrent request is refused with 503 and x-envoy-overloaded.
func TestCircuitBreakerOverflow(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}))
	defer be.Close()
	defer close(release)
	addr, _, up := proxyWithBreakers(t, be.Listener.Addr().String(), 1, 1)
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + addr + "/")
			if err == nil {
				io.ReadAll(resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
			}
		}()
	}
	cs := up.Cluster("backend").Stats(0)
	deadline := time.Now().Add(5 * time.Second)
	for cs.UpstreamRqPendingActive.Value() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	resp, _ := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 503 || resp.Header.Get("X-Envoy-Overloaded") != "true" {
		t.Fatalf("third request: %d %v", resp.StatusCode, resp.Header)
	}
	release <- struct{}{}
	release <- struct{}{}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("admitted request: %d", c)
		}
	}
}

// TestProtocolErrorIsolated: a bad request gets 400 and its connection closes; a keep-alive
// connection beside it goes on.
func TestProtocolErrorIsolated(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer be.Close()
	addr, f, _ := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, nil)
	good, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	good.SetDeadline(time.Now().Add(10 * time.Second))
	gr := bufio.NewReader(good)
	get := func() {
		io.WriteString(good, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(gr, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("good connection: %v %v", err, resp)
		}
		io.ReadAll(resp.Body)
	}
	get()
	for _, bad := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, bad)
		all, _ := io.ReadAll(c) // the proxy closes after its answer
		c.Close()
		if !strings.HasPrefix(string(all), "HTTP/1.1 4") || !strings.Contains(string(all), "connection: close") {
			t.Fatalf("bad request %.40q: %q", bad, all)
		}
		get()
	}
	if f.Stats(0).DownstreamCxProtocolError.Value() != 3 {
		t.Fatalf("protocol errors %d", f.Stats(0).DownstreamCxProtocolError.Value())
	}
}
