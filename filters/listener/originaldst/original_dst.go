// Package originaldst is envoy.filters.listener.original_dst: it restores the destination
// that iptables REDIRECT/DNAT rewrote, from SO_ORIGINAL_DST.
package originaldst

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.original_dst"

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h (same
// value as SO_ORIGINAL_DST, on the SOL_IPV6 level).
const ip6tSoOriginalDst = 80

// Filter is stateless; one instance serves every socket.
type Filter struct{}

// New returns the filter.
func New() *Filter { return &Filter{} }

// Name implements engine.ListenerFilter.
func (*Filter) Name() string { return Name }

// OnAccept implements engine.ListenerFilter. It always continues: a socket without a
// conntrack entry (not redirected) keeps its addresses, as in Envoy.
func (*Filter) OnAccept(s *engine.ActiveSocket) engine.FilterStatus {
	s.Control(func(fd int) { restore(fd, &s.Info) })
	return engine.Continue
}

// MaxReadBytes implements engine.ListenerFilter: the filter reads no payload.
func (*Filter) MaxReadBytes() int { return 0 }

// OnData implements engine.ListenerFilter; never called since MaxReadBytes is 0.
func (*Filter) OnData(*engine.ActiveSocket, []byte) engine.FilterStatus { return engine.Continue }

// restore sets info.LocalAddr to the socket's original destination and marks it
// restored. It reports whether it did.
//
// Envoy picks the getsockopt level from the socket's family. Portico may not know the
// local address yet (the engine calls getsockname only when chain matching needs it), so
// the family comes from it when known and otherwise both levels are tried, IPv4 first: on
// a dual-stack socket an IPv4 client's conntrack entry is IPv4 and only SOL_IP finds it.
// If neither answers but the socket is transparent (TPROXY), its own local address is the
// original destination, as Envoy does.
func restore(fd int, info *engine.SocketInfo) bool {
	tryV4, tryV6 := true, true
	if la := info.LocalAddr.Addr(); la.IsValid() && !la.Is4In6() {
		tryV4, tryV6 = la.Is4(), la.Is6()
	}
	if tryV4 {
		if ap, ok := getsockoptAddr(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST); ok {
			info.LocalAddr, info.LocalAddrRestored = ap, true
			return true
		}
	}
	if tryV6 {
		if ap, ok := getsockoptAddr(fd, unix.SOL_IPV6, ip6tSoOriginalDst); ok {
			info.LocalAddr, info.LocalAddrRestored = ap, true
			return true
		}
	}
	if transparent(fd) {
		if ap, ok := sockname(fd); ok {
			info.LocalAddr, info.LocalAddrRestored = ap, true
			return true
		}
	}
	return false
}

// getsockoptAddr reads a sockaddr-valued option into a stack RawSockaddrAny: the
// x/sys/unix wrappers return heap values, and this runs on every accepted socket.
func getsockoptAddr(fd, level, opt int) (netip.AddrPort, bool) {
	var rsa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(rsa))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return netip.AddrPort{}, false
	}
	return decode(&rsa, l)
}

func sockname(fd int) (netip.AddrPort, bool) {
	var rsa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(rsa))
	_, _, errno := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd),
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
	if errno != 0 {
		return netip.AddrPort{}, false
	}
	return decode(&rsa, l)
}

// transparent reports IP_TRANSPARENT or IPV6_TRANSPARENT on the socket.
func transparent(fd int) bool {
	if v, err := unix.GetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT); err == nil && v != 0 {
		return true
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_TRANSPARENT)
	return err == nil && v != 0
}

// decode turns a kernel sockaddr_in/in6 into an AddrPort. IPv4-mapped IPv6 addresses are
// unmapped so that they match IPv4 listeners and prefix ranges.
func decode(rsa *unix.RawSockaddrAny, l uint32) (netip.AddrPort, bool) {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		if l < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), true
	case unix.AF_INET6:
		if l < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}
