package hotrestart

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SteerReusePort makes the SO_REUSEPORT group that fd belongs to send new connections to
// its first n sockets only, by attaching a classic BPF program to the group
// (SO_ATTACH_REUSEPORT_CBPF). The program's result is an index into the group's socket
// array, which holds the sockets in the order they joined (were bound), so the first n
// are the parent's sockets of workers 0..n-1, the ones a child with n workers took.
//
// Why: a child with fewer workers than its parent (concurrency 4 → 2) leaves sockets in
// the group that no worker of its own accepts on. Closing them while the kernel still
// hashes new connections onto them would reset whatever lands in their queues (unless
// net.ipv4.tcp_migrate_req is on, which cannot be relied on). Steered away, they receive
// nothing new; what is queued is accepted (by the parent, and by the child that adopts
// them), and they can be closed once empty.
//
// The index is the packet's flow hash (skb->hash) modulo n: on loopback and on NICs with
// RSS it spreads connections evenly; where it is 0 every connection goes to socket 0,
// which is unbalanced but loses nothing. A result the group has no socket for makes the
// kernel fall back to its own hash, so n must not exceed the group's size.
func SteerReusePort(fd, n int) error {
	if n <= 0 {
		return fmt.Errorf("hot restart: steer to %d sockets", n)
	}
	prog := []unix.SockFilter{
		// A = skb->hash (an ancillary load, not packet data)
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdRxhash},
		// A %= n
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		// return A: the socket index in the group
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog); err != nil {
		return fmt.Errorf("hot restart: attach SO_REUSEPORT steering to %d sockets: %w", n, err)
	}
	return nil
}

// UnsteerReusePort detaches a steering program from fd's SO_REUSEPORT group, so the
// kernel's hash spreads connections over every socket again (concurrency grew, or a child
// that had steered the group failed). A group without a program is left as it is.
func UnsteerReusePort(fd int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hot restart: detach SO_REUSEPORT steering: %w", err)
	}
	return nil
}

// Linux's ancillary-data offsets for classic BPF loads (linux/filter.h), which x/sys/unix
// does not name: SKF_AD_OFF is -0x1000 as an unsigned 32-bit offset.
const (
	skfAdOff    = 0xfffff000
	skfAdRxhash = 32
)

func closeFd(fd int) { unix.Close(fd) }
