package admin

import (
	"bufio"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/portico-proxy/portico/engine"
)

// The scrape as it was before it was made cheap (commit 5c99103), kept as the reference
// that the fast one must match byte for byte; since extended, as plainly, with Envoy's
// response-code tag extraction (its own regular expressions) and histograms.

// refSample is one stat value with its family and labels.
type refSample struct {
	family string // listener, cluster, tcp ...
	labels [][2]string
	name   string
	kind   engine.StatKind
	value  float64
	hist   *engine.HistogramSnapshot // a histogram's merged visits (kind KindHistogram)
}

// collect reads every stat. Counters are atomics written by their workers, so this never
// stops a worker. Sources that share a scope (two tcp_proxy filters with one stat_prefix)
// are summed into one series, as Envoy shares one set of stats between them.
func refCollect(a *Admin) []refSample {
	var out []refSample
	seen := map[string]int{}
	workers := a.srv.Concurrency()
	// A process-wide source is visited once, as worker 0, and has no worker label.
	add := func(family string, labels [][2]string, global bool, visit func(int, engine.StatVisitor), hvisit func(int, engine.HistogramVisitor)) {
		n := workers
		if global {
			n = 1
		}
		for wi := 0; wi < n; wi++ {
			lb := append([][2]string(nil), labels...)
			if !global {
				lb = append(lb, [2]string{"worker", strconv.Itoa(wi)})
			}
			visit(wi, func(name string, k engine.StatKind, v float64) {
				key := fmt.Sprint(family, lb, name)
				if i, dup := seen[key]; dup {
					out[i].value += v
					return
				}
				seen[key] = len(out)
				out = append(out, refSample{family, lb, name, k, v, nil})
			})
			hvisit(wi, func(name string, h *engine.Histogram) {
				snap := &engine.HistogramSnapshot{}
				h.Snapshot(snap)
				key := fmt.Sprint("histogram", family, lb, name)
				if i, dup := seen[key]; dup {
					out[i].hist.Add(snap)
					return
				}
				seen[key] = len(out)
				out = append(out, refSample{family, lb, name, engine.KindHistogram, 0, snap})
			})
		}
	}
	for _, l := range a.srv.Listeners() {
		add("listener", [][2]string{{"listener", l.StatName()}, {"address", l.Address().String()}}, false,
			func(wi int, v engine.StatVisitor) { l.Stats(wi).Visit(v) },
			func(wi int, v engine.HistogramVisitor) { l.Stats(wi).VisitHistograms(v) })
	}
	for _, c := range a.srv.Clusters() {
		add("cluster", [][2]string{{"cluster", c.Name()}}, false,
			func(wi int, v engine.StatVisitor) { c.Stats(wi).Visit(v) },
			func(wi int, v engine.HistogramVisitor) { c.Stats(wi).VisitHistograms(v) })
	}
	for _, src := range a.srv.StatsSources() {
		p, global := src.(ProcessStats)
		add(src.StatsFamily(), src.StatsLabels(), global && p.StatsProcessWide(), src.VisitStats, func(wi int, v engine.HistogramVisitor) {
			if h, ok := src.(engine.HistogramSource); ok {
				h.VisitHistograms(wi, v)
			}
		})
	}
	return out
}

// refQuantiles is Envoy's quantile summary, with "nan" for the interval (Portico has none).
func refQuantiles(h *engine.HistogramSnapshot) string {
	if h.Count() == 0 {
		return "No recorded values"
	}
	var parts []string
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1} {
		v := h.Quantile(q)
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if e := math.Floor(math.Log10(math.Abs(v))); v == 0 || e >= -4 && e < 16 {
			s = strconv.FormatFloat(v, 'f', -1, 64) // {fmt}'s "{}": fixed for exponents -4..15
		}
		parts = append(parts, fmt.Sprintf("P%s(nan,%s)", strconv.FormatFloat(q*100, 'g', 6, 64), s))
	}
	return strings.Join(parts, " ")
}

// Envoy's default tag extractors for response codes (source/common/config/well_known_names.cc):
// the first group is removed from the name, the last is the tag's value.
var refTagRegexes = []struct {
	tag string
	re  *regexp.Regexp
}{
	{"envoy_response_code", regexp.MustCompile(`_rq(_(\d{3}))$`)},
	{"envoy_response_code_class", regexp.MustCompile(`_rq_(\d)xx$`)},
}

// refPromName is the Prometheus name and extra label of a stat.
func refPromName(family, name string) (string, [][2]string) {
	var tags [][2]string
	for _, t := range refTagRegexes {
		m := t.re.FindStringSubmatchIndex(name)
		if m == nil {
			continue
		}
		value := name[m[len(m)-2]:m[len(m)-1]]
		name = name[:m[2]] + name[m[3]:]
		tags = append(tags, [2]string{t.tag, value})
	}
	full := regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(family+"_"+name, "_")
	return "portico_" + full, tags
}

