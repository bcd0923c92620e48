package route

import (
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/http/header"
)

// mutations are one level's header changes in one direction (Envoy's HeaderParser).
type mutations struct {
	remove []string
	add    []headerAdd
}

type levelMutations struct{ req, resp mutations }

type headerAdd struct {
	name      string
	nameB     []byte
	lit       []byte            // the value, when it has no operator
	f         *accesslog.Format // else its compiled format
	action    AppendAction
	keepEmpty bool
}

func (m *mutations) empty() bool { return len(m.remove) == 0 && len(m.add) == 0 }

// pending is a rendered value waiting to be applied: bytes [off, end) of scratch.
type pending struct {
	add       *headerAdd
	off, end  int
	overwrite bool
}

// apply is Envoy's HeaderParser::evaluateHeaders: removals first, then every value is
// rendered against the headers as they are (so that no addition of this level sees
// another's), then overwrites, then additions. Values are rendered into scratch after its
// length; scratch is returned with that length, perhaps grown.
func (m *mutations) apply(h *header.Map, e *accesslog.Entry, scratch []byte) []byte {
	for _, n := range m.remove {
		h.Del(n)
	}
	if len(m.add) == 0 {
		return scratch
	}
	base := len(scratch)
	var pbuf [16]pending
	ps := pbuf[:0]
	for i := range m.add {
		a := &m.add[i]
		off := len(scratch)
		if a.f != nil {
			if e == nil {
				e = &accesslog.Entry{}
			}
			scratch = a.f.Append(scratch, e)
		} else {
			scratch = append(scratch, a.lit...)
		}
		if len(scratch) == off && !a.keepEmpty {
			continue
		}
		switch a.action {
		case AppendIfExistsOrAdd:
			ps = append(ps, pending{a, off, len(scratch), false})
		case AddIfAbsent:
			if !h.Has(a.name) {
				ps = append(ps, pending{a, off, len(scratch), false})
			}
		case OverwriteIfExists:
			if h.Has(a.name) {
				ps = append(ps, pending{a, off, len(scratch), true})
			}
		case OverwriteIfExistsOrAdd:
			ps = append(ps, pending{a, off, len(scratch), true})
		}
	}
	for _, p := range ps {
		if p.overwrite {
			h.Set(p.add.name, scratch[p.off:p.end])
		}
	}
	for _, p := range ps {
		if !p.overwrite {
			h.AddLower(p.add.nameB, scratch[p.off:p.end])
		}
	}
	return scratch[:base]
}

func (r *Route) weightedAt(wc int) *weightedCluster {
	if wc >= 0 && wc < len(r.weighted) {
		return &r.weighted[wc]
	}
	return nil
}

// levels returns the route, virtual host and route configuration mutations in the order
// Envoy evaluates them: most specific first (so the least specific overwrite wins)
// unless most_specific_header_mutations_wins.
func (r *Route) levels() [3]*levelMutations {
	t := r.vh.table
	if t.mostSpecificWins {
		return [3]*levelMutations{&t.mut, &r.vh.mut, &r.mut}
	}
	return [3]*levelMutations{&r.mut, &r.vh.mut, &t.mut}
}

// ApplyRequestHeaders is Envoy's finalizeRequestHeaders for a forwarded request, in one
// call: the chosen weighted cluster's header mutations and its host_rewrite_literal (wc
// is PickCluster's index, -1 for none), then the route's, the virtual host's and the
// route configuration's mutations in Envoy's order, then the route's host rewrite
// (host_rewrite_literal, or host_rewrite_header's first non-empty value), then the path
// rewrite (prefix_rewrite or regex_rewrite), keeping the original :path in
// x-envoy-original-path when originalPath is set (Envoy does unless the router's
// suppress_envoy_headers). auto_host_rewrite is the router's (AutoHostRewrite).
//
// Values with operators are rendered from e (its RequestHeaders should be h). scratch
// is working space; it is returned, perhaps grown, for the next call. Nothing is
// allocated once scratch and h have grown to fit, except by a regex_rewrite.
func (r *Route) ApplyRequestHeaders(h *header.Map, wc int, e *accesslog.Entry, scratch []byte, originalPath bool) []byte {
	scratch = scratch[:0]
	if w := r.weightedAt(wc); w != nil {
		scratch = w.mut.req.apply(h, e, scratch)
		if w.hostLiteral != nil {
			h.Set(":authority", w.hostLiteral)
		}
	}
	for _, l := range r.levels() {
		scratch = l.req.apply(h, e, scratch)
	}
	switch {
	case r.hostLiteral != nil:
		h.Set(":authority", r.hostLiteral)
	case r.hostHeader != "":
		// An untrusted header: only its first value counts, as in Envoy.
		if v, ok := h.Get(r.hostHeader); ok && len(v) > 0 {
			h.Set(":authority", v)
		}
	}
	if r.kind == ActionRoute && r.rewrite.active() {
		var ok bool
		if scratch, ok = r.AppendRewrittenPath(scratch, h); ok {
			if originalPath {
				old, _ := h.GetKnown(header.Path)
				h.Set("x-envoy-original-path", old)
			}
			h.Set(":path", scratch)
		}
		scratch = scratch[:0]
	}
	return scratch
}

// ApplyResponseHeaders is Envoy's finalizeResponseHeaders: the weighted cluster's
// response mutations (wc as for ApplyRequestHeaders), then the route's, the virtual
// host's and the route configuration's in Envoy's order. Call it on every response the
// route produces: forwarded, redirect and direct response (wc -1). e's ResponseHeaders
// should be h for %RESP(...)%.
func (r *Route) ApplyResponseHeaders(h *header.Map, wc int, e *accesslog.Entry, scratch []byte) []byte {
	scratch = scratch[:0]
	if w := r.weightedAt(wc); w != nil {
		scratch = w.mut.resp.apply(h, e, scratch)
	}
	for _, l := range r.levels() {
		scratch = l.resp.apply(h, e, scratch)
	}
	return scratch
}

// HasRequestMutations reports whether ApplyRequestHeaders would change anything for
// weighted cluster wc, so that a router can skip building an Entry when not.
func (r *Route) HasRequestMutations(wc int) bool {
	if w := r.weightedAt(wc); w != nil && (!w.mut.req.empty() || w.hostLiteral != nil) {
		return true
	}
	for _, l := range r.levels() {
		if !l.req.empty() {
			return true
		}
	}
	return r.hostLiteral != nil || r.hostHeader != "" || r.kind == ActionRoute && r.rewrite.active()
}

// HasResponseMutations is HasRequestMutations for responses.
func (r *Route) HasResponseMutations(wc int) bool {
	if w := r.weightedAt(wc); w != nil && !w.mut.resp.empty() {
		return true
	}
	for _, l := range r.levels() {
		if !l.resp.empty() {
			return true
		}
	}
	return false
}
