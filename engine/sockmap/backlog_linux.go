package sockmap

import "golang.org/x/sys/unix"

// Counts are what TCP_INFO and SIOCOUTQ say of one socket, the only view userspace has of
// a paired socket's traffic (the psock's own queue is not visible: see Backlog).
type Counts struct {
	// Received is the payload TCP received in order (tcpi_bytes_received, less the FIN's
	// sequence number once one came).
	Received uint64
	// Written is the payload handed to TCP for sending, by userspace or by the kernel's
	// redirect: tcpi_bytes_acked plus SIOCOUTQ (write_seq - snd_una), less our FIN.
	Written uint64
	// Acked is tcpi_bytes_acked less our FIN: what the peer has acknowledged.
	Acked uint64
	// LastRecvMillis is tcpi_last_data_recv: milliseconds since data last arrived.
	LastRecvMillis uint32
	// FinIn, FinOut: a FIN was received, or sent.
	FinIn, FinOut bool
}

// ReadCounts reads fd's Counts. dialed says fd made the connection (connect(2)): its
// tcpi_bytes_acked counts its SYN, the acceptor's counts nothing for the handshake
// (measured on 6.18: 1 and 0 right after the handshake). tcpi_bytes_received counts the
// peer's FIN but no SYN on either side. Written is read after Acked, so it can only lag.
func ReadCounts(fd int, dialed bool) (Counts, error) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return Counts{}, err
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return Counts{}, err
	}
	c := Counts{Received: ti.Bytes_received, Acked: ti.Bytes_acked, LastRecvMillis: ti.Last_data_recv}
	// A socket whose FINs both went is TCP_CLOSE, not TIME_WAIT: tcp_time_wait hands the
	// connection to a timewait sock and tcp_done closes the one the fd holds. So CLOSE is
	// taken as both FINs done; after a reset it is off by one (a reset socket is not
	// drained, only counted).
	switch ti.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSING, unix.BPF_TCP_TIME_WAIT, unix.BPF_TCP_CLOSE:
		c.FinIn = true
	}
	switch ti.State {
	case unix.BPF_TCP_FIN_WAIT1, unix.BPF_TCP_FIN_WAIT2, unix.BPF_TCP_CLOSING, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_TIME_WAIT, unix.BPF_TCP_CLOSE:
		c.FinOut = true
	}
	if dialed && c.Acked > 0 {
		c.Acked-- // the SYN
	}
	c.Written = c.Acked + uint64(outq)
	if c.FinIn && c.Received > 0 {
		c.Received-- // the FIN takes a sequence number
	}
	if c.FinOut && c.Written > 0 {
		c.Written--
		if ti.Unacked == 0 && c.Acked > 0 {
			c.Acked--
		}
	}
	return c, nil
}

// Backlog is how many bytes src received that dst has not yet been given to send: the
// bytes queued in dst's psock (or not yet through the verdict), given that everything
// written to dst came from src (as in a proxied pair, where userspace forwarded all it
// read before Pair). 0 means the kernel has delivered all it redirected, so dst's write
// side may be shut down or the pair released without losing a byte.
// dstDialed is dst's ReadCounts flag.
func Backlog(src, dst int, dstDialed bool) (int64, error) {
	s, err := ReadCounts(src, false) // Received does not depend on it
	if err != nil {
		return 0, err
	}
	return BacklogFrom(s.Received, dst, dstDialed)
}

// BacklogFrom is Backlog with src's Received known (src may be closed already).
func BacklogFrom(received uint64, dst int, dstDialed bool) (int64, error) {
	d, err := ReadCounts(dst, dstDialed)
	if err != nil {
		return 0, err
	}
	return int64(received) - int64(d.Written), nil
}
