package main

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Tables and charts for the proxy scenarios (l4-proxy, sni, syscalls,
// balance). Their rows carry a "test" and "cell" label and a map of named
// metrics; medians and ranges are taken over repetitions.

var proxyOrder = []string{"none", "none-2cpu", "portico", "portico-base", "portico-sockmap", "haproxy", "nginx", "net"}

const proxyRef = "haproxy"

func proxyName(s string) string {
	switch s {
	case "none":
		return "no proxy (ceiling)"
	case "none-2cpu":
		return "no proxy, curl on CPU 1"
	case "nginx":
		return "nginx stream"
	case "net":
		return "Go net io.Copy"
	}
	return s
}

// metric returns the first of names present in r's metrics.
func metric(r *run, names ...string) (float64, bool) {
	for _, n := range names {
		if v, ok := r.Metrics[n]; ok {
			return v, true
		}
	}
	return 0, false
}

func (r *run) test() string { return r.Labels["test"] }

// proxyErrs counts failed requests and failed runs.
func proxyErrs(r *run) (n int64, last string) {
	n = r.Errors.Dial + r.Errors.IO
	if v, ok := r.Metrics["errors"]; ok {
		n += int64(v)
	}
	if v, ok := r.Metrics["non2xx"]; ok {
		n += int64(v)
	}
	last = r.Errors.Last
	if r.Failure != "" || r.ServerExited {
		n++
		last = r.Failure
		if r.ServerExited {
			last = "server exited"
		}
	}
	return n, last
}

type pgroup struct {
	server string
	runs   []*run
}

// groupBy returns the runs of one test, by server in display order.
func groupBy(f *resultFile, test string) []pgroup {
	m := map[string][]*run{}
	for i := range f.Runs {
		r := &f.Runs[i]
		if r.test() == test {
			m[r.server()] = append(m[r.server()], r)
		}
	}
	var out []pgroup
	for _, s := range proxyOrder {
		if rs, ok := m[s]; ok {
			out = append(out, pgroup{s, rs})
			delete(m, s)
		}
	}
	var rest []string
	for s := range m {
		rest = append(rest, s)
	}
	slices.Sort(rest)
	for _, s := range rest {
		out = append(out, pgroup{s, m[s]})
	}
	return out
}

func spreadOf(rs []*run, names ...string) spread {
	var xs []float64
	for _, r := range rs {
		if r.Failure != "" {
			continue
		}
		if v, ok := metric(r, names...); ok {
			xs = append(xs, v)
		}
	}
	return summarize(xs)
}

func errCell(rs []*run) string {
	var n int64
	last := ""
	for _, r := range rs {
		k, l := proxyErrs(r)
		n += k
		if l != "" {
			last = l
		}
	}
	if last != "" {
		if len(last) > 60 {
			last = last[:60] + "…"
		}
		return fmt.Sprintf("%d (%s)", n, strings.ReplaceAll(last, "|", "/"))
	}
	return fmt.Sprint(n)
}

func findGroup(gs []pgroup, s string) []*run {
	for _, g := range gs {
		if g.server == s {
			return g.runs
		}
	}
	return nil
}

// reqTable: requests (or handshakes) per second, latency and SUT CPU per
// operation, with ratios to HAProxy; and the whole machine's CPU per
// operation when the runs carry it (machineKey, see l4.go).
func reqTable(f *resultFile, test, unit string) string {
	gs := groupBy(f, test)
	if len(gs) == 0 {
		return ""
	}
	var b strings.Builder
	ref := findGroup(gs, proxyRef)
	rRate := spreadOf(ref, "rps", "rate")
	rCPU := spreadOf(ref, "cpu_us_per_req", "cpu_us_per_op")
	mach := hasMetric(f, test, machineKey(test))
	rMach := spreadOf(ref, machineKey(test))
	fmt.Fprintf(&b, "| Proxy | %s/s median (min–max) | vs HAProxy | p50 µs | p99 µs median (min–max) | p99 vs HAProxy | SUT CPU µs/%s median (min–max) | CPU/%s vs HAProxy |", unit, unit, unit)
	if mach {
		fmt.Fprintf(&b, " machine CPU µs/%s median (min–max) | machine CPU/%s vs HAProxy |", unit, unit)
	}
	b.WriteString(" SUT CPU util | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|")
	if mach {
		b.WriteString("---:|---:|")
	}
	b.WriteString("---:|---|\n")
	rP99 := spreadOf(ref, "p99_us")
	for _, g := range gs {
		rate := spreadOf(g.runs, "rps", "rate")
		cpu := spreadOf(g.runs, "cpu_us_per_req", "cpu_us_per_op")
		p99 := spreadOf(g.runs, "p99_us")
		util := spreadOf(g.runs, "sut_util")
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |", proxyName(g.server),
			rate.fmtRange("%.0f"), ratio(rate, rRate), spreadOf(g.runs, "p50_us").fmtRange("%.0f"),
			p99.fmtRange("%.0f"), ratio(p99, rP99), cpu.fmtRange("%.1f"), ratio(cpu, rCPU))
		if mach {
			m := spreadOf(g.runs, machineKey(test))
			fmt.Fprintf(&b, " %s | %s |", m.fmtRange("%.1f"), ratio(m, rMach))
		}
		fmt.Fprintf(&b, " %s | %s |\n", pct(util), errCell(g.runs))
	}
	return b.String()
}

