package admin

import (
	"bytes"
	"math"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/portico-proxy/portico/engine"
)

// A scrape must cost the data plane nothing it can feel. The workers are pinned goroutines
// that the garbage collector stops too, so a scrape that allocates per sample (at 4,000
// listeners: 1.7 million allocations, 110 MB) slows proxied traffic. Here the shape of the
// output (series, their label strings, the sorted order of lines) is worked out once and
// kept in a layout; a scrape then only reads the atomics into a slice of values and appends
// lines into a reused buffer. The layout is rebuilt when the set of listeners, clusters or
// sources changes (checked by identity on every scrape, which is cheap) or when a source
// reports other stats than last time. One scrape computes at a time; requests that arrive
// meanwhile wait for it and share its output.

// group is one (source, worker): the labels and text scope its stats print with. A
// process-wide source (ProcessStats) is one group without a worker.
type group struct {
	family string // listener, cluster, tcp ...
	scope  string // listener.echo. (summed lines)
	global bool   // process-wide: its summed lines are its only text lines
	// prom is the Prometheus labels without the closing brace, which a series closes after
	// the label its name gave (tag) and a histogram bucket after its le:
	// {listener="echo",address="127.0.0.1:10000",worker="0"
	prom string
	text string // listener.echo.worker_0.
}

// series is one output series: the sum of every visit of one (family, labels, name). A
// histogram series is the merge of its visits.
type series struct {
	name string
	// tag is the label Envoy's tag extraction takes out of the name for Prometheus, as
	// `,envoy_response_code_class="2"`, or "".
	tag   string
	group int32 // the first group that reported it (all that did have equal labels)
	sum   int32 // its line in the summed text form
	kind  engine.StatKind
}

// metric is one Prometheus metric: a TYPE line and its series in first-seen order.
type metric struct {
	name   string
	typ    string // "# TYPE <name> counter\n"
	series []int32
	own    int  // index into ownNames, or -1
	hist   bool // series index hseries; the lines are <name>_bucket, _sum and _count
}

// Text entries: a series' per-worker line, a summed line, one of admin's own stats; a
// histogram's per-worker line, a histogram's summed line.
const (
	entrySeries = iota
	entrySum
	entryOwn
	entryHist
	entryHistSum
)

type entry struct {
	kind uint8
	i    int32
}

// listenerID, clusterID and sourceID are what a layout was built from.
type listenerID struct {
	l    *engine.Listener
	stat string
	addr netip.AddrPort
}

type clusterID struct {
	c    *engine.Cluster
	name string
}

type sourceID struct {
	// src is the source itself: a listener or cluster update replaces a source by another
	// with the same family and labels, whose stats the layout must read instead.
	src    engine.StatsSource
	family string
	labels [][2]string
	global bool
}

// sameSource tells whether a and b are the same source; a source of a type that cannot be
// compared (a struct holding a slice) counts as the same as another of its type.
func sameSource(a, b engine.StatsSource) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb {
		return false
	}
	if !ta.Comparable() {
		return true
	}
	return a == b
}

// ProcessStats is a StatsSource whose stats belong to the process, not to a worker, such
// as Envoy's listener_manager.* and cluster_manager.*. The scrape visits it once, as
// worker 0, and shows its stats without a worker, by Envoy's names:
// listener_manager.lds.update_success: 3 and, in Prometheus,
// portico_listener_manager_lds_update_success{} 3. A plain StatsSource is visited once
// per worker and shows per-worker lines (listener_manager.worker_0.…) besides the summed
// one.
type ProcessStats interface {
	engine.StatsSource
	// StatsProcessWide reports true for a process-wide source.
	StatsProcessWide() bool
}

// processWide tells whether src is visited once (ProcessStats) rather than per worker.
func processWide(src engine.StatsSource) bool {
	p, ok := src.(ProcessStats)
	return ok && p.StatsProcessWide()
}

