package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// FieldError is one problem in a configuration, located by the path of the field as the
// user wrote it (YAML/JSON names, list indexes in brackets), for example
// `static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster`.
type FieldError struct {
	Path string
	Msg  string
	// Feature is set when the error refuses something Envoy would do that Portico does
	// not implement yet (as opposed to a mistake in the file): the field's canonical path
	// without list indexes or map keys, with "=VALUE" when only some values are refused
	// (`static_resources.clusters.type=STRICT_DNS`, a typed_config's type name).
	Feature string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors is every problem found in a configuration. Load and Parse return it (as error)
// so that a user fixes a file in one round instead of one error per run.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// collector accumulates errors across the stages of Parse. Stages after the JSON pass work
// on protobuf messages and know only canonical paths (proto field names); the JSON pass
// records how the user actually spelled each key (protojson also accepts lowerCamelCase
// names) so that every path is reported in the user's spelling.
type collector struct {
	errs []entry
	// alias maps a canonical path to the same location as the user wrote it; only
	// fields whose spellings differ are recorded.
	alias map[string]string
	// pruned holds canonical paths already reported as a whole: values the JSON pass
	// removed and fields the subset check rejected. Later complaints about them or
	// anything below them would only repeat the first.
	pruned map[string]bool
	// errAt holds the canonical path of every error and of each location above it.
	errAt map[string]bool
	// anys caches the messages inside Any values: the subset check, validation and
	// translation each need them.
	anys map[*anypb.Any]proto.Message
}

type entry struct {
	canon string
	err   *FieldError
}

// add records an error at a location known in both spellings.
func (c *collector) add(canon, user, format string, args ...any) {
	c.errs = append(c.errs, entry{canon, &FieldError{Path: user, Msg: fmt.Sprintf(format, args...)}})
	if c.errAt == nil {
		c.errAt = map[string]bool{}
	}
	forPrefixes(canon, func(p string) bool {
		if c.errAt[p] {
			return false // and so are the ones above
		}
		c.errAt[p] = true
		return true
	})
	if canon == "" {
		c.errAt[""] = true
	}
}

// unsupported records, at canonical path p, the refusal of a feature Portico lacks;
// value, when not empty, is the refused value (an enum name, a type).
func (c *collector) unsupported(p, value, format string, args ...any) {
	if c.reported(p) {
		return
	}
	c.add(p, c.userPath(p), format, args...)
	c.errs[len(c.errs)-1].err.Feature = featureKey(p, value)
}

// featureKey is a FieldError's Feature: path without indexes or keys, then "=value".
func featureKey(p, value string) string {
	b := make([]byte, 0, len(p)+len(value)+1)
	depth := 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth == 0:
			b = append(b, c)
		}
	}
	if value != "" {
		b = append(append(b, '='), value...)
	}
	return string(b)
}

// addCanonical records an error of a later stage, given by canonical path.
func (c *collector) addCanonical(path, format string, args ...any) {
	if c.reported(path) {
		return
	}
	c.add(path, c.userPath(path), format, args...)
}

// prune notes that the location at canonical path p has been reported as a whole.
func (c *collector) prune(p string) {
	if c.pruned == nil {
		c.pruned = map[string]bool{}
	}
	c.pruned[p] = true
}

// reported reports whether path, or a location above it, already has an error.
func (c *collector) reported(path string) bool {
	if len(c.pruned) == 0 {
		return false
	}
	found := false
	forPrefixes(path, func(p string) bool {
		found = c.pruned[p]
		return !found
	})
	return found
}

// errorsUnder reports whether an error was recorded at path or below it.
func (c *collector) errorsUnder(path string) bool { return c.errAt[path] }

// forPrefixes calls f with p and then each location above it, longest first (a.b[0].c,
// a.b[0], a.b, a), until f returns false.
func forPrefixes(p string, f func(string) bool) {
	for i := len(p); i > 0; i-- {
		if i == len(p) || p[i] == '.' || p[i] == '[' {
			if !f(p[:i]) {
				return
			}
		}
	}
}

