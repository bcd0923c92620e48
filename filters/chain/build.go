package chain

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portico-proxy/portico/engine"
)

// Build validates the chains and builds the index. defaultChain (Listener.default_filter_chain)
// may be nil; it is what FindFilterChain returns when no chain matches. Errors name the
// chains involved by their name, or filter_chains[i] when unnamed, and follow Envoy's
// config-time rejections: identical matches, matches overlapping after expansion of their
// repeated fields, partial server-name wildcards, out-of-range ports, no chain at all.
// Chain names need not be unique: Envoy requires that only with filter_chain_matcher.
func Build(chains []Chain, defaultChain *engine.FilterChain) (*Manager, error) {
	if len(chains) == 0 && defaultChain == nil {
		return nil, errors.New("no filter chains specified")
	}
	m := &Manager{
		ports:    map[uint16]*dstIPs{},
		chains:   make([]*engine.FilterChain, len(chains)),
		labels:   make([]string, len(chains)),
		def:      defaultChain,
		defLabel: DefaultChainName,
	}
	if defaultChain != nil && defaultChain.Name != "" {
		m.defLabel = defaultChain.Name
	}
	for i := range chains {
		m.labels[i] = chainLabel(chains[i].Name, i)
		m.chains[i] = chains[i].Chain
	}
	if len(chains) == 1 && defaultChain == nil && chains[0].Chain != nil && chains[0].Match.identity() == (&Match{}).identity() {
		// One chain that matches everything: no index to walk (nor to keep in memory).
		m.only, m.ports = true, nil
		return m, nil
	}
	// Identical matches are reported as such, before the generic overlap error that the
	// expansion would also raise (Envoy's verifyNoDuplicateMatchers).
	seen := make(map[string]int, len(chains))
	for i := range chains {
		c := &chains[i]
		if c.Chain == nil {
			return nil, fmt.Errorf("filter chain '%s' has no network filter chain", m.labels[i])
		}
		if err := validate(&c.Match); err != nil {
			return nil, fmt.Errorf("filter chain '%s': %w", m.labels[i], err)
		}
		key := c.Match.identity()
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("filter chain '%s' has the same matching rules defined as '%s' (%s)",
				m.labels[i], m.labels[j], c.Match.String())
		}
		seen[key] = i
		if c.Match.usesLocalAddress() {
			m.needsLocal = true
		}
		if err := m.insert(int32(i), &c.Match); err != nil {
			return nil, err
		}
	}
	m.freeze()
	return m, nil
}

// chainLabel names a chain in errors and in FindChainName.
func chainLabel(name string, i int) string {
	if name != "" {
		return name
	}
	return "filter_chains[" + strconv.Itoa(i) + "]"
}

// validate applies the proto's validation rules that Envoy enforces before building, and the
// server-name rule it enforces while building.
func validate(mt *Match) error {
	if mt.DestinationPort > 65535 {
		return fmt.Errorf("destination_port %d is out of range [1, 65535]", mt.DestinationPort)
	}
	for i, p := range mt.SourcePorts {
		if p < 1 || p > 65535 {
			return fmt.Errorf("source_ports[%d] %d is out of range [1, 65535]", i, p)
		}
	}
	for _, f := range []struct {
		name string
		ps   []netip.Prefix
	}{
		{"prefix_ranges", mt.PrefixRanges},
		{"direct_source_prefix_ranges", mt.DirectSourcePrefixRanges},
		{"source_prefix_ranges", mt.SourcePrefixRanges},
	} {
		for i, p := range f.ps {
			if !p.IsValid() {
				return fmt.Errorf("malformed IP address in %s[%d]", f.name, i)
			}
		}
	}
	if mt.SourceType < SourceAny || mt.SourceType > SourceExternal {
		return fmt.Errorf("unknown source_type %d", mt.SourceType)
	}
	for i, n := range mt.ServerNames {
		// Only a leading "*." is a wildcard; Envoy refuses to guess what "*w.example.com"
		// or "www.*.com" would mean.
		if strings.Contains(n, "*") && !strings.HasPrefix(n, "*.") {
			return fmt.Errorf("partial wildcards are not supported in \"server_names\": server_names[%d] %q", i, n)
		}
	}
	return nil
}

// leaf is one point of a chain's expansion: one value per level.
type leaf struct {
	dstPort   uint16
	dst       netip.Prefix
	sni       string // index key: lower-cased, wildcard as ".suffix", "" for any
	transport string
	alpn      string
	direct    netip.Prefix
	srcType   SourceType
	src       netip.Prefix
	srcPort   uint16 // 0: any
}

func (l *leaf) String() string {
	sni := l.sni
	switch {
	case sni == "":
		sni = "any"
	case sni[0] == '.':
		sni = "*" + sni
	}
	return fmt.Sprintf("destination_port=%s prefix_range=%s server_name=%s transport_protocol=%s "+
		"application_protocol=%s direct_source_prefix_range=%s source_type=%s source_prefix_range=%s source_port=%s",
		portString(l.dstPort), l.dst, sni, orAny(l.transport), orAny(l.alpn), l.direct, l.srcType,
		l.src, portString(l.srcPort))
}