// layout is everything about a scrape's output except the values.
type layout struct {
	workers   int
	listeners []listenerID
	clusters  []clusterID
	sources   []sourceID

	// Visit plan: visit number v (source-major, then worker) reports the stats at
	// positions visitEnd[v-1]..visitEnd[v]; position p goes to series slot[p], whose name
	// it must have, with kind kinds[p]. A series' first position sets its value (stored
	// as ^slot), later ones add to it, as the original's merging did (-0 stays -0).
	slot     []int32
	kinds    []engine.StatKind
	visitEnd []int32
	// The same for the histograms, which each visit reports after its other stats.
	hslot     []int32
	hvisitEnd []int32

	groups  []group
	series  []series
	hseries []series
	sums    []textKey // listener.echo. + downstream_cx_total
	hsums   []textKey
	metrics []metric // sorted by name
	text    []entry  // in output order
	// textRuns are ranges of text whose order depends on the values (equal keys, or a key
	// that is a prefix of another followed by ": "); they are sorted line by line.
	textRuns [][2]int32
	// htext and htextRuns are the histograms' lines, which Envoy prints after the others.
	htext     []entry
	htextRuns [][2]int32
	// sumNames and sumCounter are the summed lines' names and kinds, worked out on the
	// first scrape that carries a hot restart parent's counters (addCarried).
	sumNames   []string
	sumCounter []bool
	// le are the Prometheus bucket labels, `,le="0.5"} ` ...
	le [engine.PrometheusBuckets]string
}

// ownNames are admin's own stats, in visitOwn's order, by their full names.
var ownNames = [...]string{
	"server.admin.downstream_cx_active", "server.admin.downstream_cx_overflow", "server.admin.downstream_cx_total",
	"server.live", "server.state",
}

// scraper holds the layout and the values of the last scrape. Its mutex makes scrapes
// one at a time.
type scraper struct {
	a  *Admin
	mu sync.Mutex
	// Below: guarded by mu.
	lay     *layout
	values  []float64
	sums    []float64
	hvalues []engine.HistogramSnapshot
	hsums   []engine.HistogramSnapshot
	own     [len(ownNames)]float64
	pos     int32 // visit cursor
	end     int32
	hpos    int32 // histogram visit cursor
	hend    int32
	bad     bool // a source reported other stats than the layout expects
	visitor engine.StatVisitor
	hvisit  engine.HistogramVisitor
	hsnap   engine.HistogramSnapshot // one visit's histogram, to merge
	prom    [engine.PrometheusBuckets]uint64
	scratch [][]byte // for textRuns
	// builds counts layout builds and queued the scrapes waiting for mu (for tests).
	builds int
	queued atomic.Int32
}

func newScraper(a *Admin) *scraper {
	s := &scraper{a: a}
	s.visitor = s.visit
	s.hvisit = s.visitHist
	return s
}

func (s *scraper) visitHist(name string, h *engine.Histogram) {
	p := s.hpos
	s.hpos++
	if p >= s.hend {
		s.bad = true
		return
	}
	i := s.lay.hslot[p]
	first := i < 0
	if first {
		i = ^i
	}
	if s.lay.hseries[i].name != name {
		s.bad = true
		return
	}
	if first {
		h.Snapshot(&s.hvalues[i])
	} else {
		h.Snapshot(&s.hsnap)
		s.hvalues[i].Add(&s.hsnap)
	}
}

// visitHistograms reports src's histograms, if it has any.
func visitHistograms(src engine.StatsSource, worker int, v engine.HistogramVisitor) {
	if h, ok := src.(engine.HistogramSource); ok {
		h.VisitHistograms(worker, v)
	}
}

func (s *scraper) visit(name string, k engine.StatKind, v float64) {
	p := s.pos
	s.pos++
	if p >= s.end {
		s.bad = true
		return
	}
	i := s.lay.slot[p]
	first := i < 0
	if first {
		i = ^i
	}
	if s.lay.kinds[p] != k || s.lay.series[i].name != name {
		s.bad = true
		return
	}
	if first {
		s.values[i] = v
	} else {
		s.values[i] += v
	}
}

