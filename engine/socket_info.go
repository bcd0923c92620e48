package engine

import "net/netip"

// Transport protocol names set by listener filters and matched by filter chains.
const (
	TransportRawBuffer = "raw_buffer"
	TransportTLS       = "tls"
)

// maxALPN bounds how many application protocols a socket remembers; the rest are dropped.
const maxALPN = 8

// SocketInfo is what is known about a socket before and after the listener filters: the
// input of filter-chain selection (Envoy's ConnectionSocket address provider plus
// requested server name, transport and application protocols).
type SocketInfo struct {
	// LocalAddr is the destination: the listener's address, getsockname's, or the one a
	// filter restored (original_dst, proxy_protocol).
	LocalAddr netip.AddrPort
	// RemoteAddr is the source: the peer, or the address a PROXY header carried.
	RemoteAddr netip.AddrPort
	// DirectRemoteAddr is always the directly connected peer.
	DirectRemoteAddr netip.AddrPort
	// LocalAddrRestored is set when a filter replaced LocalAddr (enables use_original_dst
	// hand-off).
	LocalAddrRestored bool
	// ServerName is the SNI, lower-cased, or "".
	ServerName string
	// TransportProtocol is "" until chain selection, which defaults it to raw_buffer.
	TransportProtocol string
	// alpn holds application protocols in the client's order.
	alpn  [maxALPN]string
	nalpn int
}

// ApplicationProtocols returns the application protocols in the client's order. The slice
// aliases the SocketInfo: do not keep it.
func (s *SocketInfo) ApplicationProtocols() []string { return s.alpn[:s.nalpn] }

// SetApplicationProtocols replaces the application protocols (at most 8 are kept).
func (s *SocketInfo) SetApplicationProtocols(protos ...string) {
	s.nalpn = copy(s.alpn[:], protos)
}

// AddApplicationProtocol appends one protocol, dropping it if 8 are already held.
func (s *SocketInfo) AddApplicationProtocol(p string) {
	if s.nalpn < maxALPN {
		s.alpn[s.nalpn] = p
		s.nalpn++
	}
}

// ClearApplicationProtocols empties the list.
func (s *SocketInfo) ClearApplicationProtocols() { s.nalpn = 0 }

// Reset zeroes the info for reuse.
func (s *SocketInfo) Reset() { *s = SocketInfo{} }
