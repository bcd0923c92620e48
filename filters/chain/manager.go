package chain

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portico-proxy/portico/engine"
)

// DefaultChainName is what FindChainName reports when the default_filter_chain is chosen
// and has no name of its own.
const DefaultChainName = "default_filter_chain"

// Manager is a listener's filter-chain index: Envoy's FilterChainManagerImpl without the
// unified matcher. It is built once by Build and immutable afterwards, so every worker may
// use it concurrently; lookups do not allocate.
//
// The index is a tree of nine levels, walked top-down at connection time. At every level
// exactly one branch is taken, the most specific one that accepts the connection, and the
// walk never backtracks: if that branch dead-ends lower down, the result is the default
// chain (or nothing), even when a less specific branch would have matched as a whole.
//
//  1. destination port: exact port, else the chains without destination_port;
//  2. destination IP: the longest prefix_ranges entry (no ranges = 0.0.0.0/0 and ::/0);
//  3. server name: exact, then "*." wildcards longest suffix first, then chains without
//     server_names;
//  4. transport protocol: exact, else chains without transport_protocol;
//  5. application protocols: the first of the client's protocols (in its order) that has a
//     branch, else chains without application_protocols;
//  6. direct source IP: longest direct_source_prefix_ranges entry;
//  7. source type: SAME_IP_OR_LOOPBACK for a local peer or EXTERNAL for another one, when
//     such a branch exists, else ANY;
//  8. source IP: longest source_prefix_ranges entry;
//  9. source port: exact port, else chains without source_ports.
type Manager struct {
	ports   map[uint16]*dstIPs // destination_port set
	anyPort *dstIPs            // destination_port unset; nil if no chain has it unset

	chains []*engine.FilterChain // by config index
	labels []string              // by config index: the name, or filter_chains[i]

	def      *engine.FilterChain
	defLabel string

	needsLocal bool
}

// The levels below the destination port, top-down. Each node holds the branches of the next
// level; a nil pointer or a missing key is a dead end.
type (
	dstIPs      = ipTable[serverNames]
	serverNames struct {
		// m is keyed by the lower-cased exact name, by the suffix of a wildcard without its
		// star (".example.com" for "*.example.com") and by "" for chains without
		// server_names — one map, as in Envoy.
		m map[string]*transports
	}
	transports  struct{ t strTable[appProtos] }
	appProtos   struct{ t strTable[directSrcs] }
	directSrcs  = ipTable[sourceTypes]
	sourceTypes [3]*srcIPs // indexed by SourceType
	srcIPs      = ipTable[srcPorts]
	srcPorts    struct {
		exact  map[uint16]int32 // source port → chain index
		any    int32            // chain without source_ports, if hasAny
		hasAny bool
	}
)

// strTable maps a string to the next level. Transport and application protocol levels hold
// a few keys at most, where comparing strings beats hashing them; a map takes over beyond
// linearMax keys.
type strTable[T any] struct {
	keys []string
	vals []*T
	m    map[string]*T // only when len(keys) > linearMax
}

const linearMax = 8

func (t *strTable[T]) child(k string) *T {
	for i, have := range t.keys {
		if have == k {
			return t.vals[i]
		}
	}
	n := new(T)
	t.keys = append(t.keys, k)
	t.vals = append(t.vals, n)
	return n
}

func (t *strTable[T]) freeze() {
	if len(t.keys) > linearMax {
		t.m = make(map[string]*T, len(t.keys))
		for i, k := range t.keys {
			t.m[k] = t.vals[i]
		}
	}
}

func (t *strTable[T]) get(k string) *T {
	if t.m != nil {
		return t.m[k]
	}
	for i, have := range t.keys {
		if have == k {
			return t.vals[i]
		}
	}
	return nil
}

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

// FindFilterChain implements engine.FilterChainManager: the matching chain, else the default
// chain, else nil (the socket is closed).
func (m *Manager) FindFilterChain(info *engine.SocketInfo) *engine.FilterChain {
	idx, ok := m.find(info)
	if !ok {
		return m.def
	}
	return m.chains[idx]
}

// FindChainName runs the same lookup as FindFilterChain and reports the chosen chain's label
// (its name, filter_chains[i] when unnamed, or the default chain's name, DefaultChainName
// when that has none); ok is false when the socket would be closed.
func (m *Manager) FindChainName(info *engine.SocketInfo) (name string, ok bool) {
	idx, found := m.find(info)
	switch {
	case found:
		return m.labels[idx], true
	case m.def != nil:
		return m.defLabel, true
	}
	return "", false
}

// ChainNames returns the labels of the configured chains in config order: the name, or
// filter_chains[i] for an unnamed chain. The default chain is not included.
func (m *Manager) ChainNames() []string { return append([]string(nil), m.labels...) }

