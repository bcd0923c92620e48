package admin

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
)

type fakeStat struct {
	name  string
	kind  engine.StatKind
	value float64
}

// labelSource is a StatsSource whose family, labels and stats a test sets (and changes
// between scrapes). Worker w reports value*(w+1).
type labelSource struct {
	family string
	labels [][2]string
	stats  []fakeStat
}

func (s *labelSource) StatsFamily() string { return s.family }
func (s *labelSource) StatsLabels() [][2]string {
	return append([][2]string(nil), s.labels...) // a fresh slice, as tcp_proxy returns
}
func (s *labelSource) VisitStats(w int, v engine.StatVisitor) {
	for _, st := range s.stats {
		v(st.name, st.kind, st.value*float64(w+1))
	}
}

// wideSource is a labelSource that may be process-wide (ProcessStats).
type wideSource struct {
	labelSource
	wide bool
}

func (s *wideSource) StatsProcessWide() bool { return s.wide }

func scrape(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// sameAsReference checks both forms against the original implementation, byte for byte.
func sameAsReference(t *testing.T, a *Admin, when string) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want string
	}{
		{"/stats", scrape(t, a.stats), refStats(a)},
		{"/stats/prometheus", scrape(t, a.prometheus), refPrometheus(a)},
	} {
		if f.got == f.want {
			continue
		}
		g, w := strings.Split(f.got, "\n"), strings.Split(f.want, "\n")
		for i := 0; i < max(len(g), len(w)); i++ {
			var gl, wl string
			if i < len(g) {
				gl = g[i]
			}
			if i < len(w) {
				wl = w[i]
			}
			if gl != wl {
				t.Fatalf("%s %s: line %d is %q, want %q (%d vs %d lines)", when, f.name, i+1, gl, wl, len(g), len(w))
			}
		}
	}
}

func builds(a *Admin) int {
	a.text.sc.mu.Lock()
	defer a.text.sc.mu.Unlock()
	return a.text.sc.builds
}

