package tls

import (
	ctls "crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// infoFilter reports what engine.Connection.TLS says when the filters are built, then
// echoes.
type infoFilter struct {
	c   *engine.Connection
	out chan<- [3]string
}

type infoFactory struct{ out chan [3]string }

func (infoFactory) Name() string { return "info" }
func (f infoFactory) CreateFilter(c *engine.Connection) engine.ReadFilter {
	return &infoFilter{c: c, out: f.out}
}

func (p *infoFilter) OnNewConnection() engine.FilterStatus {
	var v [3]string
	if i := p.c.TLS(); i != nil {
		v = [3]string{i.TLSVersion(), i.TLSCipher(), i.NegotiatedProtocol()}
	} else {
		v[0] = "no tls"
	}
	p.out <- v
	return engine.Continue
}

func (p *infoFilter) OnData(data []byte, endStream bool) engine.FilterStatus {
	p.c.Write(data, endStream)
	return engine.StopIteration
}

// TestTLSInfo: network filters see the negotiated version, cipher and ALPN through
// engine.Connection.TLS; a raw_buffer connection has none.
func TestTLSInfo(t *testing.T) {
	ca := newTestCA(t)
	f := newFactory(t, DownstreamConfig{Certificates: []ctls.Certificate{ca.leaf(t, "srv", false, "srv.test")},
		ALPN: []string{"h2", "http/1.1"}})
	out := make(chan [3]string, 4)
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	var addrs [2]string
	for i, ts := range []engine.TransportSocketFactory{f, nil} {
		l, err := s.AddListener(engine.ListenerConfig{Name: "l" + string(rune('0'+i)), Address: netip.MustParseAddrPort("127.0.0.1:0"),
			FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "c", TransportSocket: ts,
				Filters: []engine.NetworkFilterFactory{infoFactory{out: out}}}}})
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Address().String()
	}
	s.Start()
	t.Cleanup(s.Close)
	r := &rig{addr: addrs[0], f: f}
	for _, tc := range []struct {
		v    uint16
		alpn []string
		want [3]string
	}{
		{ctls.VersionTLS13, []string{"http/1.1"}, [3]string{"TLSv1.3", "TLS_AES_128_GCM_SHA256", "http/1.1"}},
		{ctls.VersionTLS12, nil, [3]string{"TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", ""}},
	} {
		conn, err := r.dial(t, &ctls.Config{ServerName: "srv.test", RootCAs: ca.pool, MinVersion: tc.v, MaxVersion: tc.v,
			NextProtos: tc.alpn, CipherSuites: []uint16{ctls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, conn)
		conn.Close()
		got := <-out
		if tc.v == ctls.VersionTLS13 && strings.HasPrefix(got[1], "TLS_") {
			got[1] = tc.want[1] // the TLS 1.3 suite depends on the CPU's AES support
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", ctls.VersionName(tc.v), got, tc.want)
		}
	}
	nc, err := net.DialTimeout("tcp", addrs[1], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := <-out; got[0] != "no tls" {
		t.Errorf("raw_buffer: %q", got)
	}
}
