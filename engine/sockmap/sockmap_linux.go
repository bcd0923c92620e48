package sockmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// DefaultMaxPairs is the pair capacity Open uses for maxPairs <= 0 (ulimit -n bounds a
// process to fewer sockets than twice this anyway).
const DefaultMaxPairs = 32768

// A slot is a paired socket's state, shared with the verdict program through an
// mmap-able array: the program adds to sent and held, the engine stores forwarded and
// listening, and both read each other's without a syscall. Offsets are the program's.
const (
	slotSent      = 0  // bytes the program redirected from this socket to its peer
	slotHeld      = 8  // bytes it kept on this socket's own queue instead (backpressure)
	slotForwarded = 16 // of those, bytes the engine has written to the peer's TCP
	slotBase      = 24 // the peer's tcpi_bytes_acked at Pair
	slotAllow     = 32 // bytes allowed in flight to the peer beyond its send buffer
	slotListening = 40 // 1 while the engine reads the held bytes (no events needed)
	slotTag       = 48 // the engine's name for this socket, sent with each event
	slotLost      = 56 // events the ring buffer had no room for
	slotSize      = 64
)

// mmapable is BPF_F_MMAPABLE: the array can be mapped into the process.
const mmapable = 1 << 10

// Map is a loaded and attached sockmap: safe for concurrent use.
type Map struct {
	peers  *ebpf.Map // cookie(X) -> X's peer; no program
	active *ebpf.Map // cookie(X) -> X; the verdict program is attached here
	index  *ebpf.Map // cookie(X) -> X's slot (u32)
	slots  *ebpf.Map // the slots (an mmap-able array)
	events *ebpf.Map // ring buffer of tags: "this socket started holding bytes"
	prog   *ebpf.Program
	mem    []byte // slots, mapped

	mu       sync.Mutex
	free     []uint32 // slots not in use
	cookies  []uint64 // by slot: its socket's cookie
	released []bool   // by slot: ReleaseSide was called for it
	reader   *ringbuf.Reader
	readers  sync.WaitGroup
	subs     []func(tag uint64) // Notify's receivers, by the top 16 bits of a tag
}

// Pair names a paired socket pair by its sockets' slots, a's then b's (an array, so
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
// *UnsupportedError naming the step (not root, no BPF, a kernel without sockmap, sk_skb
// programs or BTF).
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
	off, err := kernelOffsets()
	if err != nil {
		return nil, &UnsupportedError{Reason: "kernel BTF", Err: err}
	}
	n := uint32(2 * maxPairs)
	m := &Map{}
	fail := func(reason string, err error) (*Map, error) {
		m.Close()
		return nil, &UnsupportedError{Reason: reason, Err: err}
	}
	sockhash := func(name string) *ebpf.MapSpec {
		return &ebpf.MapSpec{Name: name, Type: ebpf.SockHash, KeySize: 8, ValueSize: 8, MaxEntries: n}
	}
	if m.peers, err = ebpf.NewMap(sockhash("portico_peers")); err != nil {
		return fail("create sockhash", err)
	}
	if m.active, err = ebpf.NewMap(sockhash("portico_active")); err != nil {
		return fail("create sockhash", err)
	}
	if m.index, err = ebpf.NewMap(&ebpf.MapSpec{Name: "portico_index", Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: n}); err != nil {
		return fail("create hash", err)
	}
	if m.slots, err = ebpf.NewMap(&ebpf.MapSpec{Name: "portico_slots", Type: ebpf.Array, KeySize: 4, ValueSize: slotSize,
		MaxEntries: n, Flags: mmapable}); err != nil {
		return fail("create mmap-able array", err)
	}
	size := (int(n)*slotSize + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	if m.mem, err = unix.Mmap(m.slots.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail("mmap the slots", err)
	}
	// 1 MiB of events (16 bytes each with its header): a socket sends one when it starts
	// holding, so this is room for 65,536 starts the engine has not read yet.
	if m.events, err = ebpf.NewMap(&ebpf.MapSpec{Name: "portico_events", Type: ebpf.RingBuf, MaxEntries: 1 << 20}); err != nil {
		return fail("create ring buffer", err)
	}
	m.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "portico_verdict",
		Type:         ebpf.SkSKB,
		AttachType:   ebpf.AttachSkSKBStreamVerdict,
		License:      "GPL", // bpf_sk_redirect_hash is GPL-only
		Instructions: verdictProgram(m.peers.FD(), m.index.FD(), m.slots.FD(), m.events.FD(), off),
	})
	if err != nil {
		return fail("load sk_skb verdict program", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target: m.active.FD(), Program: m.prog, Attach: ebpf.AttachSkSKBStreamVerdict,
	}); err != nil {
		return fail("attach stream verdict", err)
	}
	// The event reader starts with the Map (its fds are the Map's from the start).
	r, err := ringbuf.NewReader(m.events)
	if err != nil {
		return fail("ring buffer reader", err)
	}
	m.reader = r
	m.readers.Add(1)
	go m.readEvents(r)
	m.free = make([]uint32, 0, n)
	for i := int(n) - 1; i >= 0; i-- {
		m.free = append(m.free, uint32(i))
	}
	m.cookies = make([]uint64, n)
	m.released = make([]bool, n)
	return m, nil
}

