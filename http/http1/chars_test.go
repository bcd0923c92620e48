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

// TestValidValueMatchesTable: the word-at-a-time check agrees with the byte table for
// every byte value at every position of values of every length up to 24.
func TestValidValueMatchesTable(t *testing.T) {
	for n := 1; n <= 24; n++ {
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				v := make([]byte, n)
				for i := range v {
					v[i] = 'a'
				}
				v[pos] = byte(c)
				want := charClass[c]&cValue != 0
				if got := validValue(v); got != want {
					t.Fatalf("len %d, byte %#x at %d: got %v want %v", n, c, pos, got, want)
				}
			}
		}
	}
}