// The cached scrape prints exactly what the original did, including its corners: shared
// stat prefixes (equal text keys, ordered by value), a scope that is a prefix of another
// followed by ": ", labels that need quoting, merged sources, worker and address labels
// from a source, values past 2^53, fractions, infinities and -0; and it notices when
// sources, their labels, their stats or the listeners change.
func TestScrapeMatchesReference(t *testing.T) {
	const workers = 3
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: workers})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addListener := func(name, prefix, addr string, bind bool) *engine.Listener {
		t.Helper()
		l, err := srv.AddListener(engine.ListenerConfig{Name: name, StatPrefix: prefix,
			Address: netip.MustParseAddrPort(addr), NoBindToPort: !bind, FilterChains: engine.SingleChain{}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	var ls []*engine.Listener
	ls = append(ls,
		addListener("bound", "", "127.0.0.1:0", true),
		addListener("i1", "ingress", "127.0.0.1:10001", false),
		addListener("i2", "ingress", "127.0.0.1:10002", false),
		addListener("a", "a", "127.0.0.1:10003", false),
		addListener("ab", "a.b", "127.0.0.1:10004", false),
		addListener("q", "q", "127.0.0.1:10005", false),
		addListener("q2", "q.downstream_cx_total: 1", "127.0.0.1:10006", false),
		addListener("weird", "we\"ird\\\u00fc\x01", "[::1]:10007", false),
	)
	set := func(round int) {
		for i, l := range ls {
			for w := 0; w < workers; w++ {
				st := l.Stats(w)
				st.DownstreamCxTotal.Add(uint64((i*13 + w*7 + round) % 11)) // 9 vs 10: string order is not numeric
				st.DownstreamCxActive.Add(int64(w - 1))                     // negative gauges too
				st.DownstreamCxRxBytesTotal.Add(1<<60 + uint64(i))          // past 2^53
			}
		}
	}
	set(0)
	for _, n := range []string{"c1", "c2"} {
		c, err := engine.NewCluster(engine.ClusterConfig{Name: n,
			Endpoints: []engine.Endpoint{{Address: netip.MustParseAddrPort("127.0.0.1:9")}}}, workers)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddCluster(c); err != nil {
			t.Fatal(err)
		}
		c.Stats(1).UpstreamCxTotal.Add(4)
	}
	srv.AddStatsSource(fakeSource{1})
	srv.AddStatsSource(fakeSource{10}) // merged with the one above
	merged := &labelSource{family: "tcp", labels: [][2]string{{"stat_prefix", "shared"}},
		stats: []fakeStat{{"downstream_cx_total", engine.KindCounter, 100}, {"idle_timeout", engine.KindCounter, 2}}}
	srv.AddStatsSource(merged)
	odd := &labelSource{family: "tcp", labels: [][2]string{{"stat_prefix", "x"}, {"worker", "w"}, {"address", "somewhere"}},
		stats: []fakeStat{{"frac", engine.KindGauge, 0.1 + 0.2}, {"big", engine.KindCounter, 1e22},
			{"inf", engine.KindGauge, math.Inf(1)}, {"negzero", engine.KindGauge, math.Copysign(0, -1)},
			{"maxexact", engine.KindCounter, 1<<53 - 1}, {"neg", engine.KindGauge, -(1 << 53)}}}
	srv.AddStatsSource(odd)
	bare := &labelSource{family: "http", stats: []fakeStat{{"rq_total", engine.KindCounter, 3}}}
	srv.AddStatsSource(bare)
	// Same scope in the text form as "x" above but other labels, so its lines share keys.
	twin := &labelSource{family: "tcp", labels: [][2]string{{"other_label", "x"}},
		stats: []fakeStat{{"frac", engine.KindGauge, 5}}}
	srv.AddStatsSource(twin)
	// Process-wide sources: one without labels whose stat carries a response-code tag
	// (so its only Prometheus label is the tag), one sharing the text scope of a
	// per-worker source.
	wide := &wideSource{labelSource{family: "listener_manager",
		stats: []fakeStat{{"lds.update_success", engine.KindCounter, 3}, {"upstream_rq_200", engine.KindCounter, 2}}}, true}
	srv.AddStatsSource(wide)
	srv.AddStatsSource(&wideSource{labelSource{family: "http", stats: []fakeStat{{"rq_total", engine.KindCounter, 4}}}, true})

	a := New(srv, Options{})
	sameAsReference(t, a, "first scrape")
	if n := builds(a); n != 1 {
		t.Fatalf("%d layout builds after one scrape", n)
	}
	set(1)
	odd.stats[0].value = 7.5
	sameAsReference(t, a, "values changed")
	if n := builds(a); n != 1 {
		t.Errorf("values changed: %d layout builds, want the first one only", n)
	}

	steps := []struct {
		what   string
		change func()
	}{
		{"a source reports one more stat", func() {
			merged.stats = append(merged.stats, fakeStat{"late", engine.KindGauge, 1})
		}},
		{"a source reports one stat fewer", func() { merged.stats = merged.stats[:2] }},
		{"a source renames a stat", func() { bare.stats[0].name = "rq_renamed" }},
		{"a stat changes kind", func() { bare.stats[0].kind = engine.KindGauge }},
		{"a source's labels change", func() { bare.labels = [][2]string{{"stat_prefix", "now"}} }},
		{"a source stops being process-wide", func() { wide.wide = false }},
		{"a source is added", func() {
			srv.AddStatsSource(&labelSource{family: "udp", stats: []fakeStat{{"x", engine.KindCounter, 1}}})
		}},
		{"a listener is added", func() { ls = append(ls, addListener("new", "", "127.0.0.1:10008", false)); set(2) }},
	}
	for i, st := range steps {
		st.change()
		sameAsReference(t, a, st.what)
		if n := builds(a); n != 2+i {
			t.Errorf("%s: %d layout builds, want %d", st.what, n, 2+i)
		}
	}
}

func TestAppendValueMatchesFormatFloat(t *testing.T) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 9, 10, 0.5, 0.1 + 0.2, 1<<53 - 1, 1 << 53, 1<<53 + 2,
		-(1<<53 - 1), -(1 << 53), 1 << 63, 1e21, 1e22, -1e22, math.MaxUint64, math.Inf(1), math.Inf(-1), math.NaN(),
		math.SmallestNonzeroFloat64, 123456789.125} {
		if got, want := string(appendValue(nil, v)), strconv.FormatFloat(v, 'f', -1, 64); got != want {
			t.Errorf("appendValue(%v) = %q, want %q", v, got, want)
		}
	}
}

