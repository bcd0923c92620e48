//go:build !linux

package sockmap

import "errors"

// DefaultMaxPairs is the pair capacity Open uses for maxPairs <= 0.
const DefaultMaxPairs = 32768

// Map is unavailable off Linux.
type Map struct{}

// Pair names a paired socket pair by its sockets' cookies, a's then b's (an array, so
// that callers can hold it without importing this package).
type Pair = [2]uint64

// UnsupportedError says why the kernel path cannot be used here.
type UnsupportedError struct {
	Reason string
	Err    error
}

func (e *UnsupportedError) Error() string { return "sockmap unsupported: " + e.Reason }

// ErrHalfPaired: see the Linux build.
var ErrHalfPaired = errors.New("sockmap: half paired")

// Open always fails off Linux.
func Open(int) (*Map, error) { return nil, &UnsupportedError{Reason: "not Linux"} }

func (*Map) Pair(a, b int, acked, allow, tags [2]uint64) (Pair, error) {
	return Pair{}, &UnsupportedError{Reason: "not Linux"}
}
func (*Map) Stop(Pair)                               {}
func (*Map) Release(Pair)                            {}
func (*Map) ReleaseSide(Pair, int)                   {}
func (*Map) Sent(Pair, int) uint64                   { return 0 }
func (*Map) Held(Pair, int) (held, forwarded uint64) { return 0, 0 }
func (*Map) SetForwarded(Pair, int, uint64)          {}
func (*Map) SetListening(Pair, int, bool)            {}
func (*Map) LostEvents(Pair, int) uint64             { return 0 }
func (*Map) Notify(func(tag uint64)) error           { return errors.New("not Linux") }
func (*Map) Deactivate(Pair, int) error              { return errors.New("not Linux") }
func (*Map) Close() error                            { return nil }
