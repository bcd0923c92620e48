package route

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/http/header"
)

// Error is one problem in a Config, at a field path of Envoy's RouteConfiguration
// relative to the route configuration (`virtual_hosts[0].domains[1]`).
type Error struct {
	Path string
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors is every problem New found.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Table is a built route configuration. It is immutable and safe for concurrent use.
type Table struct {
	name string
	// Domains: exact ones by lower-case name; wildcards grouped by the length of their
	// fixed part, longest first, so that the longest wildcard wins as in Envoy.
	exact    map[string]*VirtualHost
	suffixes []wildcardGroup
	prefixes []wildcardGroup
	def      *VirtualHost
	// onlyDefault: "*" is the only domain, so the authority is not even looked at
	// (Envoy's fast path, which also routes requests without one).
	onlyDefault      bool
	ignorePort       bool
	ignorePathParams bool
	mostSpecificWins bool
	mut              levelMutations
	internalOnly     []string
	vhosts           []*VirtualHost
}

type wildcardGroup struct {
	n int // length of the fixed part
	m map[string]*VirtualHost
}

// VirtualHost is a built virtual host.
type VirtualHost struct {
	name    string
	index   int
	domains []string
	table   *Table
	routes  []*Route
	mut     levelMutations
	retry   *RetryPolicy
}

// Name is the virtual host's name.
func (v *VirtualHost) Name() string { return v.name }

// Index is the virtual host's position in the configuration.
func (v *VirtualHost) Index() int { return v.index }

// Domains are the virtual host's domains, lower-cased.
func (v *VirtualHost) Domains() []string { return v.domains }

// Routes are the virtual host's routes in match order.
func (v *VirtualHost) Routes() []*Route { return v.routes }

// Name is the route configuration's name.
func (t *Table) Name() string { return t.name }

// VirtualHosts are the virtual hosts in configuration order.
func (t *Table) VirtualHosts() []*VirtualHost { return t.vhosts }

// InternalOnlyHeaders are the headers the connection manager must remove from requests
// that are not internal (Envoy's internal_only_headers), lower-cased.
func (t *Table) InternalOnlyHeaders() []string { return t.internalOnly }

// ClusterRef is a static cluster name a route refers to.
type ClusterRef struct {
	VirtualHost, Route int
	// Weighted is the index in weighted_clusters.clusters, or -1 for route.cluster.
	Weighted int
	Name     string
}

// ClusterRefs lists every static cluster name the table refers to (route.cluster and
// weighted_clusters.clusters[].name), for the caller to check that they exist.
// cluster_header names are only known at request time.
func (t *Table) ClusterRefs() []ClusterRef {
	var refs []ClusterRef
	for _, vh := range t.vhosts {
		for _, r := range vh.routes {
			if r.kind != ActionRoute {
				continue
			}
			if r.cluster != "" {
				refs = append(refs, ClusterRef{vh.index, r.index, -1, r.cluster})
			}
			for i, w := range r.weighted {
				if w.name != "" {
					refs = append(refs, ClusterRef{vh.index, r.index, i, w.name})
				}
			}
		}
	}
	return refs
}

// Select finds the virtual host for the request's :authority and the first of its
// routes that matches. A nil virtual host means no domain matched; a nil route means no
// route did (Envoy answers both with 404, response flag NR). It does not allocate.
func (t *Table) Select(h *header.Map) (*VirtualHost, *Route) {
	vh := t.virtualHost(h)
	if vh == nil {
		return nil, nil
	}
	path, ok := h.GetKnown(header.Path)
	if !ok {
		// CONNECT without a path: Portico has no connect_matcher, so no route fits.
		return vh, nil
	}
	p := matchPath(path, t.ignorePathParams)
	var jbuf [256]byte
	jb := jbuf[:0]
	for _, r := range vh.routes {
		var m bool
		if m, jb = r.matches(h, path, p, jb); m {
			return vh, r
		}
	}
	return vh, nil
}

// SelectVirtualHost is the virtual-host half of Select.
func (t *Table) SelectVirtualHost(h *header.Map) *VirtualHost { return t.virtualHost(h) }

func (t *Table) virtualHost(h *header.Map) *VirtualHost {
	if t.onlyDefault {
		return t.def
	}
	host, ok := h.GetKnown(header.Authority)
	if !ok {
		return nil
	}
	if t.ignorePort {
		if i := portStart(host); i >= 0 {
			host = host[:i]
		}
	}
	// Domains are compared case-insensitively: lower-case the host into a stack buffer.
	var buf [256]byte
	var lower []byte
	if len(host) <= len(buf) {
		lower = buf[:len(host)]
	} else {
		lower = make([]byte, len(host))
	}
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if vh, ok := t.exact[string(lower)]; ok {
		return vh
	}
	n := len(lower)
	// A wildcard matches at least one character: "*.foo.com" does not match ".foo.com".
	for _, g := range t.suffixes {
		if g.n >= n {
			continue
		}
		if vh, ok := g.m[string(lower[n-g.n:])]; ok {
			return vh
		}
	}
	for _, g := range t.prefixes {
		if g.n >= n {
			continue
		}
		if vh, ok := g.m[string(lower[:g.n])]; ok {
			return vh
		}
	}
	return t.def
}

// portStart is Envoy's HeaderUtility::getPortStart: the index of the ':' before the port,
// or -1 (an IPv6 literal's colons are inside brackets).
func portStart(host []byte) int {
	i := bytes.LastIndexByte(host, ':')
	if i < 0 {
		return -1
	}
	if j := bytes.LastIndexByte(host, ']'); j >= 0 && j > i {
		return -1
	}
	return i
}

// matchPath is the part of :path that path matchers see: without query and fragment,
// and without path parameters if configured so.
func matchPath(path []byte, ignoreParams bool) []byte {
	p := pathOnly(path)
	if ignoreParams {
		if i := bytes.IndexByte(p, ';'); i >= 0 {
			p = p[:i]
		}
	}
	return p
}

// pathOnly cuts the query and fragment off a path (Envoy's removeQueryAndFragment).
func pathOnly(path []byte) []byte {
	if i := bytes.IndexAny(path, "?#"); i >= 0 {
		return path[:i]
	}
	return path
}

// builder collects New's errors with their paths.
type builder struct {
	errs Errors
}

func (b *builder) errorf(path, format string, args ...any) {
	b.errs = append(b.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func field(p, name string) string {
	if p == "" {
		return name
	}
	return p + "." + name
}

func index(p string, i int) string { return p + "[" + strconv.Itoa(i) + "]" }

// New builds a table. Every problem is reported, as Errors.
func New(cfg Config) (*Table, error) {
	b := &builder{}
	t := &Table{
		name:             cfg.Name,
		ignorePort:       cfg.IgnorePortInHostMatching,
		ignorePathParams: cfg.IgnorePathParametersInPathMatching,
		mostSpecificWins: cfg.MostSpecificHeaderMutationsWins,
	}
	for i, n := range cfg.InternalOnlyHeaders {
		if n == "" {
			b.errorf(index("internal_only_headers", i), "a header name is required")
			continue
		}
		t.internalOnly = append(t.internalOnly, strings.ToLower(n))
	}
	t.mut = b.levelMutations(cfg.HeaderMutations, "")
	maxBody := cfg.MaxDirectResponseBodySize
	switch {
	case maxBody == 0:
		maxBody = DefaultMaxDirectResponseBodySize
	case maxBody < 0:
		maxBody = 0
	}

	// Where each domain was first seen, by kind, for duplicate errors.
	type seen struct{ vh, d int }
	exactAt := map[string]seen{}
	suffixAt := map[string]seen{}
	prefixAt := map[string]seen{}
	var defAt seen
	suffixes := map[int]map[string]*VirtualHost{}
	prefixes := map[int]map[string]*VirtualHost{}
	for i := range cfg.VirtualHosts {
		vc := &cfg.VirtualHosts[i]
		at := index("virtual_hosts", i)
		vh := &VirtualHost{name: vc.Name, index: i, table: t, retry: b.retryPolicy(vc.RetryPolicy, field(at, "retry_policy"))}
		vh.mut = b.levelMutations(vc.HeaderMutations, at)
		t.vhosts = append(t.vhosts, vh)
		if len(vc.Domains) == 0 {
			b.errorf(field(at, "domains"), "at least one domain is required")
		}
		for j, d := range vc.Domains {
			dat := index(field(at, "domains"), j)
			d = strings.ToLower(d)
			vh.domains = append(vh.domains, d)
			dup := func(prev seen) {
				b.errorf(dat, "domain %q is already used by %s (Envoy requires unique domains)",
					d, index(field(index("virtual_hosts", prev.vh), "domains"), prev.d))
			}
			switch {
			case d == "":
				b.errorf(dat, "a domain must not be empty")
			case d == "*":
				if t.def != nil {
					dup(defAt)
					continue
				}
				t.def, defAt = vh, seen{i, j}
			case d[0] == '*':
				if prev, ok := suffixAt[d]; ok {
					dup(prev)
					continue
				}
				suffixAt[d] = seen{i, j}
				n := len(d) - 1
				if suffixes[n] == nil {
					suffixes[n] = map[string]*VirtualHost{}
				}
				suffixes[n][d[1:]] = vh
			case d[len(d)-1] == '*':
				if prev, ok := prefixAt[d]; ok {
					dup(prev)
					continue
				}
				prefixAt[d] = seen{i, j}
				n := len(d) - 1
				if prefixes[n] == nil {
					prefixes[n] = map[string]*VirtualHost{}
				}
				prefixes[n][d[:n]] = vh
			default:
				if prev, ok := exactAt[d]; ok {
					dup(prev)
					continue
				}
				exactAt[d] = seen{i, j}
				if t.exact == nil {
					t.exact = map[string]*VirtualHost{}
				}
				t.exact[d] = vh
			}
		}
		for j := range vc.Routes {
			r := b.route(&vc.Routes[j], vh, j, index(field(at, "routes"), j), maxBody)
			vh.routes = append(vh.routes, r)
		}
	}
	t.suffixes = groups(suffixes)
	t.prefixes = groups(prefixes)
	t.onlyDefault = t.def != nil && len(t.exact) == 0 && len(t.suffixes) == 0 && len(t.prefixes) == 0
	if len(b.errs) > 0 {
		return nil, b.errs
	}
	return t, nil
}

func groups(m map[int]map[string]*VirtualHost) []wildcardGroup {
	gs := make([]wildcardGroup, 0, len(m))
	for n, vhs := range m {
		gs = append(gs, wildcardGroup{n, vhs})
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].n > gs[j].n })
	return gs
}

// ActionKind is what a route does.
type ActionKind uint8

// Route actions.
const (
	ActionRoute          ActionKind = iota // forward to a cluster
	ActionRedirect                         // answer with a redirect
	ActionDirectResponse                   // answer with a fixed status and body
)

// Route is a built route.
type Route struct {
	vh    *VirtualHost
	name  string
	index int
	desc  string

	// Match.
	pathKind PathKind
	path     string // prefix or path, as configured
	re       *regexp.Regexp
	fold     bool // case-insensitive prefix/path
	headers  []headerMatcher
	query    []queryMatcher

	kind ActionKind

	// Forwarding.
	cluster       string
	clusterB      []byte
	clusterHeader string
	weighted      []weightedCluster
	totalWeight   uint64
	randomHeader  string
	notFoundCode  int
	rewrite       pathRewrite
	hostLiteral   []byte
	autoHost      bool
	hostHeader    string
	timeout       time.Duration
	idleTimeout   time.Duration
	hasIdle       bool
	retry         *RetryPolicy

	redirect *redirect
	status   int
	body     []byte

	mut levelMutations
}

type weightedCluster struct {
	name          string
	nameB         []byte
	clusterHeader string
	weight        uint64
	hostLiteral   []byte
	mut           levelMutations
}

type redirect struct {
	scheme       string
	host         string
	port         string // ":8443", or ""
	path         string
	pathHasQuery bool
	stripQuery   bool
	code         int
}

// pathRewrite is a prefix_rewrite or a regex_rewrite, of the route or of its redirect.
type pathRewrite struct {
	prefix string
	re     *regexp.Regexp
	subst  []substPart
}

func (p *pathRewrite) active() bool { return p.prefix != "" || p.re != nil }

// substPart is a literal (group < 0) or a capture group of a substitution.
type substPart struct {
	lit   string
	group int
}

func (b *builder) route(rc *RouteConfig, vh *VirtualHost, i int, at string, maxBody int) *Route {
	r := &Route{vh: vh, name: rc.Name, index: i}
	b.match(r, &rc.Match, field(at, "match"))
	r.mut = b.levelMutations(rc.HeaderMutations, at)
	n := 0
	if rc.Route != nil {
		n++
		r.kind = ActionRoute
		b.action(r, rc.Route, field(at, "route"))
	}
	if rc.Redirect != nil {
		n++
		r.kind = ActionRedirect
		b.redirect(r, rc.Redirect, field(at, "redirect"))
	}
	if rc.DirectResponse != nil {
		n++
		r.kind = ActionDirectResponse
		dat := field(at, "direct_response")
		r.status = rc.DirectResponse.Status
		if r.status < 200 || r.status > 599 {
			b.errorf(field(dat, "status"), "status %d is not in [200, 600)", r.status)
		}
		if len(rc.DirectResponse.Body) > maxBody {
			b.errorf(field(dat, "body"), "the body has %d bytes, more than max_direct_response_body_size_bytes (%d)", len(rc.DirectResponse.Body), maxBody)
		}
		r.body = rc.DirectResponse.Body
	}
	switch {
	case n == 0:
		b.errorf(at, "one of route, redirect, direct_response is required")
	case n > 1:
		b.errorf(at, "only one of route, redirect, direct_response may be set")
	}
	r.desc = describe(rc)
	return r
}

func (b *builder) action(r *Route, a *Action, at string) {
	n := 0
	if a.Cluster != "" {
		n++
		r.cluster, r.clusterB = a.Cluster, []byte(a.Cluster)
	}
	if a.ClusterHeader != "" {
		n++
		r.clusterHeader = strings.ToLower(a.ClusterHeader)
		if r.clusterHeader[0] == ':' {
			// Envoy's proto forbids pseudo-headers here (HTTP_HEADER_NAME).
			b.errorf(field(at, "cluster_header"), "a pseudo-header cannot name the cluster")
		}
	}
	if len(a.WeightedClusters) > 0 {
		n++
		wat := field(at, "weighted_clusters")
		var sum uint64
		for i := range a.WeightedClusters {
			wc := &a.WeightedClusters[i]
			cat := index(field(wat, "clusters"), i)
			w := weightedCluster{name: wc.Name, nameB: []byte(wc.Name), clusterHeader: strings.ToLower(wc.ClusterHeader), weight: uint64(wc.Weight)}
			switch {
			case wc.Name != "" && wc.ClusterHeader != "":
				b.errorf(cat, "only one of name or cluster_header can be specified")
			case wc.Name == "" && wc.ClusterHeader == "":
				b.errorf(cat, "one of name or cluster_header is required")
			}
			if wc.HostRewriteLiteral != "" {
				w.hostLiteral = []byte(wc.HostRewriteLiteral)
			}
			w.mut = b.levelMutations(wc.HeaderMutations, cat)
			sum += w.weight
			r.weighted = append(r.weighted, w)
		}
		switch {
		case sum == 0:
			b.errorf(field(wat, "clusters"), "the sum of the weights must be greater than 0")
		case a.TotalWeight != 0 && uint64(a.TotalWeight) != sum:
			b.errorf(field(wat, "total_weight"), "the weights add up to %d, not total_weight %d", sum, a.TotalWeight)
		}
		r.totalWeight = sum
		r.randomHeader = strings.ToLower(a.RandomValueHeader)
	}
	switch {
	case n == 0:
		b.errorf(at, "one of cluster, cluster_header, weighted_clusters is required")
	case n > 1:
		b.errorf(at, "only one of cluster, cluster_header, weighted_clusters may be set")
	}
	switch a.ClusterNotFoundResponseCode {
	case 0:
		r.notFoundCode = 503
	case 503, 404, 500:
		r.notFoundCode = a.ClusterNotFoundResponseCode
	default:
		b.errorf(field(at, "cluster_not_found_response_code"), "%d is not one of 503, 404, 500", a.ClusterNotFoundResponseCode)
	}
	if a.PrefixRewrite != "" && a.RegexRewrite != nil {
		b.errorf(at, "specify only one of prefix_rewrite, regex_rewrite")
	}
	r.rewrite.prefix = a.PrefixRewrite
	if a.RegexRewrite != nil {
		r.rewrite.re, r.rewrite.subst = b.regexRewrite(a.RegexRewrite, field(at, "regex_rewrite"))
	}
	hosts := 0
	if a.HostRewriteLiteral != "" {
		hosts++
		r.hostLiteral = []byte(a.HostRewriteLiteral)
	}
	if a.AutoHostRewrite {
		hosts++
		r.autoHost = true
	}
	if a.HostRewriteHeader != "" {
		hosts++
		r.hostHeader = strings.ToLower(a.HostRewriteHeader)
	}
	if hosts > 1 {
		b.errorf(at, "only one of host_rewrite_literal, auto_host_rewrite, host_rewrite_header may be set")
	}
	if a.Timeout < 0 {
		b.errorf(field(at, "timeout"), "negative timeout")
	}
	r.timeout = a.Timeout
	r.idleTimeout, r.hasIdle = a.IdleTimeout, a.HasIdleTimeout
	r.retry = r.vh.retry
	if a.RetryPolicy != nil {
		r.retry = b.retryPolicy(a.RetryPolicy, field(at, "retry_policy"))
	}
}

func (b *builder) redirect(r *Route, rd *Redirect, at string) {
	x := &redirect{host: rd.HostRedirect, path: rd.PathRedirect, stripQuery: rd.StripQuery}
	switch {
	case rd.SchemeRedirect != "" && rd.HTTPSRedirect:
		b.errorf(at, "only one of https_redirect, scheme_redirect may be set")
	case rd.HTTPSRedirect:
		x.scheme = "https"
	default:
		x.scheme = rd.SchemeRedirect
	}
	if rd.PortRedirect > 65535 {
		b.errorf(field(at, "port_redirect"), "%d is not a port", rd.PortRedirect)
	} else if rd.PortRedirect != 0 {
		x.port = ":" + strconv.Itoa(int(rd.PortRedirect))
	}
	set := 0
	for _, s := range []bool{rd.PathRedirect != "", rd.PrefixRewrite != "", rd.RegexRewrite != nil} {
		if s {
			set++
		}
	}
	if set > 1 {
		b.errorf(at, "only one of path_redirect, prefix_rewrite, regex_rewrite may be set")
	}
	x.pathHasQuery = strings.IndexByte(rd.PathRedirect, '?') >= 0
	r.rewrite.prefix = rd.PrefixRewrite
	if rd.RegexRewrite != nil {
		r.rewrite.re, r.rewrite.subst = b.regexRewrite(rd.RegexRewrite, field(at, "regex_rewrite"))
	}
	switch rd.ResponseCode {
	case 0:
		x.code = 301
	case 301, 302, 303, 307, 308:
		x.code = rd.ResponseCode
	default:
		b.errorf(field(at, "response_code"), "%d is not a redirect code (301, 302, 303, 307, 308)", rd.ResponseCode)
	}
	r.redirect = x
}

func (b *builder) retryPolicy(p *RetryPolicy, at string) *RetryPolicy {
	if p == nil {
		return nil
	}
	c := *p
	c.RetriableStatusCodes = append([]uint32(nil), p.RetriableStatusCodes...)
	if c.BackOffBase < 0 || c.BackOffMax < 0 || c.PerTryTimeout < 0 {
		b.errorf(at, "negative duration")
	}
	if c.BackOffBase == 0 {
		c.BackOffBase = DefaultRetryBackOffBase
	} else if c.BackOffBase < time.Millisecond {
		c.BackOffBase = time.Millisecond // Envoy rounds up to 1 ms
	}
	if c.BackOffMax == 0 {
		c.BackOffMax = 10 * c.BackOffBase
	} else {
		if c.BackOffMax < time.Millisecond {
			c.BackOffMax = time.Millisecond
		}
		if c.BackOffMax < c.BackOffBase {
			b.errorf(field(field(at, "retry_back_off"), "max_interval"), "must be greater than or equal to the base_interval")
		}
	}
	if c.HostSelectionRetryMaxAttempts <= 0 {
		c.HostSelectionRetryMaxAttempts = 1
	}
	return &c
}

// regexRewrite compiles a RegexMatchAndSubstitute and splits its substitution.
func (b *builder) regexRewrite(rw *RegexRewrite, at string) (*regexp.Regexp, []substPart) {
	re, err := regexp.Compile(rw.Pattern)
	if err != nil {
		b.errorf(field(field(at, "pattern"), "regex"), "%v", regexError(err))
		return nil, nil
	}
	parts, err := parseSubstitution(rw.Substitution, re.NumSubexp())
	if err != nil {
		b.errorf(field(at, "substitution"), "%v", err)
		return nil, nil
	}
	return re, parts
}

// parseSubstitution reads RE2's rewrite syntax: \N (N a digit) is capture group N, \\ a
// backslash; any other backslash is an error, as RE2::CheckRewriteString has it.
func parseSubstitution(s string, groups int) ([]substPart, error) {
	var parts []substPart
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			lit.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return nil, fmt.Errorf("the substitution ends with a lone backslash")
		}
		switch d := s[i]; {
		case d == '\\':
			lit.WriteByte('\\')
		case '0' <= d && d <= '9':
			g := int(d - '0')
			if g > groups {
				return nil, fmt.Errorf("\\%d refers to a capture group the pattern does not have (it has %d)", g, groups)
			}
			if lit.Len() > 0 {
				parts = append(parts, substPart{lit: lit.String(), group: -1})
				lit.Reset()
			}
			parts = append(parts, substPart{group: g})
		default:
			return nil, fmt.Errorf("invalid escape \\%c (use \\0 .. \\9 or \\\\)", d)
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, substPart{lit: lit.String(), group: -1})
	}
	return parts, nil
}

