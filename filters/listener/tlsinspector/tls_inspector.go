// Package tlsinspector is envoy.filters.listener.tls_inspector: it looks at the first
// bytes of a socket and, if they are a TLS ClientHello, records transport protocol "tls",
// the SNI and the ALPN list for filter-chain selection. It drains nothing: the connection
// sees every byte.
package tlsinspector

import (
	"fmt"

	"github.com/portico-proxy/portico/engine"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.tls_inspector"

// DefaultMaxClientHelloSize is Envoy's default (and the proto's upper bound) for
// max_client_hello_size.
const DefaultMaxClientHelloSize = 16 << 10

// minClientHelloSize is the proto's lower bound (max_client_hello_size > 255).
const minClientHelloSize = 256

// Config mirrors envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector, minus
// enable_ja3_fingerprinting / enable_ja4_fingerprinting, which Portico does not support
// (the config translator rejects them).
type Config struct {
	// MaxClientHelloSize bounds how many bytes are read looking for a complete
	// ClientHello; a longer one closes the socket (Envoy's client_hello_too_large).
	// 0 means DefaultMaxClientHelloSize. Valid: 256..16384.
	MaxClientHelloSize uint32
	// InitialReadBufferSize is accepted for fidelity but has no effect: Envoy grows a
	// per-connection buffer from this size; Portico's starts at 4 KiB and grows as
	// needed, and the record length tells it how much to wait for (WantBytes).
	InitialReadBufferSize uint32
	// CloseConnectionOnClientHelloParsingErrors closes sockets whose first bytes are not a
	// well-formed ClientHello instead of treating them as plaintext.
	CloseConnectionOnClientHelloParsingErrors bool
}

// Filter is stateless; one instance serves every socket.
type Filter struct {
	cfg     Config
	maxRead int
}

// Validate reports out-of-range sizes, with the proto's bounds; the config translator
// calls it so that a bad value is an error naming its field rather than silently fixed.
func (c Config) Validate() error {
	if m := c.MaxClientHelloSize; m != 0 && (m < minClientHelloSize || m > DefaultMaxClientHelloSize) {
		return fmt.Errorf("%s: max_client_hello_size %d outside [%d, %d]",
			Name, m, minClientHelloSize, DefaultMaxClientHelloSize)
	}
	if b := c.InitialReadBufferSize; b != 0 && b < minClientHelloSize {
		return fmt.Errorf("%s: initial_read_buffer_size %d below %d", Name, b, minClientHelloSize)
	}
	return nil
}

// New returns the filter. Sizes are expected to have passed Validate; 0 means the
// default and anything else out of range is clamped to it.
func New(cfg Config) *Filter {
	n := int(cfg.MaxClientHelloSize)
	if n == 0 || n > DefaultMaxClientHelloSize {
		n = DefaultMaxClientHelloSize
	}
	return &Filter{cfg: cfg, maxRead: max(n, minClientHelloSize)}
}

// Name implements engine.ListenerFilter.
func (*Filter) Name() string { return Name }

// OnAccept implements engine.ListenerFilter: the filter always needs to see bytes.
func (*Filter) OnAccept(*engine.ActiveSocket) engine.FilterStatus { return engine.StopIteration }

// MaxReadBytes implements engine.ListenerFilter.
func (f *Filter) MaxReadBytes() int { return f.maxRead }

// OnData implements engine.ListenerFilter.
func (f *Filter) OnData(s *engine.ActiveSocket, data []byte) engine.FilterStatus {
	st, fail := f.inspect(s.Worker().Interner(), &s.Info, data)
	if fail {
		s.Fail()
	} else if st == engine.StopIteration {
		// Sleep until the rest of the record is there, not one wake-up per segment.
		s.WantBytes(min(NeedBytes(data), f.maxRead))
	}
	return st
}

// inspect is OnData without the ActiveSocket, so tests can drive it on a real socket. It
// returns the status and whether the socket must be rejected.
func (f *Filter) inspect(w *engine.Interner, info *engine.SocketInfo, data []byte) (engine.FilterStatus, bool) {
	res, st := ParseClientHello(data)
	switch st {
	case NeedMore:
		if len(data) >= f.maxRead {
			// client_hello_too_large: Envoy closes regardless of configuration.
			return engine.StopIteration, true
		}
		return engine.StopIteration, false
	case Done:
		apply(w, info, &res)
		return engine.Continue, false
	default: // NotTLS, Error: Envoy's tls_not_found.
		return engine.Continue, f.cfg.CloseConnectionOnClientHelloParsingErrors
	}
}

// apply records a parsed ClientHello. Names are interned so that a server name or
// protocol seen before costs no allocation.
func apply(w *engine.Interner, info *engine.SocketInfo, res *Result) {
	info.TransportProtocol = engine.TransportTLS
	if len(res.ServerName) > 0 {
		// Envoy stores the requested server name lower-cased (ASCII) and chains match on it.
		var buf [maxHostName]byte
		n := copy(buf[:], res.ServerName)
		for i, c := range buf[:n] {
			if 'A' <= c && c <= 'Z' {
				buf[i] = c + ('a' - 'A')
			}
		}
		info.ServerName = w.Intern(buf[:n])
	}
	if res.ALPN != nil {
		info.ClearApplicationProtocols()
		for p, rest := NextALPN(res.ALPN); p != nil; p, rest = NextALPN(rest) {
			info.AddApplicationProtocol(w.Intern(p))
		}
	}
}
