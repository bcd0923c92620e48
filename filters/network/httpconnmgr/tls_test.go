package httpconnmgr_test

import (
	"crypto/sha256"
	ctls "crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/filters/accesslog"
	"github.com/portico-proxy/portico/filters/http/httpfilter"
	"github.com/portico-proxy/portico/filters/http/router"
	"github.com/portico-proxy/portico/filters/network/httpconnmgr"
	"github.com/portico-proxy/portico/http/http1"
	"github.com/portico-proxy/portico/http/route"
	"github.com/portico-proxy/portico/internal/testpki"
	ptls "github.com/portico-proxy/portico/transport/tls"
)

// lineLog renders each entry with a format and keeps the lines.
type lineLog struct {
	f     *accesslog.Format
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Log(e *accesslog.Entry) {
	b := l.f.Append(nil, e)
	l.mu.Lock()
	l.lines = append(l.lines, string(b))
	l.mu.Unlock()
}

func (l *lineLog) take(t *testing.T) string {
	t.Helper()
	for i := 0; i < 2000; i++ {
		l.mu.Lock()
		if len(l.lines) > 0 {
			s := l.lines[0]
			l.lines = l.lines[1:]
			l.mu.Unlock()
			return s
		}
		l.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no access log line")
	return ""
}

// TestTLSTerminatedHCM: behind the tls transport socket, the connection manager sets
// x-forwarded-proto https (with and without use_remote_address), and the access log's TLS
// operators print the version, cipher, SNI and the client certificate; the same chain
// without TLS gives http and "-".
func TestTLSTerminatedHCM(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xfp=%s", r.Header.Get("X-Forwarded-Proto"))
	}))
	defer be.Close()
	ca, err := testpki.NewCA("hcm test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.Issue(testpki.ECDSA, "srv.test")
	if err != nil {
		t.Fatal(err)
	}
	cliCert, err := ca.Issue(testpki.ECDSA, "client.test")
	if err != nil {
		t.Fatal(err)
	}
	tf, err := ptls.NewDownstream(ptls.DownstreamConfig{Certificates: []ctls.Certificate{srvCert.TLS},
		Validation: &ptls.Validation{TrustedCA: []*x509.Certificate{ca.Cert}}, MinVersion: ctls.VersionTLS12, MaxVersion: ctls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	format, err := accesslog.Compile("%DOWNSTREAM_TLS_VERSION% %DOWNSTREAM_TLS_CIPHER% %REQUESTED_SERVER_NAME% " +
		"%DOWNSTREAM_PEER_SUBJECT% %DOWNSTREAM_PEER_ISSUER% %DOWNSTREAM_PEER_FINGERPRINT_256% %DOWNSTREAM_TLS_SESSION_ID%")
	if err != nil {
		t.Fatal(err)
	}
	for _, remote := range []bool{false, true} {
		log := &lineLog{f: format}
		tlsAddr, plainAddr := tlsProxy(t, be.Listener.Addr().String(), tf, log, remote)

		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &ctls.Config{
			ServerName: "srv.test", RootCAs: ca.Pool, Certificates: []ctls.Certificate{cliCert.TLS},
			CipherSuites: []uint16{ctls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}}}
		defer client.CloseIdleConnections()
		for _, tc := range []struct{ url, want string }{
			{"https://" + tlsAddr + "/", "xfp=https"},
			{"http://" + plainAddr + "/", "xfp=http"},
		} {
			resp, err := client.Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tc.want {
				t.Errorf("use_remote_address %v, %s: %q, want %q", remote, tc.url, b, tc.want)
			}
		}
		sum := sha256.Sum256(cliCert.TLS.Certificate[0])
		want := "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256 srv.test CN=client.test CN=hcm test CA " + hex.EncodeToString(sum[:]) + " -"
		if got := log.take(t); got != want {
			t.Errorf("TLS line\n got %q\nwant %q", got, want)
		}
		if got := log.take(t); got != "- - - - - - -" {
			t.Errorf("plain line %q", got)
		}
	}
}

// tlsProxy serves one HCM on two listeners of one worker, with and without TLS.
func tlsProxy(t *testing.T, backend string, tf *ptls.Factory, log accesslog.Logger, remote bool) (tlsAddr, plainAddr string) {
	t.Helper()
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := engine.NewCluster(engine.ClusterConfig{Name: "backend", ConnectTimeout: time.Second,
		Endpoints: []engine.Endpoint{{Address: netip.MustParseAddrPort(backend)}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddCluster(cl); err != nil {
		t.Fatal(err)
	}
	tab, err := route.New(route.Config{VirtualHosts: []route.VirtualHostConfig{{Name: "all", Domains: []string{"*"},
		Routes: []route.RouteConfig{{Name: "root", Match: route.Match{Path: "/"}, Route: &route.Action{Cluster: "backend", Timeout: 15 * time.Second}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	router.Attach(cl)
	up := router.NewUpstreams(srv.ClusterRegistry(), 1)
	f, err := httpconnmgr.New(httpconnmgr.Config{StatPrefix: "ingress", Routes: tab, Limits: http1.DefaultLimits,
		Filters:          []httpfilter.Factory{router.New(router.Config{}, up)},
		UseRemoteAddress: remote, StreamIdleTimeout: httpconnmgr.DefaultStreamIdleTimeout, IdleTimeout: time.Hour,
		AccessLogs: []accesslog.Logger{log}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var addrs [2]string
	for i, ts := range []engine.TransportSocketFactory{tf, nil} {
		l, err := srv.AddListener(engine.ListenerConfig{Name: fmt.Sprintf("l%d", i), Address: netip.MustParseAddrPort("127.0.0.1:0"),
			FilterChains: engine.SingleChain{Chain: &engine.FilterChain{Name: "http", TransportSocket: ts, Filters: []engine.NetworkFilterFactory{f}}}})
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Address().String()
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return addrs[0], addrs[1]
}
