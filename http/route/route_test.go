package route

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/http/header"
)

// req builds request headers: authority ("" leaves it out), path, then name/value pairs.
func req(authority, path string, kv ...string) *header.Map {
	h := &header.Map{}
	h.AddString(":method", "GET")
	h.AddString(":scheme", "http")
	if authority != "" {
		h.AddString(":authority", authority)
	}
	if path != "" {
		h.AddString(":path", path)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.AddString(kv[i], kv[i+1])
	}
	return h
}

func mustNew(t testing.TB, cfg Config) *Table {
	t.Helper()
	tb, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb
}

func fwd(cluster string) *Action { return &Action{Cluster: cluster, Timeout: DefaultTimeout} }

func prefix(p, cluster string) RouteConfig {
	return RouteConfig{Match: Match{Path: p}, Route: fwd(cluster)}
}

func vhost(name string, domains ...string) VirtualHostConfig {
	return VirtualHostConfig{Name: name, Domains: domains, Routes: []RouteConfig{prefix("/", name)}}
}

func vhName(vh *VirtualHost) string {
	if vh == nil {
		return "<nil>"
	}
	return vh.Name()
}

func TestDomainOrder(t *testing.T) {
	cfg := Config{VirtualHosts: []VirtualHostConfig{
		vhost("default", "*"),
		vhost("prefix", "foo.*"),
		vhost("prefix-dash", "foo-*"),
		vhost("suffix", "*.foo.com"),
		vhost("suffix-bar", "*-bar.foo.com"),
		vhost("exact", "Foo.com", "www.foo.com"),
		vhost("exact-port", "foo.com:8080"),
		vhost("v6", "[::1]"),
	}}
	tb := mustNew(t, cfg)
	for _, c := range []struct{ host, want string }{
		{"foo.com", "exact"},
		{"FOO.COM", "exact"},
		{"www.foo.com", "exact"},
		{"foo.com:8080", "exact-port"},
		{"foo.com:9090", "prefix"}, // the port takes part: only "foo.*" fits
		{"a.foo.com", "suffix"},
		{"baz-bar.foo.com", "suffix-bar"}, // the longest suffix wins
		{"-bar.foo.com", "suffix"},        // a wildcard matches at least one character
		{".foo.com", "default"},
		{"foo.org", "prefix"},
		{"foo-x.org", "prefix-dash"},
		{"a.b.foo.com", "suffix"},
		{"other.org", "default"},
		{"[::1]", "v6"},
		{"[::1]:80", "default"},
	} {
		vh, _ := tb.Select(req(c.host, "/"))
		if got := vhName(vh); got != c.want {
			t.Errorf("host %q: virtual host %s, want %s", c.host, got, c.want)
		}
	}
	if vh, r := tb.Select(req("", "/")); vh != nil || r != nil {
		t.Errorf("no authority: %s, want none", vhName(vh))
	}

	cfg.IgnorePortInHostMatching = true
	tb = mustNew(t, cfg)
	for _, c := range []struct{ host, want string }{
		{"foo.com:8080", "exact"},
		{"FOO.com:1", "exact"},
		{"[::1]:80", "v6"},
		{"a.foo.com:443", "suffix"},
	} {
		vh, _ := tb.Select(req(c.host, "/"))
		if got := vhName(vh); got != c.want {
			t.Errorf("ignore_port: host %q: virtual host %s, want %s", c.host, got, c.want)
		}
	}

	// With only "*", Envoy does not look at the authority at all.
	only := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{vhost("only", "*")}})
	if vh, r := only.Select(req("", "/x")); vhName(vh) != "only" || r == nil {
		t.Errorf("only default, no authority: %s %v", vhName(vh), r)
	}
	// Without "*", an unknown host has no virtual host.
	none := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{vhost("a", "a.com")}})
	if vh, _ := none.Select(req("b.com", "/")); vh != nil {
		t.Errorf("unknown host: %s", vhName(vh))
	}
	// A long host (beyond the stack buffer) still works.
	long := strings.Repeat("a", 300) + ".foo.com"
	if vh, _ := tb.Select(req(long, "/")); vhName(vh) != "suffix" {
		t.Errorf("long host: %s", vhName(vh))
	}
}

func TestDuplicateDomains(t *testing.T) {
	_, err := New(Config{VirtualHosts: []VirtualHostConfig{
		vhost("a", "foo.com", "*", "*.x.com", "x.*"),
		vhost("b", "FOO.com", "*", "*.X.com", "x.*", "y.com", "y.com"),
		{Name: "c", Routes: []RouteConfig{prefix("/", "c")}},
	}})
	checkErrors(t, err,
		`virtual_hosts[1].domains[0]: domain "foo.com" is already used by virtual_hosts[0].domains[0]`,
		`virtual_hosts[1].domains[1]: domain "*" is already used by virtual_hosts[0].domains[1]`,
		`virtual_hosts[1].domains[2]: domain "*.x.com" is already used by virtual_hosts[0].domains[2]`,
		`virtual_hosts[1].domains[3]: domain "x.*" is already used by virtual_hosts[0].domains[3]`,
		`virtual_hosts[1].domains[5]: domain "y.com" is already used by virtual_hosts[1].domains[4]`,
		`virtual_hosts[2].domains: at least one domain is required`,
	)
}

// checkErrors wants exactly these errors (each a prefix of one line).
func checkErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d", len(want))
	}
	es, ok := err.(Errors)
	if !ok {
		t.Fatalf("error %T, want Errors", err)
	}
	got := make([]string, len(es))
	for i, e := range es {
		got[i] = e.Error()
	}
	if len(got) != len(want) {
		t.Fatalf("%d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func oneRoute(t testing.TB, rc RouteConfig) *Table {
	t.Helper()
	return mustNew(t, Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{rc}}}})
}