// read fills values, sums and own for the current stats, rebuilding the layout if it no
// longer fits. Called with mu held.
func (s *scraper) read() {
	srv := s.a.srv
	if s.lay == nil || !s.lay.fits(srv) {
		s.build()
	} else {
		s.pos, s.hpos, s.bad = 0, 0, false
		v := 0
		// next opens visit v; done checks that it reported as many stats as planned; hnext
		// and hdone do the same for the visit's histograms.
		next := func() { s.end = s.lay.visitEnd[v] }
		done := func() {
			if s.pos != s.end {
				s.bad, s.pos = true, s.end
			}
		}
		hnext := func() { s.hend = s.lay.hvisitEnd[v]; v++ }
		hdone := func() {
			if s.hpos != s.hend {
				s.bad, s.hpos = true, s.hend
			}
		}
		for _, l := range srv.Listeners() {
			for wi := 0; wi < s.lay.workers; wi++ {
				next()
				l.Stats(wi).Visit(s.visitor)
				done()
				hnext()
				l.Stats(wi).VisitHistograms(s.hvisit)
				hdone()
			}
		}
		for _, c := range srv.Clusters() {
			for wi := 0; wi < s.lay.workers; wi++ {
				next()
				c.Stats(wi).Visit(s.visitor)
				done()
				hnext()
				c.Stats(wi).VisitHistograms(s.hvisit)
				hdone()
			}
		}
		for i, src := range srv.StatsSources() {
			n := s.lay.workers
			if s.lay.sources[i].global {
				n = 1
			}
			for wi := 0; wi < n; wi++ {
				next()
				src.VisitStats(wi, s.visitor)
				done()
				hnext()
				visitHistograms(src, wi, s.hvisit)
				hdone()
			}
		}
		if s.bad {
			s.build()
		}
	}
	clear(s.sums)
	for i := range s.lay.series {
		s.sums[s.lay.series[i].sum] += s.values[i]
	}
	clear(s.hsums)
	for i := range s.lay.hseries {
		s.hsums[s.lay.hseries[i].sum].Add(&s.hvalues[i])
	}
	n := 0
	s.a.visitOwn(func(_ string, _ engine.StatKind, v float64) {
		s.own[n] = v
		n++
	})
	if s.a.carried != nil {
		if m := s.a.carried(); len(m) > 0 {
			s.addCarried(m)
		}
	}
}

// addCarried adds a hot restart parent's counters (Options.CarriedCounters) into the
// summed lines and admin's own counters of the same name. The lines' names are worked out
// once per layout, so a scrape that carries costs map lookups, no allocation.
func (s *scraper) addCarried(m map[string]uint64) {
	names, counter := s.sumNames()
	for i, name := range names {
		if counter[i] {
			if v, ok := m[name]; ok {
				s.sums[i] += float64(v)
			}
		}
	}
	for i := range ownNames {
		if ownKinds[i] == engine.KindCounter {
			s.own[i] += float64(m[ownTextNames[i]])
		}
	}
}

// sumNames gives the summed lines' names (scope + name) and whether each is a counter,
// cached in the layout.
func (s *scraper) sumNames() ([]string, []bool) {
	l := s.lay
	if l.sumNames == nil {
		l.sumNames = make([]string, len(l.sums))
		l.sumCounter = make([]bool, len(l.sums))
		for i, k := range l.sums {
			l.sumNames[i] = k.scope + k.name
		}
		for i := range l.series {
			if l.series[i].kind == engine.KindCounter {
				l.sumCounter[l.series[i].sum] = true
			}
		}
	}
	return l.sumNames, l.sumCounter
}

// Counters returns every summed counter of /stats by its text name (carried counters
// included), and admin's own: what a hot restart's parent sends its child.
func (a *Admin) Counters() map[string]uint64 {
	s := a.text.sc
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read()
	names, counter := s.sumNames()
	m := make(map[string]uint64, len(names)+len(ownNames))
	for i, name := range names {
		if counter[i] {
			m[name] = uint64(s.sums[i])
		}
	}
	for i := range ownNames {
		if ownKinds[i] == engine.KindCounter {
			m[ownTextNames[i]] = uint64(s.own[i])
		}
	}
	return m
}

// fits tells whether the layout was built from srv's current listeners, clusters and
// sources.
func (l *layout) fits(srv *engine.Server) bool {
	ls, cs, ss := srv.Listeners(), srv.Clusters(), srv.StatsSources()
	if l.workers != srv.Concurrency() || len(ls) != len(l.listeners) || len(cs) != len(l.clusters) || len(ss) != len(l.sources) {
		return false
	}
	for i, x := range ls {
		id := &l.listeners[i]
		if id.l != x || id.stat != x.StatName() || id.addr != x.Address() {
			return false
		}
	}
	for i, c := range cs {
		if l.clusters[i].c != c || l.clusters[i].name != c.Name() {
			return false
		}
	}
	for i, src := range ss {
		id := &l.sources[i]
		if !sameSource(id.src, src) || id.family != src.StatsFamily() || !slices.Equal(id.labels, src.StatsLabels()) || id.global != processWide(src) {
			return false
		}
	}
	return true
}

