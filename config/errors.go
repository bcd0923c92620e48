package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem in a configuration, located by the path of the field as the
// user wrote it (YAML/JSON names, list indexes in brackets), for example
// `static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster`.
type FieldError struct {
	Path string
	Msg  string
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
	errs Errors
	// alias maps a canonical path to the same location as the user wrote it; only
	// locations whose spellings differ are recorded.
	alias map[string]string
	// pruned holds canonical paths already reported as a whole: values the JSON pass
	// removed and fields the subset check rejected. Later complaints about them or
	// anything below them would only repeat the first.
	pruned []string
	// at holds the canonical path of every error so far.
	at []string
}

func (c *collector) add(path, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// addCanonical records an error of a later stage, given by canonical path.
func (c *collector) addCanonical(path, format string, args ...any) {
	if c.reported(path) {
		return
	}
	c.at = append(c.at, path)
	c.add(c.userPath(path), format, args...)
}

// errorsUnder reports whether an error was recorded at path or below it.
func (c *collector) errorsUnder(path string) bool {
	for _, p := range c.at {
		if under(p, path) {
			return true
		}
	}
	return false
}

// reported reports whether path, or a location above it, already has an error.
func (c *collector) reported(path string) bool {
	for _, p := range c.pruned {
		if under(path, p) {
			return true
		}
	}
	return false
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

// under reports whether path p is q or lies below it.
func under(p, q string) bool {
	if !strings.HasPrefix(p, q) {
		return false
	}
	return len(p) == len(q) || p[len(q)] == '.' || p[len(q)] == '['
}

// result returns the errors in a stable order (document order as far as paths tell it:
// numeric indexes compare as numbers), without duplicates.
func (c *collector) result() error {
	if len(c.errs) == 0 {
		return nil
	}
	es := append(Errors(nil), c.errs...)
	sort.SliceStable(es, func(i, j int) bool { return pathLess(es[i].Path, es[j].Path) })
	out := es[:0]
	for i, e := range es {
		if i > 0 && e.Path == es[i-1].Path && e.Msg == es[i-1].Msg {
			continue
		}
		out = append(out, e)
	}
	return out
}

// pathLess orders paths so that parents come before children and list elements by index.
func pathLess(a, b string) bool {
	for a != "" && b != "" {
		ta, ra := pathToken(a)
		tb, rb := pathToken(b)
		if ta != tb {
			na, ea := strconv.Atoi(ta)
			nb, eb := strconv.Atoi(tb)
			if ea == nil && eb == nil {
				return na < nb
			}
			return ta < tb
		}
		a, b = ra, rb
	}
	return a == "" && b != ""
}

// pathToken splits off the first name or index of a path.
func pathToken(p string) (tok, rest string) {
	i := strings.IndexAny(p[1:], ".[]")
	if i < 0 {
		return p, ""
	}
	i++
	tok, rest = p[:i], p[i:]
	tok = strings.Trim(tok, ".[]")
	return tok, rest
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
