package proxyprotocol

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"unsafe"
)

// Status is the outcome of a parser.
type Status int

const (
	// NeedMore: the bytes so far are a valid prefix of a header.
	NeedMore Status = iota
	// Done: a complete header was parsed; Header.Len bytes are to be consumed.
	Done
	// Invalid: malformed, unsupported or oversized header; Envoy closes the socket.
	Invalid
	// NotProxy: (only from Parse with AllowRequestsWithoutProxyProtocol) the bytes match
	// no allowed signature: the connection carries no PROXY header.
	NotProxy
)

func (s Status) String() string {
	switch s {
	case NeedMore:
		return "NeedMore"
	case Done:
		return "Done"
	case Invalid:
		return "Invalid"
	case NotProxy:
		return "NotProxy"
	}
	return "Status(?)"
}

// Header is a parsed PROXY header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Len is the whole header's length, TLVs included: the bytes to drain.
	Len int
	// Local is true when the addresses must be left alone: v2 LOCAL command or v1
	// UNKNOWN.
	Local bool
	// Source and Destination are set unless Local.
	Source, Destination netip.AddrPort
	// TLVs is the v2 TLV block (validated for PROXY; skipped unparsed for LOCAL). It
	// aliases the input.
	TLVs []byte
}

const (
	// V1Signature starts a v1 header.
	V1Signature = "PROXY "
	// V2Signature starts a v2 header.
	V2Signature = "\r\n\r\n\x00\r\nQUIT\n"
	// MaxV1Len is Envoy's MAX_PROXY_PROTO_LEN_V1: the longest v1 line, CRLF included.
	MaxV1Len = 108
	// V2HeaderLen is the fixed part of a v2 header.
	V2HeaderLen = 16
	// MaxV2Len is the longest v2 header the wire format allows.
	MaxV2Len = V2HeaderLen + 0xffff

	v2Version      = 2
	v2CmdLocal     = 0
	v2CmdProxy     = 1
	v2FamilyInet   = 1
	v2FamilyInet6  = 2
	v2TransStream  = 1
	v2TransDgram   = 2
	v2AddrLenInet  = 12
	v2AddrLenInet6 = 36
)

// hasPrefixOf reports whether data and sig agree on their common length.
func hasPrefixOf(data []byte, sig string) bool {
	n := min(len(data), len(sig))
	return string(data[:n]) == sig[:n]
}

// ParseV1 parses a v1 text header: "PROXY TCP4|TCP6|UNKNOWN ...\r\n" of at most 108
// bytes. Like Envoy it requires single spaces between the six fields of TCP4/TCP6 and
// accepts anything after "PROXY UNKNOWN". It does not allocate.
func ParseV1(data []byte) (Header, Status) {
	if !hasPrefixOf(data, V1Signature) {
		return Header{}, Invalid
	}
	end := bytes.Index(data[:min(len(data), MaxV1Len)], []byte("\r\n"))
	if end < 0 {
		if len(data) >= MaxV1Len {
			return Header{}, Invalid
		}
		return Header{}, NeedMore
	}
	h := Header{Version: 1, Len: end + 2}
	line := data[:end]
	// Envoy right-trims the line before splitting on single spaces.
	for len(line) > 0 && bytes.IndexByte([]byte(" \t\f\v\r\n"), line[len(line)-1]) >= 0 {
		line = line[:len(line)-1]
	}
	// Split on single spaces keeping empty fields, as Envoy's splitToken does, so a
	// doubled space makes the field count wrong.
	var f [6][]byte
	nf := 0
	for rest := line; ; nf++ {
		i := bytes.IndexByte(rest, ' ')
		tok := rest
		if i >= 0 {
			tok = rest[:i]
		}
		if nf < len(f) {
			f[nf] = tok
		}
		if i < 0 {
			nf++
			break
		}
		rest = rest[i+1:]
	}
	if nf < 2 || string(f[0]) != "PROXY" {
		return Header{}, Invalid
	}
	if string(f[1]) == "UNKNOWN" {
		h.Local = true
		return h, Done
	}
	if nf != 6 {
		return Header{}, Invalid
	}
	var v4 bool
	switch string(f[1]) {
	case "TCP4":
		v4 = true
	case "TCP6":
	default:
		return Header{}, Invalid
	}
	src, ok1 := parseAddr(f[2], v4)
	dst, ok2 := parseAddr(f[3], v4)
	sport, ok3 := parsePort(f[4])
	dport, ok4 := parsePort(f[5])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return Header{}, Invalid
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Destination = netip.AddrPortFrom(dst, dport)
	if !unicast(h.Source.Addr()) || !unicast(h.Destination.Addr()) {
		return Header{}, Invalid
	}
	return h, Done
}

// parseAddr parses a literal of the declared family without copying: the string view
// lives only for the call and netip keeps nothing of it for zone-less addresses (zones
// are rejected).
func parseAddr(b []byte, v4 bool) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	if bytes.IndexByte(b, '%') >= 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	if err != nil || a.Is4() != v4 {
		return netip.Addr{}, false
	}
	return a, true
}