// A scrape's allocations do not grow with the number of stats: a fixed handful (the
// response header, the lookup of sources' labels), not several per sample.
func TestScrapeAllocationsDoNotGrowWithStats(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 400 listeners")
	}
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i := 0; i < 400; i++ {
		if _, err := srv.AddListener(engine.ListenerConfig{Name: fmt.Sprint("l", i),
			Address: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+i)), FilterChains: engine.SingleChain{}}); err != nil {
			t.Fatal(err)
		}
	}
	srv.AddStatsSource(fakeSource{1})
	a := New(srv, Options{})
	req := httptest.NewRequest("GET", "/", nil)
	for _, h := range []struct {
		name string
		f    http.HandlerFunc
	}{{"/stats", a.stats}, {"/stats/prometheus", a.prometheus}} {
		h.f(&discard{}, req) // builds the layout and sizes the buffer
		allocs := testing.AllocsPerRun(5, func() { h.f(&discard{}, req) })
		// 400 listeners x 2 workers x 11 stats = 8,800 samples; the original made ~20
		// allocations per sample.
		if allocs > 50 {
			t.Errorf("%s: %.0f allocations per scrape of 8,800 samples", h.name, allocs)
		}
	}
}

// gateSource blocks inside VisitStats while its gate is shut, to hold a scrape in the
// middle of its computation.
type gateSource struct {
	mu      sync.Mutex
	shut    bool
	inside  int
	entered chan int
	open    chan struct{}
}

func (*gateSource) StatsFamily() string      { return "gate" }
func (*gateSource) StatsLabels() [][2]string { return nil }
func (g *gateSource) VisitStats(w int, v engine.StatVisitor) {
	g.mu.Lock()
	shut := g.shut
	if shut {
		g.inside++
	}
	n := g.inside
	g.mu.Unlock()
	if shut {
		g.entered <- n
		<-g.open
		g.mu.Lock()
		g.inside--
		g.mu.Unlock()
	}
	v("visits", engine.KindCounter, 1)
}

// Scrapes compute one at a time: a scrape that arrives while another computes waits (for
// the same endpoint, it takes that one's output), it does not read the stats alongside.
func TestScrapesAreSerialized(t *testing.T) {
	for _, tc := range []struct{ first, second string }{
		{"/stats", "/stats"},
		{"/stats/prometheus", "/stats/prometheus"},
		{"/stats", "/stats/prometheus"},
	} {
		t.Run(strings.ReplaceAll(tc.first+"+"+tc.second, "/", "_"), func(t *testing.T) {
			g := &gateSource{entered: make(chan int, 2), open: make(chan struct{})}
			a, addr := startAdmin(t, Options{}, g)
			get(t, "http://"+addr+"/stats") // build the layout with the gate open
			g.mu.Lock()
			g.shut = true
			g.mu.Unlock()

			type res struct {
				code int
				body string
			}
			results := make(chan res, 2)
			fetch := func(path string) {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					results <- res{-1, err.Error()}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					results <- res{-2, err.Error()}
					return
				}
				results <- res{resp.StatusCode, string(b)}
			}
			go fetch(tc.first)
			select {
			case <-g.entered:
			case <-time.After(generous):
				t.Fatal("first scrape never visited the source")
			}
			go fetch(tc.second)
			// Either the second scrape visits the source while the first is inside (the
			// defect), or it is seen waiting.
			deadline := time.Now().Add(generous)
			for waiting := false; !waiting; {
				select {
				case n := <-g.entered:
					close(g.open)
					t.Fatalf("second scrape read the stats while the first was computing (%d inside)", n)
				default:
				}
				waiting = scrapeWaiting(a) > 0
				if time.Now().After(deadline) {
					close(g.open)
					t.Fatal("second scrape neither waited nor computed")
				}
				time.Sleep(time.Millisecond)
			}
			close(g.open)
			for range 2 {
				r := <-results
				if r.code != 200 || !strings.Contains(r.body, "visits") {
					t.Errorf("scrape: %d %q", r.code, r.body)
				}
			}
		})
	}
}

