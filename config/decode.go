package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v2"
	yaml3 "go.yaml.in/yaml/v3"
)

// Stage 1 reads the file (YAML, of which JSON is a subset) into the generic tree the JSON
// pass walks: object, []any, string, json.Number, bool, nil, and nonFinite for
// YAML's .inf and .nan, which JSON cannot carry. It is what sigs.k8s.io/yaml's
// YAMLToJSONStrict followed by a JSON decode with UseNumber gave, without the JSON text in
// between, and with the two things that conversion could not locate left in the tree for
// the JSON pass to report at their fields: non-finite numbers and text that is not UTF-8.

// nonFinite is a YAML float JSON has no number for: ".inf", "-.inf" or ".nan".
type nonFinite string

// Invalid UTF-8 stops the YAML parser with no location. Before parsing, each run of
// invalid bytes is replaced by a marker holding its offset in the file (private-use
// characters around the offset, which YAML reads as ordinary text), so that the JSON pass
// finds the string or key it ended up in and reports it at that field with the line and
// column of the bytes.
const (
	markOpen  = "\uE000"
	markClose = "\uE001"
)

// badBytes is the run of invalid UTF-8 at an offset of the file.
type badBytes struct {
	line, col int // 1-based; the column counts characters
	bytes     string
	reported  bool
}

// utf8Marks are the invalid runs of a file, by offset; nil for a file that is UTF-8.
type utf8Marks map[int]*badBytes

// markInvalidUTF8 returns data with every run of invalid UTF-8 replaced by a marker, and the
// runs. A file starting with a UTF-16 byte-order mark is left to the YAML parser, which
// reads UTF-16.
func markInvalidUTF8(data []byte) ([]byte, utf8Marks) {
	if utf8.Valid(data) || bytes.HasPrefix(data, []byte("\xff\xfe")) || bytes.HasPrefix(data, []byte("\xfe\xff")) {
		return data, nil
	}
	marks := utf8Marks{}
	out := make([]byte, 0, len(data)+64)
	line, lineStart := 1, 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r != utf8.RuneError || size != 1 {
			if r == '\n' {
				line, lineStart = line+1, i+1
			}
			out = append(out, data[i:i+size]...)
			i += size
			continue
		}
		start := i
		for i < len(data) {
			if r, size := utf8.DecodeRune(data[i:]); r != utf8.RuneError || size != 1 {
				break
			}
			i++
		}
		marks[start] = &badBytes{line: line, col: utf8.RuneCount(data[lineStart:start]) + 1, bytes: string(data[start:i])}
		out = append(out, markOpen...)
		out = strconv.AppendInt(out, int64(start), 10)
		out = append(out, markClose...)
	}
	return out, marks
}

