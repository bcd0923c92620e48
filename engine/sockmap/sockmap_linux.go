package sockmap

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultMaxPairs is the pair capacity Open uses for maxPairs <= 0.
const DefaultMaxPairs = 65536

// Map is a loaded and attached sockmap: safe for concurrent use (each call is a bpf(2)
// syscall; the kernel locks its buckets).
type Map struct {
	peers  *ebpf.Map // cookie(X) -> X's peer; no program
	active *ebpf.Map // cookie(X) -> X; the verdict program is attached here
	sent   *ebpf.Map // cookie(X) -> bytes the verdict redirected from X (a hash of u64)
	prog   *ebpf.Program
}

// Pair names a paired socket pair by its sockets' cookies, a's then b's (an array, so
// that callers can hold it without importing this package).
type Pair = [2]uint64

// UnsupportedError says why the kernel path cannot be used here.
type UnsupportedError struct {
	Reason string
	Err    error
}

func (e *UnsupportedError) Error() string {
	if e.Err == nil {
		return "sockmap unsupported: " + e.Reason
	}
	return "sockmap unsupported: " + e.Reason + ": " + e.Err.Error()
}

func (e *UnsupportedError) Unwrap() error { return e.Err }

// Open creates the maps, loads the verdict program and attaches it. Any failure is an
// *UnsupportedError naming the step (not root, no BPF, a kernel without sockmap or
// sk_skb programs).
func Open(maxPairs int) (*Map, error) {
	if maxPairs <= 0 {
		maxPairs = DefaultMaxPairs
	}
	if os.Geteuid() != 0 {
		// CAP_BPF + CAP_NET_ADMIN would do too; the bpf(2) calls below say so if not.
		if err := probe(); err != nil {
			return nil, &UnsupportedError{Reason: "not root and no CAP_BPF", Err: err}
		}
	}
	spec := func(name string) *ebpf.MapSpec {
		return &ebpf.MapSpec{Name: name, Type: ebpf.SockHash, KeySize: 8, ValueSize: 8,
			MaxEntries: uint32(2 * maxPairs)}
	}
	m := &Map{}
	var err error
	if m.peers, err = ebpf.NewMap(spec("portico_peers")); err != nil {
		return nil, &UnsupportedError{Reason: "create sockhash", Err: err}
	}
	if m.active, err = ebpf.NewMap(spec("portico_active")); err != nil {
		m.Close()
		return nil, &UnsupportedError{Reason: "create sockhash", Err: err}
	}
	if m.sent, err = ebpf.NewMap(&ebpf.MapSpec{Name: "portico_sent", Type: ebpf.Hash, KeySize: 8,
		ValueSize: 8, MaxEntries: uint32(2 * maxPairs)}); err != nil {
		m.Close()
		return nil, &UnsupportedError{Reason: "create hash", Err: err}
	}
	m.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "portico_verdict",
		Type:         ebpf.SkSKB,
		AttachType:   ebpf.AttachSkSKBStreamVerdict,
		License:      "GPL", // bpf_sk_redirect_hash is GPL-only
		Instructions: verdictProgram(m.peers.FD(), m.sent.FD()),
	})
	if err != nil {
		m.Close()
		return nil, &UnsupportedError{Reason: "load sk_skb verdict program", Err: err}
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target: m.active.FD(), Program: m.prog, Attach: ebpf.AttachSkSKBStreamVerdict,
	}); err != nil {
		m.Close()
		return nil, &UnsupportedError{Reason: "attach stream verdict", Err: err}
	}
	return m, nil
}

