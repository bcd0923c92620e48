package config

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Envoy reads YAML and JSON with protobuf's JSON parser in its legacy mode
// (allow_legacy_syntax, which JsonStringToMessage always sets) and with
// case_insensitive_enum_parsing (MessageUtil::loadFromJson). That mode is more lenient than
// proto3 JSON, and real configurations rely on it. The JSON pass rewrites each lenient form
// into the one protojson reads, so that every later stage sees the same message Envoy
// would:
//
//   - a single value where a list is expected is a list of one (`domains: "*"`);
//   - a list inside a list is flattened into it (not for Value and ListValue);
//   - null inside a list is the element's default value;
//   - enum names in any case (`lb_policy: round_robin`), and enum numbers quoted;
//   - quoted bools, as absl::SimpleAtob reads them ("true", "yes", "y", "1", ...);
//   - well-known types written as the messages they are: `{seconds: 5, nanos: 0}` for a
//     Duration or Timestamp, `{value: 3}` for a wrapper, `{paths: [...]}` for a FieldMask,
//     `{values: [...]}` for a ListValue.
//
// An empty typed_config `{}` (an Any without "@type") is the legacy form of an unset
// Any, handled where Any values are checked.

// legacyList returns the list in the slot of a repeated field, making a single value a list
// of one (wrapped) and flattening nested lists, as the legacy parser does.
func legacyList(vp *any, fd protoreflect.FieldDescriptor) (_ []any, wrapped bool) {
	list, ok := (*vp).([]any)
	if !ok {
		list = []any{*vp}
		*vp = list
		return list, true
	}
	if md := fd.Message(); md != nil && (md.FullName() == "google.protobuf.Value" || md.FullName() == "google.protobuf.ListValue") {
		return list, false
	}
	nested := false
	for _, e := range list {
		if _, isList := e.([]any); isList {
			nested = true
			break
		}
	}
	if !nested {
		return list, false
	}
	flat := flatten(make([]any, 0, len(list)), list)
	*vp = flat
	return flat, false
}

func flatten(dst, list []any) []any {
	for _, e := range list {
		if inner, isList := e.([]any); isList {
			dst = flatten(dst, inner)
			continue
		}
		dst = append(dst, e)
	}
	return dst
}

// enumFold finds an enum value by name ignoring ASCII case, as absl::EqualsIgnoreCase.
func enumFold(ed protoreflect.EnumDescriptor, s string) (protoreflect.Name, bool) {
	vals := ed.Values()
	for i := 0; i < vals.Len(); i++ {
		if n := vals.Get(i).Name(); asciiEqualFold(string(n), s) {
			return n, true
		}
	}
	return "", false
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// atob reads a quoted bool as absl::SimpleAtob does.
func atob(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "t", "yes", "y", "1":
		return true, true
	case "false", "f", "no", "n", "0":
		return false, true
	}
	return false, false
}

// hasObjectForm reports the well-known types the legacy parser also reads as the plain
// message (an object of their fields).
func hasObjectForm(n protoreflect.FullName) bool {
	switch n {
	case "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask",
		"google.protobuf.ListValue",
		"google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		return true
	}
	return false
}

// objectForm checks a well-known type written as an object of its fields and rewrites the
// slot into the type's JSON form.
func (k *checker) objectForm(vp *any, obj object, md protoreflect.MessageDescriptor, at loc) bool {
	before := len(k.c.errs)
	k.fields(obj, md, at, "")
	if len(k.c.errs) != before {
		return false
	}
	switch md.FullName() {
	case "google.protobuf.Duration", "google.protobuf.Timestamp":
		secs, nanos := intMember(obj, "seconds"), intMember(obj, "nanos")
		if md.FullName() == "google.protobuf.Timestamp" {
			if nanos < 0 || nanos > 999999999 {
				k.errorf(at, "nanos %d is out of range (0 to 999999999)", nanos)
				return false
			}
			*vp = time.Unix(secs, nanos).UTC().Format(time.RFC3339Nano)
			return true
		}
		if secs > 0 && nanos < 0 || secs < 0 && nanos > 0 || nanos <= -1e9 || nanos >= 1e9 {
			k.errorf(at, "invalid duration: seconds %d and nanos %d (nanos must be within ±999999999, of the same sign)", secs, nanos)
			return false
		}
		if secs > maxDurationSeconds || secs < -maxDurationSeconds {
			k.errorf(at, "duration of %d seconds is out of range", secs)
			return false
		}
		sign := ""
		if secs < 0 || nanos < 0 {
			sign, secs, nanos = "-", -secs, -nanos
		}
		s := sign + strconv.FormatInt(secs, 10)
		if nanos != 0 {
			s += "." + strconv.FormatInt(1e9+nanos, 10)[1:]
		}
		*vp = s + "s"
	case "google.protobuf.FieldMask":
		var paths []string
		if l, ok := get(obj, "paths"); ok {
			list, _ := l.([]any)
			for _, p := range list {
				s, _ := p.(string)
				paths = append(paths, lowerCamel(s))
			}
		}
		*vp = strings.Join(paths, ",")
	case "google.protobuf.ListValue":
		l, ok := get(obj, "values")
		if !ok || l == nil {
			l = []any{}
		}
		*vp = l
	default: // a wrapper
		v, ok := get(obj, "value")
		if !ok || v == nil {
			v = zeroJSON(md.Fields().ByName("value"))
		}
		*vp = v
	}
	return true
}

// intMember reads an integer member the JSON pass has checked (a number or a quoted one).
func intMember(obj object, name string) int64 {
	v, ok := get(obj, name)
	if !ok {
		return 0
	}
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	f, _ := strconv.ParseFloat(s, 64)
	if f > math.MaxInt64 || f < math.MinInt64 {
		return 0
	}
	return int64(f)
}

// lowerCamel writes a field path as protojson's FieldMask form does (foo_bar → fooBar).
func lowerCamel(s string) string {
	var b strings.Builder
	up := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			up = true
			continue
		}
		if up && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b.WriteByte(c)
	}
	return b.String()
}
