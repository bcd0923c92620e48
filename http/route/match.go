package route

import (
	"bytes"
	"regexp"
	"strings"

	"github.com/portico-proxy/portico/http/header"
)

type stringMatcher struct {
	kind       StringKind
	value      string
	valueB     []byte // value, for bytes.Contains
	ignoreCase bool
	re         *regexp.Regexp
	any        bool // the deprecated exact_match "" matches every value
}

type headerMatcher struct {
	name         string
	kind         uint8 // hmPresent, hmString, hmRange
	present      bool
	sm           stringMatcher
	start, end   int64
	invert       bool
	missingEmpty bool
}

const (
	hmPresent uint8 = iota
	hmString
	hmRange
)

type queryMatcher struct {
	name    string
	present bool // presence only
	sm      stringMatcher
}

func (b *builder) match(r *Route, m *Match, at string) {
	r.pathKind = m.PathKind
	r.fold = m.CaseInsensitive
	if int(m.PathKind) >= len(pathKindFields) {
		b.errorf(at, "unknown path specifier %d", m.PathKind)
	} else {
		pat := field(at, pathKindFields[m.PathKind])
		switch m.PathKind {
		case PathSafeRegex:
			re, err := compileFull(m.Path)
			if err != nil {
				b.errorf(field(pat, "regex"), "%v", err)
			}
			r.re = re
		case PathSeparatedPrefix:
			// Envoy's proto rule: no '?' or '#', and no trailing '/'.
			if m.Path == "" || strings.ContainsAny(m.Path, "?#") || strings.HasSuffix(m.Path, "/") {
				b.errorf(pat, "%q must not be empty, contain '?' or '#', or end in '/'", m.Path)
			}
			r.path = m.Path
		default:
			r.path = m.Path
		}
	}
	for i := range m.Headers {
		hm, ok := b.headerMatcher(&m.Headers[i], index(field(at, "headers"), i))
		if ok {
			r.headers = append(r.headers, hm)
		}
	}
	for i := range m.QueryParameters {
		q := &m.QueryParameters[i]
		qat := index(field(at, "query_parameters"), i)
		if q.Name == "" {
			b.errorf(field(qat, "name"), "a query parameter name is required")
			continue
		}
		qm := queryMatcher{name: q.Name, present: q.String == nil}
		if q.String != nil {
			sm, ok := b.stringMatcher(q.String, field(qat, "string_match"))
			if !ok {
				continue
			}
			qm.sm = sm
		}
		r.query = append(r.query, qm)
	}
}

func (b *builder) stringMatcher(s *StringMatcher, at string) (stringMatcher, bool) {
	sm := stringMatcher{kind: s.Kind, value: s.Value, ignoreCase: s.IgnoreCase}
	if int(s.Kind) >= len(stringKindFields) {
		b.errorf(at, "unknown string match kind %d", s.Kind)
		return sm, false
	}
	if s.Kind == StringSafeRegex {
		re, err := compileFull(s.Value)
		if err != nil {
			b.errorf(field(field(at, "safe_regex"), "regex"), "%v", err)
			return sm, false
		}
		sm.re, sm.ignoreCase = re, false
	}
	sm.valueB = []byte(sm.value)
	return sm, true
}

func (b *builder) headerMatcher(h *HeaderMatcher, at string) (headerMatcher, bool) {
	name := strings.ToLower(h.Name)
	hm := headerMatcher{name: name, invert: h.InvertMatch, missingEmpty: h.TreatMissingHeaderAsEmpty}
	if name == "" {
		b.errorf(field(at, "name"), "a header name is required")
		return hm, false
	}
	if int(h.Kind) >= len(headerKindFields) {
		b.errorf(at, "unknown header match kind %d", h.Kind)
		return hm, false
	}
	kat := field(at, headerKindFields[h.Kind])
	legacy := func(k StringKind) bool {
		hm.kind = hmString
		hm.sm = stringMatcher{kind: k, value: h.Value, valueB: []byte(h.Value)}
		if k == StringSafeRegex {
			re, err := compileFull(h.Value)
			if err != nil {
				b.errorf(field(kat, "regex"), "%v", err)
				return false
			}
			hm.sm.re = re
		}
		return true
	}
	ok := true
	switch h.Kind {
	case HeaderPresent:
		hm.kind, hm.present = hmPresent, h.PresentMatch
	case HeaderString:
		hm.kind = hmString
		hm.sm, ok = b.stringMatcher(&h.String, kat)
	case HeaderExact:
		ok = legacy(StringExact)
		hm.sm.any = h.Value == ""
	case HeaderSafeRegex:
		ok = legacy(StringSafeRegex)
	case HeaderPrefix:
		ok = legacy(StringPrefix)
	case HeaderSuffix:
		ok = legacy(StringSuffix)
	case HeaderContains:
		ok = legacy(StringContains)
	case HeaderRange:
		hm.kind, hm.start, hm.end = hmRange, h.RangeStart, h.RangeEnd
		if h.RangeStart >= h.RangeEnd {
			b.errorf(kat, "the range [%d, %d) is empty", h.RangeStart, h.RangeEnd)
			ok = false
		}
	}
	return hm, ok
}

