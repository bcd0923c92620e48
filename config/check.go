package config

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The JSON pass walks the generic JSON of the file guided by the proto descriptors, before
// protojson sees it. protojson stops at the first problem and reports it without a usable
// location; this pass reports every unknown field and mistyped value with its path, and
// removes each offending value so that the later stages can still run on the rest and
// report their own problems in the same round.

// loc is a location in both spellings: canonical (proto field names) and as written. It is
// a chain of segments up to the root, each in its caller's frame, and becomes strings only
// when a location is reported: most values of a file have no error.
type loc struct {
	up          *loc
	canon, user string // a field's names, a map key, or a whole path for a root
	idx         int    // a list index
	kind        locKind
}

type locKind uint8

const (
	locRoot locKind = iota // canon and user are the whole path ("" for the bootstrap)
	locField
	locIndex
	locKey
	locWrapped // element 0 of a list the user wrote as a single value: [0] in canonical only
)

func (l *loc) field(canon, user string) loc {
	return loc{up: l, canon: canon, user: user, kind: locField}
}
func (l *loc) index(i int) loc       { return loc{up: l, idx: i, kind: locIndex} }
func (l *loc) key(k string) loc      { return loc{up: l, canon: k, user: k, kind: locKey} }
func (l *loc) wrapped() loc          { return loc{up: l, kind: locWrapped} }
func rootLoc(canon, user string) loc { return loc{canon: canon, user: user} }

// paths gives the location as strings.
func (l *loc) paths() (canon, user string) {
	c, u := l.appendTo(nil, nil)
	return string(c), string(u)
}

func (l *loc) appendTo(c, u []byte) ([]byte, []byte) {
	if l.up != nil {
		c, u = l.up.appendTo(c, u)
	}
	switch l.kind {
	case locRoot:
		c, u = append(c, l.canon...), append(u, l.user...)
	case locField:
		if len(c) > 0 {
			c = append(c, '.')
		}
		if len(u) > 0 {
			u = append(u, '.')
		}
		c, u = append(c, l.canon...), append(u, l.user...)
	case locIndex:
		c = append(strconv.AppendInt(append(c, '['), int64(l.idx), 10), ']')
		u = append(strconv.AppendInt(append(u, '['), int64(l.idx), 10), ']')
	case locKey:
		c = append(append(append(c, '['), l.canon...), ']')
		u = append(append(append(u, '['), l.user...), ']')
	case locWrapped:
		c = append(c, "[0]"...)
	}
	return c, u
}

func (l *loc) canonical() string { c, _ := l.paths(); return c }
func (l *loc) isRoot() bool      { return l.kind == locRoot && l.canon == "" && l.user == "" }

type checker struct {
	c     *collector
	marks utf8Marks // where the file had invalid UTF-8 (see markInvalidUTF8)
	// suggested caches suggest's answers: a generated file repeats the same unknown
	// field in every listener, and each answer costs an edit distance per field.
	suggested map[suggestion]string
}

type suggestion struct {
	md   protoreflect.FullName
	name string
}

func (k *checker) suggest(md protoreflect.MessageDescriptor, name string) string {
	key := suggestion{md.FullName(), name}
	if s, ok := k.suggested[key]; ok {
		return s
	}
	s := suggest(md, name)
	if k.suggested == nil {
		k.suggested = map[suggestion]string{}
	}
	k.suggested[key] = s
	return s
}

// utf8OK reports a string value that is not UTF-8 at its field; it returns false then.
func (k *checker) utf8OK(v any, at loc) bool {
	s, ok := v.(string)
	if !ok {
		return true
	}
	if what, where, bad := k.marks.invalidText(s); bad {
		k.errorf(at, "%s is not valid UTF-8%s", what, where)
		return false
	}
	return true
}

// keyOK reports a key of the object at `at` that is not UTF-8 (at the object: the key
// itself cannot be spelled in a path); it returns false then.
func (k *checker) keyOK(name string, at loc) bool {
	what, where, bad := k.marks.invalidText(name)
	if !bad {
		return true
	}
	if at.isRoot() && where != "" {
		// A top-level key: the line is the best location there is.
		_, run, _ := k.marks.restore(name)
		at, where = lineLoc(run.line), fmt.Sprintf(" (column %d); the file must be UTF-8", run.col)
	}
	k.errorf(at, "key %s is not valid UTF-8%s", what, where)
	return false
}

