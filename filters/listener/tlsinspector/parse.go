package tlsinspector

import "encoding/binary"

// Status is the outcome of ParseClientHello.
type Status int

const (
	// NeedMore: the bytes so far are a valid prefix of a TLS ClientHello; wait for more.
	NeedMore Status = iota
	// NotTLS: the first bytes cannot start a TLS handshake record (plaintext).
	NotTLS
	// Done: a complete, well-formed ClientHello was parsed.
	Done
	// Error: the bytes start like a TLS handshake but the records or the ClientHello are
	// malformed. Envoy (BoringSSL) cannot tell this apart from plaintext either.
	Error
)

func (s Status) String() string {
	switch s {
	case NeedMore:
		return "NeedMore"
	case NotTLS:
		return "NotTLS"
	case Done:
		return "Done"
	case Error:
		return "Error"
	}
	return "Status(?)"
}

// Limits that BoringSSL (and so Envoy) applies to a ClientHello.
const (
	recordHeaderLen    = 5
	handshakeHeaderLen = 4
	// maxPlaintextRecord is TLS's limit on a record's plaintext (RFC 8446 5.1).
	maxPlaintextRecord = 16384
	// maxClientHelloBody is BoringSSL's ssl_max_handshake_message_len for a server that
	// does not verify peer certificates: a longer ClientHello is a protocol error.
	maxClientHelloBody = 16384
	// maxEmptyRecords mirrors BoringSSL's kMaxEmptyRecords.
	maxEmptyRecords = 32
	// maxHostName is TLSEXT_MAXLEN_host_name.
	maxHostName = 255

	contentTypeHandshake   = 22
	handshakeClientHello   = 1
	extServerName          = 0
	extALPN                = 16
	extSupportedVersions   = 43
	versionTLS10           = 0x0301
	versionTLS13           = 0x0304
	sniNameTypeHostName    = 0
	recordVersionMajorTLS  = 3
	cipherSuiteLenMultiple = 2
)

// Result is what a ClientHello carries for filter-chain selection. Its slices alias the
// parsed input (or, for a ClientHello fragmented over several records, one buffer made
// for it), so they are valid only as long as that input.
type Result struct {
	// ServerName is the SNI host_name as sent (not lower-cased), or nil.
	ServerName []byte
	// ALPN is the body of the ALPN extension's protocol_name_list (a sequence of u8
	// length-prefixed names), already validated; nil if absent or malformed, in which case
	// Envoy also reports no application protocols. Walk it with NextALPN.
	ALPN []byte
	// Fragmented reports that the ClientHello spanned several records (so it was copied).
	Fragmented bool
}

// NextALPN splits the first protocol off a validated Result.ALPN list. It returns nil
// when the list is exhausted.
func NextALPN(list []byte) (proto, rest []byte) {
	if len(list) == 0 {
		return nil, nil
	}
	n := int(list[0])
	if 1+n > len(list) {
		return nil, nil
	}
	return list[1 : 1+n], list[1+n:]
}

// ParseClientHello parses the TLS records at the start of data and the ClientHello they
// carry. It follows what BoringSSL accepts in Envoy's tls_inspector closely enough that
// Done here means Envoy would report tls_found, and NotTLS/Error mean it would not. When
// the ClientHello sits in the first record (every mainstream client) it does not allocate.
func ParseClientHello(data []byte) (Result, Status) {
	if len(data) == 0 {
		return Result{}, NeedMore
	}
	if data[0] != contentTypeHandshake {
		return Result{}, NotTLS
	}
	if len(data) >= 2 && data[1] != recordVersionMajorTLS {
		return Result{}, NotTLS
	}
	if len(data) < recordHeaderLen {
		return Result{}, NeedMore
	}
	recLen := int(binary.BigEndian.Uint16(data[3:5]))
	if recLen > maxPlaintextRecord {
		return Result{}, Error
	}
	// Fast path: the handshake header and the whole ClientHello lie in the first record.
	if recLen >= handshakeHeaderLen {
		avail := data[recordHeaderLen:min(len(data), recordHeaderLen+recLen)]
		if len(avail) < handshakeHeaderLen {
			return Result{}, NeedMore
		}
		if avail[0] != handshakeClientHello {
			return Result{}, Error
		}
		msgLen := int(avail[1])<<16 | int(avail[2])<<8 | int(avail[3])
		if msgLen > maxClientHelloBody {
			return Result{}, Error
		}
		if handshakeHeaderLen+msgLen <= recLen {
			if len(avail) < handshakeHeaderLen+msgLen {
				return Result{}, NeedMore
			}
			return parseHelloBody(avail[handshakeHeaderLen : handshakeHeaderLen+msgLen])
		}
	}
	return parseFragmented(data)
}