// compileFull compiles a regex that must match a whole value (Envoy's safe_regex
// matchers use RE2::FullMatch).
func compileFull(pattern string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, regexError(err)
	}
	return regexp.Compile(`\A(?:` + pattern + `)\z`)
}

func regexError(err error) error {
	return fmt.Errorf("invalid RE2 regex: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
}

func (b *builder) levelMutations(m HeaderMutations, at string) levelMutations {
	return levelMutations{
		req:  b.mutations(m.RequestHeadersToAdd, m.RequestHeadersToRemove, at, "request_headers_to_add", "request_headers_to_remove"),
		resp: b.mutations(m.ResponseHeadersToAdd, m.ResponseHeadersToRemove, at, "response_headers_to_add", "response_headers_to_remove"),
	}
}

func (b *builder) mutations(add []HeaderValueOption, remove []string, at, addField, removeField string) mutations {
	var m mutations
	for i, n := range remove {
		rat := index(field(at, removeField), i)
		n = strings.ToLower(n)
		if n == "" {
			b.errorf(rat, "a header name is required")
			continue
		}
		if !modifiable(n) {
			b.errorf(rat, ":-prefixed or host headers may not be removed")
			continue
		}
		m.remove = append(m.remove, n)
	}
	for i := range add {
		o := &add[i]
		aat := index(field(at, addField), i)
		name := strings.ToLower(o.Key)
		if name == "" {
			b.errorf(field(field(aat, "header"), "key"), "a header name is required")
			continue
		}
		if !modifiable(name) {
			b.errorf(field(field(aat, "header"), "key"), ":-prefixed or host headers may not be modified")
			continue
		}
		if o.AppendAction > OverwriteIfExists {
			b.errorf(field(aat, "append_action"), "unknown append action %d", o.AppendAction)
			continue
		}
		ha := headerAdd{name: name, nameB: []byte(name), action: o.AppendAction, keepEmpty: o.KeepEmptyValue}
		if strings.IndexByte(o.Value, '%') < 0 {
			// A literal: skip the formatter (and Compile would read "" as its default
			// access-log format).
			ha.lit = []byte(o.Value)
		} else {
			f, err := accesslog.CompileHeaderValue(o.Value)
			if err != nil {
				b.errorf(field(field(aat, "header"), "value"), "%v", err)
				continue
			}
			ha.f = f
		}
		m.add = append(m.add, ha)
	}
	return m
}

// modifiable is Envoy's HeaderUtility::isModifiableHeader (and isRemovableHeader):
// pseudo-headers and host are not for header mutations.
func modifiable(name string) bool {
	return name[0] != ':' && name != "host"
}
