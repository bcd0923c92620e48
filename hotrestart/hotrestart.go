// Package hotrestart is Portico's hot restart: a new process (the child, epoch N) takes
// over the listen sockets and the admin socket of the running one (the parent, epoch N-1),
// starts serving on them, and only then tells the parent to drain and go, so that no
// connection is refused in between. It follows Envoy's model (--restart-epoch, --base-id,
// --parent-shutdown-time-s, --drain-time-s); the protocol is Portico's own.
//
// # Sockets
//
// Every process listens on a Unix SOCK_SEQPACKET socket in the abstract namespace named
// from its base id and epoch, "@portico_hot_restart_<base-id>_<epoch>" (SocketName). The
// child of epoch N connects to the one of epoch N-1; epoch 0 connects to nothing. A child of
// epoch N>0 that finds no parent fails, as Envoy's does (unless told to skip): starting cold
// would race the parent for the addresses. A seqpacket socket keeps message boundaries, so
// every message is one JSON object in one packet, with its file descriptors (SCM_RIGHTS) in
// that packet's ancillary data; and the parent sees a child that dies as the end of the
// stream.
//
// # Messages, in order
//
//  1. child → parent  {"type":"hello","epoch":N,"pid":P}
//     parent → child  {"type":"hello","epoch":N-1,"pid":P,"generation":G}
//     The parent serves one child at a time; a second one is refused with an "error" reply.
//  2. child → parent  {"type":"get_sockets"}
//     parent → child  one {"type":"socket","listener":..,"address":..,"reuse_port":..,
//     "worker":..} per listen socket, each carrying its fd; one {"type":"admin",
//     "address":..} carrying the admin listen socket if there is one; then
//     {"type":"sockets_done","count":n}. The parent keeps its own copies and goes on
//     accepting: both processes accept from the same sockets for a while, and nothing
//     waits in a queue nobody reads.
//  3. child → parent  {"type":"drain"}, once the child's workers run and its admin serves
//     on the inherited socket. The parent closes its copy of the admin socket, stops
//     accepting (taking in what its queues hold), and drains its connections.
//     parent → child  {"type":"drain_started"}
//  4. parent → child  {"type":"stats","counters":{..},"last":bool,"final":bool}, a snapshot
//     of every counter (the parent's own plus what it carries from its own parent) every
//     StatsInterval while it drains, split over several packets (last marks a snapshot's
//     end), and a final one just before it exits. The child adds the last snapshot into
//     its counters of the same name, and keeps it after the parent is gone.
//  5. child → parent  {"type":"terminate"}, parent-shutdown-time after the drain request:
//     the parent exits now, closing what it still serves.
//
// # Timeouts
//
// The child waits at most ReplyTimeout to connect and for each reply (hello, the
// sockets); a parent that does not answer in time fails the child's start. The parent
// waits at most ReplyTimeout for the child's hello and its get_sockets; after that the
// child may take as long as its start takes (DNS warm-up, say) before it asks to drain,
// and the parent goes on serving meanwhile. A child that goes away before asking to drain
// (its socket's end of stream) is forgotten: the parent serves on as before and answers
// the next child. After the drain request nothing is waited for: the parent drains on its
// own clock and exits when its connections are done, when it is told to terminate, or at
// its own parent-shutdown-time, whichever is first.
package hotrestart

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ReplyTimeout bounds every wait for the other side before the drain (see package doc).
const ReplyTimeout = 5 * time.Second

// StatsInterval is how often a draining parent sends its counters to the child.
const StatsInterval = time.Second

// maxPacket is the largest packet either side sends or reads. The stats are split to stay
// well under it (and under the kernel's default socket buffer).
const maxPacket = 64 << 10

// statsChunk is the JSON size a stats packet is cut at.
const statsChunk = 32 << 10

// SocketName is the abstract Unix socket name of the process of epoch under baseID, in
// Go's notation (a leading '@' for the abstract namespace).
func SocketName(baseID, epoch int) string {
	return fmt.Sprintf("@portico_hot_restart_%d_%d", baseID, epoch)
}