// build works out the layout from scratch, reading the values on the way, in the order
// and with the merging of the original collect: sources with equal family and labels
// share series.
func (s *scraper) build() {
	s.builds++
	srv := s.a.srv
	l := &layout{workers: srv.Concurrency()}
	var values []float64
	var hvalues []engine.HistogramSnapshot
	// Sources with equal family and labels share series: canon maps a group's family and
	// labels to the first such group, seen a (canonical group, name) to its series.
	canon := map[string]int32{}
	type seriesKey struct {
		g    int32
		name string
	}
	// Size things as the last layout was, or else as the first visit suggests.
	visits := (len(srv.Listeners()) + len(srv.Clusters()) + len(srv.StatsSources())) * l.workers
	hint := 0
	if s.lay != nil {
		hint = len(s.lay.slot)
	}
	seen := make(map[seriesKey]int32, hint)
	hseen := map[seriesKey]int32{}
	var key []byte
	add := func(family string, labels [][2]string, global bool, visit func(int, engine.StatVisitor), hvisit func(int, engine.HistogramVisitor)) {
		n := l.workers
		if global {
			n = 1
		}
		for wi := 0; wi < n; wi++ {
			lb := labels
			if !global {
				lb = append(slices.Clip(labels), [2]string{"worker", strconv.Itoa(wi)})
			}
			// Prometheus labels, and the text scope as Envoy prints it: the label values
			// but the address, worker last.
			var pb, tb []byte
			pb = append(pb, '{')
			tb = append(tb, family...)
			worker := ""
			key = append(key[:0], family...)
			for i, x := range lb {
				if i > 0 {
					pb = append(pb, ',')
				}
				pb = append(pb, x[0]...)
				pb = append(pb, '=')
				pb = strconv.AppendQuote(pb, x[1])
				switch x[0] {
				case "worker":
					worker = x[1]
				case "address":
				default:
					tb = append(tb, '.')
					tb = append(tb, x[1]...)
				}
				key = append(append(append(append(key, 0), x[0]...), 0), x[1]...)
			}
			tb = append(tb, '.')
			scope := string(tb)
			if !global {
				tb = append(append(append(tb, "worker_"...), worker...), '.')
			}
			g := int32(len(l.groups))
			l.groups = append(l.groups, group{family: family, scope: scope, global: global, prom: string(pb), text: string(tb)})
			cg, ok := canon[string(key)]
			if !ok {
				cg = g
				canon[string(key)] = g
			}
			visit(wi, func(name string, k engine.StatKind, v float64) {
				sk := seriesKey{cg, name}
				i, dup := seen[sk]
				if dup {
					values[i] += v
					l.slot = append(l.slot, i)
				} else {
					i = int32(len(l.series))
					seen[sk] = i
					l.series = append(l.series, series{name: name, group: g, kind: k})
					values = append(values, v)
					l.slot = append(l.slot, ^i)
				}
				l.kinds = append(l.kinds, k)
			})
			l.visitEnd = append(l.visitEnd, int32(len(l.slot)))
			if len(l.visitEnd) == 1 {
				n := hint
				if n == 0 {
					n = len(l.slot) * visits
				}
				l.slot, l.kinds = slices.Grow(l.slot, n), slices.Grow(l.kinds, n)
				l.series, values = slices.Grow(l.series, n), slices.Grow(values, n)
			}
			hvisit(wi, func(name string, h *engine.Histogram) {
				sk := seriesKey{cg, name}
				i, dup := hseen[sk]
				if dup {
					var snap engine.HistogramSnapshot
					h.Snapshot(&snap)
					hvalues[i].Add(&snap)
					l.hslot = append(l.hslot, i)
				} else {
					i = int32(len(l.hseries))
					hseen[sk] = i
					l.hseries = append(l.hseries, series{name: name, group: g, kind: engine.KindHistogram})
					hvalues = append(hvalues, engine.HistogramSnapshot{})
					h.Snapshot(&hvalues[i])
					l.hslot = append(l.hslot, ^i)
				}
			})
			l.hvisitEnd = append(l.hvisitEnd, int32(len(l.hslot)))
		}
	}
	for _, x := range srv.Listeners() {
		l.listeners = append(l.listeners, listenerID{x, x.StatName(), x.Address()})
		add("listener", [][2]string{{"listener", x.StatName()}, {"address", x.Address().String()}}, false,
			func(wi int, v engine.StatVisitor) { x.Stats(wi).Visit(v) },
			func(wi int, v engine.HistogramVisitor) { x.Stats(wi).VisitHistograms(v) })
	}
	for _, c := range srv.Clusters() {
		l.clusters = append(l.clusters, clusterID{c, c.Name()})
		add("cluster", [][2]string{{"cluster", c.Name()}}, false,
			func(wi int, v engine.StatVisitor) { c.Stats(wi).Visit(v) },
			func(wi int, v engine.HistogramVisitor) { c.Stats(wi).VisitHistograms(v) })
	}
	for _, src := range srv.StatsSources() {
		labels := src.StatsLabels()
		global := processWide(src)
		l.sources = append(l.sources, sourceID{src, src.StatsFamily(), slices.Clone(labels), global})
		add(src.StatsFamily(), labels, global, src.VisitStats,
			func(wi int, v engine.HistogramVisitor) { visitHistograms(src, wi, v) })
	}

	// Prometheus: one metric per portico_<family>_<name> (the name with Envoy's tags taken
	// out, sanitized), sorted, series in first-seen order, the type of the first; then
	// admin's own, unlabelled. Histograms are metrics of their own even if a counter has
	// their name.
	byName := map[string]int{}
	addMetrics := func(ss []series, hist bool) {
		for i := range ss {
			se := &ss[i]
			base, tag := extractTag(se.name)
			se.tag = tag
			key = append(append(append(append(key[:0], "portico_"...), l.groups[se.group].family...), '_'), base...)
			sanitize(key[len("portico_"):])
			if hist {
				key = append(key, 0) // apart from counters' names
			}
			m, ok := byName[string(key)]
			if !ok {
				m = len(l.metrics)
				byName[string(key)] = m
				name := strings.TrimSuffix(string(key), "\x00")
				l.metrics = append(l.metrics, metric{name: name, own: -1, hist: hist})
			}
			l.metrics[m].series = append(l.metrics[m].series, int32(i))
		}
	}
	addMetrics(l.series, false)
	addMetrics(l.hseries, true)
	for i, n := range ownNames {
		key = append(append(key[:0], "portico_"...), n...)
		sanitize(key[len("portico_"):])
		l.metrics = append(l.metrics, metric{name: string(key), own: i})
	}
	for i := range l.metrics {
		m := &l.metrics[i]
		k := engine.KindCounter
		switch {
		case m.own >= 0:
			k = ownKinds[m.own]
		case m.hist:
			k = engine.KindHistogram
		default:
			k = l.series[m.series[0]].kind
		}
		typ := "counter"
		switch k {
		case engine.KindGauge:
			typ = "gauge"
		case engine.KindHistogram:
			typ = "histogram"
		}
		m.typ = "# TYPE " + m.name + " " + typ + "\n"
	}
	slices.SortStableFunc(l.metrics, func(a, b metric) int { return strings.Compare(a.name, b.name) })
	for i := range l.le {
		l.le[i] = `,le="` + strconv.FormatFloat(engine.PrometheusBucketBound(i), 'f', -1, 64) + `"} `
	}

	// Text: every series per worker, every scope summed, admin's own; sorted as whole
	// lines; then the same for the histograms.
	l.sums = sumKeys(l.groups, l.series)
	l.hsums = sumKeys(l.groups, l.hseries)
	n := len(l.series) + len(l.sums) + len(ownNames)
	ks := make([]keyed, 0, n)
	arena := make([]byte, 0, n*48)
	for i := range l.series {
		se := &l.series[i]
		if l.groups[se.group].global { // its summed line is the same line
			continue
		}
		ks, arena = keep(ks, arena, l.groups[se.group].text, se.name, entry{entrySeries, int32(i)})
	}
	for i, k := range l.sums {
		ks, arena = keep(ks, arena, k.scope, k.name, entry{entrySum, int32(i)})
	}
	for i, n := range ownNames {
		ks, arena = keep(ks, arena, "", n, entry{entryOwn, int32(i)})
	}
	l.text, l.textRuns = sortText(ks, arena)
	ks, arena = ks[:0], arena[:0]
	for i := range l.hseries {
		se := &l.hseries[i]
		if l.groups[se.group].global {
			continue
		}
		ks, arena = keep(ks, arena, l.groups[se.group].text, se.name, entry{entryHist, int32(i)})
	}
	for i, k := range l.hsums {
		ks, arena = keep(ks, arena, k.scope, k.name, entry{entryHistSum, int32(i)})
	}
	l.htext, l.htextRuns = sortText(ks, arena)

	s.lay = l
	s.values = values
	s.sums = make([]float64, len(l.sums))
	s.hvalues = hvalues
	s.hsums = make([]engine.HistogramSnapshot, len(l.hsums))
}

