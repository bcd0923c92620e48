package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dialer opens many loopback connections. One (source IP, destination)
// pair only has ~28k ephemeral ports, so connections are spread over
// 127.0.0.1..127.0.0.N. IP_BIND_ADDRESS_NO_PORT defers the port choice from
// bind() to connect(), letting the kernel reuse a port for different
// destinations instead of failing with EADDRINUSE.
type dialer struct {
	addr     string
	sources  []*net.TCPAddr
	parallel int
	timeout  time.Duration // whole dial phase
	failed   atomic.Int64
	lastErr  atomic.Value // string
}

func newDialer(addr string, conns, sources, parallel int, timeout time.Duration) *dialer {
	if sources <= 0 {
		sources = (conns + 7999) / 8000
	}
	d := &dialer{addr: addr, parallel: max(parallel, 1), timeout: timeout}
	if sources > 1 {
		for i := 0; i < sources; i++ {
			d.sources = append(d.sources, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))})
		}
	}
	return d
}

func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// dialAll opens n connections, at most d.parallel handshakes in flight so the
// server's accept backlog (somaxconn) is not overrun, and calls ready on each
// (in its own goroutine) so per-connection setup overlaps with dialing. Slots
// of connections that could not be opened stay nil.
func (d *dialer) dialAll(ctx context.Context, n int, ready func(i int, c *net.TCPConn) error) []*net.TCPConn {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	conns := make([]*net.TCPConn, n)
	sem := make(chan struct{}, d.parallel)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			d.failed.Add(int64(n - i))
			d.lastErr.Store("dial phase timed out")
			wg.Wait()
			return conns
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.dialOne(ctx, i)
			if err == nil && ready != nil {
				err = ready(i, c)
				if err != nil {
					c.Close()
				}
			}
			if err != nil {
				d.failed.Add(1)
				d.lastErr.Store(err.Error())
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	return conns
}

func (d *dialer) dialOne(ctx context.Context, i int) (*net.TCPConn, error) {
	nd := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
	if len(d.sources) > 0 {
		nd.LocalAddr = d.sources[i%len(d.sources)]
		nd.Control = bindNoPort
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var c net.Conn
		c, err = nd.DialContext(ctx, "tcp", d.addr)
		if err == nil {
			tc := c.(*net.TCPConn)
			// RST on close: thousands of TIME_WAIT sockets per run would
			// otherwise pile up and starve the next repetitions of ports.
			_ = tc.SetLinger(0)
			return tc, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
	}
	return nil, fmt.Errorf("dial %s: %w", d.addr, err)
}

func closeAll(conns []*net.TCPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func countOK(conns []*net.TCPConn) int {
	n := 0
	for _, c := range conns {
		if c != nil {
			n++
		}
	}
	return n
}