// restore gives s with the markers in it replaced by the bytes they stand for, and the
// first run it held; ok is false when s holds no marker.
func (m utf8Marks) restore(s string) (orig string, first *badBytes, ok bool) {
	if m == nil || !strings.Contains(s, markOpen) {
		return s, nil, false
	}
	var b strings.Builder
	for {
		i := strings.Index(s, markOpen)
		if i < 0 {
			break
		}
		rest := s[i+len(markOpen):]
		j := strings.Index(rest, markClose)
		off, err := strconv.Atoi(rest[:max(j, 0)])
		run := m[off]
		if j < 0 || err != nil || run == nil {
			// Not one of ours: the file holds this private-use character itself.
			b.WriteString(s[:i+len(markOpen)])
			s = rest
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(run.bytes)
		run.reported = true
		if first == nil {
			first = run
		}
		s = rest[j+len(markClose):]
	}
	b.WriteString(s)
	return b.String(), first, first != nil
}

// invalidText reports whether s (a string value or key of the file) is not UTF-8: it held
// invalid bytes in the file (it carries a marker) or got them from a !!binary value. what
// is the text quoted with Go escapes, where says where the bytes were, if known.
func (m utf8Marks) invalidText(s string) (what, where string, bad bool) {
	if orig, run, ok := m.restore(s); ok {
		return fmt.Sprintf("%q", orig), fmt.Sprintf(" (line %d, column %d); the file must be UTF-8", run.line, run.col), true
	}
	if !utf8.ValidString(s) {
		return fmt.Sprintf("%q", s), "", true
	}
	return "", "", false
}

// unreported lists the invalid runs the JSON pass did not meet (in comments, or in values
// removed for another reason), in the order of the file.
func (m utf8Marks) unreported() []*badBytes {
	offs := make([]int, 0, len(m))
	for off, run := range m {
		if !run.reported {
			offs = append(offs, off)
		}
	}
	sort.Ints(offs)
	runs := make([]*badBytes, len(offs))
	for i, off := range offs {
		runs[i] = m[off]
	}
	return runs
}

// msg is the error for a run found in no string or key; it is located by line.
func (run *badBytes) msg() string {
	return fmt.Sprintf("column %d: invalid UTF-8 % x (the file must be UTF-8)", run.col, run.bytes)
}

func lineRef(n int) string { return "line " + strconv.Itoa(n) }

// lineLoc is the location of an error known only by its line. Its canonical form sorts
// such errors after those at fields, in the order of their lines.
func lineLoc(n int) loc { return rootLoc(fmt.Sprintf("line %09d", n), lineRef(n)) }

// object is a mapping of the file, its members in the order written: yaml.MapSlice,
// whose keys decodeYAML has made strings. A member the JSON pass removes gets the key
// removed{}; every reader skips it.
type object = yaml.MapSlice

type removed struct{}

// get returns the value of the member called name.
func get(o object, name string) (any, bool) {
	for _, m := range o {
		if k, ok := m.Key.(string); ok && k == name {
			return m.Value, true
		}
	}
	return nil, false
}

// members counts the members not removed.
func members(o object) int {
	n := 0
	for _, m := range o {
		if _, ok := m.Key.(string); ok {
			n++
		}
	}
	return n
}

// decodeYAML parses data into the generic tree. A YAML error is returned as Errors located
// by line; so are invalid UTF-8 runs when the file does not parse either.
//
// The YAML decoder builds its mappings as yaml.MapSlice, which takes a third of the memory
// of Go maps and keeps the file's order. Two cases go through Go maps instead: merge keys
// (<<), which yaml.v2 applies only to maps, and a document that is not a non-empty mapping,
// so that the caller can say what it is.
func decodeYAML(data []byte) (any, utf8Marks, error) {
	src, marks := markInvalidUTF8(data)
	var root any
	var err error
	var ms yaml.MapSlice
	var te *yaml.TypeError
	useMaps := bytes.Contains(src, []byte("<<"))
	if !useMaps {
		err = yaml.Unmarshal(src, &ms)
		useMaps = err == nil && len(ms) == 0 || errors.As(err, &te)
		root = ms
	}
	if useMaps {
		var y any
		// Strict: a duplicate key is an error, not "last one wins". (With MapSlice, the
		// converter finds duplicates itself.)
		err = yaml.UnmarshalStrict(src, &y)
		root = y
	}
	if err != nil {
		es := yamlErrors(err)
		for _, run := range marks.unreported() {
			es = append(es, &FieldError{Path: lineRef(run.line), Msg: run.msg()})
		}
		return nil, nil, es
	}
	d := yamlConverter{}
	v := d.value(root)
	if len(d.errs) > 0 {
		if len(d.dups) > 0 && !useMaps {
			d.dupLines(src)
		}
		return nil, nil, d.errs
	}
	if bytes.Contains(src, []byte("!ignore")) {
		for _, p := range ignoredKeys(src) {
			dropKey(v, p)
		}
	}
	return v, marks, nil
}

// ignoredKeys lists the mapping keys tagged !ignore, each as its path from the root (a
// string for a key, an int for a list index). Envoy's YAML reader (parseYamlNode) drops
// such a key and its value: files use it to hold anchors for later aliases
// (`!ignore dynamic_sockets: [&addr {...}]`). yaml.v2, which builds the tree, does not
// show tags, so yaml.v3's node tree finds them.
func ignoredKeys(src []byte) [][]any {
	var doc yaml3.Node
	if err := yaml3.Unmarshal(src, &doc); err != nil {
		return nil
	}
	var out [][]any
	var walk func(n *yaml3.Node, path []any, depth int)
	walk = func(n *yaml3.Node, path []any, depth int) {
		if n == nil || depth > 1000 {
			return
		}
		switch n.Kind {
		case yaml3.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, depth+1)
			}
		case yaml3.AliasNode:
			walk(n.Alias, path, depth+1)
		case yaml3.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(path[:len(path):len(path)], i), depth+1)
			}
		case yaml3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				p := append(path[:len(path):len(path)], k.Value)
				if k.Tag == "!ignore" {
					out = append(out, p)
					continue
				}
				walk(val, p, depth+1)
			}
		}
	}
	walk(&doc, nil, 0)
	return out
}

