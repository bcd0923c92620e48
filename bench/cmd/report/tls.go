package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// The tls scenario: TLS terminated by each proxy in front of the plaintext nginx
// backend. Rows carry test = the cell (ecdsa-tls13, ..., keepalive, bulk, idle,
// probe-alone, probe-flood, flood); tlsload rows also carry the negotiated parameters.
// Ratios are Portico's (or any row's) median over HAProxy's and over nginx's.

var tlsHSCells = []string{"ecdsa-tls13", "ecdsa-tls12", "rsa-tls13", "rsa-tls12", "ecdsa-tls13-mlkem", "resume-tls13", "resume-tls12"}

var tlsCellText = map[string]string{
	"ecdsa-tls13":       "ECDSA P-256, TLS 1.3, X25519",
	"ecdsa-tls12":       "ECDSA P-256, TLS 1.2, X25519, ECDHE-ECDSA-AES128-GCM-SHA256",
	"rsa-tls13":         "RSA-2048, TLS 1.3, X25519",
	"rsa-tls12":         "RSA-2048, TLS 1.2, X25519, ECDHE-RSA-AES128-GCM-SHA256",
	"ecdsa-tls13-mlkem": "ECDSA P-256, TLS 1.3, the client's default groups (X25519MLKEM768 first)",
	"resume-tls13":      "resumed, TLS 1.3 ticket (PSK with X25519), ECDSA listener",
	"resume-tls12":      "resumed, TLS 1.2 ticket (no key exchange), ECDSA listener",
}

func tlsName(s string) string {
	switch s {
	case "haproxy":
		return "haproxy (bind ssl)"
	case "nginx":
		return "nginx (listen ssl)"
	}
	return proxyName(s)
}

// tlsTCPName names the proxies of the bulk cell (TLS, then plain TCP upstream).
func tlsTCPName(s string) string {
	switch s {
	case "haproxy":
		return "haproxy (mode tcp, bind ssl)"
	case "nginx":
		return "nginx (stream, listen ssl)"
	case "portico", "portico-base":
		return s + " (tcp_proxy)"
	}
	return proxyName(s)
}

// tlsRefs: the spreads of one metric for HAProxy and nginx in one cell.
func tlsRefs(gs []pgroup, m ...string) (h, n spread) {
	return spreadOf(findGroup(gs, "haproxy"), m...), spreadOf(findGroup(gs, "nginx"), m...)
}

// negotiatedCell: what the runs of one group negotiated, "k× what" for each distinct
// value, so a table proves a cell measured the handshake it names.
func negotiatedCell(rs []*run) string {
	sum := map[string]int64{}
	for _, r := range rs {
		for k, v := range r.Negotiated {
			sum[k] += v
		}
	}
	if len(sum) == 0 {
		return "–"
	}
	keys := make([]string, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return sum[keys[i]] > sum[keys[j]] })
	var parts []string
	for _, k := range keys {
		k2 := strings.NewReplacer("TLS_ECDHE_ECDSA_WITH_", "", "TLS_ECDHE_RSA_WITH_", "", "TLS_", "").Replace(k)
		parts = append(parts, fmt.Sprintf("%d %s", sum[k], k2))
	}
	return strings.Join(parts, ", ")
}

// resumedCell: the client's resumed share in the window and, when the server's counters
// were read, its full / resumed handshakes over the whole cell (warm-up included) next
// to the client's resumed total.
func resumedCell(rs []*run) string {
	var ops, res, resAll, sFull, sRes float64
	haveServer := false
	for _, r := range rs {
		if r.Failure != "" {
			continue
		}
		ops += r.Metrics["ops"]
		res += r.Metrics["resumed"]
		resAll += r.Metrics["resumed_all"]
		if v, ok := r.Metrics["server_resumed"]; ok {
			haveServer = true
			sRes += v
			sFull += r.Metrics["server_full"]
		}
	}
	if ops == 0 {
		return "–"
	}
	s := fmt.Sprintf("%.1f %%", 100*res/ops)
	if haveServer {
		s += fmt.Sprintf("; server %.0f full / %.0f resumed, client %.0f resumed", sFull, sRes, resAll)
	}
	return s
}

