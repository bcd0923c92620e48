package main

import (
	"fmt"
	"slices"
	"strings"
)

// The l7-proxy scenario: HTTP/1.1 through each proxy to one nginx backend,
// one table per cell (keepalive, close, headers40, body1m) with ratios to
// both HAProxy and nginx, the upstream connections the proxy opened (the
// backend's stub_status accepts), and Portico's targets.

var l7Cells = []string{"keepalive", "close", "headers40", "body1m"}

var l7CellText = map[string]string{
	"keepalive": "Keep-alive GET, 99-byte body (wrk, one thread)",
	"close":     "`Connection: close` from the client: a new downstream connection per request (upstream connections may still be reused)",
	"headers40": "Keep-alive GET with 40 extra request headers of 100 bytes each (4000 bytes, request head ≈ 4.1 KB)",
	"body1m":    "Keep-alive GET of a 1 MiB response body; rate and CPU per MB (1 MB = 10⁶ bytes)",
}

func l7Name(s string) string {
	switch s {
	case "haproxy":
		return "haproxy (mode http)"
	case "nginx":
		return "nginx (proxy_pass)"
	}
	return proxyName(s)
}

// l7Derive adds the figures the harness leaves to the report: requests per
// upstream connection and reuse (1 − connections opened / requests sent
// upstream), both from the backend's counters; for a body cell MB/s and
// CPU µs per MB.
func l7Derive(f *resultFile) {
	for i := range f.Runs {
		m := f.Runs[i].Metrics
		if m == nil {
			continue
		}
		if up, c := m["upstream_requests"], m["upstream_conns"]; up > 0 {
			// A proxy that opens a connection per request can open a few
			// more than it sends requests on (cut by wrk's end): 0, not less.
			m["reuse_pct"] = max(0, 100*(1-c/up))
			if c > 0 {
				m["req_per_upstream_conn"] = up / c
			}
		}
		if body := m["body_bytes"]; body > 0 && f.Runs[i].test() == "body1m" {
			m["mb_per_s"] = m["rps"] * body / 1e6
			if cpu, ok := m["cpu_us_per_req"]; ok {
				m["cpu_us_per_mb"] = cpu / (body / 1e6)
			}
		}
	}
}

// l7Figures names a cell's rate and CPU metrics and their units.
func l7Figures(test string) (rate, cpu, rateUnit, cpuUnit string) {
	if test == "body1m" {
		return "mb_per_s", "cpu_us_per_mb", "MB/s", "µs/MB"
	}
	return "rps", "cpu_us_per_req", "req/s", "µs/req"
}

