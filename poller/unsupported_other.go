//go:build !linux

package poller

// The package is made of Linux system calls (epoll, eventfd, splice): say so instead of
// failing on a missing symbol.
var _ int = "github.com/portico-proxy/portico/poller builds only on Linux (GOOS=linux): it wraps epoll, eventfd and splice"