func tlsHandshakeTable(f *resultFile) string {
	var b strings.Builder
	b.WriteString("| Cell | Proxy | handshakes/s median (min–max) | p50 ms | p99 ms | SUT CPU µs/handshake median (min–max) | vs HAProxy | vs nginx | SUT CPU util | client CPU util | load CPU busy | resumed | negotiated (all reps) | errors |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n")
	for _, c := range tlsHSCells {
		gs := groupBy(f, c)
		h, n := tlsRefs(gs, "cpu_us_per_op")
		for _, g := range gs {
			cpu := spreadOf(g.runs, "cpu_us_per_op")
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, tlsName(g.server),
				spreadOf(g.runs, "rate").fmtRange("%.0f"), fmtMs(spreadOf(g.runs, "p50_us")), fmtMs(spreadOf(g.runs, "p99_us")),
				cpu.fmtRange("%.1f"), ratio(cpu, h), ratio(cpu, n), pct(spreadOf(g.runs, "sut_util")), pct(spreadOf(g.runs, "client_util")), pct(spreadOf(g.runs, "load_cpu_busy")),
				resumedCell(g.runs), negotiatedCell(g.runs), errCell(g.runs))
		}
	}
	return b.String()
}

func fmtMs(s spread) string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", s.Med/1000)
}

func tlsKeepaliveTable(f *resultFile) string {
	gs := groupBy(f, "keepalive")
	if len(gs) == 0 {
		return ""
	}
	hr, nr := tlsRefs(gs, "rps")
	hc, nc := tlsRefs(gs, "cpu_us_per_req")
	hp, np := tlsRefs(gs, "p99_us")
	var b strings.Builder
	b.WriteString("| Proxy | req/s median (min–max) | vs HAProxy | vs nginx | p50 µs | p99 µs median (min–max) | vs HAProxy | vs nginx | SUT CPU µs/req median (min–max) | vs HAProxy | vs nginx | SUT CPU util | load CPU (wrk + backend) | other CPU | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, g := range gs {
		r, p, c := spreadOf(g.runs, "rps"), spreadOf(g.runs, "p99_us"), spreadOf(g.runs, "cpu_us_per_req")
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", tlsName(g.server),
			r.fmtRange("%.0f"), ratio(r, hr), ratio(r, nr), spreadOf(g.runs, "p50_us").fmtRange("%.0f"),
			p.fmtRange("%.0f"), ratio(p, hp), ratio(p, np), c.fmtRange("%.1f"), ratio(c, hc), ratio(c, nc),
			pct(spreadOf(g.runs, "sut_util")), pct(spreadOf(g.runs, "load_cpu_util")), pct(spreadOf(g.runs, "other_cpu_util")), errCell(g.runs))
	}
	return b.String()
}

func tlsBulkTable(f *resultFile) string {
	gs := groupBy(f, "bulk")
	if len(gs) == 0 {
		return ""
	}
	hm, nm := tlsRefs(gs, "mb_per_s")
	hc, nc := tlsRefs(gs, "cpu_us_per_mb")
	var b strings.Builder
	b.WriteString("| Proxy | MB/s median (min–max) | vs HAProxy | vs nginx | SUT CPU µs/MB median (min–max) | vs HAProxy | vs nginx | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, g := range gs {
		m, c := spreadOf(g.runs, "mb_per_s"), spreadOf(g.runs, "cpu_us_per_mb")
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", tlsTCPName(g.server), m.fmtRange("%.0f"), ratio(m, hm), ratio(m, nm),
			c.fmtRange("%.0f"), ratio(c, hc), ratio(c, nc), errCell(g.runs))
	}
	return b.String()
}

func tlsIdleTable(f *resultFile) string {
	gs := groupBy(f, "idle")
	if len(gs) == 0 {
		return ""
	}
	h, n := tlsRefs(gs, "bytes_per_conn")
	var b strings.Builder
	b.WriteString("| Proxy | connections open | RSS before MiB | RSS with MiB | bytes per idle TLS connection median (min–max) | vs HAProxy | vs nginx | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	mib := func(s spread) string {
		if s.N == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f", s.Med/(1<<20))
	}
	for _, g := range gs {
		bp := spreadOf(g.runs, "bytes_per_conn")
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", tlsName(g.server), spreadOf(g.runs, "conns_open").fmtRange("%.0f"),
			mib(spreadOf(g.runs, "rss_before")), mib(spreadOf(g.runs, "rss_with")), bp.fmtRange("%.0f"), ratio(bp, h), ratio(bp, n), errCell(g.runs))
	}
	return b.String()
}

