// Package tls is Envoy's envoy.transport_sockets.tls transport socket for Portico's engine:
// downstream TLS termination (Factory) and upstream TLS origination (UpstreamFactory) with
// the standard crypto/tls and no goroutine per established connection.
//
// The handshake runs on a short-lived goroutine over an in-memory net.Conn (memConn) that the
// connection's worker feeds with the bytes it reads; the flights the handshake writes are
// posted back to the worker, which sends them. When the handshake ends the goroutine posts
// its result and exits; from then on the worker calls the tls.Conn's Read and Write itself,
// the adapter answering a temporary net.Error ("would block") when it has no bytes, which
// crypto/tls retries keeping partial records (see wouldBlockError). Handshakes in flight are
// capped per worker (excess connections are refused and counted) and bounded by a timeout
// (transport_socket_connect_timeout downstream, the cluster's connect_timeout upstream).
//
// An upstream socket (client.go) shares the server socket's established paths; it starts
// its handshake when the TCP connect completes, holds what the filters write until then,
// and raises Connected through the engine once the handshake succeeded. Sessions are
// resumed across a cluster's connections through one ClientSessionCache per factory.
package tls
