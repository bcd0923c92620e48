package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/http/header"
	"github.com/portico-proxy/portico/http/route"
)

// translateRoutes runs the stages of Parse on a RouteConfiguration document (as if it
// were an HTTP connection manager's route_config at the root, so paths are relative to
// it) and translates it with the given clusters defined, checking their names.
func translateRoutes(t *testing.T, data []byte, clusters ...string) (*route.Table, error) {
	t.Helper()
	root, marks, err := decodeYAML(data)
	if err != nil {
		return nil, err
	}
	obj, ok := root.(object)
	if !ok {
		t.Fatalf("not a mapping")
	}
	c := &collector{}
	rc := &routev3.RouteConfiguration{}
	k := &checker{c: c, marks: marks}
	k.message(obj, rc.ProtoReflect().Descriptor(), rootLoc("", ""), nil)
	clean, err := appendJSON(nil, obj)
	if err == nil {
		err = protojson.Unmarshal(clean, rc)
	}
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	top := rootLoc("", "")
	c.subset(rc.ProtoReflect(), top)
	c.validate(rc, &top)
	tr := &translator{c: c, workers: 1, clusters: map[string]*engine.Cluster{}}
	for _, n := range clusters {
		tr.clusters[n] = &engine.Cluster{}
	}
	tr.clusters["broken"] = nil // a cluster with errors of its own
	tbl, _ := tr.routeConfig(rc, "")
	tr.routeClusters(rc, "")
	if err := c.result(rc); err != nil {
		return nil, err
	}
	return tbl, nil
}

func loadRoutes(t *testing.T, file string, clusters ...string) *route.Table {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := translateRoutes(t, data, clusters...)
	if err != nil {
		t.Fatalf("%s:\n%v", file, err)
	}
	return tbl
}

func request(authority, path string, kv ...string) *header.Map {
	h := &header.Map{}
	h.AddString(":method", "GET")
	h.AddString(":scheme", "http")
	h.AddString(":authority", authority)
	h.AddString(":path", path)
	for i := 0; i+1 < len(kv); i += 2 {
		h.AddString(kv[i], kv[i+1])
	}
	return h
}