// Message types.
const (
	msgHello       = "hello"
	msgGetSockets  = "get_sockets"
	msgSocket      = "socket"
	msgAdmin       = "admin"
	msgSocketsDone = "sockets_done"
	msgDrain       = "drain"
	msgDrainStart  = "drain_started"
	msgStats       = "stats"
	msgTerminate   = "terminate"
	msgError       = "error"
)

// message is every packet of the protocol; each type uses some of the fields.
type message struct {
	Type       string            `json:"type"`
	Epoch      int               `json:"epoch,omitempty"`
	PID        int               `json:"pid,omitempty"`
	Generation int               `json:"generation,omitempty"`
	Listener   string            `json:"listener,omitempty"`
	Address    string            `json:"address,omitempty"`
	ReusePort  bool              `json:"reuse_port,omitempty"`
	Worker     int               `json:"worker,omitempty"`
	Count      int               `json:"count,omitempty"`
	Counters   map[string]uint64 `json:"counters,omitempty"`
	Last       bool              `json:"last,omitempty"`
	Final      bool              `json:"final,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// conn is one side of a seqpacket connection.
type conn struct{ c *net.UnixConn }

// send writes m in one packet with fds attached (none if fds is empty).
func (c conn) send(m message, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("hot restart: encode %s: %w", m.Type, err)
	}
	if len(b) > maxPacket {
		return fmt.Errorf("hot restart: %s message of %d bytes is over %d", m.Type, len(b), maxPacket)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("hot restart: send %s: %w", m.Type, err)
	}
	return nil
}

// recv reads one packet, waiting until deadline (zero: no limit). Received fds are
// close-on-exec and the caller's.
func (c conn) recv(deadline time.Time) (message, []int, error) {
	var m message
	if err := c.c.SetReadDeadline(deadline); err != nil {
		return m, nil, fmt.Errorf("hot restart: %w", err)
	}
	buf := make([]byte, maxPacket)
	oob := make([]byte, unix.CmsgSpace(4*253)) // the most fds one SCM_RIGHTS may carry
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return m, nil, fmt.Errorf("hot restart: receive: %w", err)
	}
	if n == 0 && oobn == 0 {
		return m, nil, fmt.Errorf("hot restart: receive: %w", errClosed)
	}
	fds, ferr := parseRights(oob[:oobn])
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return m, nil, errors.New("hot restart: receive: message truncated")
	}
	if ferr != nil {
		closeAll(fds)
		return m, nil, ferr
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(fds)
		return m, nil, fmt.Errorf("hot restart: decode message: %w", err)
	}
	if m.Type == msgError {
		closeAll(fds)
		return m, nil, fmt.Errorf("hot restart: the other side says: %s", m.Error)
	}
	return m, fds, nil
}

var errClosed = errors.New("connection closed")

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("hot restart: control message: %w", err)
	}
	var fds []int
	for _, cm := range cmsgs {
		got, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range got {
			// Go's ReadMsgUnix asks for MSG_CMSG_CLOEXEC already; a no-op then, a guard if not.
			unix.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Socket is a listen socket the child received.
type Socket struct {
	Listener  string
	Address   netip.AddrPort
	ReusePort bool
	Worker    int
	Fd        int
	// Taken says the engine took Fd (through Inherit): it is no longer the Child's.
	Taken bool
}

// splitCounters cuts a snapshot into packets of about statsChunk bytes of JSON.
func splitCounters(all map[string]uint64) []map[string]uint64 {
	var out []map[string]uint64
	cur, size := map[string]uint64{}, 0
	for k, v := range all {
		if size > 0 && size+len(k)+24 > statsChunk {
			out = append(out, cur)
			cur, size = map[string]uint64{}, 0
		}
		cur[k] = v
		size += len(k) + 24
	}
	return append(out, cur)
}
