//go:build !linux

package engine

// The engine is built on Linux epoll, eventfd, splice(2), SO_REUSEPORT and
// SO_ORIGINAL_DST: say so instead of failing on a missing symbol.
var _ int = "github.com/portico-proxy/portico/engine builds only on Linux (GOOS=linux): its event loops are made of epoll, eventfd and splice"
