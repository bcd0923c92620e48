package proxyprotocol

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParseV1(t *testing.T) {
	tests := []struct {
		in       string
		st       Status
		len      int
		local    bool
		src, dst string
	}{
		{"PROXY TCP4 192.168.0.1 10.0.0.5 56324 443\r\nGET /", Done, 43, false, "192.168.0.1:56324", "10.0.0.5:443"},
		{"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", Done, 44, false, "[2001:db8::1]:1", "[2001:db8::2]:65535"},
		{"PROXY TCP6 ::ffff:1.2.3.4 2001:db8::2 1 2\r\n", Done, 43, false, "[::ffff:1.2.3.4]:1", "[2001:db8::2]:2"},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 0080 0\r\n", Done, 35, false, "1.2.3.4:80", "5.6.7.8:0"},
		{"PROXY UNKNOWN\r\n", Done, 15, true, "", ""},
		{"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", Done, 59, true, "", ""},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Done, 33, false, "1.2.3.4:1", "5.6.7.8:2"}, // Envoy right-trims
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", NeedMore, 0, false, "", ""},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", NeedMore, 0, false, "", ""},
		{"PROX", NeedMore, 0, false, "", ""},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", NeedMore, 0, false, "", ""}, // bare LF is no terminator
		{"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP6 1.2.3.4 2001:db8::2 1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY TCP4 0.0.0.0 5.6.7.8 1 2\r\n", Invalid, 0, false, "", ""},         // not unicast
		{"PROXY TCP4 1.2.3.4 224.0.0.1 1 2\r\n", Invalid, 0, false, "", ""},       // multicast
		{"PROXY TCP4 255.255.255.255 1.2.3.4 1 2\r\n", Invalid, 0, false, "", ""}, // broadcast
		{"PROXY TCP6 :: 2001:db8::2 1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Invalid, 0, false, "", ""},
		{"PROXY \r\n", Invalid, 0, false, "", ""},
		{"PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n", Done, 108, true, "", ""},
		{"PROXY UNKNOWN " + strings.Repeat("x", 93) + "\r\n", Invalid, 0, false, "", ""},
		{"PROXY UNKNOWN " + strings.Repeat("x", 200), Invalid, 0, false, "", ""},
		{"GET / HTTP/1.1\r\n", Invalid, 0, false, "", ""},
	}
	for _, tt := range tests {
		h, st := ParseV1([]byte(tt.in))
		if st != tt.st {
			t.Errorf("ParseV1(%q) = %v, want %v", tt.in, st, tt.st)
			continue
		}
		if st != Done {
			continue
		}
		if h.Len != tt.len || h.Local != tt.local || h.Version != 1 {
			t.Errorf("ParseV1(%q) = %+v, want len %d local %v", tt.in, h, tt.len, tt.local)
		}
		if !tt.local && (h.Source != ap(tt.src) || h.Destination != ap(tt.dst)) {
			t.Errorf("ParseV1(%q) addresses %v -> %v", tt.in, h.Source, h.Destination)
		}
	}
}

// v2 builds a v2 header.
func v2(verCmd, famTrans byte, addrs []byte, tlvs []byte) []byte {
	b := append([]byte(V2Signature), verCmd, famTrans)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	return append(append(b, addrs...), tlvs...)
}

func inet(src, dst string) []byte {
	s, d := ap(src), ap(dst)
	if s.Addr().Is4() {
		b := append(s.Addr().AsSlice(), d.Addr().AsSlice()...)
		return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, s.Port()), d.Port())
	}
	b := append(s.Addr().AsSlice(), d.Addr().AsSlice()...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, s.Port()), d.Port())
}

func tlv(typ byte, v string) []byte {
	return append(binary.BigEndian.AppendUint16([]byte{typ}, uint16(len(v))), v...)
}

