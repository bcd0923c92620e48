package accesslog

import "testing"

// fakeTLS is a terminated TLS connection with a client certificate.
type fakeTLS struct{ subject string }

func (fakeTLS) TLSVersion() string            { return "TLSv1.3" }
func (fakeTLS) TLSCipher() string             { return "TLS_AES_128_GCM_SHA256" }
func (fakeTLS) TLSSessionID() string          { return "" }
func (f fakeTLS) PeerSubject() string         { return f.subject }
func (fakeTLS) PeerIssuer() string            { return "CN=ca,O=Portico" }
func (fakeTLS) PeerFingerprintSHA256() string { return "ab01" }

// TestTLSOperators: the downstream TLS operators print the connection's values, "-" for
// a value it lacks (no session ID, no peer certificate), and "-" without TLS.
func TestTLSOperators(t *testing.T) {
	const format = "%DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER% %DOWNSTREAM_TLS_SESSION_ID% " +
		"%DOWNSTREAM_PEER_SUBJECT% %DOWNSTREAM_PEER_ISSUER% %DOWNSTREAM_PEER_FINGERPRINT_256%"
	e := tcpEntry()
	if got, want := render(t, format, e), "- - - - - -"; got != want {
		t.Errorf("no TLS: %q, want %q", got, want)
	}
	e.DownstreamTLS = fakeTLS{subject: "CN=client,O=Portico"}
	if got, want := render(t, format, e), "TLSv1.3 TLS_AES_128_GCM_SHA256 - CN=client,O=Portico CN=ca,O=Portico ab01"; got != want {
		t.Errorf("TLS: %q, want %q", got, want)
	}
	// Command only, as in Envoy.
	for _, bad := range []string{"%DOWNSTREAM_TLS_VERSION(x)%", "%DOWNSTREAM_PEER_SUBJECT:9%"} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("%s compiled", bad)
		}
	}
	// The static strings render without allocating.
	f, _ := Compile("%DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER%")
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = f.Append(buf[:0], e) }); n != 0 {
		t.Errorf("%.1f allocations", n)
	}
}