// plain checks a value taken as free-form JSON (Struct, ListValue, Value): JSON has no
// .inf or .nan, and its text must be UTF-8.
func (k *checker) plain(v any, at loc) bool {
	switch x := v.(type) {
	case nonFinite:
		k.errorf(at, "got %s, which JSON has no number for", x)
		return false
	case string:
		return k.utf8OK(x, at)
	case []any:
		ok := true
		for i, e := range x {
			eat := at.index(i)
			ok = k.plain(e, eat) && ok
		}
		return ok
	case object:
		ok := true
		for i := range x {
			name, isKey := x[i].Key.(string)
			if !isKey {
				continue
			}
			if !k.keyOK(name, at) {
				x[i].Key = removed{}
				ok = false
				continue
			}
			kat := at.key(name)
			ok = k.plain(x[i].Value, kat) && ok
		}
		return ok
	}
	return true
}

func (k *checker) errorf(at loc, format string, args ...any) {
	canon, user := at.paths()
	k.c.add(canon, user, format, args...)
}

// unsupported reports the refusal of a feature Portico lacks (see FieldError.Feature).
func (k *checker) unsupported(at loc, value, format string, args ...any) {
	k.errorf(at, format, args...)
	e := k.c.errs[len(k.c.errs)-1]
	e.err.Feature = featureKey(e.canon, value)
}

// prune notes that the value at `at` was removed after being reported.
func (k *checker) prune(at loc) { k.c.prune(at.canonical()) }

// note records the user's spelling of a field whose name differs from the proto name, or
// of a list written as its single element.
func (k *checker) note(at loc) {
	if at.kind == locField && at.canon != at.user || at.kind == locWrapped {
		canon, user := at.paths()
		if k.c.alias == nil {
			k.c.alias = map[string]string{}
		}
		k.c.alias[canon] = user
	}
}

// message checks *vp as the JSON of a message of type md. It returns false when the value
// cannot be that message at all; the caller then removes it. Problems inside it are fixed
// in place, and Envoy's lenient forms (see legacy.go) are rewritten into the ones
// protojson reads.
func (k *checker) message(vp *any, md protoreflect.MessageDescriptor, at loc, parent protoreflect.FieldDescriptor) bool {
	v := *vp
	if !k.utf8OK(v, at) {
		return false
	}
	if obj, isObj := v.(object); isObj && hasObjectForm(md.FullName()) {
		// The legacy parser reads a well-known type written as the message it is.
		return k.objectForm(vp, obj, md, at)
	}
	switch md.FullName() {
	case "google.protobuf.Any":
		return k.any(v, at, parent)
	case "google.protobuf.Duration":
		return k.duration(v, at)
	case "google.protobuf.Timestamp":
		s, ok := v.(string)
		if !ok {
			k.errorf(at, "expected a timestamp string (RFC 3339), got %s", describe(v))
			return false
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			k.errorf(at, "invalid timestamp %q (want RFC 3339, e.g. \"2024-01-02T15:04:05Z\")", s)
			return false
		}
		return true
	case "google.protobuf.FieldMask":
		if _, ok := v.(string); !ok {
			k.errorf(at, "expected a field mask string, got %s", describe(v))
			return false
		}
		return true
	case "google.protobuf.Struct":
		if _, ok := v.(object); !ok {
			k.errorf(at, "expected an object, got %s", describe(v))
			return false
		}
		return k.plain(v, at)
	case "google.protobuf.ListValue":
		if _, ok := v.([]any); !ok {
			k.errorf(at, "expected a list, got %s", describe(v))
			return false
		}
		return k.plain(v, at)
	case "google.protobuf.Value":
		return k.plain(v, at) // any JSON value is a Value
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		// Wrappers are written as their bare value.
		return k.scalar(vp, md.Fields().ByName("value"), at)
	}
	obj, ok := v.(object)
	if !ok {
		k.errorf(at, "expected an object (%s), got %s", md.Name(), describe(v))
		return false
	}
	k.fields(obj, md, at, "")
	return true
}

// member is one member of an object being checked as a message.
type member struct {
	i    int // in the object
	name string
	fd   protoreflect.FieldDescriptor // nil for an unknown name
}

func (m member) order() int {
	if m.fd == nil {
		return math.MaxInt
	}
	return m.fd.Index()
}