// sumKeys gives each series its summed line (scope + name), and returns those lines.
func sumKeys(groups []group, ss []series) []textKey {
	var sums []textKey
	sumAt := make(map[textKey]int32, len(ss)/max(len(groups), 1)+1)
	for i := range ss {
		se := &ss[i]
		sk := textKey{groups[se.group].scope, se.name}
		si, ok := sumAt[sk]
		if !ok {
			si = int32(len(sums))
			sumAt[sk] = si
			sums = append(sums, sk)
		}
		se.sum = si
	}
	return sums
}

// keyed is a text line's sort key (arena[off:end], the line up to its value) and entry.
type keyed struct {
	off, end int32
	e        entry
}

func keep(ks []keyed, arena []byte, a, b string, e entry) ([]keyed, []byte) {
	off := int32(len(arena))
	arena = append(append(append(arena, a...), b...), ": "...)
	return append(ks, keyed{off, int32(len(arena)), e}), arena
}

// sortText sorts the lines by key and finds the runs whose order depends on the values:
// equal keys, or a key that is a prefix of another followed by ": ".
func sortText(ks []keyed, arena []byte) ([]entry, [][2]int32) {
	keyOf := func(k keyed) []byte { return arena[k.off:k.end] }
	slices.SortFunc(ks, func(a, b keyed) int { return bytes.Compare(keyOf(a), keyOf(b)) })
	text := make([]entry, len(ks))
	for i := range ks {
		text[i] = ks[i].e
	}
	var runs [][2]int32
	for i := 0; i < len(ks); {
		j := i + 1
		for j < len(ks) && bytes.HasPrefix(keyOf(ks[j]), keyOf(ks[i])) {
			j++
		}
		if j-i > 1 {
			runs = append(runs, [2]int32{int32(i), int32(j)})
		}
		i = j
	}
	return text, runs
}

