package poller

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The calls below never block (non-blocking fds, epoll_ctl, a zero-timeout epoll_wait),
// so they go through RawSyscall: it skips the runtime's entersyscall/exitsyscall, which
// otherwise has sysmon hand the worker's P around on every read and write. On a VM where
// a syscall costs microseconds, those extra wake-ups (futex, nanosleep) were most of the
// runtime's share per request.

// RawRecv is recv(2) (recvfrom without an address) on a non-blocking socket. It goes
// straight to the socket layer, where read(2) first passes through the VFS (fdget_pos,
// vfs_read, sock_read_iter): a few percent of the kernel's time per request on a proxy.
func RawRecv(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// RawSend is send(2) (sendto without an address) on a non-blocking socket, for the same
// reason as RawRecv. MSG_NOSIGNAL: a peer that reset gives EPIPE, not a SIGPIPE.
func RawSend(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// RawClose is close(2) for sockets without a blocking linger.
func RawClose(fd int) error {
	_, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// epollWait blocks through Syscall (so the runtime can run other goroutines meanwhile),
// or through RawSyscall if raw (a zero timeout, or WaitBusy).
func epollWait(epfd int, events []unix.EpollEvent, msec int, raw bool) (int, error) {
	var n uintptr
	var e unix.Errno
	if raw {
		n, _, e = unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), uintptr(msec), 0, 0)
	} else {
		n, _, e = unix.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), uintptr(msec), 0, 0)
	}
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// RawSplice is splice(2) between a socket and a pipe, both non-blocking, with
// SPLICE_F_NONBLOCK|SPLICE_F_MOVE: it moves page references instead of copying bytes.
func RawSplice(from, to int, n int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n),
		unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