func TestPathMatch(t *testing.T) {
	cases := []struct {
		m    Match
		path string
		want bool
	}{
		{Match{Path: "/api"}, "/api", true},
		{Match{Path: "/api"}, "/apis/x", true},
		{Match{Path: "/api"}, "/ap", false},
		{Match{Path: "/api"}, "/API", false},
		{Match{Path: "/api", CaseInsensitive: true}, "/APi/x", true},
		{Match{Path: "/a?b"}, "/a?b", false}, // the query is not part of the path
		{Match{Path: "/"}, "/?x", true},
		{Match{PathKind: PathExact, Path: "/x"}, "/x", true},
		{Match{PathKind: PathExact, Path: "/x"}, "/x?q=1", true},
		{Match{PathKind: PathExact, Path: "/x"}, "/x#frag", true},
		{Match{PathKind: PathExact, Path: "/x"}, "/x/", false},
		{Match{PathKind: PathExact, Path: "/x"}, "/X", false},
		{Match{PathKind: PathExact, Path: "/x", CaseInsensitive: true}, "/X", true},
		{Match{PathKind: PathSafeRegex, Path: `/v[0-9]+/.*`}, "/v12/users", true},
		{Match{PathKind: PathSafeRegex, Path: `/v[0-9]+/.*`}, "/v12/users?x=1", true},
		{Match{PathKind: PathSafeRegex, Path: `/v[0-9]+`}, "/v12/users", false}, // whole path
		{Match{PathKind: PathSafeRegex, Path: `/v[0-9]+`}, "/x/v12", false},
		{Match{PathKind: PathSafeRegex, Path: `/a|/b`}, "/b", true}, // alternation is grouped
		{Match{PathKind: PathSafeRegex, Path: `/a|/b`}, "/ab", false},
		{Match{PathKind: PathSafeRegex, Path: `/x`, CaseInsensitive: true}, "/X", false}, // no effect on regex
		{Match{PathKind: PathSeparatedPrefix, Path: "/api"}, "/api", true},
		{Match{PathKind: PathSeparatedPrefix, Path: "/api"}, "/api/v1", true},
		{Match{PathKind: PathSeparatedPrefix, Path: "/api"}, "/api?x", true},
		{Match{PathKind: PathSeparatedPrefix, Path: "/api"}, "/apis", false},
		{Match{PathKind: PathSeparatedPrefix, Path: "/api", CaseInsensitive: true}, "/API/x", true},
	}
	for _, c := range cases {
		tb := oneRoute(t, RouteConfig{Match: c.m, Route: fwd("c")})
		_, r := tb.Select(req("h", c.path))
		if got := r != nil; got != c.want {
			t.Errorf("%v on %q: match %v, want %v", c.m, c.path, got, c.want)
		}
	}
}

func TestIgnorePathParameters(t *testing.T) {
	cfg := Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Match: Match{PathKind: PathExact, Path: "/a/b"}, Route: fwd("c")},
	}}}}
	if _, r := mustNew(t, cfg).Select(req("h", "/a/b;v=1")); r != nil {
		t.Errorf("path parameters take part by default")
	}
	cfg.IgnorePathParametersInPathMatching = true
	if _, r := mustNew(t, cfg).Select(req("h", "/a/b;v=1?x")); r == nil {
		t.Errorf("ignore_path_parameters_in_path_matching: no match")
	}
}

func TestFirstMatchWins(t *testing.T) {
	tb := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Name: "get-api", Match: Match{Path: "/api", Headers: []HeaderMatcher{{Name: ":method", Kind: HeaderExact, Value: "POST"}}}, Route: fwd("post")},
		{Name: "api", Match: Match{Path: "/api"}, Route: fwd("api")},
		{Name: "all", Match: Match{Path: "/"}, Route: fwd("all")},
		{Name: "never", Match: Match{Path: "/api/x"}, Route: fwd("never")},
	}}}})
	for _, c := range []struct{ path, want string }{{"/api/x", "api"}, {"/", "all"}, {"/apix", "api"}} {
		_, r := tb.Select(req("h", c.path))
		if r == nil || r.Name() != c.want {
			t.Errorf("%s: route %v, want %s", c.path, r, c.want)
		}
	}
	h := req("h", "/api")
	h.Set(":method", []byte("POST"))
	if _, r := tb.Select(h); r == nil || r.Name() != "get-api" || r.Cluster() != "post" {
		t.Errorf("POST /api: %v", r)
	}
	if _, r := tb.Select(req("h", "x")); r != nil {
		t.Errorf("a path without / matched %s", r.Name())
	}
	// No :path (CONNECT): no route.
	if vh, r := tb.Select(req("h", "")); vh == nil || r != nil {
		t.Errorf("no path: %v %v", vh, r)
	}
}

func TestHeaderMatch(t *testing.T) {
	type kv = []string
	sm := func(k StringKind, v string, ic bool) HeaderMatcher {
		return HeaderMatcher{Name: "x-a", Kind: HeaderString, String: StringMatcher{Kind: k, Value: v, IgnoreCase: ic}}
	}
	inv := func(m HeaderMatcher) HeaderMatcher { m.InvertMatch = true; return m }
	empty := func(m HeaderMatcher) HeaderMatcher { m.TreatMissingHeaderAsEmpty = true; return m }
	present := HeaderMatcher{Name: "x-a", PresentMatch: true}
	absent := HeaderMatcher{Name: "x-a", PresentMatch: false}
	cases := []struct {
		name string
		m    HeaderMatcher
		hdrs kv
		want bool
	}{
		{"exact", sm(StringExact, "v", false), kv{"x-a", "v"}, true},
		{"exact other", sm(StringExact, "v", false), kv{"x-a", "w"}, false},
		{"exact case", sm(StringExact, "V", false), kv{"x-a", "v"}, false},
		{"exact ignore case", sm(StringExact, "V", true), kv{"x-a", "v"}, true},
		{"exact missing", sm(StringExact, "v", false), kv{}, false},
		{"prefix", sm(StringPrefix, "ab", false), kv{"x-a", "abc"}, true},
		{"prefix ic", sm(StringPrefix, "AB", true), kv{"x-a", "abc"}, true},
		{"prefix no", sm(StringPrefix, "b", false), kv{"x-a", "abc"}, false},
		{"suffix", sm(StringSuffix, "bc", false), kv{"x-a", "abc"}, true},
		{"suffix ic", sm(StringSuffix, "BC", true), kv{"x-a", "aBc"}, true},
		{"suffix long", sm(StringSuffix, "zabc", false), kv{"x-a", "abc"}, false},
		{"contains", sm(StringContains, "b", false), kv{"x-a", "abc"}, true},
		{"contains ic", sm(StringContains, "B", true), kv{"x-a", "abc"}, true},
		{"contains no", sm(StringContains, "B", false), kv{"x-a", "abc"}, false},
		{"regex", sm(StringSafeRegex, "a.c", false), kv{"x-a", "abc"}, true},
		{"regex whole", sm(StringSafeRegex, "b", false), kv{"x-a", "abc"}, false},
		{"name case", HeaderMatcher{Name: "X-A", Kind: HeaderString, String: StringMatcher{Value: "v"}}, kv{"X-a", "v"}, true},
		{"repeated joined", sm(StringExact, "1,2", false), kv{"x-a", "1", "x-a", "2"}, true},
		{"repeated not first", sm(StringExact, "1", false), kv{"x-a", "1", "x-a", "2"}, false},
		{"present", present, kv{"x-a", ""}, true},
		{"present missing", present, kv{}, false},
		{"absent", absent, kv{}, true},
		{"absent present", absent, kv{"x-a", "v"}, false},
		{"inverted present missing", inv(present), kv{}, true},
		{"inverted present", inv(present), kv{"x-a", "v"}, false},
		{"inverted exact", inv(sm(StringExact, "v", false)), kv{"x-a", "w"}, true},
		{"inverted exact same", inv(sm(StringExact, "v", false)), kv{"x-a", "v"}, false},
		{"inverted exact missing", inv(sm(StringExact, "v", false)), kv{}, false}, // Envoy: a missing header fails
		{"missing as empty", empty(sm(StringExact, "", false)), kv{}, true},
		{"missing as empty regex", empty(sm(StringSafeRegex, "a*", false)), kv{}, true},
		{"missing as empty inverted", inv(empty(sm(StringExact, "v", false))), kv{}, true},
		{"legacy exact", HeaderMatcher{Name: "x-a", Kind: HeaderExact, Value: "v"}, kv{"x-a", "v"}, true},
		{"legacy exact empty any", HeaderMatcher{Name: "x-a", Kind: HeaderExact}, kv{"x-a", "v"}, true},
		{"legacy prefix", HeaderMatcher{Name: "x-a", Kind: HeaderPrefix, Value: "a"}, kv{"x-a", "ab"}, true},
		{"legacy suffix", HeaderMatcher{Name: "x-a", Kind: HeaderSuffix, Value: "b"}, kv{"x-a", "ab"}, true},
		{"legacy contains", HeaderMatcher{Name: "x-a", Kind: HeaderContains, Value: "x"}, kv{"x-a", "ab"}, false},
		{"legacy regex", HeaderMatcher{Name: "x-a", Kind: HeaderSafeRegex, Value: "[ab]+"}, kv{"x-a", "ab"}, true},
		{"range", HeaderMatcher{Name: "x-a", Kind: HeaderRange, RangeStart: -10, RangeEnd: 10}, kv{"x-a", "-10"}, true},
		{"range end", HeaderMatcher{Name: "x-a", Kind: HeaderRange, RangeStart: -10, RangeEnd: 10}, kv{"x-a", "10"}, false},
		{"range not int", HeaderMatcher{Name: "x-a", Kind: HeaderRange, RangeStart: 0, RangeEnd: 10}, kv{"x-a", "1x"}, false},
		{"method", HeaderMatcher{Name: ":method", Kind: HeaderString, String: StringMatcher{Value: "GET"}}, kv{}, true},
		{"authority", HeaderMatcher{Name: ":authority", Kind: HeaderString, String: StringMatcher{Kind: StringSuffix, Value: ".com"}}, kv{}, true},
		{"path", HeaderMatcher{Name: ":path", Kind: HeaderString, String: StringMatcher{Kind: StringContains, Value: "q=1"}}, kv{}, true},
	}
	for _, c := range cases {
		tb := oneRoute(t, RouteConfig{Match: Match{Path: "/", Headers: []HeaderMatcher{c.m}}, Route: fwd("c")})
		_, r := tb.Select(req("x.com", "/p?q=1", c.hdrs...))
		if got := r != nil; got != c.want {
			t.Errorf("%s: match %v, want %v", c.name, got, c.want)
		}
	}
	// Several matchers: all must hold.
	tb := oneRoute(t, RouteConfig{Match: Match{Path: "/", Headers: []HeaderMatcher{sm(StringExact, "1", false), {Name: "x-b", PresentMatch: true}}}, Route: fwd("c")})
	if _, r := tb.Select(req("h", "/", "x-a", "1")); r != nil {
		t.Errorf("one of two header matchers matched the route")
	}
	if _, r := tb.Select(req("h", "/", "x-b", "", "x-a", "1")); r == nil {
		t.Errorf("both header matchers hold, no match")
	}
}

