package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The drip scenario's table: per server, what N slow-drip connections cost the
// SUT (rows with test "drip", written by bench/cmd/drip), whether it closed them
// early, and the latency of its other traffic (wrk rows "keepalive", alone, and
// "keepalive-drip", while N drippers ran: their own rows are "drip-bg").

type dripParams struct {
	Drippers int     `json:"drippers"`
	Duration float64 `json:"drip_duration_s"`
	Timeouts string  `json:"timeouts"`
}

// sumMetric adds one metric over the runs that completed.
func sumMetric(rs []*run, name string) (float64, int) {
	var s float64
	n := 0
	for _, r := range rs {
		if r.Failure != "" {
			continue
		}
		if v, ok := r.Metrics[name]; ok {
			s += v
			n++
		}
	}
	return s, n
}

// closedCell: "k/n", and when k > 0 the median time of the close and its kind.
func closedCell(rs []*run) string {
	early, n := sumMetric(rs, "closed_early")
	if n == 0 {
		return "–"
	}
	conns, _ := sumMetric(rs, "conns_open")
	s := fmt.Sprintf("%.0f/%.0f", early, conns)
	if early == 0 {
		return s
	}
	eof, _ := sumMetric(rs, "closed_early_eof")
	rst, _ := sumMetric(rs, "closed_early_reset")
	var kinds []string
	if eof > 0 {
		kinds = append(kinds, fmt.Sprintf("%.0f FIN", eof))
	}
	if rst > 0 {
		kinds = append(kinds, fmt.Sprintf("%.0f RST", rst))
	}
	if o := early - eof - rst; o > 0 {
		kinds = append(kinds, fmt.Sprintf("%.0f other", o))
	}
	if at := spreadOf(rs, "median_close_s"); at.N > 0 {
		s += " at " + at.fmtRange("%.1f") + " s"
	}
	return s + " (" + strings.Join(kinds, ", ") + ")"
}

// perConn: a summed metric divided by the connections, over all repetitions.
func perConn(rs []*run, name, format string) string {
	v, n := sumMetric(rs, name)
	conns, _ := sumMetric(rs, "conns_open")
	if n == 0 || conns == 0 {
		return "–"
	}
	return fmt.Sprintf(format, v/conns)
}

func dripTable(f *resultFile) string {
	var p dripParams
	json.Unmarshal(f.Params, &p)
	a := groupBy(f, "drip")
	if len(a) == 0 {
		return ""
	}
	bg, k0, kn := groupBy(f, "drip-bg"), groupBy(f, "keepalive"), groupBy(f, "keepalive-drip")
	bytes := spreadOf(a[0].runs, "bytes_per_conn")
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d drippers × %.0f s, each a %.0f-byte TLS ClientHello (crypto/tls) written one byte per TCP segment; "+
		"SUT CPU read before the first connect and after the last byte's reply (or close). "+
		"Latency: wrk keep-alive HTTPS through the same listener for %.0f s, alone and while %d drippers run. "+
		"The proxies' own bounds on this phase: %s.\n\n",
		p.Drippers, p.Duration, bytes.Med, p.Duration, p.Drippers, p.Timeouts)
	fmt.Fprintf(&b, "| Proxy | SUT CPU ms per dripped conn median (min–max) | same, utime+stime ticks | SUT ctx switches per conn | closed early | ClientHello bytes sent per conn | answered after the drip | p50 µs alone | p50 µs, %d drippers | p99 µs alone | p99 µs, %d drippers | p99 drip/alone | req/s alone | req/s, %d drippers | drippers closed early during wrk | errors |\n",
		p.Drippers, p.Drippers, p.Drippers)
	b.WriteString("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, g := range a {
		rs := g.runs
		b0, bn, bgr := findGroup(k0, g.server), findGroup(kn, g.server), findGroup(bg, g.server)
		answered := "–"
		if v, n := sumMetric(rs, "replied"); n > 0 {
			c, _ := sumMetric(rs, "conns_open")
			answered = fmt.Sprintf("%.0f/%.0f", v, c)
		}
		p99a, p99d := spreadOf(b0, "p99_us"), spreadOf(bn, "p99_us")
		all := append(append(append(append([]*run{}, rs...), bgr...), b0...), bn...)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", proxyName(g.server),
			spreadOf(rs, "sched_cpu_ms_per_conn").fmtRange("%.2f"), spreadOf(rs, "cpu_ms_per_conn").fmtRange("%.1f"),
			spreadOf(rs, "ctxsw_per_conn").fmtRange("%.0f"), closedCell(rs), perConn(rs, "bytes_sent", "%.0f"), answered,
			spreadOf(b0, "p50_us").fmtRange("%.0f"), spreadOf(bn, "p50_us").fmtRange("%.0f"),
			p99a.fmtRange("%.0f"), p99d.fmtRange("%.0f"), ratio(p99d, p99a),
			spreadOf(b0, "rps").fmtRange("%.0f"), spreadOf(bn, "rps").fmtRange("%.0f"), closedCell(bgr), errCell(all))
	}
	return b.String()
}