func bulkTable(f *resultFile) string {
	gs := groupBy(f, "bulk")
	if len(gs) == 0 {
		return ""
	}
	var b strings.Builder
	none := spreadOf(findGroup(gs, "none"), "mb_per_s")
	if n2 := spreadOf(findGroup(gs, "none-2cpu"), "mb_per_s"); n2.N > 0 && n2.Med > none.Med {
		none = n2 // the faster direct path is the physical limit
	}
	ref := spreadOf(findGroup(gs, proxyRef), "mb_per_s")
	mach := hasMetric(f, "bulk", machineKey("bulk"))
	rMach := spreadOf(findGroup(gs, proxyRef), machineKey("bulk"))
	b.WriteString("| Path | MB/s median (min–max) | % of no-proxy | vs HAProxy | SUT CPU µs/MB |")
	if mach {
		b.WriteString(" machine CPU µs/MB median (min–max) | machine CPU/MB vs HAProxy |")
	}
	b.WriteString(" errors |\n|---|---:|---:|---:|---:|")
	if mach {
		b.WriteString("---:|---:|")
	}
	b.WriteString("---|\n")
	for _, g := range gs {
		mb := spreadOf(g.runs, "mb_per_s")
		p := "–"
		if none.N > 0 && none.Med > 0 && mb.N > 0 {
			p = fmt.Sprintf("%.0f %%", 100*mb.Med/none.Med)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |", proxyName(g.server), mb.fmtRange("%.0f"), p, ratio(mb, ref),
			spreadOf(g.runs, "cpu_us_per_mb").fmtRange("%.0f"))
		if mach {
			m := spreadOf(g.runs, machineKey("bulk"))
			fmt.Fprintf(&b, " %s | %s |", m.fmtRange("%.0f"), ratio(m, rMach))
		}
		fmt.Fprintf(&b, " %s |\n", errCell(g.runs))
	}
	return b.String()
}

// syscallTable: system calls per operation (request, or handshake) by kind,
// median over repetitions. countKey is the metric holding the operations
// traced, unit their name. Kinds below minPerReq for every proxy are summed
// into "other".
func syscallTable(f *resultFile, test, countKey, unit string, minPerReq float64) string {
	gs := groupBy(f, test)
	if len(gs) == 0 {
		return ""
	}
	peak := map[string]float64{}
	for _, g := range gs {
		for _, r := range g.runs {
			for k, v := range r.Metrics {
				if strings.HasPrefix(k, "sys_") && k != "sys_total" {
					peak[k] = max(peak[k], v)
				}
			}
		}
	}
	var cols []string
	for k, v := range peak {
		if v >= minPerReq {
			cols = append(cols, k)
		}
	}
	sort.Slice(cols, func(i, j int) bool { return peak[cols[i]] > peak[cols[j]] })
	var b strings.Builder
	fmt.Fprintf(&b, "| Proxy | %ss traced | syscalls/%s |", unit, unit)
	for _, c := range cols {
		b.WriteString(" " + strings.TrimPrefix(c, "sys_") + " |")
	}
	b.WriteString(" other | errors |\n|---|---:|---:|" + strings.Repeat("---:|", len(cols)+1) + "---|\n")
	for _, g := range gs {
		tot := spreadOf(g.runs, "sys_total")
		fmt.Fprintf(&b, "| %s | %s | %s |", proxyName(g.server), spreadOf(g.runs, countKey).fmtRange("%.0f"), tot.fmtRange("%.2f"))
		shown := 0.0
		for _, c := range cols {
			s := spreadOf(g.runs, c)
			if s.N == 0 {
				b.WriteString(" – |")
				continue
			}
			shown += s.Med
			fmt.Fprintf(&b, " %.2f |", s.Med)
		}
		fmt.Fprintf(&b, " %.2f | %s |\n", math.Max(0, tot.Med-shown), errCell(g.runs))
	}
	return b.String()
}