func TestQueryMatch(t *testing.T) {
	str := func(k StringKind, v string, ic bool) *StringMatcher {
		return &StringMatcher{Kind: k, Value: v, IgnoreCase: ic}
	}
	cases := []struct {
		q    QueryParameterMatcher
		path string
		want bool
	}{
		{QueryParameterMatcher{Name: "debug"}, "/?debug", true},
		{QueryParameterMatcher{Name: "debug"}, "/?a=1&debug=0", true},
		{QueryParameterMatcher{Name: "debug"}, "/?debugx=1", false},
		{QueryParameterMatcher{Name: "debug"}, "/", false},
		{QueryParameterMatcher{Name: "debug"}, "/#?debug", false},
		{QueryParameterMatcher{Name: "debug"}, "/?x#debug", false},
		{QueryParameterMatcher{Name: "v", String: str(StringExact, "1", false)}, "/?v=1", true},
		{QueryParameterMatcher{Name: "v", String: str(StringExact, "1", false)}, "/?v=2&v=1", false}, // the first value counts
		{QueryParameterMatcher{Name: "v", String: str(StringExact, "", false)}, "/?v", true},
		{QueryParameterMatcher{Name: "v", String: str(StringExact, "a%20b", false)}, "/?v=a%20b", true}, // not decoded
		{QueryParameterMatcher{Name: "v", String: str(StringPrefix, "AB", true)}, "/?v=abc", true},
		{QueryParameterMatcher{Name: "v", String: str(StringSafeRegex, "[0-9]+", false)}, "/?v=123", true},
		{QueryParameterMatcher{Name: "v", String: str(StringSafeRegex, "[0-9]+", false)}, "/?v=12a", false},
	}
	for _, c := range cases {
		tb := oneRoute(t, RouteConfig{Match: Match{Path: "/", QueryParameters: []QueryParameterMatcher{c.q}}, Route: fwd("c")})
		_, r := tb.Select(req("h", c.path))
		if got := r != nil; got != c.want {
			t.Errorf("%+v on %q: match %v, want %v", c.q, c.path, got, c.want)
		}
	}
}