// dropKey removes the member at path from the tree, if it is there.
func dropKey(v any, path []any) {
	for i, step := range path {
		switch x := v.(type) {
		case object:
			name, _ := step.(string)
			found := false
			for j := range x {
				if k, ok := x[j].Key.(string); ok && k == name {
					if i == len(path)-1 {
						x[j].Key = removed{}
						return
					}
					v, found = x[j].Value, true
					break
				}
			}
			if !found {
				return
			}
		case []any:
			n, ok := step.(int)
			if !ok || n >= len(x) {
				return
			}
			v = x[n]
		default:
			return
		}
	}
}

var dupLineRE = regexp.MustCompile(`^line (\d+): key .* already set in map$`)

// dupLines adds to the duplicate-key errors the lines the strict YAML decoder gives for
// them, when it finds the same ones (it tells 1 from "1"; JSON does not).
func (d *yamlConverter) dupLines(src []byte) {
	var y any
	var te *yaml.TypeError
	if err := yaml.UnmarshalStrict(src, &y); !errors.As(err, &te) {
		return
	}
	var lines []string
	for _, e := range te.Errors {
		if m := dupLineRE.FindStringSubmatch(e); m != nil {
			lines = append(lines, m[1])
		}
	}
	if len(lines) != len(d.dups) {
		return
	}
	for i, e := range d.dups {
		e.Msg += " (line " + lines[i] + ")"
	}
}

// yamlConverter turns what the YAML decoder gives into the generic tree, in place where it
// can. It keeps the path of the value it is in as a stack of segments, joined only for an
// error.
type yamlConverter struct {
	path []segment
	errs Errors
	dups []*FieldError // the duplicate-key errors among errs, in the order of the file
}

// segment is one step of the converter's path: a key, or a list index when key is
// unset.
type segment struct {
	key   string
	isKey bool
	index int
}

func (d *yamlConverter) push(key string) { d.path = append(d.path, segment{key: key, isKey: true}) }
func (d *yamlConverter) pushIndex(i int) { d.path = append(d.path, segment{index: i}) }
func (d *yamlConverter) pop()            { d.path = d.path[:len(d.path)-1] }

func (d *yamlConverter) errorf(format string, args ...any) {
	p := ""
	for _, s := range d.path {
		if s.isKey {
			p = field(p, s.key)
		} else {
			p = index(p, s.index)
		}
	}
	if p == "" {
		p = "(top level)"
	}
	d.errs = append(d.errs, &FieldError{Path: p, Msg: "YAML: " + fmt.Sprintf(format, args...)})
}