func TestRouteConfigFull(t *testing.T) {
	tbl := loadRoutes(t, "testdata/routes/full.yaml", "users_v2", "blue")
	if tbl.Name() != "main" || strings.Join(tbl.InternalOnlyHeaders(), ",") != "x-internal" {
		t.Errorf("name %q, internal only %v", tbl.Name(), tbl.InternalOnlyHeaders())
	}
	sel := func(h *header.Map) *route.Route {
		t.Helper()
		vh, r := tbl.Select(h)
		if r == nil {
			t.Fatalf("%v: no route (virtual host %v)", h, vh)
		}
		return r
	}

	// users-v2: case-insensitive prefix, header and query matchers, rewrites, timeouts,
	// its own retry policy.
	h := request("API.example.com", "/USERS/7;p=1?debug", "x-version", "2")
	r := sel(h)
	if r.Name() != "users-v2" || r.VirtualHost().Name() != "api" || r.Timeout() != 3*time.Second {
		t.Fatalf("users-v2: %s %v", r.Name(), r.Timeout())
	}
	if d, ok := r.IdleTimeout(); !ok || d != 0 {
		t.Errorf("idle_timeout %v %v", d, ok)
	}
	p := r.RetryPolicy()
	if p == nil || p.RetryOn != route.RetryConnectFailure|route.RetryRefusedStream|route.RetryRetriableStatusCodes ||
		p.NumRetries != 1 || p.PerTryTimeout != 500*time.Millisecond || !p.PreviousHosts ||
		p.HostSelectionRetryMaxAttempts != 3 || p.BackOffBase != 100*time.Millisecond || p.BackOffMax != 2*time.Second ||
		len(p.RetriableStatusCodes) != 1 || p.RetriableStatusCodes[0] != 409 {
		t.Errorf("users-v2 retry policy %+v", p)
	}
	name, wc := r.PickCluster(h, 0)
	if string(name) != "users_v2" || wc != -1 {
		t.Errorf("cluster %q %d", name, wc)
	}
	e := &accesslog.Entry{DownstreamRemoteAddress: netip.MustParseAddrPort("192.0.2.1:1234"), RequestHeaders: h}
	h.AddString("x-drop-config", "1")
	r.ApplyRequestHeaders(h, wc, e, nil, true)
	for _, c := range []struct{ name, want string }{
		{":path", "/v2/users/7;p=1?debug"}, {":authority", "users.internal"}, {"x-config", "config"},
		{"x-client", "192.0.2.1"}, {"x-envoy-original-path", "/USERS/7;p=1?debug"},
	} {
		if v, _ := h.Get(c.name); string(v) != c.want {
			t.Errorf("users-v2 request %s = %q, want %q", c.name, v, c.want)
		}
	}
	if h.Has("x-drop-config") {
		t.Errorf("request_headers_to_remove of the route configuration not applied")
	}
	if _, r := tbl.Select(request("api.example.com", "/users", "x-version", "2", "x-canary", "1")); r != nil && r.Name() == "users-v2" {
		t.Errorf("present_match: false matched a present header")
	}

	// legacy-headers: deprecated header matchers, cluster_header, the virtual host's
	// retry policy.
	h = request("api.example.com:8443", "/legacy/42", "x-a", "a", "x-b", "bb", "x-c", "cc", "x-d", "ddd",
		"x-e", "ee", "x-f", "9", "x-h", "hello", "x-cluster", "dyn")
	r = sel(h)
	if r.Name() != "legacy-headers" || !r.AutoHostRewrite() || r.ClusterNotFoundResponseCode() != 404 || r.Timeout() != route.DefaultTimeout {
		t.Fatalf("legacy-headers: %s", r.Name())
	}
	if p := r.RetryPolicy(); p == nil || p.RetryOn != route.Retry5xx|route.RetryReset || p.NumRetries != 2 {
		t.Errorf("virtual host retry policy %+v", p)
	}
	if name, _ := r.PickCluster(h, 0); string(name) != "dyn" {
		t.Errorf("cluster_header: %q", name)
	}
	h.AddString("x-g", "")
	if _, r := tbl.Select(h); r != nil && r.Name() == "legacy-headers" {
		t.Errorf("invert_match of a present header matched")
	}

	// split: path_separated_prefix, weighted clusters, regex rewrite, host_rewrite_header.
	h = request("api.example.com", "/split/a/b?v=12", "x-pick", "95", "x-green", "green", "x-host", "h.internal")
	r = sel(h)
	name, wc = r.PickCluster(h, 0)
	if r.Name() != "split" || string(name) != "green" || wc != 1 {
		t.Fatalf("split: %s %q %d", r.Name(), name, wc)
	}
	r.ApplyRequestHeaders(h, wc, e, nil, false)
	if v, _ := h.Get(":path"); string(v) != "/a/b?v=12" {
		t.Errorf("regex_rewrite: %q", v)
	}
	if v, _ := h.Get(":authority"); string(v) != "h.internal" {
		t.Errorf("host_rewrite_header: %q", v)
	}
	h = request("api.example.com", "/split?v=1")
	r = sel(h)
	name, wc = r.PickCluster(h, 89)
	resp := &header.Map{}
	resp.AddString(":status", "200")
	resp.AddString("server", "upstream")
	r.ApplyResponseHeaders(resp, wc, e, nil)
	if string(name) != "blue" || wc != 0 || resp.Has("server") {
		t.Errorf("blue: %q %d, server %v", name, wc, resp.Has("server"))
	}
	for _, c := range []struct{ name, want string }{{"x-color", "blue"}, {"x-served-by", "portico"}} {
		if v, _ := resp.Get(c.name); string(v) != c.want {
			t.Errorf("blue response %s = %q, want %q", c.name, v, c.want)
		}
	}
	if _, r := tbl.Select(request("api.example.com", "/splitx?v=1")); r != nil && r.Name() == "split" {
		t.Errorf("path_separated_prefix matched /splitx")
	}
	if r := sel(request("api.example.com", "/exact")); r.Timeout() != 0 {
		t.Errorf("timeout: 0s is %v, want none", r.Timeout())
	}

	// Redirects.
	for _, c := range []struct{ host, path, want string }{
		{"a.example.org", "/https/x?q", "https://a.example.org/https/x?q"},
		{"a.example.org", "/moved/x?q", "http://new.example.org:8080/new"},
		{"old.site", "/prefix/x", "http://old.site/p/x"},
		{"old.site", "/regex/x", "http://old.site/regey/y"},
		{"old.site", "/other", "http://old.site/other"},
	} {
		h := request(c.host, c.path)
		r := sel(h)
		if got := r.AppendRedirectLocation(nil, h, "http"); string(got) != c.want {
			t.Errorf("redirect %s%s: %q, want %q", c.host, c.path, got, c.want)
		}
	}
	codes := []int{}
	for _, r := range tbl.VirtualHosts()[1].Routes() {
		codes = append(codes, r.RedirectResponseCode())
	}
	if got := fmt.Sprint(codes); got != "[301 308 302 303 307]" {
		t.Errorf("redirect codes %s", got)
	}

	// Direct responses, and keep_empty_value.
	h = request("anything", "/health")
	r = sel(h)
	if st, body := r.DirectResponse(); st != 200 || string(body) != "ok" {
		t.Errorf("health: %d %q", st, body)
	}
	resp = &header.Map{}
	r.ApplyResponseHeaders(resp, -1, nil, nil)
	if v, ok := resp.Get("x-fallback"); !ok || len(v) != 0 {
		t.Errorf("keep_empty_value: %q %v", v, ok)
	}
	if st, _ := sel(request("anything", "/nope")).DirectResponse(); st != 404 {
		t.Errorf("fallback status %d", st)
	}
}

// TestRouteConfigErrors translates each testdata/routes/err_*.yaml and compares the
// errors with its "# want:" lines, as TestErrors does for bootstraps.
func TestRouteConfigErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/routes/err_*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := wantLines(t, data)
			_, err = translateRoutes(t, data, "known")
			if err == nil {
				t.Fatal("no error")
			}
			checkErrors(t, err, wants)
		})
	}
}

// TestRouteAllowlistNames is TestAllowlistNames for the route table.
func TestRouteAllowlistNames(t *testing.T) {
	for msg, fields := range supportedRoute {
		md := descriptorByName(t, string(msg))
		if md == nil {
			continue
		}
		for _, f := range fields {
			if md.Fields().ByName(f) == nil {
				t.Errorf("%s has no field %s", msg, f)
			}
		}
		if _, dup := supported[msg]; dup {
			t.Errorf("%s is in both supported and supportedRoute: supportedRoute's entry is never read", msg)
		}
	}
}