// NeedsLocalAddress implements engine.FilterChainManager: true when a chain matches on
// prefix_ranges or source_type, the only criteria that need the local IP.
func (m *Manager) NeedsLocalAddress() bool { return m.needsLocal }

// find walks the index. It returns the chain index, or ok=false when no chain matches.
func (m *Manager) find(info *engine.SocketInfo) (idx int32, ok bool) {
	local := info.LocalAddr.Addr()
	// An exact destination port wins, and is final: if its subtree has no match, the
	// port-less chains are not tried. A non-IP local address has no port.
	if local.IsValid() {
		if d := m.ports[info.LocalAddr.Port()]; d != nil {
			return m.findDst(d, info)
		}
	}
	if m.anyPort == nil {
		return -1, false
	}
	return m.findDst(m.anyPort, info)
}

func (m *Manager) findDst(d *dstIPs, info *engine.SocketInfo) (int32, bool) {
	sn := d.lookup(info.LocalAddr.Addr())
	if sn == nil {
		return -1, false
	}
	tp := sn.find(info.ServerName)
	if tp == nil {
		return -1, false
	}
	transport := info.TransportProtocol
	if transport == "" {
		// The engine sets it before selection; default it here too so that callers such as
		// explain see the same result.
		transport = engine.TransportRawBuffer
	}
	ap := tp.t.get(transport)
	if ap == nil {
		if ap = tp.t.get(""); ap == nil {
			return -1, false
		}
	}
	var ds *directSrcs
	for _, p := range info.ApplicationProtocols() {
		if ds = ap.t.get(p); ds != nil {
			break
		}
	}
	if ds == nil {
		if ds = ap.t.get(""); ds == nil {
			return -1, false
		}
	}
	st := ds.lookup(info.DirectRemoteAddr.Addr())
	if st == nil {
		return -1, false
	}
	si := st.pick(info)
	if si == nil {
		return -1, false
	}
	sp := si.lookup(info.RemoteAddr.Addr())
	if sp == nil {
		return -1, false
	}
	if port := info.RemoteAddr.Port(); port != 0 {
		if i, ok := sp.exact[port]; ok {
			return i, true
		}
	}
	if sp.hasAny {
		return sp.any, true
	}
	return -1, false
}

// pick chooses the source-type branch. Locality is only computed when a LOCAL or EXTERNAL
// branch exists, and whichever applies is final: no fallback to ANY from it.
func (st *sourceTypes) pick(info *engine.SocketInfo) *srcIPs {
	local, external := st[SourceSameIPOrLoopback], st[SourceExternal]
	if local != nil || external != nil {
		if isSameIPOrLoopback(info) {
			if local != nil {
				return local
			}
		} else if external != nil {
			return external
		}
	}
	return st[SourceAny]
}

// isSameIPOrLoopback is Envoy's Utility::isSameIpOrLoopback: the peer (the possibly
// PROXY-rewritten source) is a Unix socket, exactly 127.0.0.1 or ::1 (not all of 127/8), or
// has the same IP as the (possibly restored) local address.
func isSameIPOrLoopback(info *engine.SocketInfo) bool {
	remote := info.RemoteAddr.Addr()
	if !remote.IsValid() {
		return true
	}
	remote = remote.Unmap().WithZone("")
	if remote == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || remote == netip.IPv6Loopback() {
		return true
	}
	local := info.LocalAddr.Addr()
	return local.IsValid() && local.Unmap().WithZone("") == remote
}

// find picks the server-name branch: exact name, then wildcards from the longest suffix
// down, then the chains without server_names. The connection's name is compared
// lower-cased; the tls_inspector already lower-cases it, so copying is only needed for a
// name that still holds upper-case ASCII, and then goes to a stack buffer.
func (sn *serverNames) find(name string) *transports {
	if !hasUpper(name) {
		return findName(sn.m, name)
	}
	var buf [256]byte
	if len(name) > len(buf) {
		// Longer than any DNS name (253): matched as is rather than allocate for it.
		return findName(sn.m, name)
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return findName(sn.m, b)
}

// findName is generic so that the string and the lowered []byte take the same code; map
// lookups with m[string(b)] do not allocate.
func findName[S ~string | ~[]byte](m map[string]*transports, name S) *transports {
	if t, ok := m[string(name)]; ok {
		return t
	}
	// Suffixes start at a dot after the first character and before the last, so
	// "example.com" tries ".com" but never ".example.com" (the bare domain is not matched
	// by "*.example.com", as in Envoy).
	for i := 1; i < len(name)-1; i++ {
		if name[i] == '.' {
			if t, ok := m[string(name[i:])]; ok {
				return t
			}
		}
	}
	return m[""]
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
