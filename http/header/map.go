// Package header holds HTTP header blocks as Portico's HTTP code passes them around: an
// ordered list of fields whose bytes live in one arena owned by the block, so that a
// request's headers outlive the read that carried them at the cost of one copy and no
// allocation once the arena has grown to fit (Envoy's HeaderMapImpl, flattened).
//
// Names are stored lower-cased, as Envoy's HTTP/1 codec stores them. Requests carry
// Envoy's pseudo-headers as fields of their own: ":method", ":path", ":authority" (the
// Host header) and ":scheme", so route matchers, header formatters and access logs find
// them by name like any other header. An encoder writes pseudo-headers into the request or
// status line and skips them as fields.
package header

// Field is one header: offsets into the map's arena. A deleted field has nameLen 0.
type field struct {
	nameOff, nameLen, valOff, valLen uint32
}

// Known names the headers the codec and the connection manager look at on every message.
// Their positions are kept as fields are added, so finding them costs no scan.
type Known uint8

// Known headers.
const (
	Method    Known = iota // :method
	Path                   // :path
	Authority              // :authority (Host)
	Scheme                 // :scheme
	Status                 // :status (responses)
	ContentLength
	TransferEncoding
	Connection
	Upgrade
	Expect
	TE
	KeepAlive
	ProxyConnection
	// Headers the connection manager reads or sets on every request: known, so that
	// doing so is no scan of a long header block.
	XForwardedFor
	XForwardedProto
	XRequestID
	XForwardedClientCert
	Via
	Server
	numKnown
)

var knownNames = [numKnown]string{
	":method", ":path", ":authority", ":scheme", ":status", "content-length",
	"transfer-encoding", "connection", "upgrade", "expect", "te", "keep-alive",
	"proxy-connection", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
	"x-forwarded-client-cert", "via", "server",
}

// Name is the known header's lower-case name.
func (k Known) Name() string { return knownNames[k] }

// KnownByName returns the Known for a lower-case name, or false.
func KnownByName(name []byte) (Known, bool) {
	// A switch on length first keeps this to one or two comparisons.
	switch len(name) {
	case 2:
		if string(name) == "te" {
			return TE, true
		}
	case 3:
		if string(name) == "via" {
			return Via, true
		}
	case 5:
		if string(name) == ":path" {
			return Path, true
		}
	case 7:
		switch string(name) {
		case ":method":
			return Method, true
		case ":scheme":
			return Scheme, true
		case ":status":
			return Status, true
		case "upgrade":
			return Upgrade, true
		}
	case 6:
		switch string(name) {
		case "expect":
			return Expect, true
		case "server":
			return Server, true
		}
	case 10:
		switch string(name) {
		case ":authority":
			return Authority, true
		case "connection":
			return Connection, true
		case "keep-alive":
			return KeepAlive, true
		}
	case 14:
		if string(name) == "content-length" {
			return ContentLength, true
		}
	case 12:
		if string(name) == "x-request-id" {
			return XRequestID, true
		}
	case 15:
		if string(name) == "x-forwarded-for" {
			return XForwardedFor, true
		}
	case 16:
		if string(name) == "proxy-connection" {
			return ProxyConnection, true
		}
	case 17:
		switch string(name) {
		case "transfer-encoding":
			return TransferEncoding, true
		case "x-forwarded-proto":
			return XForwardedProto, true
		}
	case 23:
		if string(name) == "x-forwarded-client-cert" {
			return XForwardedClientCert, true
		}
	}
	return 0, false
}

// Map is an ordered header block. The zero value is empty and ready; Reset empties it and
// keeps its storage. A Map is not safe for concurrent use.
type Map struct {
	arena  []byte
	fields []field
	// known[k] is 1 + the index of the first field named k, or 0.
	known [numKnown]uint16
	live  int // fields not deleted
}

// Reset empties the map, keeping its storage.
func (m *Map) Reset() {
	m.arena = m.arena[:0]
	m.fields = m.fields[:0]
	m.known = [numKnown]uint16{}
	m.live = 0
}

// Len is the number of fields (pseudo-headers included).
func (m *Map) Len() int { return m.live }

// ArenaSize is how many bytes the fields' names and values take.
func (m *Map) ArenaSize() int { return len(m.arena) }