// matches reports whether the route matches; path is :path and p the part path matchers
// see. jb is scratch for joining repeated headers (returned, perhaps grown).
func (r *Route) matches(h *header.Map, path, p, jb []byte) (bool, []byte) {
	switch r.pathKind {
	case PathPrefix:
		if !hasPrefix(p, r.path, r.fold) {
			return false, jb
		}
	case PathExact:
		if len(p) != len(r.path) || !hasPrefix(p, r.path, r.fold) {
			return false, jb
		}
	case PathSafeRegex:
		if r.re == nil || !r.re.Match(p) {
			return false, jb
		}
	case PathSeparatedPrefix:
		if !hasPrefix(p, r.path, r.fold) || len(p) > len(r.path) && p[len(r.path)] != '/' {
			return false, jb
		}
	}
	for i := range r.headers {
		var ok bool
		if ok, jb = r.headers[i].matches(h, jb); !ok {
			return false, jb
		}
	}
	for i := range r.query {
		if !r.query[i].matches(path) {
			return false, jb
		}
	}
	return true, jb
}

// matches is Envoy's HeaderUtility::matchHeaders for one matcher.
func (m *headerMatcher) matches(h *header.Map, jb []byte) (bool, []byte) {
	first, found, joined, jb := headerValue(h, m.name, jb)
	if !found && !m.missingEmpty {
		if m.invert {
			return m.kind == hmPresent && m.present, jb
		}
		return m.kind == hmPresent && !m.present, jb
	}
	v := first
	if joined {
		v = jb
	}
	var match bool
	switch m.kind {
	case hmPresent:
		match = m.present
	case hmString:
		if m.sm.re != nil {
			// regexp keeps its input in a pooled machine, so what it is given escapes:
			// never the stack buffer (a joined value is copied, which is rare).
			rv := first
			if joined {
				rv = bytes.Clone(jb)
			}
			match = m.sm.re.Match(rv)
		} else {
			match = m.sm.matchPlain(v)
		}
	case hmRange:
		n, ok := parseInt(v)
		match = ok && n >= m.start && n < m.end
	}
	return match != m.invert, jb
}

// headerValue finds the value of a header: the first field's (aliasing h), or, with
// several fields of that name, their values joined by "," into jb, as Envoy's
// getAllOfHeaderAsString does.
func headerValue(h *header.Map, name string, jb []byte) (first []byte, found, joined bool, _ []byte) {
	if name[0] == ':' {
		// Pseudo-headers are never repeated; their positions are known.
		if k, ok := header.KnownByName([]byte(name)); ok {
			v, ok := h.GetKnown(k)
			return v, ok, false, jb
		}
	}
	n := h.Fields()
	for i := 0; i < n; i++ {
		fn, v, ok := h.At(i)
		if !ok || len(fn) != len(name) || string(fn) != name {
			continue
		}
		if !found {
			first, found = v, true
			continue
		}
		if !joined {
			jb = append(jb[:0], first...)
			joined = true
		}
		jb = append(jb, ',')
		jb = append(jb, v...)
	}
	return first, found, joined, jb
}

func (m *queryMatcher) matches(path []byte) bool {
	v, ok := queryValue(path, m.name)
	if !ok {
		return false
	}
	return m.present || m.sm.matches(v)
}

// queryValue returns the first value of the query parameter name, undecoded, as Envoy's
// parseQueryString (a parameter without '=' has the value "").
func queryValue(path []byte, name string) ([]byte, bool) {
	i := bytes.IndexAny(path, "?#")
	if i < 0 || path[i] == '#' {
		return nil, false
	}
	q := path[i+1:]
	if j := bytes.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	for len(q) > 0 {
		param := q
		if j := bytes.IndexByte(q, '&'); j >= 0 {
			param, q = q[:j], q[j+1:]
		} else {
			q = nil
		}
		k, v := param, param[len(param):]
		if e := bytes.IndexByte(param, '='); e >= 0 {
			k, v = param[:e], param[e+1:]
		}
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}

func (m *stringMatcher) matches(v []byte) bool {
	if m.re != nil {
		return m.re.Match(v)
	}
	return m.matchPlain(v)
}

// matchPlain is matches for the kinds other than safe_regex (it keeps nothing of v).
func (m *stringMatcher) matchPlain(v []byte) bool {
	if m.any {
		return true
	}
	switch m.kind {
	case StringExact:
		if m.ignoreCase {
			return len(v) == len(m.value) && hasPrefix(v, m.value, true)
		}
		return string(v) == m.value
	case StringPrefix:
		return hasPrefix(v, m.value, m.ignoreCase)
	case StringSuffix:
		if len(v) < len(m.value) {
			return false
		}
		return hasPrefix(v[len(v)-len(m.value):], m.value, m.ignoreCase)
	case StringContains:
		if !m.ignoreCase {
			return bytes.Contains(v, m.valueB)
		}
		for i := 0; i+len(m.value) <= len(v); i++ {
			if hasPrefix(v[i:], m.value, true) {
				return true
			}
		}
		return false
	}
	return false
}

// hasPrefix reports whether s starts with prefix; with fold, ASCII letters compare
// case-insensitively (prefix already lower-cased or not, both work).
func hasPrefix(s []byte, prefix string, fold bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if !fold {
		return string(s[:len(prefix)]) == prefix
	}
	for i := 0; i < len(prefix); i++ {
		a, b := s[i], prefix[i]
		if a == b {
			continue
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// parseInt reads a decimal int64 as absl::SimpleAtoi does (surrounding ASCII spaces and
// a sign allowed), without the allocation strconv's error would cost.
func parseInt(v []byte) (int64, bool) {
	v = bytes.TrimSpace(v)
	neg := false
	if len(v) > 0 && (v[0] == '-' || v[0] == '+') {
		neg = v[0] == '-'
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 19 { // 19 digits cannot overflow a uint64
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true // -(1<<63) wraps to itself, the minimum
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}