func (d *yamlConverter) value(y any) any {
	switch x := y.(type) {
	case yaml.MapSlice:
		var seen map[string]bool // for large mappings
		if len(x) > 16 {
			seen = make(map[string]bool, len(x))
		}
		for i := range x {
			ks, ok := yamlKey(x[i].Key)
			if !ok {
				d.errorf("unsupported map key %v (%T)", x[i].Key, x[i].Key)
				continue
			}
			if _, isString := x[i].Key.(string); !isString {
				x[i].Key = ks
			}
			d.push(ks)
			x[i].Value = d.value(x[i].Value)
			// After the value, as the strict YAML decoder does, so that dupLines can
			// pair the errors with its own.
			if seen != nil && seen[ks] || seen == nil && hasKey(x[:i], ks) {
				d.errorf("key %q is written twice in this mapping", ks)
				d.dups = append(d.dups, d.errs[len(d.errs)-1])
			}
			if seen != nil {
				seen[ks] = true
			}
			d.pop()
		}
		return x
	case map[any]any:
		o := make(object, 0, len(x))
		for k, v := range x {
			ks, ok := yamlKey(k)
			if !ok {
				d.errorf("unsupported map key %v (%T)", k, k)
				continue
			}
			d.push(ks)
			o = append(o, yaml.MapItem{Key: ks, Value: d.value(v)})
			d.pop()
		}
		// Maps have no order; sort for stable messages.
		slices.SortFunc(o, func(a, b yaml.MapItem) int { return strings.Compare(a.Key.(string), b.Key.(string)) })
		for i := 1; i < len(o); i++ {
			if k := o[i].Key.(string); k == o[i-1].Key.(string) {
				// Two keys of different YAML types with the same text (1 and "1").
				d.push(k)
				d.errorf("key %q is written twice in this mapping", k)
				d.pop()
			}
		}
		return o
	case []any:
		for i, e := range x {
			d.pushIndex(i)
			x[i] = d.value(e)
			d.pop()
		}
		return x
	case string, bool, nil:
		return x
	case int:
		return json.Number(strconv.Itoa(x))
	case int64:
		return json.Number(strconv.FormatInt(x, 10))
	case uint64:
		return json.Number(strconv.FormatUint(x, 10))
	case float64:
		switch {
		case math.IsNaN(x):
			return nonFinite(".nan")
		case math.IsInf(x, 1):
			return nonFinite(".inf")
		case math.IsInf(x, -1):
			return nonFinite("-.inf")
		}
		return json.Number(jsonFloat(x))
	}
	d.errorf("unsupported value %v (%T)", y, y)
	return nil
}

func hasKey(o object, k string) bool {
	for _, m := range o {
		if m.Key == k {
			return true
		}
	}
	return false
}

// yamlKey writes a YAML map key as a JSON object key, as sigs.k8s.io/yaml does.
func yamlKey(k any) (string, bool) {
	switch x := k.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 32)
		switch s {
		case "+Inf":
			s = ".inf"
		case "-Inf":
			s = "-.inf"
		case "NaN":
			s = ".nan"
		}
		return s, true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// jsonFloat formats f as encoding/json does.
func jsonFloat(f float64) string {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(make([]byte, 0, 24), f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return string(b)
}

// appendJSON writes the generic tree as JSON for protojson. The JSON pass has removed or
// replaced every value JSON cannot carry; one left over is an error.
func appendJSON(b []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case object:
		b = append(b, '{')
		first := true
		for _, m := range x {
			k, ok := m.Key.(string)
			if !ok {
				continue // removed
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, k)
			b = append(b, ':')
			if b, err = appendJSON(b, m.Value); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case string:
		return appendJSONString(b, x), nil
	case json.Number:
		return append(b, x...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case nil:
		return append(b, "null"...), nil
	}
	return nil, fmt.Errorf("value %v (%T) has no JSON form", v, v)
}

// appendJSONString writes s as a JSON string; bytes that are not UTF-8 become U+FFFD, as
// with encoding/json.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
