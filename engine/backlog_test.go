package engine_test

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// listenBacklog0 listens with backlog 0 on loopback (net.Listen always uses somaxconn).
func listenBacklog0() (net.Listener, error) { return listenBacklog(0) }

// listenBacklog listens on loopback with the given backlog.
func listenBacklog(backlog int) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "backlog0")
	defer f.Close()
	return net.FileListener(f)
}
