package route

import (
	"bytes"
	"time"

	"github.com/portico-proxy/portico/http/header"
)

// Name is the route's name ("" if it has none).
func (r *Route) Name() string { return r.name }

// Index is the route's position in its virtual host.
func (r *Route) Index() int { return r.index }

// VirtualHost is the virtual host the route belongs to.
func (r *Route) VirtualHost() *VirtualHost { return r.vh }

// Kind is what the route does.
func (r *Route) Kind() ActionKind { return r.kind }

// Cluster is the static cluster name (route.cluster), or "".
func (r *Route) Cluster() string { return r.cluster }

// ClusterHeader is the request header naming the cluster (route.cluster_header), or "".
func (r *Route) ClusterHeader() string { return r.clusterHeader }

// WeightedClusters lists the weighted clusters' static names ("" for one given by a
// header) and weights.
func (r *Route) WeightedClusters() (names []string, weights []uint64) {
	for _, w := range r.weighted {
		names = append(names, w.name)
		weights = append(weights, w.weight)
	}
	return names, weights
}

// Clusters lists every static cluster name the route may pick, for `portico explain`.
func (r *Route) Clusters() []string {
	if r.cluster != "" {
		return []string{r.cluster}
	}
	var out []string
	for _, w := range r.weighted {
		if w.name != "" {
			out = append(out, w.name)
		}
	}
	return out
}

// PickCluster chooses the cluster for a request: the static one, the first value of
// cluster_header, or a weighted cluster by rnd (a per-request random value from the
// caller; weighted_clusters.header_name's value replaces it when the header is there
// once and is a decimal number), as Envoy's pickWeightedCluster: rnd modulo the total
// weight falls into one cluster's interval. wc is the weighted cluster's index (for
// ApplyRequestHeaders and ApplyResponseHeaders), -1 if the route has none.
//
// The name aliases the route's storage or h's; it must not be modified. It is empty when
// the cluster_header is missing (Envoy then answers ClusterNotFoundResponseCode).
func (r *Route) PickCluster(h *header.Map, rnd uint64) (name []byte, wc int) {
	if r.kind != ActionRoute {
		return nil, -1
	}
	if len(r.weighted) == 0 {
		if r.clusterHeader != "" {
			v, _ := h.Get(r.clusterHeader)
			return v, -1
		}
		return r.clusterB, -1
	}
	if r.randomHeader != "" && h.Count(r.randomHeader) == 1 {
		if v, ok := h.Get(r.randomHeader); ok {
			if n, ok := parseUint(v); ok {
				rnd = n
			}
		}
	}
	sel := rnd % r.totalWeight
	var begin uint64
	for i := range r.weighted {
		w := &r.weighted[i]
		end := begin + w.weight
		if sel >= begin && sel < end {
			if w.clusterHeader != "" {
				if v, ok := h.Get(w.clusterHeader); ok {
					return v, i
				}
			}
			return w.nameB, i
		}
		begin = end
	}
	return nil, -1 // not reached: the weights add up to totalWeight
}