func tlsFloodTable(f *resultFile) string {
	alone, flood, fl := groupBy(f, "probe-alone"), groupBy(f, "probe-flood"), groupBy(f, "flood")
	if len(alone) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| Proxy | p50 µs alone | p99 µs alone median (min–max) | p50 µs under flood | p99 µs under flood median (min–max) | p99 flood / alone | p99.9 µs under flood | max µs under flood | flood handshakes/s | flood client CPU util | SUT CPU util under flood | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, g := range alone {
		fr, hr := findGroup(flood, g.server), findGroup(fl, g.server)
		p99a, p99f := spreadOf(g.runs, "p99_us"), spreadOf(fr, "p99_us")
		all := append(append(slices.Clone(g.runs), fr...), hr...)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", tlsName(g.server),
			spreadOf(g.runs, "p50_us").fmtRange("%.0f"), p99a.fmtRange("%.0f"), spreadOf(fr, "p50_us").fmtRange("%.0f"),
			p99f.fmtRange("%.0f"), ratio(p99f, p99a), spreadOf(fr, "p999_us").fmtRange("%.0f"), spreadOf(fr, "max_us").fmtRange("%.0f"),
			spreadOf(hr, "rate").fmtRange("%.0f"), pct(spreadOf(hr, "client_util")), pct(spreadOf(fr, "sut_util")), errCell(all))
	}
	return b.String()
}

// tlsSummary: one line per cell and figure, Portico's median beside HAProxy's and
// nginx's, the two ratios and the target where there is one.
type tlsFigure struct {
	cell, metric, label, format string
	target                      func(p, h, n spread) string
}

func cpuTargetBetter(p, h, n spread) string {
	if p.N == 0 || h.N == 0 || n.N == 0 {
		return "–"
	}
	best := min(h.Med, n.Med)
	r := p.Med / best
	return fmt.Sprintf("≤ 0.9× the better (%.1f): %.2f×, %s", best, r, metOr(r <= 0.9))
}

func cpuTargetBoth(p, h, n spread) string {
	if p.N == 0 || h.N == 0 || n.N == 0 {
		return "–"
	}
	a, c := p.Med/h.Med, p.Med/n.Med
	return fmt.Sprintf("≤ 0.9× both: %s", metOr(a <= 0.9 && c <= 0.9))
}

func rateTargetBoth(p, h, n spread) string {
	if p.N == 0 || h.N == 0 || n.N == 0 {
		return "–"
	}
	return fmt.Sprintf("≥ both: %s", metOr(p.Med >= h.Med && p.Med >= n.Med))
}

var tlsFigures = []tlsFigure{
	{"ecdsa-tls13", "cpu_us_per_op", "CPU µs/handshake", "%.1f", cpuTargetBetter},
	{"ecdsa-tls13", "rate", "handshakes/s", "%.0f", nil},
	{"ecdsa-tls12", "cpu_us_per_op", "CPU µs/handshake", "%.1f", cpuTargetBetter},
	{"ecdsa-tls12", "rate", "handshakes/s", "%.0f", nil},
	{"rsa-tls13", "cpu_us_per_op", "CPU µs/handshake", "%.1f", nil},
	{"rsa-tls13", "rate", "handshakes/s", "%.0f", nil},
	{"rsa-tls12", "cpu_us_per_op", "CPU µs/handshake", "%.1f", nil},
	{"rsa-tls12", "rate", "handshakes/s", "%.0f", nil},
	{"ecdsa-tls13-mlkem", "cpu_us_per_op", "CPU µs/handshake", "%.1f", nil},
	{"resume-tls13", "cpu_us_per_op", "CPU µs/handshake", "%.1f", nil},
	{"resume-tls12", "cpu_us_per_op", "CPU µs/handshake", "%.1f", nil},
	{"keepalive", "cpu_us_per_req", "CPU µs/request", "%.1f", cpuTargetBoth},
	{"keepalive", "rps", "requests/s", "%.0f", nil},
	{"bulk", "mb_per_s", "MB/s", "%.0f", rateTargetBoth},
	{"bulk", "cpu_us_per_mb", "CPU µs/MB", "%.0f", nil},
	{"idle", "bytes_per_conn", "bytes per idle connection", "%.0f", nil},
	{"probe-alone", "p99_us", "keep-alive p99 µs, alone", "%.0f", nil},
	{"probe-flood", "p99_us", "keep-alive p99 µs, under a handshake flood", "%.0f", nil},
	{"flood", "rate", "flood handshakes/s absorbed", "%.0f", nil},
}

