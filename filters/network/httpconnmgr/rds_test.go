package httpconnmgr_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/http/route"
)

// TestRDSProvider: a connection manager reading its routes from a provider answers 404
// (no route) while the provider is empty, then follows each table it is given, on the
// same keep-alive connection.
func TestRDSProvider(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "backend") }))
	defer be.Close()
	ps := httpconnmgr.NewRouteProviders()
	p := ps.Get("r", "ingress", time.Second)
	if ps.Get("r", "other", 0) != p || ps.Lookup("r") != p || len(ps.Names()) != 1 {
		t.Fatal("one provider per name")
	}
	addr, f, _ := proxy(t, []string{be.Listener.Addr().String()}, route.Config{}, func(c *httpconnmgr.Config) {
		c.Routes, c.RDS = nil, p
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	get := func() (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, _ := get(); st != 404 || f.Stats(0).NoRoute.Value() != 1 {
		t.Fatalf("empty provider: %d, no_route %d", st, f.Stats(0).NoRoute.Value())
	}
	fwd, err := route.New(route.Config{Name: "r", VirtualHosts: []route.VirtualHostConfig{{Name: "all", Domains: []string{"*"}, Routes: []route.RouteConfig{
		{Match: route.Match{Path: "/"}, Route: &route.Action{Cluster: "backend", Timeout: 5 * time.Second}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	p.Set(fwd)
	if st, body := get(); st != 200 || body != "backend" {
		t.Fatalf("after Set: %d %q", st, body)
	}
	direct, err := route.New(route.Config{Name: "r", VirtualHosts: []route.VirtualHostConfig{{Name: "all", Domains: []string{"*"}, Routes: []route.RouteConfig{
		{Match: route.Match{Path: "/"}, DirectResponse: &route.DirectResponse{Status: 418}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	p.Set(direct)
	if st, _ := get(); st != 418 {
		t.Fatalf("after the second Set: %d", st)
	}
	if f.Stats(0).DownstreamCxTotal.Value() != 1 {
		t.Errorf("connections %d, want the one kept", f.Stats(0).DownstreamCxTotal.Value())
	}
	ps.Drop("r")
	if ps.Lookup("r") != nil || ps.Get("r", "", 0) == p {
		t.Error("Drop: a later Get makes a new provider")
	}
}