// scrapeWaiting counts scrapes that waited for another's computation: shared its output or
// queued for the scraper.
func scrapeWaiting(a *Admin) int {
	n := int(a.text.sc.queued.Load())
	for _, e := range []*endpoint{a.text, a.prom} {
		e.mu.Lock()
		n += e.waited
		e.mu.Unlock()
	}
	return n
}

// httpSource stands for an HTTP connection manager's stats: counters named as Envoy names
// them (response-code classes and codes in the name) and histograms, per worker.
type httpSource struct {
	family string
	labels [][2]string
	stats  []fakeStat
	hists  []string
	h      [][]engine.Histogram // [worker][hists index]
}

func newHTTPSource(family string, labels [][2]string, workers int, stats []fakeStat, hists ...string) *httpSource {
	s := &httpSource{family: family, labels: labels, stats: stats, hists: hists}
	for range workers {
		s.h = append(s.h, make([]engine.Histogram, len(hists)))
	}
	return s
}

func (s *httpSource) StatsFamily() string      { return s.family }
func (s *httpSource) StatsLabels() [][2]string { return s.labels } // allocation-free, unlike labelSource
func (s *httpSource) VisitStats(w int, v engine.StatVisitor) {
	for _, st := range s.stats {
		v(st.name, st.kind, st.value*float64(w+1))
	}
}
func (s *httpSource) VisitHistograms(w int, v engine.HistogramVisitor) {
	for i, n := range s.hists {
		v(n, &s.h[w][i])
	}
}