func tlsSummaryTable(f *resultFile) string {
	var b strings.Builder
	b.WriteString("| Cell | Figure | Portico | HAProxy | nginx | Portico / HAProxy | Portico / nginx | Target |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	med := func(s spread, format string) string {
		if s.N == 0 {
			return "–"
		}
		return fmt.Sprintf(format, s.Med)
	}
	for _, fig := range tlsFigures {
		gs := groupBy(f, fig.cell)
		if len(gs) == 0 {
			continue
		}
		p := spreadOf(findGroup(gs, "portico"), fig.metric)
		h, n := tlsRefs(gs, fig.metric)
		t := ""
		if fig.target != nil {
			t = fig.target(p, h, n)
		}
		if fig.cell == "ecdsa-tls13-mlkem" {
			// HAProxy and nginx (OpenSSL 3.0) cannot offer it: compare with Portico's X25519.
			x := spreadOf(findGroup(groupBy(f, "ecdsa-tls13"), "portico"), fig.metric)
			if p.N > 0 && x.N > 0 {
				t = fmt.Sprintf("vs Portico's X25519: %.2f×", p.Med/x.Med)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", fig.cell, fig.label,
			med(p, fig.format), med(h, fig.format), med(n, fig.format), ratio(p, h), ratio(p, n), t)
	}
	return b.String()
}

func tlsTables(f *resultFile) string {
	var b strings.Builder
	b.WriteString("\n(a) Summary: medians over repetitions, Portico's ratio to HAProxy and to nginx:\n\n" + tlsSummaryTable(f))
	b.WriteString("\n(b) Handshakes (tlsload: handshake + one keep-alive GET + close per connection; the ratios compare CPU per handshake within a cell):\n\n" + tlsHandshakeTable(f))
	b.WriteString("\nCells:")
	for i, c := range tlsHSCells {
		sep := ";"
		if i == len(tlsHSCells)-1 {
			sep = "."
		}
		fmt.Fprintf(&b, " `%s` %s%s", c, tlsCellText[c], sep)
	}
	b.WriteString("\n")
	if t := tlsKeepaliveTable(f); t != "" {
		b.WriteString("\n(c) Keep-alive HTTPS requests (wrk, one thread), ECDSA listener:\n\n" + t)
	}
	if t := tlsBulkTable(f); t != "" {
		b.WriteString("\n(d) Bulk: one download through the TLS-terminating TCP proxy (curl, TLS 1.3 AES-128-GCM):\n\n" + t)
	}
	if t := tlsIdleTable(f); t != "" {
		b.WriteString("\n(e) Memory per established idle TLS connection (TLS 1.3, ECDSA, one GET each, fresh proxy):\n\n" + t)
	}
	if t := tlsFloodTable(f); t != "" {
		b.WriteString("\n(f) Keep-alive latency of established connections (probe: fixed-rate GETs) alone and while the same worker absorbs a full-handshake flood (ECDSA, TLS 1.3):\n\n" + t)
	}
	var notes []string
	for _, c := range append(slices.Clone(tlsHSCells), "keepalive", "bulk", "idle", "probe-alone", "probe-flood", "flood") {
		if s := failureNotes(groupBy(f, c)); s != "" {
			notes = append(notes, strings.TrimSpace(strings.ReplaceAll(s, "\n\n", "\n")))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nFailed runs:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

// drawTLSCharts: CPU per handshake by cell and proxy.
func drawTLSCharts(f *resultFile, dir string) ([]string, error) {
	var cells []string
	for _, c := range tlsHSCells {
		if c != "ecdsa-tls13-mlkem" && len(groupBy(f, c)) > 0 {
			cells = append(cells, c)
		}
	}
	if len(cells) == 0 {
		return nil, nil
	}
	var servers []string
	for _, g := range groupBy(f, cells[0]) {
		servers = append(servers, g.server)
	}
	name := filepath.Join(dir, "tls-cpu.png")
	err := barChart(name, "tls: SUT CPU µs per handshake (median, lower is better)", "µs", cells, servers,
		func(gi, si int) float64 {
			return spreadOf(findGroup(groupBy(f, cells[gi]), servers[si]), "cpu_us_per_op").Med
		}, 0)
	if err != nil {
		return nil, err
	}
	return []string{name}, nil
}
