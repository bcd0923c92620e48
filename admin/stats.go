package admin

import (
	"bytes"
	"math"
	"net/http"
	"net/netip"
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

// group is one (source, worker): the labels and text scope its stats print with.
type group struct {
	family string // listener, cluster, tcp ...
	scope  string // listener.echo. (summed lines)
	prom   string // {listener="echo",address="127.0.0.1:10000",worker="0"} plus a space
	text   string // listener.echo.worker_0.
}

// series is one output series: the sum of every visit of one (family, labels, name).
type series struct {
	name  string
	group int32 // the first group that reported it (all that did have equal labels)
	sum   int32 // its line in the summed text form
	kind  engine.StatKind
}

// metric is one Prometheus metric: a TYPE line and its series in first-seen order.
type metric struct {
	name   string
	typ    string // "# TYPE <name> counter\n"
	series []int32
	own    int // index into ownNames, or -1
}

// Text entries: a series' per-worker line, a summed line, or one of admin's own stats.
const (
	entrySeries = iota
	entrySum
	entryOwn
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
	family string
	labels [][2]string
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

	groups  []group
	series  []series
	sums    []textKey // listener.echo. + downstream_cx_total
	metrics []metric  // sorted by name
	text    []entry   // in output order
	// textRuns are ranges of text whose order depends on the values (equal keys, or a key
	// that is a prefix of another followed by ": "); they are sorted line by line.
	textRuns [][2]int32
}

// ownNames are admin's own stats, in visitOwn's order.
var ownNames = [...]string{"downstream_cx_active", "downstream_cx_overflow", "downstream_cx_total"}

// scraper holds the layout and the values of the last scrape. Its mutex makes scrapes
// one at a time.
type scraper struct {
	a  *Admin
	mu sync.Mutex
	// Below: guarded by mu.
	lay     *layout
	values  []float64
	sums    []float64
	own     [len(ownNames)]float64
	pos     int32 // visit cursor
	end     int32
	bad     bool // a source reported other stats than the layout expects
	visitor engine.StatVisitor
	scratch [][]byte // for textRuns
	// builds counts layout builds and queued the scrapes waiting for mu (for tests).
	builds int
	queued atomic.Int32
}

func newScraper(a *Admin) *scraper {
	s := &scraper{a: a}
	s.visitor = s.visit
	return s
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
		s.pos, s.bad = 0, false
		v := 0
		// next opens visit v; done checks that it reported as many stats as planned.
		next := func() { s.end = s.lay.visitEnd[v]; v++ }
		done := func() {
			if s.pos != s.end {
				s.bad, s.pos = true, s.end
			}
		}
		for _, l := range srv.Listeners() {
			for wi := 0; wi < s.lay.workers; wi++ {
				next()
				l.Stats(wi).Visit(s.visitor)
				done()
			}
		}
		for _, c := range srv.Clusters() {
			for wi := 0; wi < s.lay.workers; wi++ {
				next()
				c.Stats(wi).Visit(s.visitor)
				done()
			}
		}
		for _, src := range srv.StatsSources() {
			for wi := 0; wi < s.lay.workers; wi++ {
				next()
				src.VisitStats(wi, s.visitor)
				done()
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
	n := 0
	s.a.visitOwn(func(_ string, _ engine.StatKind, v float64) {
		s.own[n] = v
		n++
	})
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
		if id.family != src.StatsFamily() || !slices.Equal(id.labels, src.StatsLabels()) {
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
	var key []byte
	add := func(family string, labels [][2]string, visit func(int, engine.StatVisitor)) {
		for wi := 0; wi < l.workers; wi++ {
			w := strconv.Itoa(wi)
			lb := append(slices.Clip(labels), [2]string{"worker", w})
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
			pb = append(pb, "} "...)
			tb = append(tb, '.')
			scope := string(tb)
			tb = append(append(append(tb, "worker_"...), worker...), '.')
			g := int32(len(l.groups))
			l.groups = append(l.groups, group{family: family, scope: scope, prom: string(pb), text: string(tb)})
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
		}
	}
	for _, x := range srv.Listeners() {
		l.listeners = append(l.listeners, listenerID{x, x.StatName(), x.Address()})
		add("listener", [][2]string{{"listener", x.StatName()}, {"address", x.Address().String()}},
			func(wi int, v engine.StatVisitor) { x.Stats(wi).Visit(v) })
	}
	for _, c := range srv.Clusters() {
		l.clusters = append(l.clusters, clusterID{c, c.Name()})
		add("cluster", [][2]string{{"cluster", c.Name()}},
			func(wi int, v engine.StatVisitor) { c.Stats(wi).Visit(v) })
	}
	for _, src := range srv.StatsSources() {
		labels := src.StatsLabels()
		l.sources = append(l.sources, sourceID{src.StatsFamily(), slices.Clone(labels)})
		add(src.StatsFamily(), labels, src.VisitStats)
	}

	// Prometheus: one metric per portico_<family>_<name>, sorted, series in first-seen
	// order, the type of the first; then admin's own, unlabelled.
	byName := map[string]int{}
	for i := range l.series {
		se := &l.series[i]
		key = append(append(append(append(key[:0], "portico_"...), l.groups[se.group].family...), '_'), se.name...)
		m, ok := byName[string(key)]
		if !ok {
			m = len(l.metrics)
			name := string(key)
			byName[name] = m
			l.metrics = append(l.metrics, metric{name: name, own: -1})
		}
		l.metrics[m].series = append(l.metrics[m].series, int32(i))
	}
	for i, n := range ownNames {
		l.metrics = append(l.metrics, metric{name: "portico_server_admin_" + n, own: i})
	}
	for i := range l.metrics {
		m := &l.metrics[i]
		k := engine.KindCounter
		if m.own >= 0 {
			k = ownKinds[m.own]
		} else {
			k = l.series[m.series[0]].kind
		}
		typ := "counter"
		if k == engine.KindGauge {
			typ = "gauge"
		}
		m.typ = "# TYPE " + m.name + " " + typ + "\n"
	}
	slices.SortStableFunc(l.metrics, func(a, b metric) int { return strings.Compare(a.name, b.name) })

	// Text: every series per worker, every scope summed, admin's own; sorted as whole
	// lines. The key with ": " appended orders lines but where values decide (runs).
	// The keys are written once into an arena and sorted as byte strings.
	sumAt := make(map[textKey]int32, len(l.series)/l.workers+1)
	for i := range l.series {
		se := &l.series[i]
		sk := textKey{l.groups[se.group].scope, se.name}
		si, ok := sumAt[sk]
		if !ok {
			si = int32(len(l.sums))
			sumAt[sk] = si
			l.sums = append(l.sums, sk)
		}
		se.sum = si
	}
	type keyed struct {
		off, end int32
		e        entry
	}
	ks := make([]keyed, 0, len(l.series)+len(l.sums)+len(ownNames))
	arena := make([]byte, 0, cap(ks)*48)
	keep := func(a, b string, e entry) {
		off := int32(len(arena))
		arena = append(append(append(arena, a...), b...), ": "...)
		ks = append(ks, keyed{off, int32(len(arena)), e})
	}
	for i := range l.series {
		se := &l.series[i]
		keep(l.groups[se.group].text, se.name, entry{entrySeries, int32(i)})
	}
	for i, k := range l.sums {
		keep(k.scope, k.name, entry{entrySum, int32(i)})
	}
	for i, n := range ownNames {
		keep("server.admin.", n, entry{entryOwn, int32(i)})
	}
	keyOf := func(k keyed) []byte { return arena[k.off:k.end] }
	slices.SortFunc(ks, func(a, b keyed) int { return bytes.Compare(keyOf(a), keyOf(b)) })
	l.text = make([]entry, len(ks))
	for i := range ks {
		l.text[i] = ks[i].e
	}
	for i := 0; i < len(ks); {
		j := i + 1
		for j < len(ks) && bytes.HasPrefix(keyOf(ks[j]), keyOf(ks[i])) {
			j++
		}
		if j-i > 1 {
			l.textRuns = append(l.textRuns, [2]int32{int32(i), int32(j)})
		}
		i = j
	}

	s.lay = l
	s.values = values
	s.sums = make([]float64, len(l.sums))
}

// textKey is the start of a summed line of the text form: scope + name + ": ".
type textKey struct{ scope, name string }

// ownKinds are the kinds of ownNames.
var ownKinds = [len(ownNames)]engine.StatKind{engine.KindGauge, engine.KindCounter, engine.KindCounter}

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
		for _, si := range m.series {
			b = append(b, m.name...)
			b = append(b, l.groups[l.series[si].group].prom...)
			b = append(appendValue(b, s.values[si]), '\n')
		}
	}
	return b
}

// appendText appends Envoy's text form of the last read.
func (s *scraper) appendText(b []byte) []byte {
	l := s.lay
	runs := l.textRuns
	for i := 0; i < len(l.text); {
		if len(runs) > 0 && int(runs[0][0]) == i {
			b = s.appendRun(b, l.text[runs[0][0]:runs[0][1]])
			i = int(runs[0][1])
			runs = runs[1:]
			continue
		}
		b = s.appendLine(b, l.text[i])
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
	default:
		b = append(append(append(b, "server.admin."...), ownNames[e.i]...), ": "...)
		b = appendValue(b, s.own[e.i])
	}
	return append(b, '\n')
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
// sorted, with admin's own server.admin.* among them.
func (a *Admin) stats(w http.ResponseWriter, _ *http.Request) {
	a.text.serve(w, "text/plain; charset=utf-8")
}

// prometheus prints the text exposition format: portico_<family>_<stat>{labels...}.
func (a *Admin) prometheus(w http.ResponseWriter, _ *http.Request) {
	a.prom.serve(w, "text/plain; version=0.0.4")
}