func TestPickCluster(t *testing.T) {
	tb := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Match: Match{PathKind: PathExact, Path: "/static"}, Route: fwd("static")},
		{Match: Match{PathKind: PathExact, Path: "/header"}, Route: &Action{ClusterHeader: "X-Cluster"}},
		{Match: Match{PathKind: PathExact, Path: "/weighted"}, Route: &Action{WeightedClusters: []WeightedCluster{
			{Name: "a", Weight: 1}, {Name: "zero", Weight: 0}, {Name: "b", Weight: 2}, {ClusterHeader: "x-wc", Weight: 1},
		}, RandomValueHeader: "x-random", TotalWeight: 4}},
	}}}})
	pick := func(path string, rnd uint64, kv ...string) (string, int) {
		t.Helper()
		h := req("h", path, kv...)
		_, r := tb.Select(h)
		if r == nil {
			t.Fatalf("%s: no route", path)
		}
		n, wc := r.PickCluster(h, rnd)
		return string(n), wc
	}
	if n, wc := pick("/static", 7); n != "static" || wc != -1 {
		t.Errorf("static: %q %d", n, wc)
	}
	if n, _ := pick("/header", 0, "x-cluster", "dyn", "x-cluster", "second"); n != "dyn" {
		t.Errorf("cluster_header: %q, want the first value", n)
	}
	if n, _ := pick("/header", 0); n != "" {
		t.Errorf("cluster_header missing: %q", n)
	}
	for _, c := range []struct {
		rnd  uint64
		kv   []string
		want string
		wc   int
	}{
		{0, nil, "a", 0}, {1, nil, "b", 2}, {2, nil, "b", 2}, {3, nil, "", 3}, {4, nil, "a", 0}, {7, nil, "", 3},
		{3, []string{"x-wc", "from-header"}, "from-header", 3},
		{0, []string{"x-random", "2"}, "b", 2},
		{0, []string{"x-random", "2", "x-random", "3"}, "a", 0}, // repeated: ignored
		{0, []string{"x-random", "two"}, "a", 0},                // not a number: ignored
	} {
		if n, wc := pick("/weighted", c.rnd, c.kv...); n != c.want || wc != c.wc {
			t.Errorf("weighted rnd %d %v: %q %d, want %q %d", c.rnd, c.kv, n, wc, c.want, c.wc)
		}
	}
	// Distribution over a range of random values follows the weights.
	counts := map[string]int{}
	for i := uint64(0); i < 400; i++ {
		n, _ := pick("/weighted", i, "x-wc", "d")
		counts[n]++
	}
	if counts["a"] != 100 || counts["b"] != 200 || counts["d"] != 100 || counts["zero"] != 0 {
		t.Errorf("distribution %v", counts)
	}
	_, r := tb.Select(req("h", "/weighted"))
	if got := fmt.Sprint(r.Clusters()); got != "[a zero b]" {
		t.Errorf("Clusters() = %s", got)
	}
	refs := tb.ClusterRefs()
	if len(refs) != 4 || refs[0] != (ClusterRef{0, 0, -1, "static"}) || refs[3] != (ClusterRef{0, 2, 2, "b"}) {
		t.Errorf("ClusterRefs() = %v", refs)
	}
}

func TestRewritePath(t *testing.T) {
	cases := []struct {
		name string
		m    Match
		a    Action
		path string
		want string
	}{
		{"prefix", Match{Path: "/api/"}, Action{PrefixRewrite: "/v2/"}, "/api/users?x=1", "/v2/users?x=1"},
		{"prefix to root", Match{Path: "/api"}, Action{PrefixRewrite: "/"}, "/api/users", "//users"},
		{"prefix case-insensitive", Match{Path: "/API", CaseInsensitive: true}, Action{PrefixRewrite: "/x"}, "/api/u", "/x/u"},
		{"path", Match{PathKind: PathExact, Path: "/old"}, Action{PrefixRewrite: "/new"}, "/old?q", "/new?q"},
		{"separated", Match{PathKind: PathSeparatedPrefix, Path: "/a"}, Action{PrefixRewrite: "/b"}, "/a/c", "/b/c"},
		{"regex route prefix_rewrite", Match{PathKind: PathSafeRegex, Path: "/r/.*"}, Action{PrefixRewrite: "/fixed"}, "/r/x?q=1", "/fixed?q=1"},
		{"regex_rewrite", Match{Path: "/"}, Action{RegexRewrite: &RegexRewrite{Pattern: `^/service/([^/]+)(/.*)$`, Substitution: `\2/instance/\1`}}, "/service/foo/v1/api?x=y", "/v1/api/instance/foo?x=y"},
		{"regex_rewrite all", Match{Path: "/"}, Action{RegexRewrite: &RegexRewrite{Pattern: "a", Substitution: "b"}}, "/aaa?a", "/bbb?a"},
		{"regex_rewrite literal backslash", Match{Path: "/"}, Action{RegexRewrite: &RegexRewrite{Pattern: "x", Substitution: `\\\0`}}, "/x", `/\x`},
		{"regex_rewrite no match", Match{Path: "/"}, Action{RegexRewrite: &RegexRewrite{Pattern: "zz", Substitution: "y"}}, "/abc", "/abc"},
	}
	for _, c := range cases {
		a := c.a
		a.Cluster = "c"
		tb := oneRoute(t, RouteConfig{Match: c.m, Route: &a})
		h := req("h", c.path)
		_, r := tb.Select(h)
		if r == nil {
			t.Fatalf("%s: no route", c.name)
		}
		got, ok := r.AppendRewrittenPath([]byte("keep:"), h)
		if !ok || string(got) != "keep:"+c.want {
			t.Errorf("%s: %q %v, want %q", c.name, got, ok, "keep:"+c.want)
		}
	}
	tb := oneRoute(t, RouteConfig{Match: Match{Path: "/"}, Route: fwd("c")})
	h := req("h", "/x")
	_, r := tb.Select(h)
	if got, ok := r.AppendRewrittenPath(nil, h); ok || got != nil {
		t.Errorf("no rewrite: %q %v", got, ok)
	}
}

func TestRedirect(t *testing.T) {
	cases := []struct {
		name   string
		m      Match
		rd     Redirect
		host   string
		path   string
		scheme string // the request's (x-forwarded-proto); :scheme is "http"
		want   string
		code   int
	}{
		{"https", Match{Path: "/"}, Redirect{HTTPSRedirect: true}, "foo.com", "/a?b", "http", "https://foo.com/a?b", 301},
		{"https drops :80", Match{Path: "/"}, Redirect{HTTPSRedirect: true}, "foo.com:80", "/a", "http", "https://foo.com/a", 301},
		{"https keeps :8080", Match{Path: "/"}, Redirect{HTTPSRedirect: true}, "foo.com:8080", "/a", "http", "https://foo.com:8080/a", 301},
		{"scheme same keeps :80", Match{Path: "/"}, Redirect{SchemeRedirect: "http"}, "foo.com:80", "/a", "http", "http://foo.com:80/a", 301},
		{"port", Match{Path: "/"}, Redirect{PortRedirect: 8443}, "foo.com:80", "/a", "http", "http://foo.com:8443/a", 301},
		{"port v6", Match{Path: "/"}, Redirect{PortRedirect: 8443}, "[::1]:80", "/a", "http", "http://[::1]:8443/a", 301},
		{"port v6 no port", Match{Path: "/"}, Redirect{PortRedirect: 8443}, "[::1]", "/a", "http", "http://[::1]:8443/a", 301},
		{"host", Match{Path: "/"}, Redirect{HostRedirect: "bar.com", ResponseCode: 302}, "foo.com:80", "/a", "http", "http://bar.com/a", 302},
		{"host and port", Match{Path: "/"}, Redirect{HostRedirect: "bar.com", PortRedirect: 81, ResponseCode: 303}, "foo.com", "/a", "http", "http://bar.com:81/a", 303},
		{"path keeps query", Match{Path: "/"}, Redirect{PathRedirect: "/new", ResponseCode: 307}, "h", "/old?x=1", "http", "http://h/new?x=1", 307},
		{"path with query", Match{Path: "/"}, Redirect{PathRedirect: "/new?y=2", StripQuery: true, ResponseCode: 308}, "h", "/old?x=1", "http", "http://h/new?y=2", 308},
		{"path no slash", Match{Path: "/"}, Redirect{PathRedirect: "new"}, "h", "/old", "http", "http://h/new", 301},
		{"strip query", Match{Path: "/"}, Redirect{StripQuery: true}, "h", "/a?x=1", "http", "http://h/a", 301},
		{"strip query path", Match{Path: "/"}, Redirect{PathRedirect: "/n", StripQuery: true}, "h", "/a?x=1", "http", "http://h/n", 301},
		{"prefix rewrite", Match{Path: "/old/"}, Redirect{PrefixRewrite: "/new/"}, "h", "/old/x?q", "http", "http://h/new/x?q", 301},
		{"prefix rewrite strip", Match{Path: "/old/"}, Redirect{PrefixRewrite: "/new/", StripQuery: true}, "h", "/old/x?q", "http", "http://h/new/x", 301},
		{"regex rewrite", Match{Path: "/"}, Redirect{RegexRewrite: &RegexRewrite{Pattern: "^/(.*)$", Substitution: `/v2/\1`}}, "h", "/a/b?q", "http", "http://h/v2/a/b?q", 301},
		{"regex rewrite no slash", Match{Path: "/"}, Redirect{RegexRewrite: &RegexRewrite{Pattern: "^/(.*)$", Substitution: `\1`}}, "h", "/a?q", "http", "http://h/a?q", 301},
		{"https from https x-f-p", Match{Path: "/"}, Redirect{SchemeRedirect: "http"}, "foo.com:443", "/", "https", "http://foo.com/", 301},
	}
	for _, c := range cases {
		rd := c.rd
		tb := oneRoute(t, RouteConfig{Match: c.m, Redirect: &rd})
		h := req(c.host, c.path)
		_, r := tb.Select(h)
		if r == nil || r.Kind() != ActionRedirect || !r.AddsLocation() {
			t.Fatalf("%s: route %v", c.name, r)
		}
		got := r.AppendRedirectLocation([]byte("L:"), h, c.scheme)
		if string(got) != "L:"+c.want || r.RedirectResponseCode() != c.code {
			t.Errorf("%s: %q %d, want %q %d", c.name, got, r.RedirectResponseCode(), "L:"+c.want, c.code)
		}
		if n, wc := r.PickCluster(h, 0); n != nil || wc != -1 {
			t.Errorf("%s: a redirect picked cluster %q", c.name, n)
		}
	}
}

