//go:build !linux

package sockmap

import "errors"

// DefaultMaxPairs is the pair capacity Open uses for maxPairs <= 0.
const DefaultMaxPairs = 65536

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

func (*Map) Pair(a, b int) (Pair, error)    { return Pair{}, &UnsupportedError{Reason: "not Linux"} }
func (*Map) Stop(Pair)                      {}
func (*Map) Release(Pair)                   {}
func (*Map) ReleaseSide(Pair, int)          {}
func (*Map) Sent(Pair, int) (uint64, error) { return 0, errors.New("not Linux") }
func (*Map) StopSide(Pair, int) error       { return errors.New("not Linux") }
func (*Map) ActivateSide(Pair, int, int) error {
	return errors.New("not Linux")
}
func (*Map) Close() error { return nil }
