package sockmap

import "github.com/portico-proxy/portico/poller"

// Backlog is how many bytes src received that dst has not yet been given to send: the
// bytes queued in dst's psock (or not yet through the verdict), given that everything
// written to dst came from src (as in a proxied pair, where userspace forwarded all it
// read before Pair). 0 means the kernel has delivered all it redirected, so dst's write
// side may be shut down or the pair released without losing a byte.
// dstDialed is poller.ReadTCPCounts's flag for dst.
func Backlog(src, dst int, dstDialed bool) (int64, error) {
	s, err := poller.ReadTCPCounts(src, false) // Received does not depend on it
	if err != nil {
		return 0, err
	}
	return BacklogFrom(s.Received, dst, dstDialed)
}

// BacklogFrom is Backlog with src's Received known (src may be closed already).
func BacklogFrom(received uint64, dst int, dstDialed bool) (int64, error) {
	d, err := poller.ReadTCPCounts(dst, dstDialed)
	if err != nil {
		return 0, err
	}
	return int64(received) - int64(d.Written), nil
}