func TestDirectResponse(t *testing.T) {
	tb := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Match: Match{PathKind: PathExact, Path: "/health"}, DirectResponse: &DirectResponse{Status: 200, Body: []byte("ok")}},
		{Match: Match{PathKind: PathExact, Path: "/moved"}, DirectResponse: &DirectResponse{Status: 301}},
	}}}})
	h := req("h", "/health")
	_, r := tb.Select(h)
	if st, body := r.DirectResponse(); r.Kind() != ActionDirectResponse || st != 200 || string(body) != "ok" || r.AddsLocation() {
		t.Errorf("health: %d %q %v", st, body, r.AddsLocation())
	}
	h = req("h:80", "/moved")
	_, r = tb.Select(h)
	if !r.AddsLocation() {
		t.Errorf("a 301 direct response adds no Location")
	}
	if got := r.AppendRedirectLocation(nil, h, "http"); string(got) != "http://h:80/moved" {
		t.Errorf("direct response Location %q", got)
	}
}

func TestHeaderMutations(t *testing.T) {
	opt := func(k, v string, a AppendAction) HeaderValueOption {
		return HeaderValueOption{Key: k, Value: v, AppendAction: a}
	}
	levels := func(level string) HeaderMutations {
		return HeaderMutations{
			RequestHeadersToAdd: []HeaderValueOption{
				opt("x-level", level, OverwriteIfExistsOrAdd),
				opt("x-"+level, "1", AppendIfExistsOrAdd),
				opt("x-append", level, AppendIfExistsOrAdd),
				opt("x-first", level, AddIfAbsent),
			},
			ResponseHeadersToAdd:    []HeaderValueOption{opt("x-level", level, OverwriteIfExistsOrAdd)},
			ResponseHeadersToRemove: []string{"x-remove-" + level},
		}
	}
	build := func(mostSpecific bool) *Table {
		return mustNew(t, Config{
			HeaderMutations:                 levels("config"),
			MostSpecificHeaderMutationsWins: mostSpecific,
			VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, HeaderMutations: levels("vhost"),
				Routes: []RouteConfig{{Match: Match{Path: "/"}, HeaderMutations: levels("route"), Route: &Action{
					WeightedClusters: []WeightedCluster{{Name: "w", Weight: 1, HeaderMutations: levels("weighted")}}}}},
			}},
		})
	}
	values := func(h *header.Map, name string) string {
		var vs []string
		h.Range(func(n, v []byte) bool {
			if string(n) == name {
				vs = append(vs, string(v))
			}
			return true
		})
		return strings.Join(vs, ",")
	}
	for _, c := range []struct {
		mostSpecific bool
		level        string
		append       string
		first        string
	}{
		// Envoy evaluates the weighted cluster first, then route, virtual host, route
		// configuration: the last overwrite (the least specific) wins.
		{false, "config", "weighted,route,vhost,config", "weighted"},
		{true, "route", "weighted,config,vhost,route", "weighted"},
	} {
		tb := build(c.mostSpecific)
		h := req("h", "/")
		_, r := tb.Select(h)
		_, wc := r.PickCluster(h, 0)
		scratch := r.ApplyRequestHeaders(h, wc, nil, nil, true)
		if got := values(h, "x-level"); got != c.level {
			t.Errorf("most specific %v: x-level %q, want %q", c.mostSpecific, got, c.level)
		}
		if got := values(h, "x-append"); got != c.append {
			t.Errorf("most specific %v: x-append %q, want %q", c.mostSpecific, got, c.append)
		}
		if got := values(h, "x-first"); got != c.first {
			t.Errorf("most specific %v: x-first %q, want %q", c.mostSpecific, got, c.first)
		}
		for _, l := range []string{"weighted", "route", "vhost", "config"} {
			if got := values(h, "x-"+l); got != "1" {
				t.Errorf("x-%s = %q", l, got)
			}
		}
		resp := &header.Map{}
		resp.AddString(":status", "200")
		for _, l := range []string{"weighted", "route", "vhost", "config", "other"} {
			resp.AddString("x-remove-"+l, "v")
		}
		r.ApplyResponseHeaders(resp, wc, nil, scratch)
		if got := values(resp, "x-level"); got != c.level {
			t.Errorf("most specific %v: response x-level %q, want %q", c.mostSpecific, got, c.level)
		}
		if resp.Len() != 3 || values(resp, "x-remove-other") != "v" {
			t.Errorf("response removals: %d fields left", resp.Len())
		}
	}
}

