// Package chain selects a listener's filter chain by Envoy's filter_chain_match rules.
package chain

import (
	"net/netip"

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