// parseFragmented handles a ClientHello split over several handshake records (TLS lets a
// sender cut a handshake message anywhere, even inside its 4-byte header). It first
// checks that all fragments are present, so that waiting for more bytes costs nothing,
// and only then copies them into one buffer.
func parseFragmented(data []byte) (Result, Status) {
	var hdr [handshakeHeaderLen]byte
	nhdr := 0
	need := -1 // handshake bytes still missing once the header is known
	total := 0 // handshake bytes required: header + body
	empty := 0
	off := 0
	for {
		if len(data)-off < recordHeaderLen {
			return Result{}, NeedMore
		}
		rh := data[off : off+recordHeaderLen]
		if rh[0] != contentTypeHandshake || rh[1] != recordVersionMajorTLS {
			return Result{}, Error
		}
		recLen := int(binary.BigEndian.Uint16(rh[3:5]))
		if recLen > maxPlaintextRecord {
			return Result{}, Error
		}
		if recLen == 0 {
			if empty++; empty > maxEmptyRecords {
				return Result{}, Error
			}
		}
		payload := data[off+recordHeaderLen : min(len(data), off+recordHeaderLen+recLen)]
		for len(payload) > 0 && nhdr < handshakeHeaderLen {
			hdr[nhdr] = payload[0]
			nhdr++
			payload = payload[1:]
			if nhdr == handshakeHeaderLen {
				if hdr[0] != handshakeClientHello {
					return Result{}, Error
				}
				msgLen := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
				if msgLen > maxClientHelloBody {
					return Result{}, Error
				}
				need = msgLen
				total = handshakeHeaderLen + msgLen
			}
		}
		if need >= 0 {
			need -= min(need, len(payload))
			if need == 0 {
				return assemble(data[:min(len(data), off+recordHeaderLen+recLen)], total)
			}
		}
		if len(data) < off+recordHeaderLen+recLen {
			return Result{}, NeedMore
		}
		off += recordHeaderLen + recLen
	}
}

// assemble concatenates the handshake fragments of the (already validated) records in
// data and parses the ClientHello body.
func assemble(data []byte, total int) (Result, Status) {
	msg := make([]byte, 0, total)
	for off := 0; off < len(data) && len(msg) < total; {
		recLen := int(binary.BigEndian.Uint16(data[off+3 : off+5]))
		end := min(len(data), off+recordHeaderLen+recLen)
		frag := data[off+recordHeaderLen : end]
		msg = append(msg, frag[:min(len(frag), total-len(msg))]...)
		off = end
	}
	r, st := parseHelloBody(msg[handshakeHeaderLen:])
	r.Fragmented = true
	return r, st
}

// parseHelloBody parses a ClientHello body (RFC 8446 4.1.2, also valid for TLS 1.0-1.2).
func parseHelloBody(b []byte) (Result, Status) {
	var r Result
	c := cursor(b)
	legacyVersion, ok := c.u16()
	if !ok {
		return Result{}, Error
	}
	if !c.skip(32) { // random
		return Result{}, Error
	}
	sid, ok := c.u8Prefixed()
	if !ok || len(sid) > 32 {
		return Result{}, Error
	}
	suites, ok := c.u16Prefixed()
	if !ok || len(suites) < cipherSuiteLenMultiple || len(suites)%cipherSuiteLenMultiple != 0 {
		return Result{}, Error
	}
	comp, ok := c.u8Prefixed()
	if !ok || len(comp) == 0 {
		return Result{}, Error
	}
	var versions []byte
	haveVersions := false
	if len(c) > 0 {
		exts, ok := c.u16Prefixed()
		if !ok || len(c) != 0 {
			return Result{}, Error
		}
		var seenSNI, seenALPN bool
		for len(exts) > 0 {
			typ, ok1 := exts.u16()
			body, ok2 := exts.u16Prefixed()
			if !ok1 || !ok2 {
				return Result{}, Error
			}
			switch typ {
			case extServerName:
				if seenSNI {
					return Result{}, Error
				}
				seenSNI = true
				name, ok := parseSNI(body)
				if !ok {
					return Result{}, Error
				}
				r.ServerName = name
			case extALPN:
				if seenALPN {
					return Result{}, Error
				}
				seenALPN = true
				r.ALPN = parseALPN(body)
			case extSupportedVersions:
				if haveVersions {
					return Result{}, Error
				}
				haveVersions = true
				versions = body
			}
		}
	} else if len(c) != 0 {
		return Result{}, Error
	}
	if !versionAcceptable(legacyVersion, haveVersions, versions) {
		return Result{}, Error
	}
	return r, Done
}

