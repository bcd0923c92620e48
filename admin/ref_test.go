package admin

import (
	"bufio"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/portico-proxy/portico/engine"
)

// The scrape as it was before it was made cheap (commit 5c99103), kept as the reference
// that the fast one must match byte for byte.

// refSample is one stat value with its family and labels.
type refSample struct {
	family string // listener, cluster, tcp ...
	labels [][2]string
	name   string
	kind   engine.StatKind
	value  float64
}

// collect reads every stat. Counters are atomics written by their workers, so this never
// stops a worker. Sources that share a scope (two tcp_proxy filters with one stat_prefix)
// are summed into one series, as Envoy shares one set of stats between them.
func refCollect(a *Admin) []refSample {
	var out []refSample
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
				out = append(out, refSample{family, lb, name, k, v})
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
func refStats(a *Admin) string {
	var w strings.Builder
	sums := map[string]float64{}
	var lines []string
	for _, s := range refCollect(a) {
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
	a.visitOwn(func(name string, _ engine.StatKind, v float64) {
		lines = append(lines, fmt.Sprintf("server.admin.%s: %s", name, fmtValue(v)))
	})
	sort.Strings(lines)
	bw := bufio.NewWriter(&w)
	for _, l := range lines {
		bw.WriteString(l)
		bw.WriteByte('\n')
	}
	bw.Flush()
	return w.String()
}

// prometheus prints the text exposition format: portico_<family>_<stat>{labels...}.
func refPrometheus(a *Admin) string {
	var w strings.Builder
	byMetric := map[string][]refSample{}
	var names []string
	for _, s := range refCollect(a) {
		m := "portico_" + s.family + "_" + s.name
		if _, ok := byMetric[m]; !ok {
			names = append(names, m)
		}
		byMetric[m] = append(byMetric[m], s)
	}
	own := map[string]refSample{}
	a.visitOwn(func(name string, k engine.StatKind, v float64) {
		m := "portico_server_admin_" + name
		own[m] = refSample{kind: k, value: v}
		names = append(names, m)
	})
	sort.Strings(names)
	bw := bufio.NewWriter(&w)
	for _, m := range names {
		if s, ok := own[m]; ok {
			typ := "counter"
			if s.kind == engine.KindGauge {
				typ = "gauge"
			}
			fmt.Fprintf(bw, "# TYPE %s %s\n%s %s\n", m, typ, m, fmtValue(s.value))
			continue
		}
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
	return w.String()
}
func fmtValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
