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
	// filters it points at the pooled ActiveSocket's list (no allocation); a Connection
	// gets its own copy (ownALPN), only when there is something to copy. A pointer, not
	// a slice: most connections have none, and every byte of a Connection counts.
	alpn *[]string
}

// ApplicationProtocols returns the application protocols in the client's order. The slice
// aliases the SocketInfo: do not keep it.
func (s *SocketInfo) ApplicationProtocols() []string {
	if s.alpn == nil {
		return nil
	}
	return *s.alpn
}

// SetApplicationProtocols replaces the application protocols (at most 8 are kept).
func (s *SocketInfo) SetApplicationProtocols(protos ...string) {
	protos = protos[:min(len(protos), maxALPN)]
	if s.alpn == nil {
		if len(protos) == 0 {
			return
		}
		s.alpn = new([]string)
	}
	*s.alpn = append((*s.alpn)[:0], protos...)
}

// AddApplicationProtocol appends one protocol, dropping it if 8 are already held.
func (s *SocketInfo) AddApplicationProtocol(p string) {
	if s.alpn == nil {
		s.alpn = new([]string)
	}
	if len(*s.alpn) < maxALPN {
		*s.alpn = append(*s.alpn, p)
	}
}

// ClearApplicationProtocols empties the list.
func (s *SocketInfo) ClearApplicationProtocols() {
	if s.alpn != nil {
		*s.alpn = (*s.alpn)[:0]
	}
}

// Reset zeroes the info for reuse, keeping its ALPN storage.
func (s *SocketInfo) Reset() {
	l := s.alpn
	if l != nil {
		*l = (*l)[:0]
	}
	*s = SocketInfo{alpn: l}
}

// reset zeroes the info for reuse, with list (backed by buf) as its ALPN storage.
func (s *SocketInfo) reset(list *[]string, buf *[maxALPN]string) {
	clear(buf[:])
	*list = buf[:0]
	*s = SocketInfo{alpn: list}
}

// ownALPN gives the info a private copy of its ALPN list, detached from the pooled
// socket it was copied from.
func (s *SocketInfo) ownALPN() {
	if s.alpn == nil || len(*s.alpn) == 0 {
		s.alpn = nil
		return
	}
	l := append([]string(nil), *s.alpn...)
	s.alpn = &l
}
