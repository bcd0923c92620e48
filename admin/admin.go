// Package admin serves Portico's admin HTTP endpoints: readiness, stats (Envoy text and
// Prometheus), listeners and clusters.
package admin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/portico-proxy/portico/engine"
)

// State is what /ready reports.
type State int32

// Server states, as Envoy names them.
const (
	PreInitializing State = iota
	Live
	Draining
)

func (s State) String() string {
	switch s {
	case Live:
		return "LIVE"
	case Draining:
		return "DRAINING"
	}
	return "PRE_INITIALIZING"
}

// Admin is the admin HTTP server.
type Admin struct {
	srv   *engine.Server
	state atomic.Int32
	http  *http.Server
	ln    net.Listener
}

// New builds the admin server for s; Start binds it.
func New(s *engine.Server) *Admin {
	a := &Admin{srv: s}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /stats/prometheus", a.prometheus)
	mux.HandleFunc("GET /listeners", a.listeners)
	mux.HandleFunc("GET /clusters", a.clusters)
	mux.HandleFunc("GET /{$}", a.index)
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return a
}

// SetState changes what /ready reports.
func (a *Admin) SetState(s State) { a.state.Store(int32(s)) }

// Start binds addr and serves in the background. It returns the bound address.
func (a *Admin) Start(addr netip.AddrPort) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("admin: bind %s: %w", addr, err)
	}
	a.ln = ln
	go a.http.Serve(ln)
	return ln.Addr(), nil
}

// Close stops the admin server.
func (a *Admin) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.http.Shutdown(ctx)
}

func (a *Admin) index(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprint(w, "Portico admin\n  /ready\n  /stats\n  /stats/prometheus\n  /listeners\n  /clusters\n")
}

func (a *Admin) ready(w http.ResponseWriter, _ *http.Request) {
	st := State(a.state.Load())
	if st != Live {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, st)
}

// sample is one stat value with its family and labels.
type sample struct {
	family string // listener, cluster, tcp ...
	labels [][2]string
	name   string
	kind   engine.StatKind
	value  float64
}

// collect reads every stat. Counters are atomics written by their workers, so this never
// stops a worker. Sources that share a scope (two tcp_proxy filters with one stat_prefix)
// are summed into one series, as Envoy shares one set of stats between them.
func (a *Admin) collect() []sample {
	var out []sample
	seen := map[string]int{}
	workers := a.srv.Concurrency()
	add := func(family string, labels [][2]string, visit func(int, engine.StatVisitor)) {
		for wi := 0; wi < workers; wi++ {
			lb := append(append([][2]string(nil), labels...), [2]string{"worker", strconv.Itoa(wi)})
			visit(wi, func(name string, k engine.StatKind, v float64) {
				key := fmt.Sprint(family, lb, name)
				if i, dup := seen[key]; dup {
					out[i].value += v
					return
				}
				seen[key] = len(out)
				out = append(out, sample{family, lb, name, k, v})
			})
		}
	}
	for _, l := range a.srv.Listeners() {
		add("listener", [][2]string{{"listener", l.StatName()}, {"address", l.Address().String()}},
			func(wi int, v engine.StatVisitor) { l.Stats(wi).Visit(v) })
	}
	for _, c := range a.srv.Clusters() {
		add("cluster", [][2]string{{"cluster", c.Name()}},
			func(wi int, v engine.StatVisitor) { c.Stats(wi).Visit(v) })
	}
	for _, src := range a.srv.StatsSources() {
		add(src.StatsFamily(), src.StatsLabels(), src.VisitStats)
	}
	return out
}

// stats prints Envoy's text form: per worker and summed, e.g.
// listener.echo.worker_0.downstream_cx_total: 3 and listener.echo.downstream_cx_total: 5.
func (a *Admin) stats(w http.ResponseWriter, _ *http.Request) {
	sums := map[string]float64{}
	var lines []string
	for _, s := range a.collect() {
		scope := s.family
		worker := ""
		for _, l := range s.labels {
			switch l[0] {
			case "worker":
				worker = l[1]
			case "address":
			default:
				scope += "." + l[1]
			}
		}
		sums[scope+"."+s.name] += s.value
		lines = append(lines, fmt.Sprintf("%s.worker_%s.%s: %s", scope, worker, s.name, fmtValue(s.value)))
	}
	for k, v := range sums {
		lines = append(lines, fmt.Sprintf("%s: %s", k, fmtValue(v)))
	}
	sort.Strings(lines)
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		bw.WriteString(l)
		bw.WriteByte('\n')
	}
	bw.Flush()
}

// prometheus prints the text exposition format: portico_<family>_<stat>{labels...}.
func (a *Admin) prometheus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	byMetric := map[string][]sample{}
	var names []string
	for _, s := range a.collect() {
		m := "portico_" + s.family + "_" + s.name
		if _, ok := byMetric[m]; !ok {
			names = append(names, m)
		}
		byMetric[m] = append(byMetric[m], s)
	}
	sort.Strings(names)
	bw := bufio.NewWriter(w)
	for _, m := range names {
		ss := byMetric[m]
		typ := "counter"
		if ss[0].kind == engine.KindGauge {
			typ = "gauge"
		}
		fmt.Fprintf(bw, "# TYPE %s %s\n", m, typ)
		for _, s := range ss {
			bw.WriteString(m)
			bw.WriteByte('{')
			for i, l := range s.labels {
				if i > 0 {
					bw.WriteByte(',')
				}
				fmt.Fprintf(bw, "%s=%q", l[0], l[1])
			}
			bw.WriteString("} ")
			bw.WriteString(fmtValue(s.value))
			bw.WriteByte('\n')
		}
	}
	bw.Flush()
}

func fmtValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func (a *Admin) listeners(w http.ResponseWriter, _ *http.Request) {
	for _, l := range a.srv.Listeners() {
		addr := l.Address().String()
		if l.Config().NoBindToPort {
			addr += " (bind_to_port: false)"
		}
		fmt.Fprintf(w, "%s::%s\n", l.Name(), addr)
	}
}

func (a *Admin) clusters(w http.ResponseWriter, _ *http.Request) {
	for _, c := range a.srv.Clusters() {
		cfg := c.Config()
		var active int64
		for wi := 0; wi < a.srv.Concurrency(); wi++ {
			active += c.Stats(wi).UpstreamCxActive.Value()
		}
		fmt.Fprintf(w, "%s::lb_policy::%s\n%s::upstream_cx_active::%d\n", c.Name(), cfg.LBPolicy, c.Name(), active)
		for _, e := range cfg.Endpoints {
			fmt.Fprintf(w, "%s::%s::weight::%d\n", c.Name(), e.Address, max(e.Weight, 1))
		}
	}
}
