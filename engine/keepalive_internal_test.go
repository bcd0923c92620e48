package engine

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKeepAliveApply: upstream_connection_options.tcp_keepalive sets SO_KEEPALIVE and
// the three TCP options it names; a zero field keeps the system's value.
func TestKeepAliveApply(t *testing.T) {
	get := func(fd, level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	defIdle := get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	(&KeepAlive{Probes: 4, Interval: 7 * time.Second}).apply(fd)
	if get(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE) == 0 || get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT) != 4 ||
		get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL) != 7 || get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE) != defIdle {
		t.Errorf("keepalive %d, cnt %d, intvl %d, idle %d (default %d); want on, 4, 7, default",
			get(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE), get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
			get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL), get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE), defIdle)
	}
	(&KeepAlive{Idle: 30 * time.Second}).apply(fd)
	if get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE) != 30 {
		t.Errorf("idle %d, want 30", get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE))
	}
}