// fields checks the members of obj as fields of md; skip names a member handled by the
// caller (the "@type" of an Any). A member with a problem is reported and removed.
func (k *checker) fields(obj object, md protoreflect.MessageDescriptor, at loc, skip string) {
	if md.FullName() == httpFilterType {
		dropOptionalUnknown(obj)
	}
	var buf [16]member
	ms := buf[:0]
	for i := range obj {
		name, ok := obj[i].Key.(string)
		if !ok || name == skip && skip != "" {
			continue
		}
		if !k.keyOK(name, at) {
			obj[i].Key = removed{}
			continue
		}
		ms = append(ms, member{i, name, lookupField(md, name)})
	}
	// Report in declaration order, unknown names last, whatever order the file has: which
	// of two spellings or two oneof members is "the other one" must not depend on it.
	slices.SortStableFunc(ms, func(a, b member) int {
		if c := cmp.Compare(a.order(), b.order()); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	type setBy struct {
		what protoreflect.FullName // a field or a oneof
		name string                // the member that set it
	}
	var seenBuf [16]setBy
	seen := seenBuf[:0]
	find := func(what protoreflect.FullName) (string, bool) {
		for _, s := range seen {
			if s.what == what {
				return s.name, true
			}
		}
		return "", false
	}
	for _, m := range ms {
		name, fd, v := m.name, m.fd, obj[m.i].Value
		remove := func() { obj[m.i].Key = removed{} }
		if fd == nil {
			uat := at.field(name, name)
			if hint := v2Hint(md.FullName(), name); hint != "" {
				k.errorf(uat, "unknown field (%s)", hint)
			} else if s := k.suggest(md, name); s != "" {
				k.errorf(uat, "unknown field (did you mean %q?)", s)
				// The user most likely meant s: complaints that s is missing would
				// only repeat this one.
				sat := at.field(s, s)
				k.prune(sat)
			} else {
				k.errorf(uat, "unknown field")
			}
			k.prune(uat)
			remove()
			continue
		}
		fat := at.field(string(fd.Name()), name)
		k.note(fat)
		if prev, dup := find(fd.FullName()); dup {
			k.errorf(fat, "duplicate field (also written as %q)", prev)
			k.prune(fat)
			remove()
			continue
		}
		seen = append(seen, setBy{fd.FullName(), name})
		if v == nil && !isValue(fd) {
			continue // null means "not set" to protojson
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if prev, dup := find(od.FullName()); dup {
				k.errorf(fat, "%q and %q are alternatives (oneof %s); set only one", prev, name, od.Name())
				k.prune(fat)
				remove()
				continue
			}
			seen = append(seen, setBy{od.FullName(), name})
		}
		if !k.value(&obj[m.i].Value, fd, fat) {
			k.prune(fat)
			remove()
		}
	}
}

// dropOptionalUnknown removes the typed_config of an optional HTTP filter whose type
// Portico does not know at all: Envoy skips an optional filter it lacks, and so does the
// translator (with a warning), which it could not if the type stopped the JSON pass.
func dropOptionalUnknown(obj object) {
	opt, _ := get(obj, "is_optional")
	if opt == nil {
		opt, _ = get(obj, "isOptional")
	}
	on, isBool := opt.(bool)
	if s, isStr := opt.(string); isStr {
		on, isBool = atob(s)
	}
	if !isBool || !on {
		return
	}
	for i := range obj {
		if name, _ := obj[i].Key.(string); name != "typed_config" && name != "typedConfig" {
			continue
		}
		tc, _ := obj[i].Value.(object)
		url, _ := get(tc, "@type")
		if s, ok := url.(string); ok {
			if _, err := protoregistry.GlobalTypes.FindMessageByURL(s); err != nil {
				obj[i].Key = removed{}
			}
		}
	}
}

// v2Hint explains an unknown field that is a v2 API field (or a config dump's), pointing
// to where v3 has it.
func v2Hint(md protoreflect.FullName, name string) string {
	switch {
	case md == "envoy.config.bootstrap.v3.Bootstrap" && name == "configs":
		return "this looks like a config dump, as the admin's /config_dump gives; Portico reads a bootstrap (node, admin, static_resources ...)"
	case md == "envoy.config.cluster.v3.Cluster" && name == "hosts":
		return "v2's hosts; v3 lists a cluster's endpoints in load_assignment: {cluster_name, endpoints: [{lb_endpoints: [{endpoint: {address}}]}]}"
	case name == "tls_context" && (md == "envoy.config.cluster.v3.Cluster" || md == "envoy.config.listener.v3.FilterChain"):
		return "v2's tls_context; v3 configures TLS in transport_socket"
	case name == "config" && (md == "envoy.config.listener.v3.Filter" || md == "envoy.config.listener.v3.ListenerFilter" ||
		md == "envoy.config.accesslog.v3.AccessLog" || md == httpFilterType):
		return "v2's config; v3 takes typed_config with an \"@type\""
	}
	return ""
}

// lookupField finds a field as protojson does: by JSON name, then by proto name.
func lookupField(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByJSONName(name); fd != nil {
		return fd
	}
	return md.Fields().ByTextName(name)
}

func isValue(fd protoreflect.FieldDescriptor) bool {
	return fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Value" ||
		fd.Enum() != nil && fd.Enum().FullName() == "google.protobuf.NullValue"
}

// value checks the JSON of one field (a list, a map or a singular value).
func (k *checker) value(vp *any, fd protoreflect.FieldDescriptor, at loc) bool {
	v := *vp
	switch {
	case fd.IsList():
		list, wrapped := legacyList(vp, fd)
		for i := range list {
			eat := at.index(i)
			if wrapped {
				eat = at.wrapped()
				k.note(eat)
			}
			if list[i] == nil && !isValue(fd) {
				// The legacy parser reads null in a list as the element's default.
				list[i] = zeroJSON(fd)
			}
			if !k.single(&list[i], fd, eat) {
				// Keep the indexes of the later elements: replace, don't remove.
				k.prune(eat)
				list[i] = zeroJSON(fd)
			}
		}
		return true
	case fd.IsMap():
		obj, ok := v.(object)
		if !ok {
			k.errorf(at, "expected an object (a map), got %s", describe(v))
			return false
		}
		for i := range obj {
			mk, ok := obj[i].Key.(string)
			if !ok {
				continue
			}
			if !k.keyOK(mk, at) {
				obj[i].Key = removed{}
				continue
			}
			kat := at.key(mk)
			if !k.mapKey(mk, fd.MapKey(), kat) || !k.single(&obj[i].Value, fd.MapValue(), kat) {
				k.prune(kat)
				obj[i].Key = removed{}
			}
		}
		return true
	}
	return k.single(vp, fd, at)
}

// single checks one value of a field's element type.
func (k *checker) single(vp *any, fd protoreflect.FieldDescriptor, at loc) bool {
	if *vp == nil && !isValue(fd) {
		k.errorf(at, "expected a value, got null")
		return false
	}
	if fd.Message() != nil {
		return k.message(vp, fd.Message(), at, fd)
	}
	return k.scalar(vp, fd, at)
}

func (k *checker) mapKey(s string, fd protoreflect.FieldDescriptor, at loc) bool {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return true
	case protoreflect.BoolKind:
		if s == "true" || s == "false" {
			return true
		}
		k.errorf(at, "map key must be true or false")
		return false
	}
	var v any = s
	return k.scalar(&v, fd, at)
}

// scalar checks v against a non-message field kind, with protojson's rules (64-bit and
// 32-bit integers may be quoted, floats may be "NaN"/"Infinity", enums by name or number).
func (k *checker) scalar(vp *any, fd protoreflect.FieldDescriptor, at loc) bool {
	v := *vp
	if !k.utf8OK(v, at) {
		return false
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if s, isStr := v.(string); isStr {
			// The legacy parser takes a quoted bool as absl::SimpleAtob does.
			if b, ok := atob(s); ok {
				*vp = b
				return true
			}
		}
		if _, ok := v.(bool); !ok {
			k.errorf(at, "expected true or false, got %s", describe(v))
			return false
		}
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			k.errorf(at, "expected a string, got %s (quote it)", describe(v))
			return false
		}
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok || !isBase64(s) {
			k.errorf(at, "expected a base64 string, got %s", describe(v))
			return false
		}
	case protoreflect.EnumKind:
		return k.enum(vp, fd.Enum(), at)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f, ok := number(v)
		if !ok {
			if s, isStr := v.(string); isStr && (s == "NaN" || s == "Infinity" || s == "-Infinity") {
				return true
			}
			if nf, isNF := v.(nonFinite); isNF {
				k.errorf(at, "expected a number, got %s (write %q, quoted, for this float)", nf, map[nonFinite]string{".inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}[nf])
				return false
			}
			k.errorf(at, "expected a number, got %s", describe(v))
			return false
		}
		if fd.Kind() == protoreflect.FloatKind && math.Abs(f) > math.MaxFloat32 {
			k.errorf(at, "%v is out of range for a float", f)
			return false
		}
	default:
		var lo, hi float64
		switch fd.Kind() {
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			lo, hi = math.MinInt32, math.MaxInt32
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			lo, hi = 0, math.MaxUint32
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			lo, hi = math.MinInt64, math.MaxInt64
		default: // unsigned 64-bit
			lo, hi = 0, math.MaxUint64
		}
		if !isInteger(v, lo, hi) {
			if lo == 0 {
				k.errorf(at, "expected a non-negative integer (at most %.0f), got %s", hi, describe(v))
			} else {
				k.errorf(at, "expected an integer, got %s", describe(v))
			}
			return false
		}
	}
	return true
}

func (k *checker) enum(vp *any, ed protoreflect.EnumDescriptor, at loc) bool {
	v := *vp
	switch x := v.(type) {
	case nil:
		return ed.FullName() == "google.protobuf.NullValue"
	case string:
		if ed.Values().ByName(protoreflect.Name(x)) != nil {
			return true
		}
		// Envoy parses enums case-insensitively (case_insensitive_enum_parsing), and
		// the legacy parser takes a quoted number.
		if name, ok := enumFold(ed, x); ok {
			*vp = string(name)
			return true
		}
		if n, err := strconv.ParseInt(x, 10, 32); err == nil {
			*vp = json.Number(strconv.FormatInt(n, 10))
			return true
		}
		names := make([]string, ed.Values().Len())
		for i := range names {
			names[i] = string(ed.Values().Get(i).Name())
		}
		k.errorf(at, "unknown value %q (one of %s)", x, strings.Join(names, ", "))
		return false
	default:
		// protojson accepts any int32 for an open enum.
		if isInteger(v, math.MinInt32, math.MaxInt32) {
			return true
		}
		k.errorf(at, "expected an enum name, got %s", describe(v))
		return false
	}
}

var durationRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]{1,9})?s$`)

// maxDurationSeconds is google.protobuf.Duration's range (±10000 years).
const maxDurationSeconds = 315576000000

func (k *checker) duration(v any, at loc) bool {
	s, ok := v.(string)
	if !ok || !durationRE.MatchString(s) {
		k.errorf(at, "expected a duration such as \"5s\" or \"0.250s\", got %s", describe(v))
		return false
	}
	secs, _ := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	if math.Abs(secs) > maxDurationSeconds {
		k.errorf(at, "duration %s is out of range", s)
		return false
	}
	return true
}

// any checks an Any: "@type" must name a type linked into this binary and, at a
// typed_config Portico interprets, one of the types it supports there; the other members
// are the fields of that type.
func (k *checker) any(v any, at loc, parent protoreflect.FieldDescriptor) bool {
	obj, ok := v.(object)
	if !ok {
		k.errorf(at, "expected an object with an \"@type\", got %s", describe(v))
		return false
	}
	rawType, has := get(obj, "@type")
	if !has {
		if members(obj) == 0 {
			return true
		}
		k.errorf(at, "\"@type\" is required to interpret this typed config")
		return false
	}
	url, ok := rawType.(string)
	if !ok {
		k.errorf(at, "\"@type\" must be a string, got %s", describe(rawType))
		return false
	}
	allowed := anySlots[slotName(parent)]
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		// Envoy builds with extensions whose types Portico does not link (contrib ones
		// such as Kafka or Postgres, Istio's): one more feature Portico lacks.
		k.unsupported(at, strings.TrimPrefix(url, typeURLPrefix), "type %q is not supported by Portico (a type it does not know: an Envoy contrib or third-party extension, or a misspelt name)", url)
		return false
	}
	md := mt.Descriptor()
	if allowed != nil && !contains(allowed, string(md.FullName())) {
		what := string(md.FullName())
		if isTypedStruct(md.FullName()) {
			// The wrapper says nothing: name the type it carries.
			inner, _ := get(obj, "type_url")
			innerURL, _ := inner.(string)
			what = strings.TrimPrefix(innerURL, typeURLPrefix)
			k.unsupported(at, what, "type %q wrapping %q is not supported by Portico here (supported: %s)", url, innerURL, strings.Join(typeURLs(allowed), ", "))
			return false
		}
		k.unsupported(at, what, "type %q is not supported by Portico here (supported: %s)", url, strings.Join(typeURLs(allowed), ", "))
		return false
	}
	if isWellKnownJSON(md.FullName()) {
		// protojson writes such a type's special JSON form under "value".
		for i := range obj {
			name, ok := obj[i].Key.(string)
			switch {
			case !ok || name == "@type":
			case !k.keyOK(name, at):
				obj[i].Key = removed{}
			case name == "value":
				vat := at.field("value", "value")
				if !k.message(&obj[i].Value, md, vat, nil) {
					k.prune(vat)
					obj[i].Key = removed{}
				}
			default:
				uat := at.field(name, name)
				k.errorf(uat, "unknown field")
				k.prune(uat)
				obj[i].Key = removed{}
			}
		}
		return true
	}
	k.fields(obj, md, at, "@type")
	return true
}

// isTypedStruct reports the two wrappers that carry an extension's config as a Struct
// with the extension's type_url beside it.
func isTypedStruct(n protoreflect.FullName) bool {
	return n == "udpa.type.v1.TypedStruct" || n == "xds.type.v3.TypedStruct"
}

func isWellKnownJSON(n protoreflect.FullName) bool {
	switch n {
	case "google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.Timestamp",
		"google.protobuf.FieldMask", "google.protobuf.Struct", "google.protobuf.ListValue",
		"google.protobuf.Value", "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value", "google.protobuf.Int32Value",
		"google.protobuf.UInt32Value", "google.protobuf.BoolValue", "google.protobuf.StringValue",
		"google.protobuf.BytesValue", "google.protobuf.Empty":
		return true
	}
	return false
}

func slotName(fd protoreflect.FieldDescriptor) protoreflect.FullName {
	if fd == nil {
		return ""
	}
	return fd.FullName()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func typeURLs(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = typeURLPrefix + n
	}
	return out
}

// zeroJSON is a harmless stand-in for a removed list element.
func zeroJSON(fd protoreflect.FieldDescriptor) any {
	if md := fd.Message(); md != nil {
		switch md.FullName() {
		case "google.protobuf.Duration":
			return "0s"
		case "google.protobuf.Timestamp":
			return "1970-01-01T00:00:00Z"
		case "google.protobuf.FieldMask":
			return ""
		case "google.protobuf.ListValue":
			return []any{}
		case "google.protobuf.Value":
			return nil
		case "google.protobuf.BoolValue":
			return false
		case "google.protobuf.StringValue", "google.protobuf.BytesValue":
			return ""
		case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
			"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
			"google.protobuf.Int32Value", "google.protobuf.UInt32Value":
			return json.Number("0")
		}
		return object{}
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return false
	case protoreflect.StringKind, protoreflect.BytesKind:
		return ""
	}
	return json.Number("0")
}

// number reads a JSON number or a quoted one, as protojson accepts both.
func number(v any) (float64, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

func isInteger(v any, lo, hi float64) bool {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	default:
		return false
	}
	if lo < 0 {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return float64(n) >= lo && float64(n) <= hi
		}
	} else if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return float64(n) <= hi
	}
	// protojson also takes integral numbers written with a fraction or an exponent.
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f == math.Trunc(f) && f >= lo && f <= hi
}

func isBase64(s string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

// describe names a JSON value's kind for messages: `string "abc"`, `number 80`.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case json.Number:
		return "number " + string(x)
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return fmt.Sprintf("string %q", x)
	case []any:
		return "a list"
	case object:
		return "an object"
	case nonFinite:
		return string(x)
	}
	return fmt.Sprintf("%T", v)
}

// suggest returns the field of md closest to a misspelled name, if one is close enough
// to be a likely typo.
func suggest(md protoreflect.MessageDescriptor, name string) string {
	best, bestD := "", 3
	norm := strings.ToLower(strings.ReplaceAll(name, "_", ""))
	for i := 0; i < md.Fields().Len(); i++ {
		cand := string(md.Fields().Get(i).Name())
		if strings.ToLower(strings.ReplaceAll(cand, "_", "")) == norm {
			return cand
		}
		if d := editDistance(name, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	var buf [2 * 64]int
	var prev, cur []int
	if len(b) < 64 {
		prev, cur = buf[:len(b)+1], buf[64:64+len(b)+1]
	} else {
		prev, cur = make([]int, len(b)+1), make([]int, len(b)+1)
	}
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
