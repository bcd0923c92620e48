package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The xds scenario (issue 14): bench/cmd/xdsbench's rows, one per update
// ("xds-update"), one per size and repetition at steady state
// ("xds-steady"), and one describing the run ("xds-meta"). They do not fit
// the common run struct, so the file is read again into xdsRow.

type xdsServe struct {
	Checked   int     `json:"checked"`
	FirstOK   int     `json:"first_ok"`
	OK        int     `json:"ok"`
	Stale     int     `json:"stale"`
	Failed    int     `json:"failed"`
	MaxLateMS float64 `json:"max_late_ms"`
}

type xdsRow struct {
	Mode      string            `json:"mode"`
	Labels    map[string]string `json:"labels"`
	Listeners int               `json:"listeners"`
	Kind      string            `json:"kind"`
	Types     []string          `json:"types"`

	AckMS        float64            `json:"ack_ms"`
	ProxyAckMS   []float64          `json:"proxy_ack_ms"`
	ProxySentMS  []float64          `json:"proxy_sent_ms"`
	ProxyApplyMS []float64          `json:"proxy_apply_ms"`
	TypeAckMS    map[string]float64 `json:"type_ack_ms"`
	ProxyCPUMS   []float64          `json:"proxy_cpu_ms"`
	ProxyRunMS   []float64          `json:"proxy_run_ms"`
	ProxyWinMS   []float64          `json:"proxy_cpu_window_ms"`
	CPRunMS      float64            `json:"cp_run_ms"`
	OtherCPUMS   float64            `json:"other_cpu_ms"`
	Serve        *xdsServe          `json:"serve"`

	RSSKiB       []int64   `json:"rss_kib"`
	HWMKiB       []int64   `json:"hwm_kib"`
	PSSKiB       []int64   `json:"pss_kib"`
	Threads      []int     `json:"threads"`
	IdleCPUMS    []float64 `json:"idle_cpu_ms"`
	IdleMS       float64   `json:"idle_ms"`
	PhaseMS      float64   `json:"phase_ms"`
	PhaseUpdates int       `json:"phase_updates"`
	PhaseCPUMS   []float64 `json:"phase_cpu_ms"`
	PhaseCPCPUMS float64   `json:"phase_cp_cpu_ms"`
	CPRSSKiB     int64     `json:"cp_rss_kib"`

	Admin map[string]map[string]float64 `json:"admin"`

	Proxies     int     `json:"proxies"`
	Standin     bool    `json:"standin"`
	ElapsedS    float64 `json:"elapsed_s"`
	ControlCPU  string  `json:"control_plane_cpus"`
	LoadStart   string  `json:"loadavg_start"`
	LoadEnd     string  `json:"loadavg_end"`
	Unavailable string  `json:"unavailable"`
	Note        string  `json:"note"`
	Failure     string  `json:"failure"`
}

// proxies is the fleet's size from the row's labels (0 when absent).
func (r *xdsRow) proxies() int {
	n, _ := strconv.Atoi(r.Labels["proxies"])
	return n
}

// fleetKey is one xdsbench run's fleet: its proxies and their drain time
// (--drain-time-s, "" for Portico's default).
type fleetKey struct {
	proxies int
	drain   string
	delta   bool
}

func (r *xdsRow) fleet() fleetKey {
	return fleetKey{r.proxies(), r.Labels["drain_s"], r.Labels["protocol"] == "delta"}
}

func (k fleetKey) String() string {
	s := strconv.Itoa(k.proxies)
	if k.delta {
		s += ", delta"
	}
	if k.drain != "" {
		s += fmt.Sprintf(", drain %s s", k.drain)
	}
	return s
}

// cmpFleet orders the larger fleet first, then state of the world before
// delta, then the shorter drain time.
func cmpFleet(a, b fleetKey) int {
	if a.proxies != b.proxies {
		return b.proxies - a.proxies
	}
	if a.delta != b.delta {
		if a.delta {
			return 1
		}
		return -1
	}
	da, _ := strconv.Atoi(a.drain)
	db, _ := strconv.Atoi(b.drain)
	return da - db
}