func TestAppendActions(t *testing.T) {
	cases := []struct {
		name   string
		opt    HeaderValueOption
		before []string
		want   string // values of x-h, joined by "|"; "<none>" if absent
	}{
		{"append adds", HeaderValueOption{Key: "X-H", Value: "n"}, nil, "n"},
		{"append keeps old", HeaderValueOption{Key: "x-h", Value: "n"}, []string{"o"}, "o|n"},
		{"add if absent absent", HeaderValueOption{Key: "x-h", Value: "n", AppendAction: AddIfAbsent}, nil, "n"},
		{"add if absent present", HeaderValueOption{Key: "x-h", Value: "n", AppendAction: AddIfAbsent}, []string{"o"}, "o"},
		{"overwrite or add absent", HeaderValueOption{Key: "x-h", Value: "n", AppendAction: OverwriteIfExistsOrAdd}, nil, "n"},
		{"overwrite or add present", HeaderValueOption{Key: "x-h", Value: "n", AppendAction: OverwriteIfExistsOrAdd}, []string{"o", "p"}, "n"},
		{"overwrite if exists absent", HeaderValueOption{Key: "x-h", Value: "n", AppendAction: OverwriteIfExists}, nil, "<none>"},
		{"overwrite if exists present", HeaderValueOption{Key: "x-h", Value: "n", AppendAction: OverwriteIfExists}, []string{"o"}, "n"},
		{"empty skipped", HeaderValueOption{Key: "x-h", Value: ""}, nil, "<none>"},
		{"empty kept", HeaderValueOption{Key: "x-h", Value: "", KeepEmptyValue: true}, nil, ""},
		{"formatter", HeaderValueOption{Key: "x-h", Value: "ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;%%"}, nil, "ip=10.0.0.1;%"},
	}
	for _, c := range cases {
		tb := oneRoute(t, RouteConfig{Match: Match{Path: "/"}, Route: fwd("c"), HeaderMutations: HeaderMutations{
			RequestHeadersToAdd: []HeaderValueOption{c.opt},
		}})
		var kv []string
		for _, v := range c.before {
			kv = append(kv, "x-h", v)
		}
		h := req("h", "/", kv...)
		_, r := tb.Select(h)
		e := &accesslog.Entry{DownstreamRemoteAddress: netip.MustParseAddrPort("10.0.0.1:5555"), RequestHeaders: h}
		r.ApplyRequestHeaders(h, -1, e, nil, false)
		var vs []string
		h.Range(func(n, v []byte) bool {
			if string(n) == "x-h" {
				vs = append(vs, string(v))
			}
			return true
		})
		got := strings.Join(vs, "|")
		if len(vs) == 0 {
			got = "<none>"
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// Values of one level are rendered before any of them is applied, as in Envoy.
func TestMutationsRenderFirst(t *testing.T) {
	tb := oneRoute(t, RouteConfig{Match: Match{Path: "/"}, Route: fwd("c"), HeaderMutations: HeaderMutations{
		RequestHeadersToAdd: []HeaderValueOption{
			{Key: "x-a", Value: "new", AppendAction: OverwriteIfExistsOrAdd},
			{Key: "x-b", Value: "b", AppendAction: AddIfAbsent},
			{Key: "x-b", Value: "second", AppendAction: AddIfAbsent}, // x-b is still absent when decided
		},
		RequestHeadersToRemove: []string{"x-gone", "X-A"},
	}})
	h := req("h", "/", "x-a", "old", "x-gone", "1")
	_, r := tb.Select(h)
	r.ApplyRequestHeaders(h, -1, nil, nil, false)
	if v, _ := h.Get("x-a"); string(v) != "new" || h.Has("x-gone") || h.Count("x-b") != 2 {
		t.Errorf("x-a %q, x-gone %v, x-b count %d", v, h.Has("x-gone"), h.Count("x-b"))
	}
}

func TestHostAndPathRewrite(t *testing.T) {
	tb := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Match: Match{Path: "/lit/"}, Route: &Action{Cluster: "c", HostRewriteLiteral: "upstream.local", PrefixRewrite: "/"}},
		{Match: Match{Path: "/hdr"}, Route: &Action{Cluster: "c", HostRewriteHeader: "X-Host"}},
		{Match: Match{Path: "/auto"}, Route: &Action{Cluster: "c", AutoHostRewrite: true}},
		{Match: Match{Path: "/wc"}, Route: &Action{WeightedClusters: []WeightedCluster{{Name: "w", Weight: 1, HostRewriteLiteral: "w.local"}}}},
	}}}})
	h := req("orig", "/lit/x?q")
	_, r := tb.Select(h)
	r.ApplyRequestHeaders(h, -1, nil, nil, true)
	host, _ := h.GetKnown(header.Authority)
	path, _ := h.GetKnown(header.Path)
	orig, _ := h.Get("x-envoy-original-path")
	if string(host) != "upstream.local" || string(path) != "/x?q" || string(orig) != "/lit/x?q" {
		t.Errorf("literal: host %q path %q original %q", host, path, orig)
	}
	h = req("orig", "/lit/y")
	_, r = tb.Select(h)
	r.ApplyRequestHeaders(h, -1, nil, nil, false)
	if h.Has("x-envoy-original-path") {
		t.Errorf("x-envoy-original-path without originalPath")
	}

	for _, c := range []struct {
		kv   []string
		want string
	}{{[]string{"x-host", "from.header"}, "from.header"}, {[]string{"x-host", ""}, "orig"}, {nil, "orig"}} {
		h = req("orig", "/hdr", c.kv...)
		_, r = tb.Select(h)
		r.ApplyRequestHeaders(h, -1, nil, nil, true)
		if host, _ := h.GetKnown(header.Authority); string(host) != c.want {
			t.Errorf("host_rewrite_header %v: %q, want %q", c.kv, host, c.want)
		}
		if h.Has("x-envoy-original-path") {
			t.Errorf("no path rewrite, but x-envoy-original-path")
		}
	}
	_, r = tb.Select(req("orig", "/auto"))
	if !r.AutoHostRewrite() {
		t.Errorf("auto_host_rewrite lost")
	}
	h = req("orig", "/wc")
	_, r = tb.Select(h)
	_, wc := r.PickCluster(h, 0)
	r.ApplyRequestHeaders(h, wc, nil, nil, true)
	if host, _ := h.GetKnown(header.Authority); string(host) != "w.local" {
		t.Errorf("weighted host_rewrite_literal: %q", host)
	}
}