func portString(p uint16) string {
	if p == 0 {
		return "any"
	}
	return strconv.Itoa(int(p))
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

// catchAll is what a chain without ranges is indexed under. Envoy keeps such chains under a
// separate key that its trie also maps to 0.0.0.0/0 and ::/0; here an explicit 0.0.0.0/0 and
// "no ranges" share one branch, so two chains differing only in that overlap (Envoy's
// behaviour for that case is undefined: its trie asserts a single result).
func catchAll() []netip.Prefix {
	return []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
}

func prefixesOrAll(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return catchAll()
	}
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = normPrefix(p)
	}
	return out
}

func stringsOrAny(ss []string) []string {
	if len(ss) == 0 {
		return []string{""}
	}
	return ss
}

// insert expands a chain's match into the cross product of its repeated fields and adds
// each point as a leaf; a leaf already taken is an overlap.
func (m *Manager) insert(idx int32, mt *Match) error {
	names := make([]string, 0, max(len(mt.ServerNames), 1))
	for _, n := range stringsOrAny(mt.ServerNames) {
		n = strings.ToLower(n)
		if strings.HasPrefix(n, "*.") {
			n = n[1:]
		}
		names = append(names, n)
	}
	srcPorts := []uint16{0}
	if len(mt.SourcePorts) > 0 {
		srcPorts = srcPorts[:0]
		for _, p := range mt.SourcePorts {
			srcPorts = append(srcPorts, uint16(p))
		}
	}
	dsts := prefixesOrAll(mt.PrefixRanges)
	directs := prefixesOrAll(mt.DirectSourcePrefixRanges)
	srcs := prefixesOrAll(mt.SourcePrefixRanges)
	alpns := stringsOrAny(mt.ApplicationProtocols)

	l := leaf{dstPort: uint16(mt.DestinationPort), transport: mt.TransportProtocol, srcType: mt.SourceType}
	for _, l.dst = range dsts {
		for _, l.sni = range names {
			for _, l.alpn = range alpns {
				for _, l.direct = range directs {
					for _, l.src = range srcs {
						for _, l.srcPort = range srcPorts {
							if err := m.add(&l, idx); err != nil {
								return err
							}
						}
					}
				}
			}
		}
	}
	return nil
}

// add walks (creating) the path of one leaf and stores the chain index there.
func (m *Manager) add(l *leaf, idx int32) error {
	var d *dstIPs
	if l.dstPort == 0 {
		if m.anyPort == nil {
			m.anyPort = new(dstIPs)
		}
		d = m.anyPort
	} else {
		if m.ports[l.dstPort] == nil {
			m.ports[l.dstPort] = new(dstIPs)
		}
		d = m.ports[l.dstPort]
	}
	sn := d.child(l.dst)
	if sn.m == nil {
		sn.m = map[string]*transports{}
	}
	tp := sn.m[l.sni]
	if tp == nil {
		tp = new(transports)
		sn.m[l.sni] = tp
	}
	ds := tp.t.child(l.transport).t.child(l.alpn)
	st := ds.child(l.direct)
	if st[l.srcType] == nil {
		st[l.srcType] = new(srcIPs)
	}
	sp := st[l.srcType].child(l.src)

	prev, taken := int32(-1), false
	if l.srcPort == 0 {
		prev, taken = sp.any, sp.hasAny
		sp.any, sp.hasAny = idx, true
	} else {
		if sp.exact == nil {
			sp.exact = map[uint16]int32{}
		}
		prev, taken = sp.exact[l.srcPort]
		sp.exact[l.srcPort] = idx
	}
	if !taken {
		return nil
	}
	if prev == idx {
		return fmt.Errorf("multiple filter chains with overlapping matching rules are defined: "+
			"filter chain '%s' lists the same value twice (%s)", m.labels[idx], l)
	}
	return fmt.Errorf("multiple filter chains with overlapping matching rules are defined: "+
		"filter chains '%s' and '%s' both match (%s)", m.labels[prev], m.labels[idx], l)
}

// freeze turns the build-time structures into lookup form.
func (m *Manager) freeze() {
	freezeDst := func(d *dstIPs) {
		if d == nil {
			return
		}
		for _, e := range d.entries {
			for _, tp := range e.next.m {
				tp.t.freeze()
				for _, ap := range tp.t.vals {
					ap.t.freeze()
					for _, ds := range ap.t.vals {
						for _, de := range ds.entries {
							for _, si := range de.next {
								if si != nil {
									si.freeze()
								}
							}
						}
						ds.freeze()
					}
				}
			}
		}
		d.freeze()
	}
	for _, d := range m.ports {
		freezeDst(d)
	}
	freezeDst(m.anyPort)
}