func readXDSRows(path string) ([]xdsRow, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Runs []xdsRow `json:"runs"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Runs, nil
}

var xdsKinds = []string{"initial", "one", "chain", "clusters"}

var xdsKindText = map[string]string{
	"initial":  "initial (from the previous size's set)",
	"one":      "one listener's chain (LDS)",
	"chain":    "filter chains only (LDS)",
	"clusters": "cluster set replaced (CDS + LDS)",
}

// xdsGroup is one size and update kind over every repetition.
type xdsGroup struct {
	fleet                    fleetKey
	n                        int
	kind                     string
	ack, proxyAck, sent, app []float64
	cpu, run, win, cp, other []float64
	cds, lds                 []float64
	serve                    xdsServe
	failures                 int
}

func xdsGroups(rows []xdsRow) []*xdsGroup {
	m := map[string]*xdsGroup{}
	var out []*xdsGroup
	for _, r := range rows {
		if r.Mode != "xds-update" {
			continue
		}
		k := fmt.Sprintf("%v/%d/%s", r.fleet(), r.Listeners, r.Kind)
		g := m[k]
		if g == nil {
			g = &xdsGroup{fleet: r.fleet(), n: r.Listeners, kind: r.Kind}
			m[k] = g
			out = append(out, g)
		}
		if r.Failure != "" {
			g.failures++
		}
		if r.AckMS == 0 && r.Failure != "" {
			continue
		}
		g.ack = append(g.ack, r.AckMS)
		g.proxyAck = append(g.proxyAck, r.ProxyAckMS...)
		g.sent = append(g.sent, r.ProxySentMS...)
		g.app = append(g.app, r.ProxyApplyMS...)
		g.cpu = append(g.cpu, r.ProxyCPUMS...)
		g.run = append(g.run, r.ProxyRunMS...)
		g.win = append(g.win, r.ProxyWinMS...)
		g.cp = append(g.cp, r.CPRunMS)
		g.other = append(g.other, r.OtherCPUMS)
		if v, ok := r.TypeAckMS["CDS"]; ok {
			g.cds = append(g.cds, v)
		}
		if v, ok := r.TypeAckMS["LDS"]; ok {
			g.lds = append(g.lds, v)
		}
		if s := r.Serve; s != nil {
			g.serve.Checked += s.Checked
			g.serve.FirstOK += s.FirstOK
			g.serve.OK += s.OK
			g.serve.Stale += s.Stale
			g.serve.Failed += s.Failed
			g.serve.MaxLateMS = max(g.serve.MaxLateMS, s.MaxLateMS)
		}
	}
	slices.SortStableFunc(out, func(a, b *xdsGroup) int {
		if c := cmpFleet(a.fleet, b.fleet); c != 0 {
			return c
		}
		if a.n != b.n {
			return a.n - b.n
		}
		return slices.Index(xdsKinds, a.kind) - slices.Index(xdsKinds, b.kind)
	})
	return out
}

// typeCell is "CDS p50 / LDS p50" ("–" for a type the updates did not change).
func typeCell(cds, lds []float64) string {
	c, l := "–", "–"
	if len(cds) > 0 {
		c = fmt.Sprintf("%.0f", rlQuantile(cds, 0.5))
	}
	if len(lds) > 0 {
		l = fmt.Sprintf("%.0f", rlQuantile(lds, 0.5))
	}
	return c + " / " + l
}

// medMax is "median (max)" of xs with format f, or "–".
func medMax(xs []float64, f string) string {
	if len(xs) == 0 {
		return "–"
	}
	return fmt.Sprintf(f+" ("+f+")", summarize(xs).Med, rlQuantile(xs, 1))
}

func ints64(xs []int64, div float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x) / div
	}
	return out
}

func xdsTables(f *resultFile) string {
	rows, err := readXDSRows(f.Path)
	if err != nil {
		return "(could not read the xds rows: " + err.Error() + ")\n"
	}
	var b strings.Builder
	var notes []string
	var fleets []string
	for _, r := range rows {
		if r.Mode != "xds-meta" {
			continue
		}
		who := fmt.Sprintf("%d proxies", r.proxies())
		if r.proxies() == 1 {
			who = "1 proxy"
		}
		if r.Labels["protocol"] == "delta" {
			who += ", delta xDS"
		}
		if d := r.Labels["drain_s"]; d != "" {
			who += fmt.Sprintf(" (`--drain-time-s %s`)", d)
		}
		if r.Standin {
			who += " (stand-ins: in-process config/xds clients that ACK without applying; no proxy CPU, memory or serve check)"
		}
		switch {
		case r.Unavailable != "":
			fleets = append(fleets, fmt.Sprintf("%s: not available: %s", who, r.Unavailable))
		case r.ElapsedS > 0:
			fleets = append(fleets, fmt.Sprintf("%s: the run took %.0f s, the control plane on CPU %s; load average %s at the start, %s at the end.", who, r.ElapsedS, r.ControlCPU, r.LoadStart, r.LoadEnd))
		}
		if r.Note != "" {
			notes = append(notes, who+": "+r.Note)
		}
		if r.Failure != "" {
			notes = append(notes, who+": the run stopped: "+r.Failure)
		}
	}
	if len(fleets) > 0 {
		b.WriteString("\n")
		for _, l := range fleets {
			fmt.Fprintf(&b, "* %s\n", l)
		}
	}
	groups := xdsGroups(rows)
	if len(groups) > 0 {
		b.WriteString("\n(a) Update time: from `SetSnapshot` (every node's, in turn) to the last proxy's ACK of every changed type; p50 / p99 over the updates of all repetitions (nearest rank: with fewer than 100 updates p99 is the worst). Per type: the last proxy's ACK of CDS and of LDS (ADS sends CDS first). Per proxy: its own last ACK, the server's last response to it, and its apply time (response → ACK, the longer type). Proxy CPU: one proxy's utime+stime from `SetSnapshot` to the fleet's ACK (10 ms ticks), and its scheduler run time to the end of the update's window (serve check + 300 ms): median (max) over proxies × updates. Control plane: this process's run time to the ACK. Others: every CPU's busy time to the ACK less the proxies' and the control plane's (other jobs on this shared box). Serve check: sampled listeners (first, last, two random per proxy) that answered with the right backend's banner at the first connection after the ACK / all checked:\n\n")
		b.WriteString("| Fleet | Listeners per proxy | Update | Updates | **All ACKed ms, p50 / p99** | CDS / LDS ACKed ms, p50 | Proxy ACK ms, p50 (max) | Response out ms, p50 (max) | Proxy apply ms, p50 (max) | Proxy CPU ms (ticks) | Proxy run ms, window | Control plane run ms | Others' CPU ms | Serve check right at once / checked | Failed |\n")
		b.WriteString("|---:|---:|---|---:|---|---|---|---|---|---|---|---|---|---:|\n")
		for _, g := range groups {
			ack := "–"
			if len(g.ack) > 0 {
				ack = fmt.Sprintf("**%.0f / %.0f**", rlQuantile(g.ack, 0.5), rlQuantile(g.ack, 0.99))
			}
			serve := "–"
			if g.serve.Checked > 0 {
				serve = fmt.Sprintf("%d / %d", g.serve.FirstOK, g.serve.Checked)
				if late := g.serve.OK - g.serve.FirstOK - g.serve.Stale; late > 0 {
					serve += fmt.Sprintf(" (%d failed at first, right within %.0f ms)", late, g.serve.MaxLateMS)
				}
				if g.serve.Stale > 0 {
					serve += fmt.Sprintf(" (%d stale at first)", g.serve.Stale)
				}
				if g.serve.Failed > 0 {
					serve += fmt.Sprintf(", **%d never right**", g.serve.Failed)
				}
			}
			kind := g.kind
			if t, ok := xdsKindText[g.kind]; ok {
				kind = t
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n",
				g.fleet, g.n, kind, len(g.ack), ack, typeCell(g.cds, g.lds), medMax(g.proxyAck, "%.0f"), medMax(g.sent, "%.1f"), medMax(g.app, "%.0f"),
				medMax(g.cpu, "%.0f"), medMax(g.win, "%.0f"), medMax(g.cp, "%.0f"), medMax(g.other, "%.0f"), serve, g.failures)
		}
	}
	b.WriteString(xdsSteadyTable(rows))
	if len(notes) > 0 {
		b.WriteString("\nRuns that did not complete as planned:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "* %s\n", n)
		}
	}
	return b.String()
}

// xdsSteadyTable: per size, each proxy's memory and idle CPU after the
// size's updates, and the whole phase's CPU, median (range) over proxies ×
// repetitions.
func xdsSteadyTable(rows []xdsRow) string {
	type fs struct {
		fleet fleetKey
		n     int
	}
	bySize := map[fs][]xdsRow{}
	var sizes []fs
	for _, r := range rows {
		if r.Mode != "xds-steady" {
			continue
		}
		k := fs{r.fleet(), r.Listeners}
		if _, ok := bySize[k]; !ok {
			sizes = append(sizes, k)
		}
		bySize[k] = append(bySize[k], r)
	}
	if len(sizes) == 0 {
		return ""
	}
	slices.SortFunc(sizes, func(a, b fs) int {
		if c := cmpFleet(a.fleet, b.fleet); c != 0 {
			return c
		}
		return a.n - b.n
	})
	var b strings.Builder
	b.WriteString("\n(b) Steady state after each size's updates (a 3 s settle: with `--drain-time-s 1` the replaced versions are let go of by then), per proxy, median (range) over proxies × repetitions: RSS and peak RSS (VmHWM, since the process started: the largest size any earlier phase reached counts) from `/proc/PID/status`, PSS from `smaps_rollup`; idle CPU over the next 2 s; the whole phase's CPU (its initial update and updates, windows included) per proxy and per update; the control plane's CPU over the phase (all proxies) and its RSS:\n\n")
	b.WriteString("| Fleet | Listeners per proxy | RSS MiB | PSS MiB | Peak RSS MiB | Threads | Idle CPU ms/s | Phase CPU per proxy, ms per update | Control plane CPU per update ms | Control plane RSS MiB | Counters (proxy-1, last rep) |\n")
	b.WriteString("|---:|---:|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range sizes {
		var rss, pss, hwm, th, idle, phase, cp, cprss []float64
		var counters string
		for _, r := range bySize[k] {
			rss = append(rss, ints64(r.RSSKiB, 1024)...)
			pss = append(pss, ints64(r.PSSKiB, 1024)...)
			hwm = append(hwm, ints64(r.HWMKiB, 1024)...)
			for _, t := range r.Threads {
				th = append(th, float64(t))
			}
			if r.IdleMS > 0 {
				for _, c := range r.IdleCPUMS {
					idle = append(idle, c/(r.IdleMS/1000))
				}
			}
			if r.PhaseUpdates > 0 {
				for _, c := range r.PhaseCPUMS {
					phase = append(phase, c/float64(r.PhaseUpdates))
				}
				cp = append(cp, r.PhaseCPCPUMS/float64(r.PhaseUpdates))
			}
			cprss = append(cprss, float64(r.CPRSSKiB)/1024)
			if c := r.Admin["proxy-1"]; len(c) > 0 {
				counters = xdsCounters(c)
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k.fleet, k.n,
			summarize(rss).fmtRange("%.1f"), summarize(pss).fmtRange("%.1f"), summarize(hwm).fmtRange("%.1f"),
			summarize(th).fmtRange("%.0f"), summarize(idle).fmtRange("%.0f"), summarize(phase).fmtRange("%.0f"),
			summarize(cp).fmtRange("%.0f"), summarize(cprss).fmtRange("%.0f"), counters)
	}
	return b.String()
}

// xdsCounters renders the proxy's own counters briefly (Envoy's names, the
// common prefixes cut).
func xdsCounters(c map[string]float64) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		short := strings.NewReplacer("listener_manager.", "", "cluster_manager.", "", "control_plane.", "").Replace(k)
		parts = append(parts, "`"+short+"` "+strconv.FormatFloat(c[k], 'f', -1, 64))
	}
	return strings.Join(parts, ", ")
}