// balance: per-worker connections and CPU, max/mean and coefficient of
// variation, per mode and cell.
func maxMean(xs []float64) (mm, cv float64, ok bool) {
	if len(xs) == 0 {
		return 0, 0, false
	}
	var sum, mx float64
	for _, x := range xs {
		sum += x
		mx = max(mx, x)
	}
	mean := sum / float64(len(xs))
	if mean == 0 {
		return 0, 0, false
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mx / mean, math.Sqrt(ss/float64(len(xs))) / mean, true
}

type balCell struct {
	cell                  string
	connMM, connCV, cpuMM []float64
	cpuCV, rate, conns    []float64
	vec                   string
	runs                  []*run
}

var balModes = []string{"reuse_port", "dup_fd", "exact_balance"}

func balanceCells(f *resultFile, mode string) []*balCell {
	var cells []*balCell
	idx := map[string]*balCell{}
	for i := range f.Runs {
		r := &f.Runs[i]
		if r.test() != mode {
			continue
		}
		c := idx[r.Labels["cell"]]
		if c == nil {
			c = &balCell{cell: r.Labels["cell"]}
			idx[c.cell] = c
			cells = append(cells, c)
		}
		c.runs = append(c.runs, r)
		if r.Failure != "" || r.PerWorker == nil {
			continue
		}
		if mm, cv, ok := maxMean(r.PerWorker.Conns); ok {
			c.connMM = append(c.connMM, mm)
			c.connCV = append(c.connCV, cv)
			var sum float64
			for _, x := range r.PerWorker.Conns {
				sum += x
			}
			c.conns = append(c.conns, sum)
			if c.vec == "" {
				var parts []string
				for _, x := range r.PerWorker.Conns {
					parts = append(parts, fmt.Sprintf("%.0f", x))
				}
				c.vec = strings.Join(parts, " / ")
			}
		}
		if mm, cv, ok := maxMean(r.PerWorker.CPU); ok {
			c.cpuMM = append(c.cpuMM, mm)
			c.cpuCV = append(c.cpuCV, cv)
		}
		if v, ok := r.Metrics["rate"]; ok {
			c.rate = append(c.rate, v)
		}
	}
	return cells
}

func balanceTable(f *resultFile) string {
	var b strings.Builder
	for _, mode := range balModes {
		cells := balanceCells(f, mode)
		if len(cells) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n**%s**\n\n", mode)
		b.WriteString("| Cell | conns counted (median) | conns per worker (rep 1) | conns max/mean median (min–max) | conns CV | worker CPU max/mean | worker CPU CV | ops/s | errors |\n")
		b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---|\n")
		for _, c := range cells {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.cell, summarize(c.conns).fmtRange("%.0f"), c.vec,
				summarize(c.connMM).fmtRange("%.3f"), summarize(c.connCV).fmtRange("%.3f"),
				summarize(c.cpuMM).fmtRange("%.2f"), summarize(c.cpuCV).fmtRange("%.2f"),
				summarize(c.rate).fmtRange("%.0f"), errCell(c.runs))
		}
	}
	return b.String()
}

func proxyTables(f *resultFile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Parameters: `%s`.\n", strings.TrimSpace(string(f.Params)))
	var m map[string]any
	if json.Unmarshal(f.Machine, &m) == nil {
		if t, ok := m["tools"]; ok {
			tb, _ := json.Marshal(t)
			fmt.Fprintf(&b, "Tools: `%s`.\n", tb)
		}
	}
	switch f.Scenario {
	case "l4-proxy":
		b.WriteString(l4PathWarnings(f))
		b.WriteString("\n(a) Keep-alive requests (wrk, one thread):\n\n" + reqTable(f, "keepalive", "req"))
		b.WriteString("\n(b) One request per connection (`Connection: close`):\n\n" + reqTable(f, "close", "conn"))
		b.WriteString("\n(c) Bulk download of one large file (curl):\n\n" + bulkTable(f))
		if t := l4CPUTable(f); t != "" {
			b.WriteString("\n(d) Where the CPU goes, per request / connection / MB: the SUT's own; the whole machine's in the same window (all CPUs: user+nice+system+irq+softirq from /proc/stat, steal left out; other users included); " +
				"the run's own (bench: SUT + backend + client + kworker/ksoftirqd threads, softirq included in whoever it interrupted), and that less the no-proxy row's (the proxy's full cost, kernel included); the machine's softirq part; kworker and ksoftirqd threads; " +
				"other users' share of the machine (CPUs); Portico's connections by path (warm-up included):\n\n" + t)
		}
	case "sni":
		b.WriteString("\n(a) New TLS connection per request (connload -mode tls, 32 concurrent, full handshake each):\n\n" + reqTable(f, "handshake", "handshake"))
		b.WriteString("\n(b) Keep-alive HTTPS requests through the passthrough (wrk):\n\n" + reqTable(f, "keepalive", "req"))
	case "syscalls":
		b.WriteString("\nKeep-alive (syscalls per proxied request, by kind; floor is 4: one read and one write on each side):\n\n" + syscallTable(f, "keepalive", "requests", "request", 0.03))
		b.WriteString("\nOne request per connection:\n\n" + syscallTable(f, "close", "requests", "request", 0.5))
		if t := syscallTable(f, "handshake", "handshakes", "handshake", 0.5); t != "" {
			b.WriteString("\nSNI-routed TLS handshakes (connload -mode tls through the SNI proxy, 32 concurrent, full handshake + one request each; syscalls per handshake):\n\n" + t)
		}
	case "l7-proxy":
		b.WriteString(l7Tables(f))
	case "drip":
		b.WriteString(dripTable(f))
	case "balance":
		b.WriteString(balanceTable(f))
	case "tls":
		b.WriteString(tlsTables(f))
	case "reload":
		b.WriteString(reloadTables(f))
	case "xds":
		b.WriteString(xdsTables(f))
	}
	return b.String()
}