func l7Table(f *resultFile, test string) string {
	gs := groupBy(f, test)
	if len(gs) == 0 {
		return ""
	}
	rate, cpu, ru, cu := l7Figures(test)
	refs := []string{"haproxy", "nginx"}
	type refFig struct{ rate, p99, cpu spread }
	var rf []refFig
	for _, r := range refs {
		rs := findGroup(gs, r)
		rf = append(rf, refFig{spreadOf(rs, rate), spreadOf(rs, "p99_us"), spreadOf(rs, cpu)})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| Proxy | %s median (min–max) | vs HAProxy | vs nginx | p50 µs | p99 µs median (min–max) | p99 vs HAProxy | vs nginx | SUT CPU %s median (min–max) | vs HAProxy | vs nginx | SUT CPU util | load CPU (wrk + backend) | other CPU | upstream conns opened | requests per upstream conn | upstream reuse | errors |\n", ru, cu)
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, g := range gs {
		r, p, c := spreadOf(g.runs, rate), spreadOf(g.runs, "p99_us"), spreadOf(g.runs, cpu)
		reuse := "–"
		if s := spreadOf(g.runs, "reuse_pct"); s.N > 0 {
			reuse = fmt.Sprintf("%.2f %%", s.Med)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l7Name(g.server),
			r.fmtRange("%.0f"), ratio(r, rf[0].rate), ratio(r, rf[1].rate),
			spreadOf(g.runs, "p50_us").fmtRange("%.0f"), p.fmtRange("%.0f"), ratio(p, rf[0].p99), ratio(p, rf[1].p99),
			c.fmtRange("%.1f"), ratio(c, rf[0].cpu), ratio(c, rf[1].cpu), pct(spreadOf(g.runs, "sut_util")),
			pct(spreadOf(g.runs, "load_cpu_util")), pct(spreadOf(g.runs, "other_cpu_util")),
			spreadOf(g.runs, "upstream_conns").fmtRange("%.0f"), spreadOf(g.runs, "req_per_upstream_conn").fmtRange("%.0f"),
			reuse, errCell(g.runs))
	}
	b.WriteString(failureNotes(gs))
	return b.String()
}

// failureNotes lists each contender's failed runs with their full reason
// (the errors column cuts it short).
func failureNotes(gs []pgroup) string {
	var b strings.Builder
	for _, g := range gs {
		count := map[string]int{}
		var order []string
		for _, r := range g.runs {
			if r.Failure == "" {
				continue
			}
			if count[r.Failure] == 0 {
				order = append(order, r.Failure)
			}
			count[r.Failure]++
		}
		for _, why := range order {
			fmt.Fprintf(&b, "\n%s: %d of %d runs failed: %s.\n", l7Name(g.server), count[why], len(g.runs), why)
		}
	}
	return b.String()
}

// l7Target is one of the targets for Portico, checked per cell
// against both HAProxy and nginx.
type l7Target struct {
	text  string
	check func(test string, p, h, n []*run) string
}

func ratioPair(metricName string, p, h, n []*run, ok func(x float64) bool) string {
	ps := spreadOf(p, metricName)
	hs, ns := spreadOf(h, metricName), spreadOf(n, metricName)
	if ps.N == 0 || hs.N == 0 || ns.N == 0 || hs.Med == 0 || ns.Med == 0 {
		return "–"
	}
	a, c := ps.Med/hs.Med, ps.Med/ns.Med
	return fmt.Sprintf("%.2f× / %.2f×: %s", a, c, metOr(ok(a) && ok(c)))
}

func metOr(met bool) string {
	if met {
		return "**met**"
	}
	return "not met"
}

var l7Targets = []l7Target{
	{"rate ≥ HAProxy's and nginx's (vs HAProxy / vs nginx)", func(t string, p, h, n []*run) string {
		rate, _, _, _ := l7Figures(t)
		return ratioPair(rate, p, h, n, func(x float64) bool { return x >= 1 })
	}},
	{"p99 ≤ HAProxy's and nginx's", func(t string, p, h, n []*run) string {
		return ratioPair("p99_us", p, h, n, func(x float64) bool { return x <= 1 })
	}},
	{"CPU per request (per MB) ≤ 0.9× HAProxy's and nginx's", func(t string, p, h, n []*run) string {
		_, cpu, _, _ := l7Figures(t)
		return ratioPair(cpu, p, h, n, func(x float64) bool { return x <= 0.9 })
	}},
	{"upstream reuse ≥ 99 %", func(t string, p, h, n []*run) string {
		s := spreadOf(p, "reuse_pct")
		if s.N == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f %%: %s", s.Med, metOr(s.Med >= 99))
	}},
	{"no socket errors or non-2xx responses", func(t string, p, h, n []*run) string {
		var errs int64
		ok := 0
		for _, r := range p {
			if r.Failure != "" {
				continue
			}
			ok++
			errs += int64(r.Metrics["errors"] + r.Metrics["non2xx"])
		}
		if ok == 0 {
			return "–"
		}
		return fmt.Sprintf("%d: %s", errs, metOr(errs == 0))
	}},
}

// l7TargetTable: Portico's targets per cell; a cell without a Portico
// result says why.
func l7TargetTable(f *resultFile, cells []string) string {
	var b strings.Builder
	b.WriteString("| Target (Portico) |")
	for _, c := range cells {
		b.WriteString(" " + c + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(cells)) + "\n")
	for _, t := range l7Targets {
		b.WriteString("| " + t.text + " |")
		for _, c := range cells {
			gs := groupBy(f, c)
			p := findGroup(gs, "portico")
			v := t.check(c, p, findGroup(gs, "haproxy"), findGroup(gs, "nginx"))
			if v == "–" && spreadOf(p, "rps").N == 0 {
				v = "no Portico result"
			}
			b.WriteString(" " + v + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func l7Tables(f *resultFile) string {
	l7Derive(f)
	var cells []string
	for _, c := range l7Cells {
		if len(groupBy(f, c)) > 0 {
			cells = append(cells, c)
		}
	}
	for i := range f.Runs { // cells this version does not know, after the known ones
		if t := f.Runs[i].test(); t != "" && !slices.Contains(cells, t) {
			cells = append(cells, t)
		}
	}
	var b strings.Builder
	for i, c := range cells {
		text := l7CellText[c]
		if text == "" {
			text = c
		}
		fmt.Fprintf(&b, "\n(%c) %s, `%s`:\n\n%s", 'a'+i, text, c, l7Table(f, c))
	}
	if len(cells) > 0 {
		b.WriteString("\nTargets, from the medians above (Portico's ratio to HAProxy / to nginx):\n\n" + l7TargetTable(f, cells))
	}
	return b.String()
}