func parseUint(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// ClusterNotFoundResponseCode is the status to answer when the picked cluster does not
// exist (503 unless configured).
func (r *Route) ClusterNotFoundResponseCode() int { return r.notFoundCode }

// AutoHostRewrite reports whether the router sets the authority to the upstream host it
// picks.
func (r *Route) AutoHostRewrite() bool { return r.autoHost }

// Timeout is the route's request timeout; 0 means none.
func (r *Route) Timeout() time.Duration { return r.timeout }

// IdleTimeout is the route's stream idle timeout and whether it overrides the
// connection manager's (0 then disables it).
func (r *Route) IdleTimeout() (time.Duration, bool) { return r.idleTimeout, r.hasIdle }

// RetryPolicy is the route's retry policy, or its virtual host's, or nil (no retries
// unless the request asks with x-envoy-retry-on). It must not be modified.
func (r *Route) RetryPolicy() *RetryPolicy { return r.retry }

// DirectResponse is a direct_response route's status and body (the body must not be
// modified).
func (r *Route) DirectResponse() (status int, body []byte) { return r.status, r.body }

// RedirectResponseCode is a redirect route's status.
func (r *Route) RedirectResponseCode() int {
	if r.redirect == nil {
		return 0
	}
	return r.redirect.code
}

// AddsLocation reports whether the route's local reply carries a Location header: a
// redirect, or a direct response with status 201 or 3xx (Envoy's router adds the
// request's own URL then).
func (r *Route) AddsLocation() bool {
	switch r.kind {
	case ActionRedirect:
		return true
	case ActionDirectResponse:
		return r.status == 201 || r.status >= 300 && r.status < 400
	}
	return false
}

// matchedLen is how much of :path prefix_rewrite replaces: the configured prefix or
// path, or for a regex the whole path without query.
func (r *Route) matchedLen(path []byte) int {
	n := len(r.path)
	if r.pathKind == PathSafeRegex {
		n = len(pathOnly(path))
	}
	return min(n, len(path))
}

// AppendRewrittenPath appends the :path the route's prefix_rewrite or regex_rewrite (of
// its RouteAction or its RedirectAction) makes of the request's, and reports whether the
// route rewrites at all (dst is returned unchanged if not). As in Envoy, prefix_rewrite
// replaces the matched prefix (or path) and keeps the rest, query included; regex_rewrite
// applies to the path without the query, which is kept. A regex_rewrite allocates (Go's
// regexp reports matches in new slices).
func (r *Route) AppendRewrittenPath(dst []byte, h *header.Map) ([]byte, bool) {
	if !r.rewrite.active() {
		return dst, false
	}
	path, _ := h.GetKnown(header.Path)
	return r.appendRewrite(dst, path), true
}

func (r *Route) appendRewrite(dst, path []byte) []byte {
	rw := &r.rewrite
	if rw.prefix != "" {
		dst = append(dst, rw.prefix...)
		return append(dst, path[r.matchedLen(path):]...)
	}
	p := pathOnly(path)
	last := 0
	for _, m := range rw.re.FindAllSubmatchIndex(p, -1) {
		dst = append(dst, p[last:m[0]]...)
		for _, part := range rw.subst {
			if part.group < 0 {
				dst = append(dst, part.lit...)
			} else if g := 2 * part.group; m[g] >= 0 {
				dst = append(dst, p[m[g]:m[g+1]]...)
			}
		}
		last = m[1]
	}
	dst = append(dst, p[last:]...)
	return append(dst, path[len(p):]...)
}

// AppendRedirectLocation appends the Location of a redirect route's answer (or of a
// direct response for which AddsLocation, which is the request's own URL), as Envoy's
// newUri: scheme_redirect / https_redirect, else the request's :scheme (else scheme);
// host_redirect, else the authority, whose port is dropped when port_redirect is set or
// when the scheme changes and the port is the old scheme's default; port_redirect;
// path_redirect (keeping the request's query unless it has its own), else the path after
// the redirect's prefix_rewrite / regex_rewrite; strip_query. scheme is the scheme the
// request arrived with (Envoy's x-forwarded-proto, which the connection manager sets).
func (r *Route) AppendRedirectLocation(dst []byte, h *header.Map, scheme string) []byte {
	var rd redirect
	if r.redirect != nil {
		rd = *r.redirect
	}
	start := len(dst)
	if rd.scheme != "" {
		dst = append(dst, rd.scheme...)
	} else if s, ok := h.GetKnown(header.Scheme); ok && len(s) > 0 {
		dst = append(dst, s...)
	} else {
		dst = append(dst, scheme...)
	}
	newScheme := dst[start:] // stays valid if dst grows: the old array keeps its bytes
	dst = append(dst, "://"...)
	if rd.host != "" {
		dst = append(dst, rd.host...)
	} else {
		host, _ := h.GetKnown(header.Authority)
		dst = append(dst, requestHost(host, newScheme, rd.port, scheme)...)
	}
	dst = append(dst, rd.port...)

	path, _ := h.GetKnown(header.Path)
	start = len(dst)
	switch {
	case rd.path != "":
		dst = append(dst, rd.path...)
		if !rd.pathHasQuery {
			if i := bytes.IndexByte(path, '?'); i >= 0 {
				dst = append(dst, path[i:]...)
			}
		}
	case r.rewrite.active():
		dst = r.appendRewrite(dst, path)
	default:
		dst = append(dst, path...)
	}
	if len(dst) == start || dst[start] != '/' {
		dst = append(dst, 0)
		copy(dst[start+1:], dst[start:])
		dst[start] = '/'
	}
	if !rd.pathHasQuery && rd.stripQuery {
		if i := bytes.IndexByte(dst[start:], '?'); i >= 0 {
			dst = dst[:start+i]
		}
	}
	return dst
}

// requestHost is Envoy's processRequestHost: the authority, without its port when a new
// port is set, or when the scheme changes and the port is the old scheme's default.
func requestHost(host, newScheme []byte, newPort, reqScheme string) []byte {
	if len(host) == 0 {
		return host
	}
	end := -1
	if host[0] == '[' {
		if i := bytes.LastIndex(host, []byte("]:")); i >= 0 {
			end = i + 1
		}
	} else {
		end = bytes.LastIndexByte(host, ':')
	}
	if end < 0 {
		return host
	}
	port := host[end:]
	remove := newPort != ""
	if string(newScheme) != reqScheme {
		remove = remove || reqScheme == "https" && string(port) == ":443" || reqScheme == "http" && string(port) == ":80"
	}
	if remove {
		return host[:end]
	}
	return host
}
