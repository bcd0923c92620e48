package admin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/portico-proxy/portico/engine"
)

// discard is a ResponseWriter that counts bytes and keeps none, so a benchmark measures the
// scrape, not a recorder's buffer.
type discard struct {
	h http.Header
	n int
}

func (d *discard) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}
func (d *discard) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// benchServer builds a server with n listeners (bind_to_port: false, so nothing is bound),
// 2 workers that never start, 10 clusters and one tcp_proxy-like source, with non-zero
// counters so values are formatted for real.
func benchServer(b *testing.B, n int) *engine.Server {
	b.Helper()
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	for i := 0; i < n; i++ {
		l, err := srv.AddListener(engine.ListenerConfig{Name: fmt.Sprintf("listener_%d", i),
			Address:      netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(10000+i)),
			NoBindToPort: true, FilterChains: engine.SingleChain{}})
		if err != nil {
			b.Fatal(err)
		}
		for w := 0; w < 2; w++ {
			l.Stats(w).DownstreamCxTotal.Add(uint64(i*7 + w))
			l.Stats(w).DownstreamCxActive.Add(int64(i % 5))
			l.Stats(w).DownstreamCxRxBytesTotal.Add(uint64(i) << 20)
		}
	}
	for i := 0; i < 10; i++ {
		c, err := engine.NewCluster(engine.ClusterConfig{Name: fmt.Sprintf("cluster_%d", i),
			Endpoints: []engine.Endpoint{{Address: netip.MustParseAddrPort("127.0.0.1:9")}}}, 2)
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.AddCluster(c); err != nil {
			b.Fatal(err)
		}
	}
	srv.AddStatsSource(fakeSource{1})
	return srv
}

func benchEndpoint(b *testing.B, path string, h func(*Admin) http.HandlerFunc) {
	a := New(benchServer(b, 4000), Options{})
	req := httptest.NewRequest("GET", path, nil)
	d := &discard{}
	h(a)(d, req) // warm up, and size the output
	b.SetBytes(int64(d.n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h(a)(&discard{}, req)
	}
}

// BenchmarkPrometheus4000Listeners is one /stats/prometheus scrape at 4,000 listeners and
// 2 workers.
func BenchmarkPrometheus4000Listeners(b *testing.B) {
	benchEndpoint(b, "/stats/prometheus", func(a *Admin) http.HandlerFunc { return a.prometheus })
}

// BenchmarkStats4000Listeners is one /stats (Envoy text) scrape at 4,000 listeners.
func BenchmarkStats4000Listeners(b *testing.B) {
	benchEndpoint(b, "/stats", func(a *Admin) http.HandlerFunc { return a.stats })
}

// BenchmarkLayoutRebuild4000Listeners is the first scrape after the listeners, clusters
// or sources change: the layout is worked out again (then both forms reuse it).
func BenchmarkLayoutRebuild4000Listeners(b *testing.B) {
	a := New(benchServer(b, 4000), Options{})
	req := httptest.NewRequest("GET", "/stats/prometheus", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.prom.sc.mu.Lock()
		a.prom.sc.lay = nil
		a.prom.sc.mu.Unlock()
		a.prometheus(&discard{}, req)
	}
}