// extractTag applies Envoy's default tag extractors for response codes to a stat name:
// "_rq(_(\d{3}))$" (envoy.response_code) and "_rq_(\d)xx$" (envoy.response_code_class).
// As Envoy, it removes the first group from the name and takes the last as the label's
// value: upstream_rq_503 is upstream_rq{envoy_response_code="503"}, downstream_rq_2xx is
// downstream_rq_xx{envoy_response_code_class="2"}. It returns the name unchanged and no tag
// otherwise. Only the Prometheus form uses it; /stats keeps Envoy's full names.
func extractTag(name string) (base, tag string) {
	n := len(name)
	if n < 8 || name[n-7:n-3] != "_rq_" { // at least one character before "_rq_"
		return name, ""
	}
	d := name[n-3:]
	switch {
	case isDigit(d[0]) && isDigit(d[1]) && isDigit(d[2]):
		return name[:n-4], `,envoy_response_code="` + d + `"`
	case isDigit(d[0]) && d[1:] == "xx":
		return name[:n-3] + "xx", `,envoy_response_code_class="` + d[:1] + `"`
	}
	return name, ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// sanitize replaces what Prometheus does not allow in a metric name with '_', as Envoy's
// exporter does (a dotted name such as external.upstream_rq).
func sanitize(b []byte) {
	for i, c := range b {
		if !(isDigit(c) || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			b[i] = '_'
		}
	}
}

// appendLabels appends a series' open label set and then more labels, each of which
// starts with a comma; the comma is dropped when the set is still empty, which only a
// process-wide source without labels has ({le="0.5"}, not {,le="0.5"}).
func appendLabels(b []byte, open, more string) []byte {
	b = append(b, open...)
	if len(more) > 0 && more[0] == ',' && len(b) > 0 && b[len(b)-1] == '{' {
		more = more[1:]
	}
	return append(b, more...)
}

// textKey is the start of a summed line of the text form: scope + name + ": ".
type textKey struct{ scope, name string }

// ownTextNames are ownNames as /stats names them.
var ownTextNames = [len(ownNames)]string{"server.admin.downstream_cx_active", "server.admin.downstream_cx_overflow", "server.admin.downstream_cx_total"}

// ownKinds are the kinds of ownNames.
var ownKinds = [len(ownNames)]engine.StatKind{engine.KindGauge, engine.KindCounter, engine.KindCounter, engine.KindGauge, engine.KindGauge}

// appendValue formats a stat as strconv.FormatFloat(v, 'f', -1, 64) does; integers below
// 2^53 (every counter in practice) take the integer path, which prints the same digits.
func appendValue(b []byte, v float64) []byte {
	if v > -(1<<53) && v < 1<<53 && v == float64(int64(v)) && math.Float64bits(v) != 1<<63 { // not -0
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// appendProm appends the Prometheus exposition of the last read.
func (s *scraper) appendProm(b []byte) []byte {
	l := s.lay
	for i := range l.metrics {
		m := &l.metrics[i]
		b = append(b, m.typ...)
		if m.own >= 0 {
			b = append(append(b, m.name...), ' ')
			b = append(appendValue(b, s.own[m.own]), '\n')
			continue
		}
		if m.hist {
			b = s.appendHistograms(b, m)
			continue
		}
		for _, si := range m.series {
			se := &l.series[si]
			b = append(b, m.name...)
			b = append(appendLabels(b, l.groups[se.group].prom, se.tag), "} "...)
			b = append(appendValue(b, s.values[si]), '\n')
		}
	}
	return b
}

// appendHistograms appends a histogram metric's series as Envoy exports them: cumulative
// _bucket lines at Envoy's default bounds and +Inf, then _sum and _count.
func (s *scraper) appendHistograms(b []byte, m *metric) []byte {
	l := s.lay
	for _, si := range m.series {
		se := &l.hseries[si]
		h := &s.hvalues[si]
		labels := l.groups[se.group].prom
		h.PrometheusCounts(&s.prom)
		n := h.Count()
		for i, c := range s.prom {
			b = append(append(b, m.name...), "_bucket"...)
			b = appendLabels(appendLabels(b, labels, se.tag), "", l.le[i])
			b = append(strconv.AppendUint(b, c, 10), '\n')
		}
		b = append(append(b, m.name...), "_bucket"...)
		b = appendLabels(appendLabels(b, labels, se.tag), "", `,le="+Inf"} `)
		b = append(strconv.AppendUint(b, n, 10), '\n')
		b = append(append(b, m.name...), "_sum"...)
		b = append(appendLabels(b, labels, se.tag), "} "...)
		b = append(strconv.AppendUint(b, h.Sum, 10), '\n')
		b = append(append(b, m.name...), "_count"...)
		b = append(appendLabels(b, labels, se.tag), "} "...)
		b = append(strconv.AppendUint(b, n, 10), '\n')
	}
	return b
}

// appendText appends Envoy's text form of the last read: counters and gauges, then
// histograms, each part sorted.
func (s *scraper) appendText(b []byte) []byte {
	b = s.appendLines(b, s.lay.text, s.lay.textRuns)
	return s.appendLines(b, s.lay.htext, s.lay.htextRuns)
}

func (s *scraper) appendLines(b []byte, text []entry, runs [][2]int32) []byte {
	for i := 0; i < len(text); {
		if len(runs) > 0 && int(runs[0][0]) == i {
			b = s.appendRun(b, text[runs[0][0]:runs[0][1]])
			i = int(runs[0][1])
			runs = runs[1:]
			continue
		}
		b = s.appendLine(b, text[i])
		i++
	}
	return b
}

func (s *scraper) appendLine(b []byte, e entry) []byte {
	l := s.lay
	switch e.kind {
	case entrySeries:
		se := &l.series[e.i]
		b = append(b, l.groups[se.group].text...)
		b = append(append(b, se.name...), ": "...)
		b = appendValue(b, s.values[e.i])
	case entrySum:
		k := l.sums[e.i]
		b = append(append(append(b, k.scope...), k.name...), ": "...)
		b = appendValue(b, s.sums[e.i])
	case entryHist:
		se := &l.hseries[e.i]
		b = append(b, l.groups[se.group].text...)
		b = append(append(b, se.name...), ": "...)
		b = appendQuantiles(b, &s.hvalues[e.i])
	case entryHistSum:
		k := l.hsums[e.i]
		b = append(append(append(b, k.scope...), k.name...), ": "...)
		b = appendQuantiles(b, &s.hsums[e.i])
	default:
		b = append(append(b, ownNames[e.i]...), ": "...)
		b = appendValue(b, s.own[e.i])
	}
	return append(b, '\n')
}

// quantiles are the ones Envoy's /stats prints, with their labels.
var quantiles = [...]struct {
	label string
	q     float64
}{
	{"P0(nan,", 0}, {" P25(nan,", 0.25}, {" P50(nan,", 0.5}, {" P75(nan,", 0.75}, {" P90(nan,", 0.9},
	{" P95(nan,", 0.95}, {" P99(nan,", 0.99}, {" P99.5(nan,", 0.995}, {" P99.9(nan,", 0.999}, {" P100(nan,", 1},
}

// appendQuantiles appends a histogram's summary as Envoy's /stats prints it,
// "P0(interval,cumulative) P25(...) ... P100(...)", or "No recorded values". Portico keeps
// no flush interval (Envoy's stats_flush_interval), only values since start, so every
// interval quantile is "nan", which is what Envoy prints for an interval without values.
func appendQuantiles(b []byte, h *engine.HistogramSnapshot) []byte {
	if h.Count() == 0 {
		return append(b, "No recorded values"...)
	}
	for _, q := range quantiles {
		b = append(b, q.label...)
		b = append(appendEnvoyFloat(b, h.Quantile(q.q)), ')')
	}
	return b
}

// appendEnvoyFloat formats v as {fmt}'s "{}" does for a double, which Envoy uses for
// quantiles: the shortest form that reads back, fixed unless the exponent is below -4 or
// at least 16, "nan" and "inf".
func appendEnvoyFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "nan"...)
	case math.IsInf(v, 1):
		return append(b, "inf"...)
	case math.IsInf(v, -1):
		return append(b, "-inf"...)
	}
	if a := math.Abs(v); a != 0 && (a < 1e-4 || a >= 1e16) {
		return strconv.AppendFloat(b, v, 'e', -1, 64)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// appendRun appends lines whose order depends on their values, sorted as whole lines.
func (s *scraper) appendRun(b []byte, es []entry) []byte {
	s.scratch = s.scratch[:0]
	for _, e := range es {
		s.scratch = append(s.scratch, s.appendLine(nil, e))
	}
	slices.SortFunc(s.scratch, bytes.Compare)
	for _, x := range s.scratch {
		b = append(b, x...)
	}
	return b
}

// output is one computed response body, shared by the requests that wait for it.
type output struct {
	buf    []byte
	refs   int
	done   chan struct{}
	failed bool // the computation panicked
}

// maxOutputs bounds the bodies of one endpoint alive at once (being written to slow
// clients); past it a request shares the newest finished body instead of computing.
const maxOutputs = 2

// endpoint serializes and shares one endpoint's output.
type endpoint struct {
	sc      *scraper
	format  func(*scraper, []byte) []byte
	mu      sync.Mutex
	running *output // being computed: arrivals wait for it
	latest  *output // finished and still being written to someone, else nil
	live    int     // outputs with refs > 0
	free    []byte  // a buffer to reuse
	// waited counts requests that shared a running computation (for tests).
	waited int
}

// get returns a body computed after the call began or, if one is being computed, that
// one; with maxOutputs in use, the newest. Release it when written.
func (e *endpoint) get() *output {
	e.mu.Lock()
	if o := e.running; o != nil {
		o.refs++
		e.waited++
		e.mu.Unlock()
		<-o.done
		return o
	}
	if o := e.latest; o != nil && e.live >= maxOutputs {
		o.refs++
		e.mu.Unlock()
		return o
	}
	o := &output{refs: 1, done: make(chan struct{}), buf: e.free[:0], failed: true}
	e.free = nil
	e.running = o
	e.live++
	e.mu.Unlock()

	defer func() {
		e.mu.Lock()
		e.running = nil
		if o.failed { // panicking: this request will not release o
			e.releaseLocked(o)
		} else {
			e.latest = o
		}
		e.mu.Unlock()
		close(o.done)
	}()
	e.sc.queued.Add(1)
	e.sc.mu.Lock()
	e.sc.queued.Add(-1)
	defer e.sc.mu.Unlock()
	e.sc.read()
	o.buf = e.format(e.sc, o.buf)
	o.failed = false
	return o
}

func (e *endpoint) release(o *output) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.releaseLocked(o)
}

func (e *endpoint) releaseLocked(o *output) {
	o.refs--
	if o.refs > 0 {
		return
	}
	e.live--
	if e.latest == o {
		e.latest = nil
	}
	if cap(o.buf) > cap(e.free) {
		e.free = o.buf
	}
	o.buf = nil
}

func (e *endpoint) serve(w http.ResponseWriter, contentType string) {
	o := e.get()
	defer e.release(o)
	if o.failed {
		http.Error(w, "stats scrape failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(o.buf)))
	w.Write(o.buf)
}

// stats prints Envoy's text form: per worker and summed, e.g.
// listener.echo.worker_0.downstream_cx_total: 3 and listener.echo.downstream_cx_total: 5,
// sorted, with admin's own server.admin.* among them; then the histograms, sorted, as
// Envoy's quantile summaries (cumulative only: see appendQuantiles).
func (a *Admin) stats(w http.ResponseWriter, _ *http.Request) {
	a.text.serve(w, "text/plain; charset=utf-8")
}

// prometheus prints the text exposition format: portico_<family>_<stat>{labels...}, with
// Envoy's response-code tags taken out of the names (extractTag) and histograms as
// _bucket (Envoy's default buckets), _sum and _count.
func (a *Admin) prometheus(w http.ResponseWriter, _ *http.Request) {
	a.prom.serve(w, "text/plain; version=0.0.4")
}