// Envoy's tag extraction for response codes on /stats/prometheus, its plain names on
// /stats, and histograms in both forms; checked against the reference and line by line.
func TestScrapeHTTPStats(t *testing.T) {
	const workers = 2
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: workers})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := func(name string, v float64) fakeStat { return fakeStat{name, engine.KindCounter, v} }
	hcm := newHTTPSource("http", [][2]string{{"stat_prefix", "ingress"}}, workers, []fakeStat{
		c("downstream_rq_total", 9), c("downstream_rq_1xx", 0), c("downstream_rq_2xx", 5), c("downstream_rq_5xx", 4),
		c("rq_200", 1), c("downstream_rq_20", 1), c("downstream_rq_2000", 1), c("downstream_rq_2xxx", 1),
	}, "downstream_rq_time", "downstream_cx_length_ms")
	// A second HCM with the same stat_prefix shares its series, as in Envoy.
	hcm2 := newHTTPSource("http", [][2]string{{"stat_prefix", "ingress"}}, workers, []fakeStat{c("downstream_rq_2xx", 100)},
		"downstream_rq_time")
	// Other labels, same text scope: its lines sort among the first one's by value.
	twin := newHTTPSource("http", [][2]string{{"other", "ingress"}}, workers, nil, "downstream_rq_time")
	cluster := newHTTPSource("cluster", [][2]string{{"cluster", "backend"}}, workers, []fakeStat{
		c("upstream_rq_total", 7), c("upstream_rq_200", 6), c("upstream_rq_503", 1), c("upstream_rq_2xx", 6),
		c("upstream_rq_5xx", 1), c("external.upstream_rq_200", 2), c("external.upstream_rq_2xx", 2),
	}, "upstream_rq_time", "upstream_cx_connect_ms")
	for _, s := range []engine.StatsSource{hcm, hcm2, twin, cluster} {
		srv.AddStatsSource(s)
	}
	for _, ms := range []uint64{0, 1, 1, 3, 12, 40, 250, 251, 5000, 4_000_000} {
		hcm.h[0][0].Record(ms)
	}
	hcm.h[1][0].Record(7)
	hcm2.h[0][0].Record(100)
	twin.h[1][0].Record(2)
	cluster.h[0][0].Record(20)

	a := New(srv, Options{})
	sameAsReference(t, a, "HTTP stats")
	prom, text := scrape(t, a.prometheus), scrape(t, a.stats)
	for _, want := range []string{
		"# TYPE portico_http_downstream_rq_xx counter\n",
		`portico_http_downstream_rq_xx{stat_prefix="ingress",worker="0",envoy_response_code_class="2"} 105` + "\n",
		`portico_http_downstream_rq_xx{stat_prefix="ingress",worker="1",envoy_response_code_class="2"} 210` + "\n",
		`portico_http_downstream_rq_xx{stat_prefix="ingress",worker="0",envoy_response_code_class="5"} 4` + "\n",
		`portico_http_downstream_rq_xx{stat_prefix="ingress",worker="0",envoy_response_code_class="1"} 0` + "\n",
		`portico_http_downstream_rq_total{stat_prefix="ingress",worker="0"} 9` + "\n",
		`portico_http_rq_200{stat_prefix="ingress",worker="0"} 1` + "\n", // no "_" before rq: not Envoy's pattern
		`portico_http_downstream_rq_20{stat_prefix="ingress",worker="0"} 1` + "\n",
		`portico_http_downstream_rq_2000{stat_prefix="ingress",worker="0"} 1` + "\n",
		`portico_http_downstream_rq_2xxx{stat_prefix="ingress",worker="0"} 1` + "\n",
		"# TYPE portico_cluster_upstream_rq counter\n",
		`portico_cluster_upstream_rq{cluster="backend",worker="0",envoy_response_code="200"} 6` + "\n",
		`portico_cluster_upstream_rq{cluster="backend",worker="1",envoy_response_code="503"} 2` + "\n",
		`portico_cluster_upstream_rq_xx{cluster="backend",worker="0",envoy_response_code_class="2"} 6` + "\n",
		`portico_cluster_external_upstream_rq{cluster="backend",worker="0",envoy_response_code="200"} 2` + "\n",
		`portico_cluster_external_upstream_rq_xx{cluster="backend",worker="0",envoy_response_code_class="2"} 2` + "\n",
		"# TYPE portico_http_downstream_rq_time histogram\n",
		`portico_http_downstream_rq_time_bucket{stat_prefix="ingress",worker="0",le="0.5"} 1` + "\n",
		`portico_http_downstream_rq_time_bucket{stat_prefix="ingress",worker="0",le="1"} 3` + "\n",
		`portico_http_downstream_rq_time_bucket{stat_prefix="ingress",worker="0",le="5"} 4` + "\n",
		`portico_http_downstream_rq_time_bucket{stat_prefix="ingress",worker="0",le="100"} 7` + "\n", // 100 from hcm2
		`portico_http_downstream_rq_time_bucket{stat_prefix="ingress",worker="0",le="250"} 8` + "\n",
		`portico_http_downstream_rq_time_bucket{stat_prefix="ingress",worker="0",le="3600000"} 10` + "\n",
		`portico_http_downstream_rq_time_bucket{stat_prefix="ingress",worker="0",le="+Inf"} 11` + "\n",
		`portico_http_downstream_rq_time_sum{stat_prefix="ingress",worker="0"} 4005658` + "\n",
		`portico_http_downstream_rq_time_count{stat_prefix="ingress",worker="0"} 11` + "\n",
		`portico_http_downstream_rq_time_count{other="ingress",worker="1"} 1` + "\n",
		`portico_http_downstream_cx_length_ms_count{stat_prefix="ingress",worker="1"} 0` + "\n",
		"# TYPE portico_cluster_upstream_cx_connect_ms histogram\n",
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q", want)
		}
	}
	for _, want := range []string{
		"http.ingress.downstream_rq_2xx: 315\n", // (5+100) x (1+2)
		"http.ingress.worker_1.downstream_rq_5xx: 8\n",
		"cluster.backend.upstream_rq_503: 3\n",
		"cluster.backend.external.upstream_rq_200: 6\n",
		// 0 1 1 3 12 40 100 250 251 5000 4000000: P50 is interpolated in 36..50, P95 in
		// 3600001..4000000 (the largest value bounds the last bucket).
		"http.ingress.worker_0.downstream_rq_time: P0(nan,0) P25(nan,1) P50(nan,43) P75(nan,275.75) P90(nan,4850.1) " +
			"P95(nan,3780000.55) P99(nan,3956000.1100000003) P99.5(nan,3978000.055) P99.9(nan,3995600.0110000004) P100(nan,4000000)\n",
		"http.ingress.worker_1.downstream_rq_time: P0(nan,7) P25(nan,7) P50(nan,7) P75(nan,7) P90(nan,7) " +
			"P95(nan,7) P99(nan,7) P99.5(nan,7) P99.9(nan,7) P100(nan,7)\n", // one value
		"http.ingress.worker_1.downstream_cx_length_ms: No recorded values\n",
		"http.ingress.downstream_cx_length_ms: No recorded values\n",
		"cluster.backend.upstream_rq_time: P0(nan,20) P25(nan,20) P50(nan,20) P75(nan,20) P90(nan,20) " +
			"P95(nan,20) P99(nan,20) P99.5(nan,20) P99.9(nan,20) P100(nan,20)\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/stats lacks %q", want)
		}
	}
	// Histograms come after the counters and gauges, as in Envoy's /stats.
	if i, j := strings.Index(text, "P0("), strings.LastIndex(text, "_total: "); i < j {
		t.Errorf("a histogram line before a counter:\n%s", text)
	}

	// Values change: no rebuild, still the reference; a histogram renamed: a rebuild.
	hcm.h[1][1].Record(33)
	cluster.stats[1].value = 60
	sameAsReference(t, a, "values changed")
	if n := builds(a); n != 1 {
		t.Errorf("%d layout builds, want 1", n)
	}
	hcm.hists[1] = "downstream_cx_length"
	sameAsReference(t, a, "a histogram renamed")
	hcm.hists = hcm.hists[:1]
	sameAsReference(t, a, "a histogram fewer")
	if n := builds(a); n != 3 {
		t.Errorf("%d layout builds, want 3", n)
	}
}

// Scrapes with histograms allocate no more than without.
func TestScrapeHistogramsDoNotAllocate(t *testing.T) {
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i := range 200 {
		s := newHTTPSource("http", [][2]string{{"stat_prefix", fmt.Sprint("p", i)}}, 2,
			[]fakeStat{{"downstream_rq_2xx", engine.KindCounter, 3}, {"downstream_rq_total", engine.KindCounter, 3}},
			"downstream_rq_time", "downstream_cx_length_ms")
		for w := range 2 {
			s.h[w][0].Record(uint64(i))
		}
		srv.AddStatsSource(s)
	}
	a := New(srv, Options{})
	req := httptest.NewRequest("GET", "/", nil)
	for _, h := range []struct {
		name string
		f    http.HandlerFunc
	}{{"/stats", a.stats}, {"/stats/prometheus", a.prometheus}} {
		h.f(&discard{}, req)
		// 200 sources x 2 workers x 2 histograms = 800 histograms, 17,600 Prometheus lines.
		if allocs := testing.AllocsPerRun(5, func() { h.f(&discard{}, req) }); allocs > 50 {
			t.Errorf("%s: %.0f allocations per scrape", h.name, allocs)
		}
	}
}
