package tls

import (
	"crypto/sha256"
	ctls "crypto/tls"
	"encoding/binary"
	"fmt"
	"time"
)

// Session resumption, as Envoy's DownstreamTlsContext configures it, on crypto/tls.
//
// Stateless resumption (session tickets, TLS 1.2 and 1.3) is crypto/tls's own: tickets
// sealed with the Config's keys. session_ticket_keys are Envoy's 80-byte keys (16 bytes of
// name, 32 of HMAC secret, 32 of AES key, as BoringSSL's ticket callback uses them);
// crypto/tls takes 32-byte keys and derives its own AES and HMAC keys from them, so each
// Envoy key becomes the SHA-256 of all its 80 bytes. Portico processes given the same key
// file therefore resume each other's tickets, but Envoy's tickets and Portico's are not
// interchangeable: the ticket formats differ (crypto/tls seals its own session encoding),
// so a fleet that mixes the two resumes only within each kind. Without keys, crypto/tls
// generates random keys per process and rotates them (Envoy also generates a random key
// per process when none is configured).
//
// Stateful resumption (TLS 1.2 session IDs, a server-side cache) is not available:
// crypto/tls's server never assigns a session ID in a full handshake and never looks one
// up, and offers no hook for a cache keyed by ID (Config.UnwrapSession sees only the
// ticket). Envoy keeps BoringSSL's server cache unless disable_stateful_session_resumption
// is set; in Portico a client that resumes only by session ID does a full handshake, as
// it would against Envoy with that option set. Nothing else about the connection differs.
//
// session_timeout: BoringSSL gives a TLS 1.2 session 2 hours (SSL_DEFAULT_SESSION_TIMEOUT)
// and a TLS 1.3 ticket 2 days (SSL_DEFAULT_SESSION_PSK_DHE_TIMEOUT), with TLS 1.3
// resumptions chained from one full handshake for at most 7 days
// (SSL_DEFAULT_SESSION_AUTH_TIMEOUT); Envoy's session_timeout sets the TLS 1.2 one
// (SSL_CTX_set_timeout). crypto/tls accepts any ticket up to 7 days old, so Portico stamps
// its own times in the ticket (SessionState.Extra) and refuses older ones in
// UnwrapSession. A refused ticket means a full handshake, never a failed connection. The
// lifetime hint crypto/tls sends with a TLS 1.3 ticket stays 7 days (not configurable): a
// client may offer a ticket Portico no longer takes, and gets a full handshake.

// BoringSSL's session lifetimes, which Envoy keeps unless session_timeout is set.
const (
	defaultTLS12SessionTimeout = 2 * time.Hour
	defaultTLS13SessionTimeout = 48 * time.Hour
	maxTLS13AuthAge            = 7 * 24 * time.Hour
)

// EnvoyTicketKeyLen is the length of an Envoy session ticket key.
const EnvoyTicketKeyLen = 80

// ticketExtraTag starts Portico's entry in SessionState.Extra: "portico-session/1", then
// the ticket's issue time and the time of the full handshake it descends from, each as
// big-endian Unix seconds.
const ticketExtraTag = "portico-session/1"

// sessions is a factory's resumption policy.
type sessions struct {
	// base seals and opens tickets with its keys (explicit or crypto/tls's rotating ones),
	// whatever per-connection Config the handshake runs with.
	base *ctls.Config
	// tls12 and tls13 are how long a session resumes.
	tls12, tls13 time.Duration
	// now is the clock of ticket ages (tests put a fake one here, before any handshake);
	// per-connection Configs get it as Config.Time so that crypto/tls's own checks agree.
	now func() time.Time
}

// ticketKeys maps Envoy's 80-byte keys to crypto/tls's; the first seals.
func ticketKeys(keys [][]byte) ([][32]byte, error) {
	out := make([][32]byte, 0, len(keys))
	for i, k := range keys {
		if len(k) != EnvoyTicketKeyLen {
			return nil, fmt.Errorf("session_ticket_keys.keys[%d]: %d bytes, want %d", i, len(k), EnvoyTicketKeyLen)
		}
		out = append(out, sha256.Sum256(k))
	}
	return out, nil
}