// offsets are where the program reads the peer's TCP state, found in the kernel's BTF
// (struct layouts differ between kernels and configs).
type offsets struct {
	bytesAcked int16 // tcp_sock.bytes_acked (u64)
	sndbuf     int16 // tcp_sock...sock.sk_sndbuf (int)
}

func kernelOffsets() (offsets, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return offsets{}, err
	}
	acked, err := memberOffset(spec, "tcp_sock", "bytes_acked")
	if err != nil {
		return offsets{}, err
	}
	// struct tcp_sock begins with an inet_connection_sock, which begins with an inet_sock,
	// which begins with a sock: checked, not assumed.
	var base uint32
	for _, step := range [][2]string{{"tcp_sock", "inet_conn"}, {"inet_connection_sock", "icsk_inet"}, {"inet_sock", "sk"}} {
		o, err := memberOffset(spec, step[0], step[1])
		if err != nil {
			return offsets{}, err
		}
		base += o
	}
	sndbuf, err := memberOffset(spec, "sock", "sk_sndbuf")
	if err != nil {
		return offsets{}, err
	}
	if acked+8 > 1<<15 || base+sndbuf+4 > 1<<15 {
		return offsets{}, errors.New("tcp_sock fields beyond a 16-bit offset")
	}
	return offsets{bytesAcked: int16(acked), sndbuf: int16(base + sndbuf)}, nil
}

func memberOffset(spec *btf.Spec, typ, field string) (uint32, error) {
	var st *btf.Struct
	if err := spec.TypeByName(typ, &st); err != nil {
		return 0, fmt.Errorf("struct %s: %w", typ, err)
	}
	for _, mb := range st.Members {
		if mb.Name == field {
			if mb.BitfieldSize != 0 || mb.Offset%8 != 0 {
				return 0, fmt.Errorf("%s.%s is a bitfield", typ, field)
			}
			return mb.Offset.Bytes(), nil
		}
	}
	return 0, fmt.Errorf("struct %s has no %s", typ, field)
}

