package chain

import (
	"net/netip"

	"github.com/portico-proxy/portico/engine"
)

// FindFilterChain implements engine.FilterChainManager: the matching chain, else the default
// chain, else nil (the socket is closed).
func (m *Manager) FindFilterChain(info *engine.SocketInfo) *engine.FilterChain {
	if m.only {
		return m.chains[0]
	}
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

// find walks the index. It returns the chain index, or ok=false when no chain matches.
func (m *Manager) find(info *engine.SocketInfo) (idx int32, ok bool) {
	if m.only {
		return 0, true
	}
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
