package chain

import "github.com/portico-proxy/portico/engine"

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
	// only: a single chain with an empty match and no default (most listeners), which
	// every connection gets; the index is not built.
	only bool
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

// ChainNames returns the labels of the configured chains in config order: the name, or
// filter_chains[i] for an unnamed chain. The default chain is not included.
func (m *Manager) ChainNames() []string { return append([]string(nil), m.labels...) }

// NeedsLocalAddress implements engine.FilterChainManager: true when a chain matches on
// prefix_ranges or source_type, the only criteria that need the local IP.
func (m *Manager) NeedsLocalAddress() bool { return m.needsLocal }