func (m *Map) name(f field) []byte  { return m.arena[f.nameOff : f.nameOff+f.nameLen] }
func (m *Map) value(f field) []byte { return m.arena[f.valOff : f.valOff+f.valLen] }

// Add appends a field, lower-casing the name as it copies it. The value is copied as is.
func (m *Map) Add(name, value []byte) {
	off := uint32(len(m.arena))
	m.arena = append(m.arena, name...)
	lowerInPlace(m.arena[off:])
	voff := uint32(len(m.arena))
	m.arena = append(m.arena, value...)
	m.addField(field{off, uint32(len(name)), voff, uint32(len(value))})
}

// lowerInPlace lower-cases ASCII letters. Copying a name in bulk and folding it after
// is several times faster than appending it byte by byte.
func lowerInPlace(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// AddLower appends a field whose name the caller knows to be lower-case already (the
// codec lower-cases while it validates).
func (m *Map) AddLower(name, value []byte) {
	off := uint32(len(m.arena))
	m.arena = append(m.arena, name...)
	voff := uint32(len(m.arena))
	m.arena = append(m.arena, value...)
	m.addField(field{off, uint32(len(name)), voff, uint32(len(value))})
}

// AddString is Add for strings.
func (m *Map) AddString(name, value string) {
	off := uint32(len(m.arena))
	m.arena = append(m.arena, name...)
	lowerInPlace(m.arena[off:])
	voff := uint32(len(m.arena))
	m.arena = append(m.arena, value...)
	m.addField(field{off, uint32(len(name)), voff, uint32(len(value))})
}

func (m *Map) addField(f field) {
	m.fields = append(m.fields, f)
	m.live++
	if k, ok := KnownByName(m.name(f)); ok && m.known[k] == 0 {
		m.known[k] = uint16(len(m.fields))
	}
}

// Get returns the first value of the header named name (lower-case), and whether there
// is one. The slice aliases the map: it is valid until the map changes.
func (m *Map) Get(name string) ([]byte, bool) {
	if k, ok := KnownByName([]byte(name)); ok {
		return m.GetKnown(k)
	}
	for _, f := range m.fields {
		if f.nameLen == uint32(len(name)) && string(m.name(f)) == name {
			return m.value(f), true
		}
	}
	return nil, false
}

// GetKnown returns the first value of a known header.
func (m *Map) GetKnown(k Known) ([]byte, bool) {
	i := m.known[k]
	if i == 0 {
		return nil, false
	}
	return m.value(m.fields[i-1]), true
}

// Has reports whether a header named name (lower-case) is present.
func (m *Map) Has(name string) bool {
	_, ok := m.Get(name)
	return ok
}

// Count is how many fields are named name (lower-case).
func (m *Map) Count(name string) int {
	n := 0
	for _, f := range m.fields {
		if f.nameLen == uint32(len(name)) && string(m.name(f)) == name {
			n++
		}
	}
	return n
}

// Del removes every field named name (lower-case) and reports how many it removed.
func (m *Map) Del(name string) int {
	start := 0
	if k, ok := KnownByName([]byte(name)); ok {
		// A known header's first position is kept: absent means nothing to scan.
		if m.known[k] == 0 {
			return 0
		}
		start = int(m.known[k]) - 1
	}
	n := 0
	for i := start; i < len(m.fields); i++ {
		f := &m.fields[i]
		if f.nameLen != 0 && f.nameLen == uint32(len(name)) && string(m.name(*f)) == name {
			f.nameLen = 0
			n++
		}
	}
	if n > 0 {
		m.live -= n
		if k, ok := KnownByName([]byte(name)); ok {
			m.known[k] = 0
		}
	}
	return n
}

// DelKnown is Del for a known header.
func (m *Map) DelKnown(k Known) int {
	if m.known[k] == 0 {
		return 0
	}
	return m.Del(knownNames[k])
}

// Set replaces every field named name with one field holding value; the field keeps the
// position of the first one it replaces (or goes last).
func (m *Map) Set(name string, value []byte) {
	m.setValue(name, value)
}

// SetString is Set for a string value.
func (m *Map) SetString(name, value string) {
	m.setValue(name, []byte(value))
}

func (m *Map) setValue(name string, value []byte) {
	first := -1
	start := 0
	if k, ok := KnownByName([]byte(name)); ok {
		if m.known[k] == 0 {
			m.AddString(name, "")
			start = len(m.fields) // nothing else to replace
			first = start - 1
		} else {
			start = int(m.known[k]) - 1
		}
	}
	for i := start; i < len(m.fields); i++ {
		f := &m.fields[i]
		if f.nameLen == uint32(len(name)) && string(m.name(*f)) == name {
			if first < 0 {
				first = i
				continue
			}
			f.nameLen = 0
			m.live--
		}
	}
	if first < 0 {
		m.AddString(name, "")
		first = len(m.fields) - 1 // its empty value is pointed at the new bytes below
	}
	f := &m.fields[first]
	f.valOff = uint32(len(m.arena))
	m.arena = append(m.arena, value...)
	f.valLen = uint32(len(value))
}

// AppendValue appends value to the first field named name, joined by sep (", " for
// x-forwarded-for), or adds the field if there is none.
func (m *Map) AppendValue(name string, value []byte, sep string) {
	start := 0
	if k, ok := KnownByName([]byte(name)); ok {
		if m.known[k] == 0 {
			m.addStringBytes(name, value)
			return
		}
		start = int(m.known[k]) - 1
	}
	for i := start; i < len(m.fields); i++ {
		f := &m.fields[i]
		if f.nameLen == uint32(len(name)) && string(m.name(*f)) == name {
			old := m.value(*f)
			off := uint32(len(m.arena))
			if len(old) == 0 {
				m.arena = append(m.arena, value...)
			} else {
				m.arena = append(m.arena, old...)
				m.arena = append(m.arena, sep...)
				m.arena = append(m.arena, value...)
			}
			f.valOff, f.valLen = off, uint32(len(m.arena))-off
			return
		}
	}
	m.addStringBytes(name, value)
}

// addStringBytes is Add with a string name and a byte value (no conversion to allocate).
func (m *Map) addStringBytes(name string, value []byte) {
	off := uint32(len(m.arena))
	m.arena = append(m.arena, name...)
	lowerInPlace(m.arena[off:])
	voff := uint32(len(m.arena))
	m.arena = append(m.arena, value...)
	m.addField(field{off, uint32(len(name)), voff, uint32(len(value))})
}

// Range calls fn for each field in order until fn returns false. name and value alias the
// map and are valid during the call.
func (m *Map) Range(fn func(name, value []byte) bool) {
	for _, f := range m.fields {
		if f.nameLen == 0 {
			continue
		}
		if !fn(m.name(f), m.value(f)) {
			return
		}
	}
}

// Fields is the number of slots At accepts, deleted ones included.
func (m *Map) Fields() int { return len(m.fields) }

// At returns field i (0 <= i < Fields()); ok is false for a deleted slot. It lets hot
// loops walk the map without a closure.
func (m *Map) At(i int) (name, value []byte, ok bool) {
	f := m.fields[i]
	if f.nameLen == 0 {
		return nil, nil, false
	}
	return m.name(f), m.value(f), true
}

// CopyFrom makes m a copy of src, reusing m's storage.
func (m *Map) CopyFrom(src *Map) {
	m.arena = append(m.arena[:0], src.arena...)
	m.fields = append(m.fields[:0], src.fields...)
	m.known = src.known
	m.live = src.live
}

// Insert puts a field at position i (0 <= i <= Fields()), lower-casing the name, and
// shifts the fields after it. The HTTP/1 codec needs it because ":authority" must
// follow ":method" and ":path" while the Host header that carries it may come after
// other fields; moving field slots (16 bytes each) is cheaper than a second pass.
func (m *Map) Insert(i int, name, value []byte) {
	if i >= len(m.fields) {
		m.Add(name, value)
		return
	}
	off := uint32(len(m.arena))
	m.arena = append(m.arena, name...)
	lowerInPlace(m.arena[off:])
	voff := uint32(len(m.arena))
	m.arena = append(m.arena, value...)
	f := field{off, uint32(len(name)), voff, uint32(len(value))}
	m.fields = append(m.fields, field{})
	copy(m.fields[i+1:], m.fields[i:])
	m.fields[i] = f
	m.live++
	// known holds 1+index: every position at or after i moved one slot on.
	for k := range m.known {
		if int(m.known[k]) > i {
			m.known[k]++
		}
	}
	if k, ok := KnownByName(m.name(f)); ok && (m.known[k] == 0 || int(m.known[k]) > i+1) {
		m.known[k] = uint16(i + 1)
	}
}
