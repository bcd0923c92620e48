package poller

import "golang.org/x/sys/unix"

// TCPCounts are what TCP_INFO and SIOCOUTQ say of one socket, the only view userspace has of
// a socket whose bytes the kernel forwards (a BPF sockmap pair): what it received and
// what it was given to send, by userspace or by the kernel.
type TCPCounts struct {
	// Received is the payload TCP received in order (tcpi_bytes_received, less the FIN's
	// sequence number once one came).
	Received uint64
	// Written is the payload handed to TCP for sending, by userspace or by the kernel's
	// redirect: tcpi_bytes_acked plus SIOCOUTQ (write_seq - snd_una), less our FIN.
	Written uint64
	// BytesAcked is tcpi_bytes_acked as the kernel has it (its SYN and FIN included).
	BytesAcked uint64
	// LastRecvMillis is tcpi_last_data_recv: milliseconds since data last arrived.
	LastRecvMillis uint32
	// FinIn, FinOut: a FIN was received, or sent (as told by the state; see below).
	FinIn, FinOut bool
	// State is tcpi_state (unix.BPF_TCP_*).
	State uint8
}

// Reset corrects counts read from a socket that was reset: its TCP_CLOSE meant no FIN
// that was not seen before (finIn, finOut: the FINs the caller knows of).
func (c *TCPCounts) Reset(finIn, finOut bool) {
	if c.State != unix.BPF_TCP_CLOSE {
		return
	}
	if c.FinIn && !finIn {
		c.FinIn = false
		c.Received++
	}
	if c.FinOut && !finOut {
		c.FinOut = false
		c.Written++
	}
}

// ReadTCPCounts reads fd's TCPCounts. dialed says fd made the connection (connect(2)): its
// tcpi_bytes_acked counts its SYN, the acceptor's counts nothing for the handshake
// (measured on 6.18: 1 and 0 right after the handshake). tcpi_bytes_received counts the
// peer's FIN but no SYN on either side. SIOCOUTQ is read after TCP_INFO, so Written can only lag.
func ReadTCPCounts(fd int, dialed bool) (TCPCounts, error) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return TCPCounts{}, err
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return TCPCounts{}, err
	}
	c := TCPCounts{Received: ti.Bytes_received, BytesAcked: ti.Bytes_acked, LastRecvMillis: ti.Last_data_recv, State: ti.State}
	// A socket whose FINs both went is TCP_CLOSE, not TIME_WAIT: tcp_time_wait hands the
	// connection to a timewait sock and tcp_done closes the one the fd holds. So CLOSE is
	// taken as both FINs done; after a reset that is wrong, which Reset corrects.
	switch ti.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSING, unix.BPF_TCP_TIME_WAIT, unix.BPF_TCP_CLOSE:
		c.FinIn = true
	}
	switch ti.State {
	case unix.BPF_TCP_FIN_WAIT1, unix.BPF_TCP_FIN_WAIT2, unix.BPF_TCP_CLOSING, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_TIME_WAIT, unix.BPF_TCP_CLOSE:
		c.FinOut = true
	}
	acked := ti.Bytes_acked
	if dialed && acked > 0 {
		acked-- // the SYN
	}
	c.Written = acked + uint64(outq)
	if c.FinIn && c.Received > 0 {
		c.Received-- // the FIN takes a sequence number
	}
	if c.FinOut && c.Written > 0 {
		c.Written-- // ours, acknowledged or in SIOCOUTQ
	}
	return c, nil
}