// verdictProgram is the sk_skb stream verdict. For a socket X with slot s and peer P:
//
//	len = skb->len
//	if len == 0 { return SK_DROP }                 // a FIN alone (below)
//	s = slots[index[cookie(X)]]; if none { return SK_PASS }
//	if s.held != s.forwarded { goto hold }         // behind held bytes: keep the order
//	p = lookup(peers, cookie(X)); if none { return SK_PASS }
//	tp = bpf_skc_to_tcp_sock(p); acked = tp->bytes_acked; sndbuf = tp->sk_sndbuf; release(p)
//	if s.sent + s.forwarded - (acked - s.base) > s.allow + sndbuf { goto hold }
//	if bpf_sk_redirect_hash(skb, peers, &cookie, 0) == SK_PASS { s.sent += len }  // 0: P's egress
//	return SK_PASS
//	hold:
//	s.held += len
//	if !s.listening { ringbuf_output(events, &s.tag) (or s.lost++) }
//	return SK_PASS                                 // without a redirect: X's own queue
//
// Backpressure: the kernel bounds nothing it redirects (sk_psock_skb_redirect queues on
// the peer's psock without a size check), so the program does. What X gave P and P's
// peer has not acknowledged (P's psock queue and P's send queue) may be allow (the
// engine's buffer limit) beyond P's send buffer, what the userspace path holds too. Past
// that, X's bytes stay on X's own psock queue: sk_psock_skb_ingress_self charges them
// to X's receive buffer, so X's window closes and X's sender waits, as on the userspace
// path. The engine, told by the event, reads them (recv(2) on X returns them) and
// writes them to P once P's psock queue is empty, adding them to forwarded; while
// held != forwarded every new skb is held too, so bytes never pass each other. The
// increment of held before reading listening, against the engine's store of listening
// before it reads held (both full barriers: a locked add, an atomic exchange), means that
// either the engine sees the new bytes or the program sends an event.
//
// A zero-length skb (a FIN that came alone: tcp_read_skb hands it to the verdict too) is
// dropped instead: redirected, the peer's backlog would "send" 0 bytes, which
// sk_psock_backlog takes for a hard error (EPIPE on the peer, and its psock stops sending).
// Dropping it loses nothing: the FIN was already taken by tcp_fin (RCV_SHUTDOWN), which
// userspace sees as EPOLLRDHUP.
func verdictProgram(peersFD, indexFD, slotsFD, eventsFD int, off offsets) asm.Instructions {
	// Stack: fp-8 the cookie, fp-16 the slot index, fp-24 acked, fp-32 sndbuf.
	// R6 skb, R7 len, R8 the slot, R9 the peer (a reference, released before use).
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // skb->len
		asm.JNE.Imm(asm.R7, 0, "cookie"),
		asm.Mov.Imm(asm.R0, 0), // SK_DROP
		asm.Return(),

		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("cookie"),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, indexFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, slotsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R8, asm.R0),

		asm.LoadMem(asm.R1, asm.R8, slotHeld, asm.DWord),
		asm.LoadMem(asm.R2, asm.R8, slotForwarded, asm.DWord),
		asm.JNE.Reg(asm.R1, asm.R2, "hold"),

		asm.LoadMapPtr(asm.R1, peersFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(), // a sockhash lookup: a referenced socket, or NULL
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.FnSkcToTcpSock.Call(),
		asm.JEq.Imm(asm.R0, 0, "release"), // not TCP: cannot be (sockhash takes TCP here)
		asm.LoadMem(asm.R1, asm.R0, off.bytesAcked, asm.DWord),
		asm.StoreMem(asm.RFP, -24, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, off.sndbuf, asm.Word),
		asm.StoreMem(asm.RFP, -32, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.FnSkRelease.Call(),

		// in flight = sent + forwarded + base - acked; allowed = allow + sndbuf
		asm.LoadMem(asm.R1, asm.R8, slotSent, asm.DWord),
		asm.LoadMem(asm.R2, asm.R8, slotForwarded, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.LoadMem(asm.R2, asm.R8, slotBase, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, -24, asm.DWord),
		asm.Sub.Reg(asm.R1, asm.R2),
		asm.LoadMem(asm.R2, asm.R8, slotAllow, asm.DWord),
		asm.LoadMem(asm.R3, asm.RFP, -32, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.JSGT.Reg(asm.R1, asm.R2, "hold"),

		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R2, peersFD),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkRedirectHash.Call(),
		asm.JNE.Imm(asm.R0, 1, "pass"), // no peer: the bytes stay on this socket
		asm.AddAtomic.Mem(asm.R8, asm.R7, asm.DWord, slotSent),
		asm.Ja.Label("pass"),

		asm.Mov.Reg(asm.R1, asm.R9).WithSymbol("release"),
		asm.FnSkRelease.Call(),
		asm.Ja.Label("redirect"),

		asm.AddAtomic.Mem(asm.R8, asm.R7, asm.DWord, slotHeld).WithSymbol("hold"),
		asm.LoadMem(asm.R1, asm.R8, slotListening, asm.DWord),
		asm.JNE.Imm(asm.R1, 0, "pass"),
		asm.LoadMapPtr(asm.R1, eventsFD),
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.Add.Imm(asm.R2, slotTag),
		asm.Mov.Imm(asm.R3, 8),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Imm(asm.R1, 1),
		asm.AddAtomic.Mem(asm.R8, asm.R1, asm.DWord, slotLost),

		asm.Mov.Imm(asm.R0, 1).WithSymbol("pass"), // SK_PASS
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

// Close stops the event reader, detaches the program and closes the maps. A sockhash is
// flushed when its last reference goes, so Close ends every pair still in it (dropping
// what the kernel queued): call it after the sockets are gone.
func (m *Map) Close() error {
	m.mu.Lock()
	r := m.reader
	m.reader = nil
	m.mu.Unlock()
	var errs []error
	if r != nil {
		errs = append(errs, r.Close())
		m.readers.Wait()
	}
	if m.prog != nil && m.active != nil {
		link.RawDetachProgram(link.RawDetachProgramOptions{
			Target: m.active.FD(), Program: m.prog, Attach: ebpf.AttachSkSKBStreamVerdict})
	}
	if m.mem != nil {
		errs = append(errs, unix.Munmap(m.mem))
		m.mem = nil
	}
	if m.prog != nil {
		errs = append(errs, m.prog.Close())
	}
	for _, mp := range []*ebpf.Map{m.active, m.peers, m.index, m.slots, m.events} {
		if mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}

// Notify adds a receiver of events: fn(tag) is called, on a goroutine of the Map's, when
// a socket whose tag has the returned base in its top 16 bits starts holding bytes (its
// owner should then read them: Held, SetListening, SetForwarded). Each server using the
// Map calls it once; tags must then carry the base it got (base | its own 48 bits).
func (m *Map) Notify(fn func(tag uint64)) (base uint64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.subs) >= 1<<16 {
		return 0, errors.New("sockmap: too many event receivers")
	}
	m.subs = append(m.subs, fn)
	return uint64(len(m.subs)-1) << 48, nil
}

// readEvents delivers the ring buffer's tags to their receivers until Close.
func (m *Map) readEvents(r *ringbuf.Reader) {
	defer m.readers.Done()
	var rec ringbuf.Record
	for {
		if err := r.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		if len(rec.RawSample) < 8 {
			continue
		}
		tag := binary.NativeEndian.Uint64(rec.RawSample)
		m.mu.Lock()
		var fn func(uint64)
		if k := int(tag >> 48); k < len(m.subs) {
			fn = m.subs[k]
		}
		m.mu.Unlock()
		if fn != nil {
			fn(tag)
		}
	}
}

// Cookie is the socket's cookie (SO_COOKIE), the key it has in the maps.
func Cookie(fd int) (uint64, error) {
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
}

// word is the slot's field at off, for atomic access.
func (m *Map) word(slot uint64, off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&m.mem[int(slot)*slotSize+off]))
}

// Pair makes the kernel forward a's received bytes to b and b's to a. Both sockets must
// be established TCP sockets with nothing buffered in userspace for either (what the
// caller read from one must already be written to the other). acked[i] is socket i's
// tcpi_bytes_acked now (what its peer had acknowledged before any redirect: the base of
// what is in flight). allow[i] is how many bytes socket i may have in flight to the other
// beyond the other's send buffer before the kernel holds them for userspace (0: no
// limit); tags[i] names socket i in events. On error nothing is left in the maps and
// every byte is still where userspace reads it, except for ErrHalfPaired.
func (m *Map) Pair(a, b int, acked, allow, tags [2]uint64) (Pair, error) {
	ca, err := Cookie(a)
	if err != nil {
		return Pair{}, fmt.Errorf("sockmap: SO_COOKIE: %w", err)
	}
	cb, err := Cookie(b)
	if err != nil {
		return Pair{}, fmt.Errorf("sockmap: SO_COOKIE: %w", err)
	}
	m.mu.Lock()
	if len(m.free) < 2 {
		m.mu.Unlock()
		return Pair{}, errors.New("sockmap: full")
	}
	sa, sb := uint64(m.free[len(m.free)-1]), uint64(m.free[len(m.free)-2])
	m.free = m.free[:len(m.free)-2]
	m.cookies[sa], m.cookies[sb] = ca, cb
	m.mu.Unlock()
	p := Pair{sa, sb}
	cookies := [2]uint64{ca, cb}
	fds := [2]int{a, b}
	base := [2]uint64{acked[1], acked[0]} // socket i's peer's
	for i, s := range p {
		for _, off := range []int{slotSent, slotHeld, slotForwarded, slotListening, slotLost} {
			atomic.StoreUint64(m.word(s, off), 0)
		}
		lim := allow[i]
		if lim == 0 || lim > 1<<62 {
			lim = 1 << 62 // no limit (and no overflow in the program's sum)
		}
		atomic.StoreUint64(m.word(s, slotAllow), lim)
		atomic.StoreUint64(m.word(s, slotBase), base[i])
		atomic.StoreUint64(m.word(s, slotTag), tags[i])
	}
	undo := func(n int) {
		// n steps were done: 1-2 index entries, 3-4 peers entries.
		for k := 0; k < n && k < 2; k++ {
			m.index.Delete(cookies[k])
		}
		for k := 2; k < n; k++ {
			m.peers.Delete(cookies[k-2])
		}
		m.freeSlots(p)
	}
	// The index first (the verdict only runs for sockets in active, but a slot must be
	// found by then), then peers: both get a psock, no program yet, so nothing changes
	// for their bytes.
	for i := range p {
		if err := m.index.Update(cookies[i], uint32(p[i]), ebpf.UpdateAny); err != nil {
			undo(i)
			return Pair{}, fmt.Errorf("sockmap: index: %w", err)
		}
	}
	for i := range p {
		if err := m.peers.Update(cookies[i], uint64(fds[1-i]), ebpf.UpdateNoExist); err != nil {
			undo(2 + i)
			return Pair{}, fmt.Errorf("sockmap: insert: %w", err)
		}
	}
	if err := m.active.Update(ca, uint64(a), ebpf.UpdateNoExist); err != nil {
		undo(4)
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

func (m *Map) freeSlots(p Pair) {
	m.mu.Lock()
	for _, s := range p {
		if m.cookies[s] != 0 {
			m.cookies[s] = 0
			m.free = append(m.free, uint32(s))
		}
	}
	m.mu.Unlock()
}

func (m *Map) cookie(slot uint64) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cookies[slot]
}

// noKick turns kick off, for the test that shows why it is there.
var noKick bool

// ErrHalfPaired: Pair activated a and failed to activate b (b left ESTABLISHED in between:
// its peer's FIN came). The kernel forwards a's bytes to b; b's stay in its receive queue,
// where userspace reads them as usual and writes them to a (a's psock has nothing queued
// for a: b has no verdict). The pair is otherwise usable: release each side as usual.
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
// own receive queues for userspace. Bytes already redirected are still delivered by the
// kernel (the psocks live on in peers) until Release.
//
// Not while bytes flow: a segment the kernel is passing to the verdict as the program is
// detached is dropped (sk_psock_stop_verdict runs without the socket lock, and
// sk_psock_verdict_recv without a program drops): see TestStopSideUnderTraffic. Flow
// control therefore never changes map membership; the program holds bytes instead.
func (m *Map) Stop(p Pair) {
	m.active.Delete(m.cookie(p[0]))
	m.active.Delete(m.cookie(p[1]))
}

// Deactivate takes socket i of the pair out of the verdict, as if its activation had
// failed (ErrHalfPaired): for tests of that case. Not while bytes flow on it (trap 12).
func (m *Map) Deactivate(p Pair, i int) error {
	return m.active.Delete(m.cookie(p[i]))
}

// Release takes the pair out of the maps entirely, without closing either socket.
// Whatever the kernel still queued for either socket is dropped: call it once delivery is
// done, or when the sockets are being reset anyway.
func (m *Map) Release(p Pair) {
	ca, cb := m.cookie(p[0]), m.cookie(p[1])
	for _, c := range []uint64{ca, cb} {
		if c != 0 {
			m.active.Delete(c)
			m.peers.Delete(c)
		}
	}
	m.ReleaseSide(p, 0)
	m.ReleaseSide(p, 1)
}

// ReleaseSide forgets socket i of the pair (0: a, 1: b) just before it is closed. Closing
// it takes it out of the sockhashes (sock_map_close unlinks every entry whose socket it
// is: its own verdict entry and its place as the other's peer), so here only its slot
// goes: the verdict no longer runs for it, and the other socket's bytes no longer reach
// it (the verdict finds no peer and passes them to the other socket's own psock queue,
// which userspace reads with recv(2) as usual). The other socket keeps its psock (it is
// in peers under socket i's cookie), so what the kernel queued for it is still
// delivered; what was queued for socket i is dropped. The pair's slots are free once
// both sides are released; neither may be used after.
func (m *Map) ReleaseSide(p Pair, i int) {
	m.mu.Lock()
	ci := m.cookies[p[i]]
	gone := m.released[p[i]]
	m.released[p[i]] = true
	m.mu.Unlock()
	if gone || ci == 0 {
		return
	}
	m.index.Delete(ci)
	m.mu.Lock()
	if m.released[p[1-i]] {
		for _, s := range p {
			m.cookies[s], m.released[s] = 0, false
			m.free = append(m.free, uint32(s))
		}
	}
	m.mu.Unlock()
}

// Sent is how many bytes the kernel redirected from socket i of the pair (0: a, 1: b) to
// the other one since Pair.
func (m *Map) Sent(p Pair, i int) uint64 { return atomic.LoadUint64(m.word(p[i], slotSent)) }

// Held is how many bytes the program kept on socket i's own queue (readable with recv(2)
// on it) since Pair, and how many of those SetForwarded has said were written to the
// other socket's TCP.
func (m *Map) Held(p Pair, i int) (held, forwarded uint64) {
	return atomic.LoadUint64(m.word(p[i], slotHeld)), atomic.LoadUint64(m.word(p[i], slotForwarded))
}

// SetForwarded says that n of socket i's held bytes in all have been written to the other
// socket's TCP (its send queue): once it equals Held, the program redirects again.
func (m *Map) SetForwarded(p Pair, i int, n uint64) {
	atomic.StoreUint64(m.word(p[i], slotForwarded), n)
}

// SetListening says whether the engine is reading socket i's held bytes; while it is not,
// the program sends an event each time it holds some.
func (m *Map) SetListening(p Pair, i int, on bool) {
	v := uint64(0)
	if on {
		v = 1
	}
	atomic.StoreUint64(m.word(p[i], slotListening), v)
}

// LostEvents is how many of socket i's events found the ring buffer full.
func (m *Map) LostEvents(p Pair, i int) uint64 { return atomic.LoadUint64(m.word(p[i], slotLost)) }