func (c *collector) userPath(p string) string {
	if len(c.alias) == 0 {
		return p
	}
	for i := len(p); i > 0; i-- {
		if i == len(p) || p[i] == '.' || p[i] == '[' {
			if u, ok := c.alias[p[:i]]; ok {
				return u + p[i:]
			}
		}
	}
	return p
}

// result returns the errors without duplicates, in the order of the fields in their
// messages' declarations (the order Envoy's documentation and most files use: a
// listener's name and address before its filter chains, listeners before clusters) and
// of list indexes. root, when not nil, is the decoded bootstrap, used to find the type
// inside typed_config values.
func (c *collector) result(root proto.Message) error {
	if len(c.errs) == 0 {
		return nil
	}
	type keyed struct {
		key []int
		e   entry
	}
	ks := make([]keyed, len(c.errs))
	for i, e := range c.errs {
		ks[i] = keyed{c.sortKey(root, e.canon), e}
	}
	sort.SliceStable(ks, func(i, j int) bool {
		a, b := ks[i].key, ks[j].key
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return ks[i].e.canon < ks[j].e.canon
	})
	var out Errors
	for i, k := range ks {
		if i > 0 && k.e.err.Path == ks[i-1].e.err.Path && k.e.err.Msg == ks[i-1].e.err.Msg {
			continue
		}
		out = append(out, k.e.err)
	}
	return out
}

// unknownRank sorts names that are not fields (typos) after the real fields.
const unknownRank = 1 << 20

// sortKey turns a canonical path into declaration indexes and list indexes, following
// the descriptors from the Bootstrap and, through Any values, the messages themselves.
func (c *collector) sortKey(root proto.Message, path string) []int {
	var key []int
	var m protoreflect.Message
	var md protoreflect.MessageDescriptor
	if root != nil {
		m = root.ProtoReflect()
		md = m.Descriptor()
	}
	var list protoreflect.List // the list the next index selects in
	var listMD protoreflect.MessageDescriptor
	enter := func(v protoreflect.Message, d protoreflect.MessageDescriptor) {
		m, md = v, d
		if d != nil && d.FullName() == "google.protobuf.Any" {
			m, md = nil, nil
			if v != nil {
				if inner, err := c.unpack(v.Interface().(*anypb.Any)); err == nil && inner != nil {
					m, md = inner.ProtoReflect(), inner.ProtoReflect().Descriptor()
				}
			}
		}
	}
	for _, tok := range pathTokens(path) {
		if n, isIndex := atoiIndex(tok); isIndex && (list != nil || listMD != nil) {
			key = append(key, n)
			var v protoreflect.Message
			if list != nil && n < list.Len() {
				v = list.Get(n).Message()
			}
			enter(v, listMD)
			list, listMD = nil, nil
			continue
		}
		list, listMD = nil, nil
		if md == nil {
			key = append(key, unknownRank)
			continue
		}
		fd := md.Fields().ByName(protoreflect.Name(tok))
		if fd == nil {
			key = append(key, unknownRank)
			m, md = nil, nil
			continue
		}
		key = append(key, fd.Index())
		has := m != nil && m.Has(fd)
		switch {
		case fd.IsList() && fd.Message() != nil:
			listMD = fd.Message()
			if has {
				list = m.Get(fd).List()
			}
			m, md = nil, nil
		case fd.Message() != nil && !fd.IsMap():
			var v protoreflect.Message
			if has {
				v = m.Get(fd).Message()
			}
			enter(v, fd.Message())
		default:
			m, md = nil, nil
		}
	}
	return key
}

// atoiIndex reads a list index token without strconv's error allocation for the names
// that are not one.
func atoiIndex(tok string) (int, bool) {
	if tok == "" || len(tok) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// pathTokens splits a path into names and bracketed indexes or keys.
func pathTokens(p string) []string {
	var toks []string
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return append(toks, p[1:])
			}
			toks = append(toks, p[1:end])
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				return append(toks, p)
			}
			toks = append(toks, p[:end])
			p = p[end:]
		}
	}
	return toks
}

// field, index and key build canonical and user paths alike.
func field(p, name string) string {
	if p == "" {
		return name
	}
	return p + "." + name
}

func index(p string, i int) string { return p + "[" + strconv.Itoa(i) + "]" }

func key(p, k string) string { return p + "[" + k + "]" }
