package httpconnmgr

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
)

// rng is a per-worker generator for x-request-id: a UUID needs unpredictable bits, not a
// cryptographic stream, and a PCG per worker takes no lock. Its seed comes from
// crypto/rand.
type rng struct{ pcg rand.PCG }

func (r *rng) seed(salt uint64) {
	var b [16]byte
	_, _ = crand.Read(b[:])
	r.pcg.Seed(binary.LittleEndian.Uint64(b[:8])^salt, binary.LittleEndian.Uint64(b[8:]))
}

func (r *rng) next() uint64 { return r.pcg.Uint64() }

// appendUUID appends a random (version 4) UUID in its 36-character form.
func (r *rng) appendUUID(b []byte) []byte {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], r.next())
	binary.LittleEndian.PutUint64(u[8:], r.next())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return b
}

// appendAddr appends an address without its port (x-forwarded-for's form).
func appendAddr(b []byte, a netip.AddrPort) []byte {
	return a.Addr().Unmap().AppendTo(b)
}

// normalizePath rewrites p in place per RFC 3986 §5.2.4 (remove "." and ".." segments)
// and, with mergeSlashes, collapses runs of '/'; the query is left alone. It returns the
// new path and false if the path cannot be normalised (it would climb above the root,
// which Envoy rejects with 400).
func normalizePath(p []byte, mergeSlashes, dots bool) ([]byte, bool) {
	q := len(p)
	for i, c := range p {
		if c == '?' || c == '#' {
			q = i
			break
		}
	}
	path, query := p[:q], p[q:]
	out := make([]byte, 0, len(p))
	// Segments are copied one by one; ".." drops the last one written.
	i := 0
	for i < len(path) {
		if path[i] == '/' {
			if mergeSlashes && len(out) > 0 && out[len(out)-1] == '/' {
				i++
				continue
			}
			out = append(out, '/')
			i++
			continue
		}
		j := i
		for j < len(path) && path[j] != '/' {
			j++
		}
		seg := path[i:j]
		switch {
		case dots && isDot(seg):
			// "." : drop it; its slash, if one follows, is dropped too.
			if j < len(path) {
				j++
			}
		case dots && isDotDot(seg):
			// ".." : remove the previous segment and its slash.
			if len(out) <= 1 {
				return nil, false
			}
			k := len(out) - 1 // out ends with '/'
			for k > 0 && out[k-1] != '/' {
				k--
			}
			out = out[:k]
			if j < len(path) {
				j++
			}
		default:
			out = append(out, seg...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return append(out, query...), true
}

func isDot(s []byte) bool { return string(s) == "." || string(s) == "%2e" || string(s) == "%2E" }
func isDotDot(s []byte) bool {
	return len(s) >= 2 && len(s) <= 6 && (string(s) == ".." || dotDotEncoded(s))
}

func dotDotEncoded(s []byte) bool {
	n := 0
	for i := 0; i < len(s); {
		switch {
		case s[i] == '.':
			i++
		case i+3 <= len(s) && s[i] == '%' && s[i+1] == '2' && s[i+2]|0x20 == 'e':
			i += 3
		default:
			return false
		}
		n++
	}
	return n == 2
}

// needsNormalizing is a quick scan that lets the common, already-normal path skip the
// copy normalizePath makes: it looks for "." and ".." segments (plain or %2e-encoded) and,
// with mergeSlashes, for "//".
func needsNormalizing(p []byte, mergeSlashes bool) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '?' || c == '#':
			return false
		case c == '%' && i+2 < len(p) && p[i+1] == '2' && p[i+2]|0x20 == 'e':
			return true
		case c != '/':
			continue
		}
		if mergeSlashes && i+1 < len(p) && p[i+1] == '/' {
			return true
		}
		j, n := i+1, 0
		for j < len(p) && p[j] == '.' && n < 3 {
			j++
			n++
		}
		if (n == 1 || n == 2) && (j == len(p) || p[j] == '/' || p[j] == '?' || p[j] == '#') {
			return true
		}
	}
	return false
}
