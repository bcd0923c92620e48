// Package sockmap forwards the bytes of proxied TCP socket pairs inside the kernel, with a
// BPF sockhash and an sk_skb stream-verdict program (Linux, root or CAP_BPF+CAP_NET_ADMIN).
//
// Once a pair is in the map, every byte either socket receives is redirected by the
// kernel to the other socket's send side: the proxy's worker is not woken, reads nothing
// and writes nothing. It still watches both sockets for hang-up, reset and error.
//
// Known fault: on Linux 6.18, while the program holds a socket's bytes for backpressure
// (below), the kernel now and then hands it a held segment a second time, and the
// segment reaches the peer twice (docs/sockmap.md, trap 17). Portico therefore uses this
// package only when asked (portico --enable-sockmap).
//
// # Two maps
//
// A Map holds two sockhashes, both keyed by socket cookie (SO_COOKIE):
//
//   - peers, which has no program: peers[cookie(A)] = B and peers[cookie(B)] = A. A socket
//     in a sockhash gets a psock, the kernel object that owns the queue of bytes redirected
//     to it (psock->ingress_skb) and the work item that sends them (sk_psock_backlog).
//   - active, to which the verdict program is attached: active[cookie(X)] = X. Only a
//     socket in active runs the program on what it receives.
//
// The program runs for a socket X in active, looks up peers[cookie(X)] and redirects the
// skb there (bpf_sk_redirect_hash, egress); if there is no peer it returns SK_PASS without
// a redirect, so the bytes stay readable by userspace (they are never dropped by us).
//
// Pair puts both sockets in peers first, and only then in active, one after the other. So
// there is never a moment where one socket redirects to a peer without a psock (the kernel
// would drop the bytes: sk_psock_skb_redirect), nor where one socket's bytes go to its own
// psock queue while the other direction is already redirected (they would be stuck, out of
// order). Leaving is the reverse: Stop takes the sockets out of active (their received
// bytes go back to the ordinary receive queue, readable by userspace, with TCP's flow
// control), and Release, once the kernel has delivered what it holds, takes them out of
// peers (which frees the psock and drops whatever it still queues: sk_psock_destroy ->
// __sk_psock_zap_ingress). Neither may run while bytes arrive: a segment that reaches the
// verdict as its program is detached is dropped (see Stop).
//
// # Bytes already queued
//
// The verdict program runs from the socket's sk_data_ready callback, that is when a new
// segment arrives. Bytes queued before the socket entered active would wait for the next
// segment; Pair therefore pokes each socket with setsockopt(SO_RCVLOWAT, 1), whose kernel
// side (tcp_set_rcvlowat) calls sk_data_ready, so the queue is redirected at once, in order.
package sockmap
