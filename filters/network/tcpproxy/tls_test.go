package tcpproxy_test

import (
	ctls "crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/filters/network/tcpproxy"
	"github.com/portico-proxy/portico/internal/testpki"
	ptls "github.com/portico-proxy/portico/transport/tls"
)

type chanLog struct {
	f   *accesslog.Format
	out chan string
}

func (l chanLog) Log(e *accesslog.Entry) { l.out <- string(l.f.Append(nil, e)) }

// TestTLSAccessLog: tcp_proxy behind the tls transport socket logs the connection's TLS
// version, cipher and SNI (the SNI from the handshake, no tls_inspector).
func TestTLSAccessLog(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ca, err := testpki.NewCA("tcp proxy CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.ECDSA, "srv.test")
	if err != nil {
		t.Fatal(err)
	}
	tf, err := ptls.NewDownstream(ptls.DownstreamConfig{Certificates: []ctls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := engine.NewCluster(engine.ClusterConfig{Name: "echo", ConnectTimeout: time.Second,
		Endpoints: []engine.Endpoint{{Address: netip.MustParseAddrPort(echo.Addr().String())}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddCluster(cl); err != nil {
		t.Fatal(err)
	}
	format, err := accesslog.Compile("%DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER% %REQUESTED_SERVER_NAME% %DOWNSTREAM_PEER_SUBJECT% %BYTES_RECEIVED%")
	if err != nil {
		t.Fatal(err)
	}
	log := chanLog{f: format, out: make(chan string, 1)}
	f, err := tcpproxy.NewFactory(tcpproxy.Config{StatPrefix: "tp", MaxConnectAttempts: 1, IdleTimeout: time.Hour,
		Clusters: []tcpproxy.WeightedCluster{{Cluster: cl, Weight: 1}}, AccessLogs: []accesslog.Logger{log}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.AddListener(engine.ListenerConfig{Name: "tls", Address: netip.MustParseAddrPort("127.0.0.1:0"),
		FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "tls", TransportSocket: tf, Filters: []engine.NetworkFilterFactory{f}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Close()

	nc, err := net.DialTimeout("tcp", l.Address().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	tc := ctls.Client(nc, &ctls.Config{ServerName: "Srv.Test", RootCAs: ca.Pool, MaxVersion: ctls.VersionTLS13})
	if _, err := tc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(tc, b); err != nil || string(b) != "hello" {
		t.Fatalf("echo %q %v", b, err)
	}
	tc.Close()
	select {
	case got := <-log.out:
		// The TLS 1.3 suite depends on the CPU's AES support.
		if !strings.HasPrefix(got, "TLSv1.3 TLS_") || !strings.HasSuffix(got, " srv.test - 5") {
			t.Fatalf("access log %q, want TLSv1.3 TLS_<suite> srv.test - 5", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no access log line")
	}
}