// parseSNI applies BoringSSL's rules: exactly one host_name entry, 1..255 bytes, no NUL.
// Anything else aborts the handshake, so Envoy sees no TLS.
func parseSNI(body cursor) ([]byte, bool) {
	list, ok := body.u16Prefixed()
	if !ok || len(body) != 0 {
		return nil, false
	}
	typ, ok := list.u8()
	if !ok {
		return nil, false
	}
	name, ok := list.u16Prefixed()
	if !ok || len(list) != 0 || typ != sniNameTypeHostName || len(name) == 0 || len(name) > maxHostName {
		return nil, false
	}
	for _, ch := range name {
		if ch == 0 {
			return nil, false
		}
	}
	return name, true
}

// parseALPN validates the extension the way Envoy's onALPN does and returns the
// protocol_name_list body, or nil when malformed (Envoy then simply records no ALPN and
// leaves the error to the real TLS stack).
func parseALPN(body cursor) []byte {
	list, ok := body.u16Prefixed()
	if !ok || len(body) != 0 || len(list) < 2 {
		return nil
	}
	for rest := list; len(rest) > 0; {
		name, ok := rest.u8Prefixed()
		if !ok || len(name) == 0 {
			return nil
		}
	}
	return list
}

// versionAcceptable reports whether the client offers a version Envoy's BoringSSL context
// (TLS 1.0 to 1.3) can negotiate; otherwise the handshake fails before the SNI callback.
func versionAcceptable(legacy uint16, haveList bool, list cursor) bool {
	if !haveList {
		return legacy >= versionTLS10
	}
	vs, ok := list.u8Prefixed()
	if !ok || len(list) != 0 || len(vs) == 0 || len(vs)%2 != 0 {
		return false
	}
	for len(vs) > 0 {
		v, _ := vs.u16()
		if v >= versionTLS10 && v <= versionTLS13 {
			return true
		}
	}
	return false
}

// cursor reads big-endian TLS vectors from the front of a byte slice.
type cursor []byte

func (c *cursor) u8() (byte, bool) {
	if len(*c) < 1 {
		return 0, false
	}
	v := (*c)[0]
	*c = (*c)[1:]
	return v, true
}

func (c *cursor) u16() (uint16, bool) {
	if len(*c) < 2 {
		return 0, false
	}
	v := binary.BigEndian.Uint16(*c)
	*c = (*c)[2:]
	return v, true
}

func (c *cursor) skip(n int) bool {
	if len(*c) < n {
		return false
	}
	*c = (*c)[n:]
	return true
}

func (c *cursor) u8Prefixed() (cursor, bool) {
	n, ok := c.u8()
	if !ok || len(*c) < int(n) {
		return nil, false
	}
	v := (*c)[:n:n]
	*c = (*c)[n:]
	return v, true
}

func (c *cursor) u16Prefixed() (cursor, bool) {
	n, ok := c.u16()
	if !ok || len(*c) < int(n) {
		return nil, false
	}
	v := (*c)[:n:n]
	*c = (*c)[n:]
	return v, true
}

// NeedBytes is how many bytes, from the first, a ClientHello that starts with data takes at
// least, for a data on which ParseClientHello said NeedMore: the records' own lengths say
// so before their payload arrives. It never overstates what a well-formed ClientHello
// needs (it stops at the end of the ClientHello in the first record, or else at the end of
// the record being received), so the engine can sleep until that many bytes are there.
func NeedBytes(data []byte) int {
	if len(data) < recordHeaderLen {
		return recordHeaderLen
	}
	pos := 0
	for pos+recordHeaderLen <= len(data) {
		recLen := int(binary.BigEndian.Uint16(data[pos+3 : pos+5]))
		end := pos + recordHeaderLen + recLen
		if pos == 0 && len(data) >= recordHeaderLen+handshakeHeaderLen && recLen >= handshakeHeaderLen {
			// The handshake header says where the ClientHello ends; a record may be longer.
			h := data[recordHeaderLen:]
			msgEnd := recordHeaderLen + handshakeHeaderLen + (int(h[1])<<16 | int(h[2])<<8 | int(h[3]))
			if msgEnd <= end {
				return msgEnd
			}
		}
		if end > len(data) {
			return end
		}
		pos = end
	}
	return pos + recordHeaderLen
}
