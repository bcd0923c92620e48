package http1

import (
	"strings"
	"testing"
)

// TestCharClass rebuilds charClass from RFC 9110's definitions.
func TestCharClass(t *testing.T) {
	for c := 0; c < 256; c++ {
		var want byte
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0 {
			want |= cToken
		}
		if c == '\t' || c >= 0x20 && c != 0x7f {
			want |= cValue
		}
		if c > 0x20 && c < 0x7f {
			want |= cTarget
		}
		if got := charClass[c]; got != want {
			t.Errorf("charClass[%#x] = %#x, want %#x", c, got, want)
		}
	}
	if len(charClass) != 256 {
		t.Fatalf("len %d", len(charClass))
	}
}
