// Package proxyprotocol is envoy.filters.listener.proxy_protocol: it parses a HAProxy
// PROXY protocol header (v1 text or v2 binary) from the socket's first bytes, restores the
// source and destination it carries, and consumes exactly the header (Drain): the
// connection sees only what follows it.
package proxyprotocol

import (
	"encoding/binary"

	"github.com/portico-proxy/portico/engine"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.proxy_protocol"

// Config mirrors the fields of envoy.extensions.filters.listener.proxy_protocol.v3
// .ProxyProtocol that Portico supports. rules, pass_through_tlvs, tlv_location and
// stat_prefix concern TLV metadata and stats, which Portico does not keep; TLVs are
// validated and consumed with the header.
type Config struct {
	// AllowRequestsWithoutProxyProtocol lets connections whose first bytes match no
	// allowed signature through untouched instead of closing them.
	AllowRequestsWithoutProxyProtocol bool
	// DisallowedVersions (a set of V1, V2) are rejected, or with
	// AllowRequestsWithoutProxyProtocol not even looked for.
	DisallowedVersions Versions
}

// Filter is stateless; one instance serves every socket.
type Filter struct{ cfg Config }

// New returns the filter.
func New(cfg Config) *Filter { return &Filter{cfg: cfg} }

// Name implements engine.ListenerFilter.
func (*Filter) Name() string { return Name }

// OnAccept implements engine.ListenerFilter: the header must be read first.
func (*Filter) OnAccept(*engine.ActiveSocket) engine.FilterStatus { return engine.StopIteration }

// MaxReadBytes implements engine.ListenerFilter: the longest header the protocol allows.
func (*Filter) MaxReadBytes() int { return MaxV2Len }

// OnData implements engine.ListenerFilter.
func (f *Filter) OnData(s *engine.ActiveSocket, data []byte) engine.FilterStatus {
	v := f.verdict(&s.Info, data, MaxV2Len)
	if v.fail {
		s.Fail()
		return engine.StopIteration
	}
	if v.drain > 0 {
		if err := s.Drain(v.drain); err != nil {
			// Parsed from data, so the bytes are there: this cannot happen.
			s.Fail()
			return engine.StopIteration
		}
	}
	if v.status == engine.StopIteration && hasPrefixOf(data, V2Signature) {
		// A v2 header says its length in its first 16 bytes: sleep until it is whole.
		need := V2HeaderLen
		if len(data) >= V2HeaderLen {
			need += int(binary.BigEndian.Uint16(data[14:16]))
		}
		s.WantBytes(need)
	}
	return v.status
}

// verdict is what OnData decides for data, before any effect on the socket.
type verdict struct {
	status engine.FilterStatus
	fail   bool
	drain  int
}

// verdict parses data and applies a complete header to info. peekCap is the most the
// engine will ever read for the filter; a v2 header declaring more can never be read whole, so it is
// rejected at once rather than left to time out.
func (f *Filter) verdict(info *engine.SocketInfo, data []byte, peekCap int) verdict {
	h, st := Parse(data, f.cfg.DisallowedVersions, f.cfg.AllowRequestsWithoutProxyProtocol)
	switch st {
	case NeedMore:
		if len(data) >= V2HeaderLen && hasPrefixOf(data, V2Signature) {
			if V2HeaderLen+int(binary.BigEndian.Uint16(data[14:16])) > peekCap {
				return verdict{fail: true}
			}
		}
		return verdict{status: engine.StopIteration}
	case NotProxy:
		return verdict{status: engine.Continue}
	case Done:
		apply(info, &h)
		return verdict{status: engine.Continue, drain: h.Len}
	default:
		return verdict{fail: true}
	}
}

// apply records a PROXY header's addresses. As in Envoy, the destination counts as
// restored only when it differs from what the socket already had, and the directly
// connected peer is kept for direct_source_prefix_ranges.
func apply(info *engine.SocketInfo, h *Header) {
	if h.Local {
		return
	}
	info.RemoteAddr = h.Source
	if h.Destination != info.LocalAddr {
		info.LocalAddr = h.Destination
		info.LocalAddrRestored = true
	}
}
