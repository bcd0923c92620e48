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
	// alpn holds application protocols in the client's order. During the listener
	// filters it points into the pooled ActiveSocket's array (no allocation); a
	// Connection gets its own copy (ownALPN), only when there is something to copy.
	alpn []string
}

// ApplicationProtocols returns the application protocols in the client's order. The slice
// aliases the SocketInfo: do not keep it.
func (s *SocketInfo) ApplicationProtocols() []string { return s.alpn }

// SetApplicationProtocols replaces the application protocols (at most 8 are kept).
func (s *SocketInfo) SetApplicationProtocols(protos ...string) {
	s.alpn = append(s.alpn[:0], protos[:min(len(protos), maxALPN)]...)
}

// AddApplicationProtocol appends one protocol, dropping it if 8 are already held.
func (s *SocketInfo) AddApplicationProtocol(p string) {
	if len(s.alpn) < maxALPN {
		s.alpn = append(s.alpn, p)
	}
}

// ClearApplicationProtocols empties the list.
func (s *SocketInfo) ClearApplicationProtocols() { s.alpn = s.alpn[:0] }

// Reset zeroes the info for reuse, keeping its ALPN storage.
func (s *SocketInfo) Reset() { *s = SocketInfo{alpn: s.alpn[:0]} }

// reset zeroes the info for reuse, keeping buf as the ALPN storage.
func (s *SocketInfo) reset(buf *[maxALPN]string) {
	clear(buf[:])
	*s = SocketInfo{alpn: buf[:0]}
}

// ownALPN gives the info a private copy of its ALPN list, detached from the pooled
// socket it was copied from.
func (s *SocketInfo) ownALPN() {
	if len(s.alpn) == 0 {
		s.alpn = nil
		return
	}
	s.alpn = append([]string(nil), s.alpn...)
}