// barChart draws grouped bars: one group per label, one bar per series.
func barChart(path, title, ylabel string, groups, series []string, val func(g, s int) float64, refLine float64) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	slot := 8 * 72 * 0.8 / float64(len(groups)+1)
	w := vg.Points(0.8 * slot / float64(max(len(series), 1)))
	top := refLine
	for si := range series {
		vals := make(plotter.Values, len(groups))
		for gi := range groups {
			vals[gi] = val(gi, si)
			top = max(top, vals[gi])
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(si)
		bars.Offset = w * vg.Length(float64(si)-float64(len(series)-1)/2)
		p.Add(bars)
		p.Legend.Add(series[si], bars)
	}
	if refLine > 0 {
		l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: refLine}, {X: float64(len(groups)) - 0.5, Y: refLine}})
		if err == nil {
			l.LineStyle.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
			p.Add(l)
		}
	}
	p.Legend.Top = true
	p.Y.Min = 0
	p.Y.Max = top * 1.3
	p.NominalX(groups...)
	return p.Save(8*vg.Inch, 3.5*vg.Inch, path)
}

func drawProxyCharts(f *resultFile, dir string) ([]string, error) {
	var out []string
	add := func(name string, err error) error {
		if err != nil {
			return err
		}
		out = append(out, filepath.Join(dir, name))
		return nil
	}
	switch f.Scenario {
	case "tls":
		return drawTLSCharts(f, dir)
	case "reload":
		return drawReloadChart(f, dir)
	case "l4-proxy", "sni", "l7-proxy":
		tests := []string{"keepalive", "close"}
		switch f.Scenario {
		case "sni":
			tests = []string{"handshake", "keepalive"}
		case "l7-proxy":
			tests = []string{"keepalive", "close", "headers40"} // body1m's CPU per request would dwarf them
		}
		var servers []string
		for _, g := range groupBy(f, tests[0]) {
			if !strings.HasPrefix(g.server, "none") {
				servers = append(servers, g.server)
			}
		}
		get := func(gi, si int, names ...string) float64 {
			return spreadOf(findGroup(groupBy(f, tests[gi]), servers[si]), names...).Med
		}
		name := f.Scenario + "-cpu.png"
		err := barChart(filepath.Join(dir, name), f.Scenario+": proxy CPU µs per request / connection / handshake (median, lower is better)",
			"µs", tests, servers, func(gi, si int) float64 { return get(gi, si, "cpu_us_per_req", "cpu_us_per_op") }, 0)
		if err := add(name, err); err != nil {
			return nil, err
		}
		name = f.Scenario + "-rate.png"
		err = barChart(filepath.Join(dir, name), f.Scenario+": requests / connections / handshakes per second (median)",
			"per s", tests, servers, func(gi, si int) float64 { return get(gi, si, "rps", "rate") }, 0)
		if err := add(name, err); err != nil {
			return nil, err
		}
		if f.Scenario == "l4-proxy" && hasMetric(f, "keepalive", machineKey("keepalive")) {
			name, err := drawMachineChart(f, dir)
			if err := add(name, err); err != nil {
				return nil, err
			}
		}
	case "balance":
		for _, mode := range balModes {
			cells := balanceCells(f, mode)
			if len(cells) == 0 {
				continue
			}
			var groups []string
			for _, c := range cells {
				groups = append(groups, strings.NewReplacer(" workers", "w", " conns", "", ", hold, ", "\nhold ", ", churn, ", "\nchurn ", "0000", "0k", "000", "k").Replace(c.cell))
			}
			name := "balance-" + mode + ".png"
			err := barChart(filepath.Join(dir, name), "balance, "+mode+": busiest worker / mean (median of reps; 1.0 = even)", "max/mean",
				groups, []string{"connections", "worker CPU"}, func(gi, si int) float64 {
					if si == 0 {
						return summarize(cells[gi].connMM).Med
					}
					return summarize(cells[gi].cpuMM).Med
				}, 1)
			if err := add(name, err); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
