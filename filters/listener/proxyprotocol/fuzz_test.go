package proxyprotocol

import "testing"

// checkHeader holds for every Done result.
func checkHeader(t *testing.T, data []byte, h Header) {
	if h.Len <= 0 || h.Len > len(data) {
		t.Fatalf("header length %d for %d bytes", h.Len, len(data))
	}
	if !h.Local && (!h.Source.IsValid() || !h.Destination.IsValid() || !unicast(h.Source.Addr()) || !unicast(h.Destination.Addr())) {
		t.Fatalf("bad addresses %+v", h)
	}
}

// FuzzProxyProtocolV1: no panics, bounded length, and a header once complete is not
// changed by what follows it nor judged differently by a prefix.
func FuzzProxyProtocolV1(f *testing.F) {
	for _, s := range []string{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP6 ::1 ::2 3 4\r\n", "PROXY UNKNOWN\r\n", "PROXY TCP4 1.2.3.4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, st := ParseV1(data)
		if st == Done {
			checkHeader(t, data, h)
			if h.Len > MaxV1Len {
				t.Fatalf("v1 header of %d bytes", h.Len)
			}
			if h2, st2 := ParseV1(data[:h.Len]); st2 != Done || h2.Len != h.Len || h2.Local != h.Local || h2.Source != h.Source || h2.Destination != h.Destination {
				t.Fatalf("header alone: %v %+v vs %+v", st2, h2, h)
			}
		}
		if st == NeedMore && len(data) >= MaxV1Len {
			t.Fatal("NeedMore past the v1 limit")
		}
		limit := len(data)
		if st == Done {
			limit = h.Len
		}
		for i := range min(limit, 120) {
			if _, pst := ParseV1(data[:i]); pst == Done || (pst == Invalid && st != Invalid) {
				t.Fatalf("prefix %d: %v, whole: %v", i, pst, st)
			}
		}
	})
}

// FuzzProxyProtocolV2: as for v1, plus the dispatcher must agree with ParseV2.
func FuzzProxyProtocolV2(f *testing.F) {
	f.Add(v2(0x21, 0x11, inet("1.2.3.4:1", "5.6.7.8:2"), tlv(1, "h2")))
	f.Add(v2(0x21, 0x21, inet("[2001:db8::1]:1", "[2001:db8::2]:2"), nil))
	f.Add(v2(0x20, 0x00, nil, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, st := ParseV2(data)
		if st == Done {
			checkHeader(t, data, h)
			if len(h.TLVs) > h.Len-V2HeaderLen {
				t.Fatal("TLV block outside the header")
			}
			if h2, st2 := ParseV2(data[:h.Len]); st2 != Done || h2.Len != h.Len || h2.Source != h.Source || h2.Destination != h.Destination {
				t.Fatalf("header alone: %v %+v", st2, h2)
			}
			if !h.Local {
				n := 0
				for b := h.TLVs; len(b) > 0; {
					_, v, rest, ok := NextTLV(b)
					if !ok {
						t.Fatal("validated TLVs do not walk")
					}
					n += 3 + len(v)
					b = rest
				}
				if n != len(h.TLVs) {
					t.Fatal("TLV walk length mismatch")
				}
			}
		}
		if ph, pst := Parse(data, 0, false); len(data) >= len(V2Signature) && hasPrefixOf(data, V2Signature) && (pst != st || ph.Len != h.Len) {
			t.Fatalf("Parse %v/%d vs ParseV2 %v/%d", pst, ph.Len, st, h.Len)
		}
		limit := len(data)
		if st == Done {
			limit = h.Len
		}
		for i := range min(limit, 80) {
			if _, pst := ParseV2(data[:i]); pst == Done || (pst == Invalid && st != Invalid) {
				t.Fatalf("prefix %d: %v, whole: %v", i, pst, st)
			}
		}
	})
}