// parsePort accepts 1 to 5 decimal digits up to 65535 (leading zeros allowed, as
// absl::SimpleAtoi does).
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 0xffff {
		return 0, false
	}
	return uint16(v), true
}

// unicast is Envoy's isUnicastAddress: not the unspecified address, not IPv4 broadcast,
// not multicast.
func unicast(a netip.Addr) bool {
	if a.IsUnspecified() || a.IsMulticast() {
		return false
	}
	return !(a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}))
}

// ParseV2 parses a v2 binary header. Like Envoy: version must be 2; LOCAL skips the
// whole declared length (addresses and TLVs unparsed); PROXY needs AF_INET or AF_INET6
// over STREAM or DGRAM, a length covering the addresses, and TLVs that exactly fill the
// rest. It does not allocate.
func ParseV2(data []byte) (Header, Status) {
	if !hasPrefixOf(data, V2Signature) {
		return Header{}, Invalid
	}
	if len(data) < V2HeaderLen {
		return Header{}, NeedMore
	}
	verCmd, famTrans := data[12], data[13]
	if verCmd>>4 != v2Version {
		return Header{}, Invalid
	}
	cmd := verCmd & 0xf
	bodyLen := int(binary.BigEndian.Uint16(data[14:16]))
	h := Header{Version: 2, Len: V2HeaderLen + bodyLen}
	if cmd == v2CmdLocal {
		if len(data) < h.Len {
			return Header{}, NeedMore
		}
		h.Local = true
		h.TLVs = data[V2HeaderLen:h.Len:h.Len]
		return h, Done
	}
	var addrLen int
	switch famTrans >> 4 {
	case v2FamilyInet:
		addrLen = v2AddrLenInet
	case v2FamilyInet6:
		addrLen = v2AddrLenInet6
	default:
		return Header{}, Invalid // AF_UNSPEC / AF_UNIX with PROXY: unsupported
	}
	if bodyLen < addrLen {
		return Header{}, Invalid
	}
	if cmd != v2CmdProxy {
		return Header{}, Invalid
	}
	if t := famTrans & 0xf; t != v2TransStream && t != v2TransDgram {
		return Header{}, Invalid
	}
	if len(data) < h.Len {
		return Header{}, NeedMore
	}
	a := data[V2HeaderLen : V2HeaderLen+addrLen]
	if addrLen == v2AddrLenInet {
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	} else {
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	if !unicast(h.Source.Addr()) || !unicast(h.Destination.Addr()) {
		return Header{}, Invalid
	}
	h.TLVs = data[V2HeaderLen+addrLen : h.Len : h.Len]
	if !validTLVs(h.TLVs) {
		return Header{}, Invalid
	}
	return h, Done
}

// validTLVs checks that the block is a sequence of {type u8, length u16, value} that
// ends exactly at the block's end. Envoy rejects the connection otherwise.
func validTLVs(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 3 {
			return false
		}
		n := 3 + int(binary.BigEndian.Uint16(b[1:3]))
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// NextTLV splits the first TLV off a block that ParseV2 validated.
func NextTLV(b []byte) (typ byte, value, rest []byte, ok bool) {
	if len(b) < 3 {
		return 0, nil, nil, false
	}
	n := 3 + int(binary.BigEndian.Uint16(b[1:3]))
	if n > len(b) {
		return 0, nil, nil, false
	}
	return b[0], b[3:n], b[n:], true
}

// Versions selects PROXY protocol versions.
type Versions uint8

const (
	// V1 is the text format.
	V1 Versions = 1 << iota
	// V2 is the binary format.
	V2
)

// Parse detects and parses a PROXY header at the start of data as Envoy's filter does.
// disallowed versions are not accepted; with allowWithout, bytes that cannot start an
// allowed header give NotProxy (a prefix of a signature still waits, as in Envoy, which
// cannot tell "PROX" from a slow PROXY sender).
func Parse(data []byte, disallowed Versions, allowWithout bool) (Header, Status) {
	if len(data) == 0 {
		return Header{}, NeedMore
	}
	v1ok, v2ok := disallowed&V1 == 0, disallowed&V2 == 0
	mayV1, mayV2 := hasPrefixOf(data, V1Signature), hasPrefixOf(data, V2Signature)
	if allowWithout && !(mayV1 && v1ok) && !(mayV2 && v2ok) {
		return Header{}, NotProxy
	}
	switch {
	case mayV2 && len(data) >= len(V2Signature):
		if !v2ok {
			return Header{}, Invalid
		}
		return ParseV2(data)
	case mayV1 && len(data) >= len(V1Signature):
		if !v1ok {
			return Header{}, Invalid
		}
		return ParseV1(data)
	case mayV1 || mayV2:
		return Header{}, NeedMore
	}
	return Header{}, Invalid
}