// verdictProgram is the sk_skb stream verdict:
//
//	len = skb->len
//	if len == 0 { return SK_DROP }
//	key = bpf_get_socket_cookie(skb)
//	if bpf_sk_redirect_hash(skb, peers, &key, 0) == SK_PASS {   // 0: the peer's egress
//		if n = bpf_map_lookup_elem(sent, &key) { atomic *n += len }
//	}
//	return SK_PASS
//
// SK_PASS after a successful redirect is a redirect; without one (no peer in the map) the
// bytes go to the socket's own receive path, where userspace can read them. sent counts
// what was redirected, exactly, so that userspace can tell how much the peer's psock still
// queues (Sent less what the peer's TCP was given since Pair).
//
// A zero-length skb (a FIN that came alone: tcp_read_skb hands it to the verdict too) is
// dropped instead: redirected, the peer's backlog would "send" 0 bytes, which
// sk_psock_backlog takes for a hard error (EPIPE on the peer, and its psock stops sending).
// Dropping it loses nothing: the FIN was already taken by tcp_fin (RCV_SHUTDOWN), which
// userspace sees as EPOLLRDHUP.
func verdictProgram(peersFD, sentFD int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),              // skb
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // skb->len
		asm.JNE.Imm(asm.R7, 0, "redirect"),
		asm.Mov.Imm(asm.R0, 0), // SK_DROP
		asm.Return(),
		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("redirect"),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, peersFD),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkRedirectHash.Call(),
		asm.JNE.Imm(asm.R0, 1, "out"), // not redirected: nothing to count
		asm.LoadMapPtr(asm.R1, sentFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.StoreXAdd(asm.R0, asm.R7, asm.DWord),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"), // SK_PASS
		asm.Return(),
	}
}

// probe checks that bpf(2) answers at all (it refuses without CAP_BPF).
func probe() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return err
	}
	return m.Close()
}

