// Package poller is a thin layer over Linux epoll and eventfd, and the handful of
// non-blocking syscalls the engine makes on the data path (recv, send, splice, close,
// epoll_ctl) through RawSyscall. It holds no policy: the engine decides what to watch and
// what an event means.
//
// A Poller is one epoll instance plus an eventfd registered in it for wake-ups: Wake, safe
// from any goroutine, makes a concurrent or future Wait return, and wake-ups are coalesced
// so a burst of them costs one write(2). Registrations carry a Token that packs the fd
// with a sequence number, so an event still queued for a closed fd is never delivered to
// a new socket that reused its number.
//
// The package builds only on Linux.
package poller
