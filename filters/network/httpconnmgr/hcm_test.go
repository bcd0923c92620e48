package httpconnmgr_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/http/httpfilter"
	"github.com/portico-proxy/portico/filters/http/router"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/http/http1"
	"github.com/portico-proxy/portico/http/route"
)

// proxy starts a one-worker server with an HCM routing "/" to a cluster of backends and
// returns its address and factory.
func proxy(t *testing.T, backends []string, rc route.Config, tweak func(*httpconnmgr.Config)) (string, *httpconnmgr.Factory, *router.Upstreams) {
	t.Helper()
	return proxyCluster(t, backends, rc, tweak, nil)
}

// proxyWithBreakers is proxy with circuit-breaker limits on the cluster.
func proxyWithBreakers(t *testing.T, backend string, maxConns, maxPending uint32) (string, *httpconnmgr.Factory, *router.Upstreams) {
	t.Helper()
	return proxyCluster(t, []string{backend}, route.Config{}, nil, func(c *engine.ClusterConfig) {
		c.CircuitBreakers = engine.DefaultThresholds()
		c.CircuitBreakers.MaxConnections = maxConns
		c.CircuitBreakers.MaxPendingRequests = maxPending
	})
}

func proxyCluster(t *testing.T, backends []string, rc route.Config, tweak func(*httpconnmgr.Config), ctweak func(*engine.ClusterConfig)) (string, *httpconnmgr.Factory, *router.Upstreams) {
	t.Helper()
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	var eps []engine.Endpoint
	for _, b := range backends {
		eps = append(eps, engine.Endpoint{Address: netip.MustParseAddrPort(b)})
	}
	cc := engine.ClusterConfig{Name: "backend", Endpoints: eps, ConnectTimeout: time.Second}
	if ctweak != nil {
		ctweak(&cc)
	}
	cl, err := engine.NewCluster(cc, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddCluster(cl); err != nil {
		t.Fatal(err)
	}
	if len(rc.VirtualHosts) == 0 {
		rc.VirtualHosts = []route.VirtualHostConfig{{Name: "all", Domains: []string{"*"}, Routes: []route.RouteConfig{
			{Name: "root", Match: route.Match{Path: "/"}, Route: &route.Action{Cluster: "backend", Timeout: 15 * time.Second}}}}}
	}
	tab, err := route.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	router.Attach(cl)
	up := router.NewUpstreams(srv.ClusterRegistry(), 1)
	cfg := httpconnmgr.Config{
		StatPrefix: "ingress", Routes: tab, Limits: http1.DefaultLimits,
		Filters:           []httpfilter.Factory{router.New(router.Config{}, up)},
		GenerateRequestID: true, StreamIdleTimeout: httpconnmgr.DefaultStreamIdleTimeout,
		IdleTimeout: time.Hour,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	f, err := httpconnmgr.New(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := srv.AddListener(engine.ListenerConfig{Name: "http", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "http", Filters: []engine.NetworkFilterFactory{f}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return l.Address().String(), f, up
}

func TestProxyGet(t *testing.T) {
	var conns atomic.Int32
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s host=%s xff=%s rid=%d", r.Method, r.URL.Path, r.Host, r.Header.Get("X-Forwarded-For"), len(r.Header.Get("X-Request-Id")))
	}))
	be.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	defer be.Close()
	addr, f, up := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for i := 0; i < 100; i++ {
		resp, err := client.Get("http://" + addr + "/hello")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "GET /hello host="+addr) || !strings.HasSuffix(string(b), "rid=36") {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
		if resp.Header.Get("Server") != "portico" {
			t.Fatalf("server header %q", resp.Header.Get("Server"))
		}
	}
	st := f.Stats(0)
	// A stream is counted just after its last byte left: wait for the last one.
	for i := 0; i < 200 && st.DownstreamRq2xx.Value() != 100; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if st.DownstreamRq2xx.Value() != 100 || conns.Load() != 1 {
		t.Fatalf("2xx %d, backend connections %d", st.DownstreamRq2xx.Value(), conns.Load())
	}
	if n := up.Cluster("backend").Stats(0).UpstreamRqTotal.Value(); n != 100 {
		t.Fatalf("upstream_rq_total %d", n)
	}
}

func TestProxyPipelinedAndNoRoute(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))
	defer be.Close()
	rc := route.Config{VirtualHosts: []route.VirtualHostConfig{{Name: "a", Domains: []string{"a.example"}, Routes: []route.RouteConfig{
		{Match: route.Match{Path: "/"}, Route: &route.Action{Cluster: "backend"}}}}}}
	addr, _, _ := proxy(t, []string{be.Listener.Addr().String()}, rc, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /one HTTP/1.1\r\nHost: a.example\r\n\r\nGET /two HTTP/1.1\r\nHost: b.example\r\n\r\nGET /three HTTP/1.1\r\nHost: a.example\r\n\r\n"
	c.Write([]byte(req))
	br := bufio.NewReader(c)
	for _, want := range []struct {
		code int
		body string
	}{{200, "/one"}, {404, ""}, {200, "/three"}} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want.code || string(b) != want.body {
			t.Fatalf("got %d %q want %d %q", resp.StatusCode, b, want.code, want.body)
		}
	}
}