// Close detaches the program and closes the maps. A sockhash is flushed when its last
// reference goes, so Close ends every pair still in it (dropping what the kernel queued):
// call it after the sockets are gone.
func (m *Map) Close() error {
	if m.prog != nil && m.active != nil {
		link.RawDetachProgram(link.RawDetachProgramOptions{
			Target: m.active.FD(), Program: m.prog, Attach: ebpf.AttachSkSKBStreamVerdict})
	}
	var errs []error
	for _, c := range []interface{ Close() error }{m.prog, m.active, m.peers, m.sent} {
		if c != nil && !isNilCloser(c) {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *ebpf.Program:
		return v == nil
	case *ebpf.Map:
		return v == nil
	}
	return false
}

// Cookie is the socket's cookie (SO_COOKIE), the key it has in the maps.
func Cookie(fd int) (uint64, error) {
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
}

// Pair makes the kernel forward a's received bytes to b and b's to a. Both sockets must be
// established TCP sockets with nothing buffered in userspace for either (what the caller
// read from one must already be written to the other). On error nothing is left in the maps
// and every byte is still where userspace reads it, except for ErrHalfPaired.
func (m *Map) Pair(a, b int) (Pair, error) {
	ca, err := Cookie(a)
	if err != nil {
		return Pair{}, fmt.Errorf("sockmap: SO_COOKIE: %w", err)
	}
	cb, err := Cookie(b)
	if err != nil {
		return Pair{}, fmt.Errorf("sockmap: SO_COOKIE: %w", err)
	}
	p := Pair{ca, cb}
	// The counters first (the verdict only adds to an existing one), then peers: both
	// get a psock, no program yet, so nothing changes for their bytes.
	if err := m.sent.Update(ca, uint64(0), ebpf.UpdateAny); err != nil {
		return Pair{}, fmt.Errorf("sockmap: counter: %w", err)
	}
	if err := m.sent.Update(cb, uint64(0), ebpf.UpdateAny); err != nil {
		m.sent.Delete(ca)
		return Pair{}, fmt.Errorf("sockmap: counter: %w", err)
	}
	if err := m.peers.Update(ca, uint64(b), ebpf.UpdateNoExist); err != nil {
		m.sent.Delete(ca)
		m.sent.Delete(cb)
		return Pair{}, fmt.Errorf("sockmap: insert: %w", err)
	}
	if err := m.peers.Update(cb, uint64(a), ebpf.UpdateNoExist); err != nil {
		m.peers.Delete(ca)
		m.sent.Delete(ca)
		m.sent.Delete(cb)
		return Pair{}, fmt.Errorf("sockmap: insert: %w", err)
	}
	if err := m.active.Update(ca, uint64(a), ebpf.UpdateNoExist); err != nil {
		m.peers.Delete(ca)
		m.peers.Delete(cb)
		m.sent.Delete(ca)
		m.sent.Delete(cb)
		return Pair{}, fmt.Errorf("sockmap: activate: %w", err)
	}
	// Both activations before either kick: the kick moves a's queued bytes to b's peer at
	// once, whose answer (a FIN, say) could otherwise reach b before b is activated, and a
	// socket past ESTABLISHED cannot enter a sockhash (sock_map_sk_state_allowed). Only a
	// segment arriving on a between the two updates can still cause that.
	if err := m.active.Update(cb, uint64(b), ebpf.UpdateNoExist); err != nil {
		// a's bytes may already be queued for b in the kernel: the caller cannot go back
		// to copying without reordering them.
		m.active.Delete(ca)
		return p, fmt.Errorf("%w: %w", ErrHalfPaired, err)
	}
	kick(a)
	kick(b)
	return p, nil
}

// noKick turns kick off, for the test that shows why it is there.
var noKick bool

// ErrHalfPaired: Pair activated one direction and failed on the other. The pair is
// stopped but still in peers; the caller must Release it and should reset both sockets.
var ErrHalfPaired = errors.New("sockmap: half paired")

// kick makes the kernel run the verdict on bytes queued before the socket entered the
// map: tcp_set_rcvlowat ends with tcp_data_ready, which calls sk_data_ready, which the
// psock replaced with sk_psock_verdict_data_ready.
func kick(fd int) {
	if noKick {
		return
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
}

// Stop takes both sockets out of the verdict: what they receive from now on stays in their
// own receive queues for userspace, under TCP flow control. Bytes already redirected are
// still delivered by the kernel (the psocks live on in peers) until Release.
//
// Not while bytes flow: a segment the kernel is passing to the verdict as the program is
// detached is dropped (sk_psock_stop_verdict runs without the socket lock, and
// sk_psock_verdict_recv without a program drops): see TestStopSideUnderTraffic.
func (m *Map) Stop(p Pair) {
	m.active.Delete(p[0])
	m.active.Delete(p[1])
}

// Release takes the pair out of the maps entirely (Stop first, if it was not). Whatever
// the kernel still queued for either socket is dropped: call it once delivery is done, or
// when the sockets are being reset anyway.
func (m *Map) Release(p Pair) {
	m.Stop(p)
	m.peers.Delete(p[0])
	m.peers.Delete(p[1])
	m.sent.Delete(p[0])
	m.sent.Delete(p[1])
}

// ReleaseSide takes socket i of the pair (0: a, 1: b) out of the maps, before it is
// closed: it no longer runs the verdict, and the other socket's bytes no longer reach it
// (the verdict finds no peer and passes them to the other socket's own psock queue, which
// userspace reads with recv(2) as usual). The other socket keeps its psock, so
// what the kernel queued for it is still delivered. What was queued for socket i is
// dropped.
func (m *Map) ReleaseSide(p Pair, i int) {
	m.active.Delete(p[i])
	m.peers.Delete(p[1-i]) // peers[cookie(other)] is socket i
	m.sent.Delete(p[i])
}

// Sent is how many bytes the kernel redirected from socket i of the pair (0: a, 1: b) to
// the other one since Pair. What the other one's psock still queues is Sent less what its
// TCP was given since Pair (tcpi_bytes_acked + SIOCOUTQ, see poller.ReadTCPCounts).
func (m *Map) Sent(p Pair, i int) (uint64, error) {
	var n uint64
	err := m.sent.Lookup(p[i], &n)
	return n, err
}

// StopSide takes socket i out of the verdict: what it receives from now on stays in its
// receive queue, under TCP flow control (the sender's window closes), while what was
// already redirected is still delivered. ActivateSide puts it back. Like Stop, it loses
// bytes if some are arriving as it runs (TestStopSideUnderTraffic).
func (m *Map) StopSide(p Pair, i int) error {
	return m.active.Delete(p[i])
}

// ActivateSide puts socket i back into the verdict and pokes it, so that what waited in
// its receive queue is redirected now, behind whatever the peer's psock still queues (so
// in order). It fails for a socket past ESTABLISHED (a FIN came meanwhile).
func (m *Map) ActivateSide(p Pair, i int, fd int) error {
	if err := m.active.Update(p[i], uint64(fd), ebpf.UpdateNoExist); err != nil {
		return err
	}
	kick(fd)
	return nil
}