// stats prints Envoy's text form: per worker and summed, e.g.
// listener.echo.worker_0.downstream_cx_total: 3 and listener.echo.downstream_cx_total: 5.
func refStats(a *Admin) string {
	var w strings.Builder
	sums := map[string]float64{}
	var lines []string
	samples := refCollect(a)
	for _, s := range samples {
		if s.hist != nil {
			continue
		}
		scope, worker := refScope(s)
		sums[scope+"."+s.name] += s.value
		if worker != "" { // else process-wide: the summed line only
			lines = append(lines, fmt.Sprintf("%s.worker_%s.%s: %s", scope, worker, s.name, fmtValue(s.value)))
		}
	}
	for k, v := range sums {
		lines = append(lines, fmt.Sprintf("%s: %s", k, fmtValue(v)))
	}
	a.visitOwn(func(name string, _ engine.StatKind, v float64) {
		lines = append(lines, fmt.Sprintf("%s: %s", name, fmtValue(v)))
	})
	sort.Strings(lines)
	// Histograms follow, as in Envoy, per worker and merged.
	var hlines []string
	hsums := map[string]*engine.HistogramSnapshot{}
	for _, s := range samples {
		if s.hist == nil {
			continue
		}
		scope, worker := refScope(s)
		k := scope + "." + s.name
		if hsums[k] == nil {
			hsums[k] = &engine.HistogramSnapshot{}
		}
		hsums[k].Add(s.hist)
		if worker != "" {
			hlines = append(hlines, fmt.Sprintf("%s.worker_%s.%s: %s", scope, worker, s.name, refQuantiles(s.hist)))
		}
	}
	for k, h := range hsums {
		hlines = append(hlines, fmt.Sprintf("%s: %s", k, refQuantiles(h)))
	}
	sort.Strings(hlines)
	bw := bufio.NewWriter(&w)
	for _, l := range append(lines, hlines...) {
		bw.WriteString(l)
		bw.WriteByte('\n')
	}
	bw.Flush()
	return w.String()
}

// refScope is a sample's text scope (family and label values but the address) and worker.
func refScope(s refSample) (scope, worker string) {
	scope = s.family
	for _, l := range s.labels {
		switch l[0] {
		case "worker":
			worker = l[1]
		case "address":
		default:
			scope += "." + l[1]
		}
	}
	return scope, worker
}

// prometheus prints the text exposition format: portico_<family>_<stat>{labels...}.
func refPrometheus(a *Admin) string {
	var w strings.Builder
	byMetric := map[string][]refSample{}
	var names []string
	for _, s := range refCollect(a) {
		m, tags := refPromName(s.family, s.name)
		s.labels = append(s.labels, tags...)
		if s.hist != nil {
			m += "\x00" // a histogram's metric is its own
		}
		if _, ok := byMetric[m]; !ok {
			names = append(names, m)
		}
		byMetric[m] = append(byMetric[m], s)
	}
	own := map[string]refSample{}
	a.visitOwn(func(name string, k engine.StatKind, v float64) {
		m := "portico_" + strings.ReplaceAll(name, ".", "_")
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
		labels := func(s refSample, extra string) string {
			var parts []string
			for _, l := range s.labels {
				parts = append(parts, fmt.Sprintf("%s=%q", l[0], l[1]))
			}
			if extra != "" {
				parts = append(parts, extra)
			}
			return "{" + strings.Join(parts, ",") + "}"
		}
		if ss[0].hist != nil {
			m = strings.TrimSuffix(m, "\x00")
			fmt.Fprintf(bw, "# TYPE %s histogram\n", m)
			for _, s := range ss {
				for _, le := range []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000} {
					var n uint64
					for i, c := range s.hist.Buckets {
						if float64(engine.HistogramBucketBound(i)) <= le {
							n += c
						}
					}
					fmt.Fprintf(bw, "%s_bucket%s %d\n", m, labels(s, fmt.Sprintf("le=%q", fmtValue(le))), n)
				}
				fmt.Fprintf(bw, "%s_bucket%s %d\n", m, labels(s, `le="+Inf"`), s.hist.Count())
				fmt.Fprintf(bw, "%s_sum%s %d\n", m, labels(s, ""), s.hist.Sum)
				fmt.Fprintf(bw, "%s_count%s %d\n", m, labels(s, ""), s.hist.Count())
			}
			continue
		}
		typ := "counter"
		if ss[0].kind == engine.KindGauge {
			typ = "gauge"
		}
		fmt.Fprintf(bw, "# TYPE %s %s\n", m, typ)
		for _, s := range ss {
			bw.WriteString(m)
			bw.WriteString(labels(s, ""))
			bw.WriteByte(' ')
			bw.WriteString(fmtValue(s.value))
			bw.WriteByte('\n')
		}
	}
	bw.Flush()
	return w.String()
}
func fmtValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