func TestRetryPolicy(t *testing.T) {
	on, err := ParseRetryOn(" 5xx, connect-failure,,retriable-status-codes ")
	if err != nil || on != Retry5xx|RetryConnectFailure|RetryRetriableStatusCodes || on.String() != "5xx,connect-failure,retriable-status-codes" {
		t.Errorf("ParseRetryOn: %v %v %s", on, err, on)
	}
	if _, err := ParseRetryOn("5xx,unavailable"); err == nil || !strings.Contains(err.Error(), "not supported by Portico") {
		t.Errorf("gRPC token: %v", err)
	}
	if _, err := ParseRetryOn("5xxx"); err == nil || !strings.Contains(err.Error(), "unknown retry condition") {
		t.Errorf("unknown token: %v", err)
	}
	vhPolicy := &RetryPolicy{RetryOn: RetryReset, NumRetries: 3}
	tb := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, RetryPolicy: vhPolicy, Routes: []RouteConfig{
		{Match: Match{Path: "/own"}, Route: &Action{Cluster: "c", RetryPolicy: &RetryPolicy{RetryOn: Retry5xx, NumRetries: 1, BackOffBase: 100 * time.Millisecond}}},
		{Match: Match{Path: "/"}, Route: fwd("c")},
	}}}})
	_, r := tb.Select(req("h", "/own"))
	if p := r.RetryPolicy(); p == nil || p.RetryOn != Retry5xx || p.BackOffBase != 100*time.Millisecond || p.BackOffMax != time.Second || p.HostSelectionRetryMaxAttempts != 1 {
		t.Errorf("route policy: %+v", p)
	}
	_, r = tb.Select(req("h", "/other"))
	if p := r.RetryPolicy(); p == nil || p.RetryOn != RetryReset || p.NumRetries != 3 || p.BackOffBase != DefaultRetryBackOffBase || p.BackOffMax != 10*DefaultRetryBackOffBase {
		t.Errorf("virtual host policy: %+v", p)
	}
	if r.Timeout() != DefaultTimeout || r.ClusterNotFoundResponseCode() != 503 {
		t.Errorf("timeout %v, not found %d", r.Timeout(), r.ClusterNotFoundResponseCode())
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := Config{
		InternalOnlyHeaders: []string{""},
		HeaderMutations: HeaderMutations{
			RequestHeadersToAdd:     []HeaderValueOption{{Key: ":path", Value: "x"}, {Key: "Host", Value: "x"}, {Key: "x", Value: "%NOPE%"}},
			ResponseHeadersToRemove: []string{":status"},
		},
		VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
			{Match: Match{PathKind: PathSafeRegex, Path: "(("}, Route: fwd("c")},
			{Match: Match{Path: "/", Headers: []HeaderMatcher{
				{Name: "x", Kind: HeaderString, String: StringMatcher{Kind: StringSafeRegex, Value: "[a"}},
				{Name: "x", Kind: HeaderSafeRegex, Value: "[a"},
				{Name: "x", Kind: HeaderRange, RangeStart: 5, RangeEnd: 5},
			}, QueryParameters: []QueryParameterMatcher{{Name: "q", String: &StringMatcher{Kind: StringSafeRegex, Value: "*"}}}}, Route: fwd("c")},
			{Match: Match{Path: "/"}},
			{Match: Match{Path: "/"}, Route: &Action{Cluster: "c", PrefixRewrite: "/x", RegexRewrite: &RegexRewrite{Pattern: "a", Substitution: `\1`}}},
			{Match: Match{Path: "/"}, Route: &Action{WeightedClusters: []WeightedCluster{{Name: "a"}, {Weight: 1, Name: "b", ClusterHeader: "h"}}}},
			{Match: Match{Path: "/"}, Route: &Action{WeightedClusters: []WeightedCluster{{Name: "a", Weight: 1}}, TotalWeight: 100}},
			{Match: Match{Path: "/"}, Redirect: &Redirect{ResponseCode: 200, PortRedirect: 70000}},
			{Match: Match{Path: "/"}, DirectResponse: &DirectResponse{Status: 99, Body: make([]byte, 5000)}},
			{Match: Match{PathKind: PathSeparatedPrefix, Path: "/a/"}, Route: &Action{Cluster: "c", RetryPolicy: &RetryPolicy{BackOffBase: time.Second, BackOffMax: time.Millisecond}}},
		}}},
	}
	_, err := New(cfg)
	checkErrors(t, err,
		"internal_only_headers[0]: a header name is required",
		"request_headers_to_add[0].header.key: :-prefixed or host headers may not be modified",
		"request_headers_to_add[1].header.key: :-prefixed or host headers may not be modified",
		"request_headers_to_add[2].header.value: header value format: operator %NOPE% is not supported",
		"response_headers_to_remove[0]: :-prefixed or host headers may not be removed",
		"virtual_hosts[0].routes[0].match.safe_regex.regex: invalid RE2 regex",
		"virtual_hosts[0].routes[1].match.headers[0].string_match.safe_regex.regex: invalid RE2 regex",
		"virtual_hosts[0].routes[1].match.headers[1].safe_regex_match.regex: invalid RE2 regex",
		"virtual_hosts[0].routes[1].match.headers[2].range_match: the range [5, 5) is empty",
		"virtual_hosts[0].routes[1].match.query_parameters[0].string_match.safe_regex.regex: invalid RE2 regex",
		"virtual_hosts[0].routes[2]: one of route, redirect, direct_response is required",
		"virtual_hosts[0].routes[3].route: specify only one of prefix_rewrite, regex_rewrite",
		`virtual_hosts[0].routes[3].route.regex_rewrite.substitution: \1 refers to a capture group the pattern does not have`,
		"virtual_hosts[0].routes[4].route.weighted_clusters.clusters[1]: only one of name or cluster_header",
		"virtual_hosts[0].routes[5].route.weighted_clusters.total_weight: the weights add up to 1, not total_weight 100",
		"virtual_hosts[0].routes[6].redirect.port_redirect: 70000 is not a port",
		"virtual_hosts[0].routes[6].redirect.response_code: 200 is not a redirect code",
		"virtual_hosts[0].routes[7].direct_response.status: status 99 is not in [200, 600)",
		"virtual_hosts[0].routes[7].direct_response.body: the body has 5000 bytes, more than max_direct_response_body_size_bytes (4096)",
		`virtual_hosts[0].routes[8].match.path_separated_prefix: "/a/" must not be empty`,
		"virtual_hosts[0].routes[8].route.retry_policy.retry_back_off.max_interval: must be greater than or equal to the base_interval",
	)
	// The weights of routes[4] add up to 1: no "sum" error; a sum of 0 is one.
	_, err = New(Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Match: Match{Path: "/"}, Route: &Action{WeightedClusters: []WeightedCluster{{Name: "a"}}}},
	}}}})
	checkErrors(t, err, "virtual_hosts[0].routes[0].route.weighted_clusters.clusters: the sum of the weights must be greater than 0")
	// max_direct_response_body_size_bytes: 0 (translated to -1) allows no body.
	_, err = New(Config{MaxDirectResponseBodySize: -1, VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Match: Match{Path: "/"}, DirectResponse: &DirectResponse{Status: 200, Body: []byte("x")}},
	}}}})
	checkErrors(t, err, "virtual_hosts[0].routes[0].direct_response.body: the body has 1 bytes, more than max_direct_response_body_size_bytes (0)")
}

