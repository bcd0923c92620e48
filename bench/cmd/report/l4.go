package main

import (
	"fmt"
	"path/filepath"
	"strings"
)

// The l4-proxy scenario's CPU attribution and path checks. On the sockmap
// path the bytes move inside the kernel (softirq, the psock's kworker), so
// Portico's own CPU is near zero while the cost lands on whoever runs: the
// harness therefore also records the whole machine's CPU in the same window
// (machine_cpu_us_per_req / _per_mb), its softirq part, the kworker and
// ksoftirqd threads', the run's own processes and kernel threads
// (bench_cpu_us_per_*: the machine figure without other users' processes),
// and for Portico the connections tcp_proxy closed on each path
// (downstream_cx_sockmap_total, downstream_cx_userspace_total).

const (
	sockmapServer = "portico-sockmap"
	sockmapKey    = "downstream_cx_sockmap_total"
	userspaceKey  = "downstream_cx_userspace_total"
)

// l4Unit is the metric suffix of a test's unit: per request for the wrk
// cells (one request per connection in close), per MB for bulk.
func l4Unit(test string) string {
	if test == "bulk" {
		return "mb"
	}
	return "req"
}

// machineKey: the machine-CPU metric of a test.
func machineKey(test string) string { return "machine_cpu_us_per_" + l4Unit(test) }

// hasMetric: does any run of test carry the metric name?
func hasMetric(f *resultFile, test, name string) bool {
	for i := range f.Runs {
		if f.Runs[i].test() == test {
			if _, ok := f.Runs[i].Metrics[name]; ok {
				return true
			}
		}
	}
	return false
}

var l4Tests = []struct{ test, label string }{
	{"keepalive", "keep-alive, per request"},
	{"close", "close, per connection"},
	{"bulk", "bulk, per MB"},
}

// pathProblem says what is wrong with one Portico run's path counts, or "".
// portico-sockmap must have put connections on the kernel path (as root it
// can: the harness leaves the row out otherwise); the userspace rows must
// not have.
func pathProblem(r *run) string {
	if r.Failure != "" || !strings.HasPrefix(r.server(), "portico") {
		return ""
	}
	sm, ok := r.Metrics[sockmapKey]
	switch {
	case r.server() == sockmapServer && !ok:
		return "no path count"
	case r.server() == sockmapServer && sm == 0:
		return fmt.Sprintf("0 sockmap (%.0f userspace)", r.Metrics[userspaceKey])
	case r.server() != sockmapServer && sm > 0:
		return fmt.Sprintf("%.0f on sockmap", sm)
	}
	return ""
}

// l4PathWarnings: one line naming every Portico cell whose connections took
// the wrong path, so a sockmap row that silently fell back to userspace is
// not read as the kernel path's figures.
func l4PathWarnings(f *resultFile) string {
	var bad []string
	for i := range f.Runs {
		r := &f.Runs[i]
		if p := pathProblem(r); p != "" {
			bad = append(bad, fmt.Sprintf("%s %s rep %s: %s", r.server(), r.test(), r.Labels["rep"], p))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "\n**!! Wrong path:** " + strings.Join(bad, "; ") +
		". portico-sockmap must take the kernel path (as root it can; see its log for why it fell back) and portico must not: these cells' figures are not their row's path.\n"
}

// pathCell: Portico's connections per path (median over repetitions),
// with the problems of pathProblem marked.
func pathCell(rs []*run) string {
	var probs []string
	seen := false
	for _, r := range rs {
		if _, ok := r.Metrics[sockmapKey]; ok {
			seen = true
		}
		if p := pathProblem(r); p != "" {
			probs = append(probs, "rep "+r.Labels["rep"]+": "+p)
		}
	}
	out := "–"
	if seen {
		out = spreadOf(rs, sockmapKey).fmtRange("%.0f") + " / " + spreadOf(rs, userspaceKey).fmtRange("%.0f")
	}
	if len(probs) > 0 {
		out += " **!! " + strings.Join(probs, ", ") + "**"
	}
	return out
}

// l4CPUTable: per cell and contender, the SUT's CPU beside the machine's
// and the run's own (bench_cpu), the latter less the no-proxy row's (what
// the proxy costs in all, kernel included), and the kernel's parts; empty
// for result files from before the machine figures.
func l4CPUTable(f *resultFile) string {
	if !hasMetric(f, "keepalive", machineKey("keepalive")) && !hasMetric(f, "bulk", machineKey("bulk")) {
		return ""
	}
	var b strings.Builder
	b.WriteString("| Cell | Proxy | SUT CPU µs | machine CPU µs median (min–max) | machine vs HAProxy | bench CPU µs median (min–max) | bench vs HAProxy | bench − no proxy µs | softirq µs | kworker µs | ksoftirqd µs | other users' CPU (100 % = 1 CPU) | Portico conns sockmap / userspace |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, t := range l4Tests {
		gs := groupBy(f, t.test)
		if len(gs) == 0 {
			continue
		}
		u := l4Unit(t.test)
		key, bkey := machineKey(t.test), "bench_cpu_us_per_"+u
		none := spreadOf(findGroup(gs, "none"), bkey)
		ref := spreadOf(findGroup(gs, proxyRef), key)
		bref := spreadOf(findGroup(gs, proxyRef), bkey)
		for _, g := range gs {
			m, bc := spreadOf(g.runs, key), spreadOf(g.runs, bkey)
			diff := "–"
			if !strings.HasPrefix(g.server, "none") && none.N > 0 && bc.N > 0 {
				diff = fmt.Sprintf("%.1f", bc.Med-none.Med)
			}
			other := "–"
			if o := spreadOf(g.runs, "other_cpu_util"); o.N > 0 {
				other = pct(o)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.label, proxyName(g.server),
				spreadOf(g.runs, "cpu_us_per_"+u).fmtRange("%.1f"), m.fmtRange("%.1f"), ratio(m, ref), bc.fmtRange("%.1f"), ratio(bc, bref), diff,
				spreadOf(g.runs, "softirq_us_per_"+u).fmtRange("%.1f"), spreadOf(g.runs, "kworker_cpu_us_per_"+u).fmtRange("%.1f"),
				spreadOf(g.runs, "ksoftirqd_cpu_us_per_"+u).fmtRange("%.1f"), other, pathCell(g.runs))
		}
	}
	return b.String()
}

// drawMachineChart: machine CPU per request and per connection by
// contender, the no-proxy row included (its bar is the client's and the
// backend's share, which every proxied bar also carries).
func drawMachineChart(f *resultFile, dir string) (string, error) {
	tests := []string{"keepalive", "close"}
	var servers []string
	for _, g := range groupBy(f, tests[0]) {
		if g.server != "none-2cpu" {
			servers = append(servers, g.server)
		}
	}
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s
		if s == "none" {
			names[i] = "no proxy"
		}
	}
	name := "l4-proxy-machine-cpu.png"
	err := barChart(filepath.Join(dir, name), "l4-proxy: whole-machine CPU µs per request / connection (median, all CPUs, lower is better)",
		"µs", tests, names, func(gi, si int) float64 {
			return spreadOf(findGroup(groupBy(f, tests[gi]), servers[si]), machineKey(tests[gi])).Med
		}, 0)
	return name, err
}
