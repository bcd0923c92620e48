package route

import (
	"fmt"
	"strconv"
	"strings"
)

// Describe is a short human description of what the route matches and does, for
// `portico explain`, e.g. `prefix "/api" (case-insensitive), header x-env exact "prod"
// -> cluster backend`.
func (r *Route) Describe() string { return r.desc }

// describe is built once, with the table: explain is not on the request path, but the
// text must not change while the table lives.
func describe(rc *RouteConfig) string {
	var b strings.Builder
	m := &rc.Match
	switch m.PathKind {
	case PathPrefix:
		fmt.Fprintf(&b, "prefix %q", m.Path)
	case PathExact:
		fmt.Fprintf(&b, "path %q", m.Path)
	case PathSafeRegex:
		fmt.Fprintf(&b, "path regex %q", m.Path)
	case PathSeparatedPrefix:
		fmt.Fprintf(&b, "path-separated prefix %q", m.Path)
	}
	if m.CaseInsensitive && m.PathKind != PathSafeRegex {
		b.WriteString(" (case-insensitive)")
	}
	for _, h := range m.Headers {
		b.WriteString(", header ")
		b.WriteString(strings.ToLower(h.Name))
		if h.InvertMatch {
			b.WriteString(" not")
		}
		switch h.Kind {
		case HeaderPresent:
			if h.PresentMatch {
				b.WriteString(" present")
			} else {
				b.WriteString(" absent")
			}
		case HeaderString:
			b.WriteString(" " + describeString(&h.String))
		case HeaderExact:
			fmt.Fprintf(&b, " exact %q", h.Value)
		case HeaderSafeRegex:
			fmt.Fprintf(&b, " regex %q", h.Value)
		case HeaderPrefix:
			fmt.Fprintf(&b, " prefix %q", h.Value)
		case HeaderSuffix:
			fmt.Fprintf(&b, " suffix %q", h.Value)
		case HeaderContains:
			fmt.Fprintf(&b, " contains %q", h.Value)
		case HeaderRange:
			fmt.Fprintf(&b, " in [%d, %d)", h.RangeStart, h.RangeEnd)
		}
		if h.TreatMissingHeaderAsEmpty {
			b.WriteString(" (missing as empty)")
		}
	}
	for _, q := range m.QueryParameters {
		b.WriteString(", query " + q.Name)
		if q.String == nil {
			b.WriteString(" present")
		} else {
			b.WriteString(" " + describeString(q.String))
		}
	}
	b.WriteString(" -> ")
	switch {
	case rc.Route != nil:
		a := rc.Route
		switch {
		case a.Cluster != "":
			b.WriteString("cluster " + a.Cluster)
		case a.ClusterHeader != "":
			b.WriteString("cluster from header " + strings.ToLower(a.ClusterHeader))
		default:
			b.WriteString("weighted clusters")
			for i, w := range a.WeightedClusters {
				if i == 0 {
					b.WriteByte(' ')
				} else {
					b.WriteString(", ")
				}
				n := w.Name
				if n == "" {
					n = "header " + strings.ToLower(w.ClusterHeader)
				}
				b.WriteString(n + ":" + strconv.FormatUint(uint64(w.Weight), 10))
			}
		}
		if a.PrefixRewrite != "" {
			fmt.Fprintf(&b, ", prefix rewrite %q", a.PrefixRewrite)
		}
		if a.RegexRewrite != nil {
			fmt.Fprintf(&b, ", regex rewrite %q -> %q", a.RegexRewrite.Pattern, a.RegexRewrite.Substitution)
		}
	case rc.Redirect != nil:
		code := rc.Redirect.ResponseCode
		if code == 0 {
			code = 301
		}
		fmt.Fprintf(&b, "redirect %d", code)
	case rc.DirectResponse != nil:
		fmt.Fprintf(&b, "direct response %d", rc.DirectResponse.Status)
	}
	return b.String()
}

func describeString(s *StringMatcher) string {
	kind := stringKindFields[0]
	if int(s.Kind) < len(stringKindFields) {
		kind = stringKindFields[s.Kind]
	}
	if s.Kind == StringSafeRegex {
		kind = "regex"
	}
	out := fmt.Sprintf("%s %q", kind, s.Value)
	if s.IgnoreCase && s.Kind != StringSafeRegex {
		out += " (ignore case)"
	}
	return out
}