func TestParseV2(t *testing.T) {
	a4 := inet("192.168.0.1:56324", "10.0.0.5:443")
	a6 := inet("[2001:db8::1]:1000", "[2001:db8::2]:2000")
	tests := []struct {
		name     string
		in       []byte
		st       Status
		local    bool
		src, dst string
	}{
		{"inet stream", v2(0x21, 0x11, a4, nil), Done, false, "192.168.0.1:56324", "10.0.0.5:443"},
		{"inet dgram", v2(0x21, 0x12, a4, nil), Done, false, "192.168.0.1:56324", "10.0.0.5:443"},
		{"inet6 stream", v2(0x21, 0x21, a6, nil), Done, false, "[2001:db8::1]:1000", "[2001:db8::2]:2000"},
		{"inet with tlvs", v2(0x21, 0x11, a4, append(tlv(0x01, "h2"), tlv(0x04, "")...)), Done, false, "192.168.0.1:56324", "10.0.0.5:443"},
		{"local no addrs", v2(0x20, 0x00, nil, nil), Done, true, "", ""},
		{"local with junk body", v2(0x20, 0x11, a4, []byte{0xff}), Done, true, "", ""},
		{"truncated fixed part", v2(0x21, 0x11, a4, nil)[:15], NeedMore, false, "", ""},
		{"truncated addresses", v2(0x21, 0x11, a4, nil)[:20], NeedMore, false, "", ""},
		{"truncated tlvs", v2(0x21, 0x11, a4, tlv(1, "abc"))[:30], NeedMore, false, "", ""},
		{"version 1 nibble", v2(0x11, 0x11, a4, nil), Invalid, false, "", ""},
		{"command 2", v2(0x22, 0x11, a4, nil), Invalid, false, "", ""},
		{"af_unix", v2(0x21, 0x31, make([]byte, 216), nil), Invalid, false, "", ""},
		{"af_unspec proxy", v2(0x21, 0x01, nil, nil), Invalid, false, "", ""},
		{"transport unspec", v2(0x21, 0x10, a4, nil), Invalid, false, "", ""},
		{"length below address size", v2(0x21, 0x11, a4[:8], nil), Invalid, false, "", ""},
		{"tlv header cut", v2(0x21, 0x11, a4, []byte{1, 0}), Invalid, false, "", ""},
		{"tlv value overruns", v2(0x21, 0x11, a4, []byte{1, 0, 5, 'a'}), Invalid, false, "", ""},
		{"zero source", v2(0x21, 0x11, inet("0.0.0.0:1", "10.0.0.5:443"), nil), Invalid, false, "", ""},
		{"multicast dest v6", v2(0x21, 0x21, inet("[2001:db8::1]:1", "[ff02::1]:2"), nil), Invalid, false, "", ""},
		{"bad signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 0), Invalid, false, "", ""},
	}
	for _, tt := range tests {
		h, st := ParseV2(tt.in)
		if st != tt.st {
			t.Errorf("%s: %v, want %v", tt.name, st, tt.st)
			continue
		}
		if st != Done {
			continue
		}
		if h.Len != len(tt.in) || h.Local != tt.local || h.Version != 2 {
			t.Errorf("%s: %+v (input %d bytes)", tt.name, h, len(tt.in))
		}
		if !tt.local && (h.Source != ap(tt.src) || h.Destination != ap(tt.dst)) {
			t.Errorf("%s: addresses %v -> %v", tt.name, h.Source, h.Destination)
		}
		// Bytes after the header are not part of it.
		if h2, st := ParseV2(append(tt.in[:len(tt.in):len(tt.in)], "GET / HTTP/1.1\r\n"...)); st != Done || h2.Len != h.Len {
			t.Errorf("%s: with payload: %v len %d", tt.name, st, h2.Len)
		}
	}
	// Every strict prefix of a valid header waits.
	full := v2(0x21, 0x21, a6, append(tlv(1, "h2"), tlv(0xEE, strings.Repeat("z", 300))...))
	for i := range len(full) {
		if _, st := ParseV2(full[:i]); st != NeedMore {
			t.Fatalf("prefix %d/%d: %v", i, len(full), st)
		}
	}
	// TLVs are reachable for whoever wants them.
	h, _ := ParseV2(full)
	typ, val, rest, ok := NextTLV(h.TLVs)
	if !ok || typ != 1 || string(val) != "h2" || len(rest) != 303 {
		t.Fatalf("NextTLV: %v %q %d %v", typ, val, len(rest), ok)
	}
}

func TestParseDispatch(t *testing.T) {
	p1 := []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
	p2 := v2(0x21, 0x11, inet("1.2.3.4:1", "5.6.7.8:2"), nil)
	tests := []struct {
		name       string
		in         []byte
		disallowed Versions
		allow      bool
		st         Status
	}{
		{"v1", p1, 0, false, Done},
		{"v2", p2, 0, false, Done},
		{"plain rejected", []byte("GET / HTTP/1.1\r\n"), 0, false, Invalid},
		{"plain allowed", []byte("GET / HTTP/1.1\r\n"), 0, true, NotProxy},
		{"one byte of plain allowed", []byte("G"), 0, true, NotProxy},
		{"v1 prefix waits even when allowed", []byte("PROX"), 0, true, NeedMore},
		{"v2 prefix waits even when allowed", []byte("\r\n\r\n"), 0, true, NeedMore},
		{"v1 disallowed", p1, V1, false, Invalid},
		{"v2 disallowed", p2, V2, false, Invalid},
		{"v2 disallowed, allow without: passes untouched", p2, V2, true, NotProxy},
		{"v1 disallowed, allow without: passes untouched", p1, V1, true, NotProxy},
		{"v1 allowed while v2 disallowed", p1, V2, true, Done},
		{"empty", nil, 0, false, NeedMore},
		{"malformed v1 when allowed still fails", []byte("PROXY TCP9 x\r\n"), 0, true, Invalid},
	}
	for _, tt := range tests {
		if _, st := Parse(tt.in, tt.disallowed, tt.allow); st != tt.st {
			t.Errorf("%s: %v, want %v", tt.name, st, tt.st)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("PROXY TCP4 192.168.0.1 10.0.0.5 56324 443\r\n"),
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"),
		v2(0x21, 0x21, inet("[2001:db8::1]:1000", "[2001:db8::2]:2000"), tlv(1, "h2")),
	} {
		if a := testing.AllocsPerRun(1000, func() {
			if _, st := Parse(in, 0, false); st != Done {
				t.Fatal(st)
			}
		}); a != 0 {
			t.Errorf("Parse(%q) allocates %v times", in, a)
		}
	}
}

func BenchmarkParseV1(b *testing.B) {
	in := []byte("PROXY TCP4 192.168.0.1 10.0.0.5 56324 443\r\nGET / HTTP/1.1\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, st := ParseV1(in); st != Done {
			b.Fatal(st)
		}
	}
}

func BenchmarkParseV1TCP6(b *testing.B) {
	in := []byte("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, st := ParseV1(in); st != Done {
			b.Fatal(st)
		}
	}
}

func BenchmarkParseV2(b *testing.B) {
	in := v2(0x21, 0x11, inet("192.168.0.1:56324", "10.0.0.5:443"), append(tlv(1, "h2"), tlv(0x20, "0123456789")...))
	b.ReportAllocs()
	for b.Loop() {
		if _, st := ParseV2(in); st != Done {
			b.Fatal(st)
		}
	}
}