func TestDescribe(t *testing.T) {
	tb := mustNew(t, Config{VirtualHosts: []VirtualHostConfig{{Name: "vh", Domains: []string{"*"}, Routes: []RouteConfig{
		{Name: "api", Match: Match{Path: "/api", CaseInsensitive: true,
			Headers:         []HeaderMatcher{{Name: "X-Env", Kind: HeaderString, String: StringMatcher{Value: "prod"}}, {Name: "x-dbg", InvertMatch: true, PresentMatch: true}},
			QueryParameters: []QueryParameterMatcher{{Name: "v", String: &StringMatcher{Kind: StringPrefix, Value: "2", IgnoreCase: true}}}},
			Route: &Action{WeightedClusters: []WeightedCluster{{Name: "a", Weight: 1}, {ClusterHeader: "x-c", Weight: 3}}, PrefixRewrite: "/"}},
	}}}})
	_, r := tb.Select(req("h", "/api?v=2", "x-env", "prod"))
	want := `prefix "/api" (case-insensitive), header x-env exact "prod", header x-dbg not present, query v prefix "2" (ignore case) -> weighted clusters a:1, header x-c:3, prefix rewrite "/"`
	if r == nil || r.Describe() != want || r.Name() != "api" || r.VirtualHost().Name() != "vh" {
		t.Errorf("Describe() =\n %s\nwant\n %s", r.Describe(), want)
	}
}

// bigTable is 20 virtual hosts of 50 routes each, with header and query matchers, in
// the shapes real configurations use.
func bigTable(t testing.TB) *Table {
	var vhs []VirtualHostConfig
	for i := 0; i < 20; i++ {
		vh := VirtualHostConfig{Name: fmt.Sprintf("vh%d", i), Domains: []string{fmt.Sprintf("svc%d.example.com", i), fmt.Sprintf("svc%d.example.com:8080", i)}}
		switch i {
		case 18:
			vh.Domains = []string{"*.example.org"}
		case 19:
			vh.Domains = []string{"*"}
		}
		for j := 0; j < 50; j++ {
			rc := RouteConfig{Name: fmt.Sprintf("r%d", j), Route: fwd(fmt.Sprintf("c%d", j))}
			switch j % 5 {
			case 0:
				rc.Match = Match{Path: fmt.Sprintf("/api/v%d/", j)}
			case 1:
				rc.Match = Match{PathKind: PathExact, Path: fmt.Sprintf("/exact/%d", j), CaseInsensitive: true}
			case 2:
				rc.Match = Match{Path: fmt.Sprintf("/h%d", j), Headers: []HeaderMatcher{
					{Name: ":method", Kind: HeaderString, String: StringMatcher{Value: "POST"}},
					{Name: "x-tenant", Kind: HeaderString, String: StringMatcher{Kind: StringPrefix, Value: "t", IgnoreCase: true}},
				}}
			case 3:
				rc.Match = Match{PathKind: PathSeparatedPrefix, Path: fmt.Sprintf("/sep%d", j), QueryParameters: []QueryParameterMatcher{{Name: "v", String: &StringMatcher{Value: "2"}}}}
			case 4:
				rc.Match = Match{PathKind: PathSafeRegex, Path: fmt.Sprintf(`/re%d/[a-z]+`, j)}
			}
			vh.Routes = append(vh.Routes, rc)
		}
		vh.Routes = append(vh.Routes, RouteConfig{Name: "catch-all", Match: Match{Path: "/", Headers: []HeaderMatcher{{Name: "x-tenant", PresentMatch: true}}}, Route: fwd("default")})
		vhs = append(vhs, vh)
	}
	return mustNew(t, Config{VirtualHosts: vhs})
}

func benchRequests() []*header.Map {
	return []*header.Map{
		req("svc7.example.com", "/api/v45/users?x=1", "user-agent", "bench", "x-tenant", "T1", "accept", "*/*"),
		req("SVC3.example.com:8080", "/nothing/here", "user-agent", "bench", "x-tenant", "t2", "x-a", "1", "x-a", "2"),
		req("a.example.org", "/re49/abc", "user-agent", "bench"),
		req("unknown.host", "/sep48?v=2", "user-agent", "bench"),
	}
}

func TestSelectDoesNotAllocate(t *testing.T) {
	tb := bigTable(t)
	reqs := benchRequests()
	wants := []string{"vh7/r45", "vh3/catch-all", "vh18/r49", "vh19/r48"}
	for i, h := range reqs {
		vh, r := tb.Select(h)
		if got := vhName(vh) + "/" + func() string {
			if r == nil {
				return "<nil>"
			}
			return r.Name()
		}(); got != wants[i] {
			t.Errorf("request %d: %s, want %s", i, got, wants[i])
		}
	}
	if raceEnabled {
		t.Skip("allocation counts under the race detector")
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, h := range reqs {
			tb.Select(h)
		}
	})
	if allocs != 0 {
		t.Errorf("Select allocates %.1f times per 4 requests", allocs)
	}
	// Picking, rewriting, redirecting and literal mutations allocate nothing either.
	rt := oneRoute(t, RouteConfig{Match: Match{Path: "/a/"}, Route: &Action{Cluster: "c", PrefixRewrite: "/b/", HostRewriteLiteral: "up"},
		HeaderMutations: HeaderMutations{RequestHeadersToAdd: []HeaderValueOption{{Key: "x-lit", Value: "v", AppendAction: OverwriteIfExistsOrAdd}}}})
	h := req("h", "/a/x?q")
	_, r := rt.Select(h)
	var scratch, loc []byte
	work := &header.Map{}
	allocs = testing.AllocsPerRun(100, func() {
		work.CopyFrom(h)
		r.PickCluster(work, 1)
		scratch = r.ApplyRequestHeaders(work, -1, nil, scratch, true)
		loc = r.AppendRedirectLocation(loc[:0], work, "http")
	})
	if allocs != 0 {
		t.Errorf("PickCluster + ApplyRequestHeaders + AppendRedirectLocation allocate %.1f times", allocs)
	}
}

func BenchmarkSelect(b *testing.B) {
	tb := bigTable(b)
	reqs := benchRequests()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tb.Select(reqs[i&3])
	}
}

func BenchmarkApplyRequestHeaders(b *testing.B) {
	rt := oneRoute(b, RouteConfig{Match: Match{Path: "/a/"}, Route: &Action{Cluster: "c", PrefixRewrite: "/b/"},
		HeaderMutations: HeaderMutations{RequestHeadersToAdd: []HeaderValueOption{
			{Key: "x-lit", Value: "v", AppendAction: OverwriteIfExistsOrAdd},
			{Key: "x-client", Value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
		}}})
	h := req("h", "/a/x?q", "user-agent", "bench")
	_, r := rt.Select(h)
	e := &accesslog.Entry{DownstreamRemoteAddress: netip.MustParseAddrPort("10.1.2.3:4567")}
	work := &header.Map{}
	var scratch []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		work.CopyFrom(h)
		e.RequestHeaders = work
		scratch = r.ApplyRequestHeaders(work, -1, e, scratch, true)
	}
}
