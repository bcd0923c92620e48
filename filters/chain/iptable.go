package chain

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// fakeAddr stands in for a non-IP (Unix socket or unknown) address at the CIDR levels, as
// Envoy's fakeAddress() does: only catch-all ranges (0.0.0.0/0) contain it.
func fakeAddr() netip.Addr { return netip.AddrFrom4([4]byte{255, 255, 255, 255}) }

// ipTable maps CIDR ranges to the branches of the next level and returns the branch of the
// single longest range that contains an address. That is Envoy's LC-trie in "exclusive"
// mode: a less specific range is never consulted, even if the most specific branch later
// dead-ends.
//
// Lookup uses one bucket per distinct prefix length, checked from the longest length down,
// each bucket a hash map from the masked address to the branch (or a single compare when
// the bucket holds one range, e.g. the catch-all /0). The cost is bounded by the number of
// distinct prefix lengths (at most 33 for IPv4, 129 for IPv6; a handful in practice), not by
// the number of ranges, so hundreds of service VIPs (/32) cost one map probe; it never
// allocates.
type ipTable[T any] struct {
	// entries are the ranges in insertion order, kept to build the buckets and to walk the
	// tree; index finds an entry by its range while building.
	entries []ipEntry[T]
	index   map[netip.Prefix]int

	v4 []bucket4[T] // longest prefix length first
	v6 []bucket6[T]
}

type ipEntry[T any] struct {
	prefix netip.Prefix
	next   *T
}

type bucket4[T any] struct {
	mask uint32
	key  uint32 // the only key when m is nil
	val  *T
	m    map[uint32]*T
}

type bucket6[T any] struct {
	mask [2]uint64
	key  [2]uint64
	val  *T
	m    map[[2]uint64]*T
}

// child returns the branch for p (already normalised), creating it.
func (t *ipTable[T]) child(p netip.Prefix) *T {
	if i, ok := t.index[p]; ok {
		return t.entries[i].next
	}
	if t.index == nil {
		t.index = make(map[netip.Prefix]int)
	}
	n := new(T)
	t.index[p] = len(t.entries)
	t.entries = append(t.entries, ipEntry[T]{prefix: p, next: n})
	return n
}

// freeze builds the lookup buckets once every range is inserted.
func (t *ipTable[T]) freeze() {
	byLen4 := map[int][]ipEntry[T]{}
	byLen6 := map[int][]ipEntry[T]{}
	for _, e := range t.entries {
		if e.prefix.Addr().Is4() {
			byLen4[e.prefix.Bits()] = append(byLen4[e.prefix.Bits()], e)
		} else {
			byLen6[e.prefix.Bits()] = append(byLen6[e.prefix.Bits()], e)
		}
	}
	for _, bits := range sortedDesc(byLen4) {
		es := byLen4[bits]
		b := bucket4[T]{mask: mask32(bits)}
		if len(es) == 1 {
			b.key, b.val = key4(es[0].prefix.Addr()), es[0].next
		} else {
			b.m = make(map[uint32]*T, len(es))
			for _, e := range es {
				b.m[key4(e.prefix.Addr())] = e.next
			}
		}
		t.v4 = append(t.v4, b)
	}
	for _, bits := range sortedDesc(byLen6) {
		es := byLen6[bits]
		b := bucket6[T]{mask: mask128(bits)}
		if len(es) == 1 {
			b.key, b.val = key6(es[0].prefix.Addr()), es[0].next
		} else {
			b.m = make(map[[2]uint64]*T, len(es))
			for _, e := range es {
				b.m[key6(e.prefix.Addr())] = e.next
			}
		}
		t.v6 = append(t.v6, b)
	}
	t.index = nil
}

// lookup returns the branch of the longest range containing a, or nil. An invalid address
// (Unix socket) is looked up as 255.255.255.255; an IPv4-mapped IPv6 address as IPv4. An
// IPv4 address never matches an IPv6 range and vice versa.
func (t *ipTable[T]) lookup(a netip.Addr) *T {
	if !a.IsValid() {
		a = fakeAddr()
	}
	a = a.Unmap()
	if a.Is4() {
		k := key4(a)
		for i := range t.v4 {
			b := &t.v4[i]
			mk := k & b.mask
			if b.m == nil {
				if mk == b.key {
					return b.val
				}
			} else if v, ok := b.m[mk]; ok {
				return v
			}
		}
		return nil
	}
	k := key6(a)
	for i := range t.v6 {
		b := &t.v6[i]
		mk := [2]uint64{k[0] & b.mask[0], k[1] & b.mask[1]}
		if b.m == nil {
			if mk == b.key {
				return b.val
			}
		} else if v, ok := b.m[mk]; ok {
			return v
		}
	}
	return nil
}

func key4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func key6(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// mask32 is the netmask of a /bits IPv4 range (a shift by 32 yields 0 in Go).
func mask32(bits int) uint32 { return ^uint32(0) << (32 - bits) }

func mask128(bits int) [2]uint64 {
	hi, lo := min(bits, 64), max(bits-64, 0)
	return [2]uint64{^uint64(0) << (64 - hi), ^uint64(0) << (64 - lo)}
}

func sortedDesc[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b int) int { return cmp.Compare(b, a) })
	return ks
}

// normPrefix masks p (10.0.0.1/24 is 10.0.0.0/24, as Envoy stores it) and turns an
// IPv4-mapped IPv6 range of at least /96 into the IPv4 range it covers, because addresses
// are unmapped before lookup; a mapped range would otherwise never match anything.
func normPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
