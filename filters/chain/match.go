// Package chain selects a listener's filter chain by Envoy's filter_chain_match rules.
package chain

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portico-proxy/portico/engine"
)

// SourceType is FilterChainMatch.source_type.
type SourceType int

// Source types, numbered as in Envoy's ConnectionSourceType.
const (
	SourceAny SourceType = iota
	SourceSameIPOrLoopback
	SourceExternal
)

// Match is one chain's filter_chain_match, translated from the proto: zero values mean
// "any" as in Envoy.
type Match struct {
	DestinationPort          uint32 // 0: any
	PrefixRanges             []netip.Prefix
	DirectSourcePrefixRanges []netip.Prefix
	SourceType               SourceType
	SourcePrefixRanges       []netip.Prefix
	SourcePorts              []uint32
	ServerNames              []string
	TransportProtocol        string
	ApplicationProtocols     []string
}

// Chain is one configured filter chain: its name, its match and what it runs.
type Chain struct {
	Name  string
	Match Match
	Chain *engine.FilterChain
}

// String returns the proto enum name.
func (t SourceType) String() string {
	switch t {
	case SourceAny:
		return "ANY"
	case SourceSameIPOrLoopback:
		return "SAME_IP_OR_LOOPBACK"
	case SourceExternal:
		return "EXTERNAL"
	}
	return "SourceType(" + strconv.Itoa(int(t)) + ")"
}

// identity is a key equal for two matches exactly when Envoy would find their protos equal:
// field by field, repeated fields in order, values as given (not normalised).
func (m *Match) identity() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%q|%q|%d|%q|%v|%q|%q|%q",
		m.DestinationPort, m.PrefixRanges, m.DirectSourcePrefixRanges, m.SourceType,
		m.SourcePrefixRanges, m.SourcePorts, m.ServerNames, m.TransportProtocol,
		m.ApplicationProtocols)
	return b.String()
}

// String renders the match with its set fields only, in proto field names, for errors.
func (m *Match) String() string {
	var parts []string
	add := func(name string, v any) { parts = append(parts, fmt.Sprintf("%s: %v", name, v)) }
	if m.DestinationPort != 0 {
		add("destination_port", m.DestinationPort)
	}
	if len(m.PrefixRanges) > 0 {
		add("prefix_ranges", m.PrefixRanges)
	}
	if len(m.DirectSourcePrefixRanges) > 0 {
		add("direct_source_prefix_ranges", m.DirectSourcePrefixRanges)
	}
	if m.SourceType != SourceAny {
		add("source_type", m.SourceType)
	}
	if len(m.SourcePrefixRanges) > 0 {
		add("source_prefix_ranges", m.SourcePrefixRanges)
	}
	if len(m.SourcePorts) > 0 {
		add("source_ports", m.SourcePorts)
	}
	if len(m.ServerNames) > 0 {
		add("server_names", m.ServerNames)
	}
	if m.TransportProtocol != "" {
		add("transport_protocol", m.TransportProtocol)
	}
	if len(m.ApplicationProtocols) > 0 {
		add("application_protocols", m.ApplicationProtocols)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// usesLocalAddress reports whether matching needs the connection's local IP: destination
// ranges, or a source type (SAME_IP_OR_LOOPBACK compares the peer with the local IP, and
// EXTERNAL is its negation).
func (m *Match) usesLocalAddress() bool {
	return len(m.PrefixRanges) > 0 || m.SourceType != SourceAny
}
