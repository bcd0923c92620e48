package engine

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddrOf converts an address for bind/connect.
func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	return sa
}

// addrPortFromRaw decodes a kernel sockaddr without allocating (x/sys's Sockaddr
// conversion allocates an interface value per call, once per accept).
func addrPortFromRaw(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), getPort(&p.Port))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		a := netip.AddrFrom16(p.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		}
		return netip.AddrPortFrom(a, getPort(&p.Port))
	}
	return netip.AddrPort{}
}

// accept4 accepts one connection, returning its fd and peer address without allocating.
func accept4(fd int, rsa *unix.RawSockaddrAny) (int, error) {
	l := uint32(unix.SizeofSockaddrAny)
	for {
		nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(rsa)),
			uintptr(unsafe.Pointer(&l)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(nfd), nil
	}
}

// localAddr is getsockname without allocating.
func localAddr(fd int) netip.AddrPort {
	var rsa unix.RawSockaddrAny
	l := uint32(unix.SizeofSockaddrAny)
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return addrPortFromRaw(&rsa)
}

// connectRaw is a non-blocking connect(2) without the runtime's syscall bookkeeping.
func connectRaw(fd int, ap netip.AddrPort) error {
	var rsa unix.RawSockaddrAny
	var l uintptr
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		p.Family = unix.AF_INET
		putPort(&p.Port, ap.Port())
		p.Addr = a.Unmap().As4()
		l = unix.SizeofSockaddrInet4
	} else {
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		p.Family = unix.AF_INET6
		putPort(&p.Port, ap.Port())
		p.Addr = a.As16()
		l = unix.SizeofSockaddrInet6
	}
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), l)
	if e != 0 {
		return e
	}
	return nil
}

// getPort and putPort read and write a sockaddr's port, which is in network byte order
// whatever the machine's: byte by byte, so no byte swap is assumed.
func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