// newSessions configures c (the factory's base Config, before it is cloned) for
// resumption as cfg says. It returns nil when tickets are disabled: there is then nothing
// to do per connection.
func newSessions(cfg *DownstreamConfig, c *ctls.Config) (*sessions, error) {
	if cfg.SessionTimeout < 0 {
		return nil, fmt.Errorf("session_timeout: negative")
	}
	if cfg.DisableStatelessSessionResumption {
		if len(cfg.SessionTicketKeys) > 0 {
			return nil, fmt.Errorf("session_ticket_keys: set with disable_stateless_session_resumption")
		}
		c.SessionTicketsDisabled = true
		return nil, nil
	}
	if len(cfg.SessionTicketKeys) > 0 {
		keys, err := ticketKeys(cfg.SessionTicketKeys)
		if err != nil {
			return nil, err
		}
		c.SetSessionTicketKeys(keys)
	}
	s := &sessions{base: c, tls12: defaultTLS12SessionTimeout, tls13: defaultTLS13SessionTimeout, now: time.Now}
	if cfg.SessionTimeout > 0 {
		s.tls12 = cfg.SessionTimeout
	}
	return s, nil
}

// connSession links, on one connection, the ticket a client resumed with to the tickets
// the server then issues: a TLS 1.2 re-issued ticket keeps the first one's issue time (the
// master secret is the same), a TLS 1.3 one keeps the time of the full handshake.
type connSession struct {
	s              *sessions
	issued, authAt int64 // of the ticket accepted, 0 if none
}

// forConn returns the Config for one handshake: a shallow clone of chosen whose ticket
// callbacks know the connection. The clone is one allocation next to a handshake's many.
func (s *sessions) forConn(chosen *ctls.Config) *ctls.Config {
	if s == nil {
		return chosen
	}
	cs := &connSession{s: s}
	c := chosen.Clone()
	c.Time = s.now
	c.WrapSession = cs.wrap
	c.UnwrapSession = cs.unwrap
	return c
}

func (cs *connSession) wrap(st ctls.ConnectionState, ss *ctls.SessionState) ([]byte, error) {
	now := cs.s.now().Unix()
	issued, authAt := now, now
	if st.DidResume && cs.authAt != 0 {
		authAt = cs.authAt
		if st.Version < ctls.VersionTLS13 {
			issued = cs.issued
		}
	}
	e := make([]byte, len(ticketExtraTag)+16)
	n := copy(e, ticketExtraTag)
	binary.BigEndian.PutUint64(e[n:], uint64(issued))
	binary.BigEndian.PutUint64(e[n+8:], uint64(authAt))
	ss.Extra = append(ss.Extra, e)
	return cs.s.base.EncryptTicket(st, ss)
}

// unwrap opens a ticket and refuses (nil, nil: a full handshake) one that is not
// Portico's or has outlived its version's lifetime.
func (cs *connSession) unwrap(identity []byte, st ctls.ConnectionState) (*ctls.SessionState, error) {
	ss, err := cs.s.base.DecryptTicket(identity, st)
	if ss == nil || err != nil {
		return nil, nil
	}
	issued, authAt, ok := ticketTimes(ss.Extra)
	if !ok {
		return nil, nil
	}
	// Whole seconds, as BoringSSL counts: a session is valid while its age is below its
	// timeout, so a timeout under a second never resumes.
	now := cs.s.now().Unix()
	life := cs.s.tls12
	if st.Version >= ctls.VersionTLS13 {
		life = cs.s.tls13
		if now-authAt >= int64(maxTLS13AuthAge/time.Second) {
			return nil, nil
		}
	}
	if age := now - issued; age >= int64(life/time.Second) || age < -60 {
		return nil, nil
	}
	cs.issued, cs.authAt = issued, authAt
	return ss, nil
}

func ticketTimes(extra [][]byte) (issued, authAt int64, ok bool) {
	for _, e := range extra {
		if len(e) == len(ticketExtraTag)+16 && string(e[:len(ticketExtraTag)]) == ticketExtraTag {
			n := len(ticketExtraTag)
			return int64(binary.BigEndian.Uint64(e[n:])), int64(binary.BigEndian.Uint64(e[n+8:])), true
		}
	}
	return 0, 0, false
}

// sessionConfigForClient is the base Config's GetConfigForClient: the ALPN choice
// (configForClient), then the per-connection ticket callbacks.
func (f *Factory) sessionConfigForClient(h *ctls.ClientHelloInfo) (*ctls.Config, error) {
	c, err := f.configForClient(h)
	if err != nil || f.sess == nil {
		return c, err
	}
	if c == nil {
		c = f.cfg
	}
	return f.sess.forConn(c), nil
}
