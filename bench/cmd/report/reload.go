package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// The reload scenario (issue 13): bench/cmd/churn rows, one per cell and repetition,
// each with per-event windows. The common run struct does not carry churn's classes,
// events or the "unavailable" reason, so the file is read again into reloadRun.

var reloadOrder = []string{"portico-cold", "portico-overlap", "portico-hot", "portico-hotwrap", "portico-lds", "portico-lds-full", "haproxy-mw", "haproxy-sf"}

var reloadText = map[string]string{
	"portico-cold":     "Portico: SIGTERM, wait for the exit, start again",
	"portico-overlap":  "Portico: start a second process on the port (SO_REUSEPORT), then SIGTERM the old",
	"portico-hot":      "Portico hot restart, `--restart-epoch N+1` by hand",
	"portico-hotwrap":  "Portico hot restart, `portico restart` wrapper + SIGHUP",
	"portico-lds":      "Portico in-place LDS update (lds.yaml renamed into place; filter-chain-only change)",
	"portico-lds-full": "Portico full LDS listener update (a listener field changed too; socket carried)",
	"haproxy-mw":       "HAProxy master-worker reload (SIGUSR2; listeners passed, expose-fd)",
	"haproxy-sf":       "HAProxy legacy reload (`-sf`, no socket transfer)",
}

var reloadClasses = []string{"refused", "reset", "closed", "timeout", "bad", "other"}

type reloadEvent struct {
	Name        string           `json:"name"`
	ActionMS    float64          `json:"action_ms"`
	Failed      int64            `json:"failed"`
	ByClass     map[string]int64 `json:"by_class"`
	StreamBreak int64            `json:"stream_breaks"`
	MaxGapMS    float64          `json:"max_gap_ms"`
	MaxAttGapMS float64          `json:"max_attempt_gap_ms"`
	LatencyMS   *float64         `json:"latency_ms"`
	OldLastMS   *float64         `json:"old_last_ms"`
}

type reloadRun struct {
	Labels      map[string]string  `json:"labels"`
	Metrics     map[string]float64 `json:"metrics"`
	ByClass     map[string]int64   `json:"by_class"`
	Streams     map[string]int64   `json:"stream_breaks_by_class"`
	LastErr     map[string]string  `json:"last_error"`
	Events      []reloadEvent      `json:"events"`
	Unavailable string             `json:"unavailable"`
	Failure     string             `json:"failure"`
	Timeline    struct {
		BucketMS float64 `json:"bucket_ms"`
		Failed   []int32 `json:"failed"`
	} `json:"timeline"`
}

func readReloadRuns(path string) ([]reloadRun, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Runs []reloadRun `json:"runs"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Runs, nil
}

// reloadCellStats: one cell over its repetitions.
type reloadCellStats struct {
	cell                                string
	runs                                []reloadRun
	unavailable                         string
	events, failed, breaks, idle, grace int64
	byClass                             map[string]int64
	perEvent, gaps, actions, lat, rate  []float64
	util, missed, attGaps, oldLast      []float64
	failures                            []string
}

func reloadStats(runs []reloadRun) []*reloadCellStats {
	m := map[string]*reloadCellStats{}
	var names []string
	for _, r := range runs {
		c := r.Labels["test"]
		s := m[c]
		if s == nil {
			s = &reloadCellStats{cell: c, byClass: map[string]int64{}}
			m[c] = s
			names = append(names, c)
		}
		s.runs = append(s.runs, r)
		if r.Unavailable != "" {
			s.unavailable = r.Unavailable
			continue
		}
		if r.Failure != "" {
			s.failures = append(s.failures, fmt.Sprintf("rep %s: %s", r.Labels["rep"], r.Failure))
		}
		if len(r.Metrics) == 0 {
			continue
		}
		s.rate = append(s.rate, r.Metrics["rate"])
		s.missed = append(s.missed, r.Metrics["missed_slots"])
		if u, ok := r.Metrics["sut_util"]; ok {
			s.util = append(s.util, u)
		}
		s.breaks += int64(r.Metrics["stream_breaks"])
		s.idle += int64(r.Metrics["stream_idle_closes"])
		s.grace += int64(r.Metrics["stream_graceful_closes"])
		s.failed += int64(r.Metrics["failed"])
		for k, v := range r.ByClass {
			s.byClass[k] += v
		}
		for _, e := range r.Events {
			if strings.HasSuffix(e.Name, "-failed") {
				continue
			}
			s.events++
			s.perEvent = append(s.perEvent, float64(e.Failed))
			s.gaps = append(s.gaps, e.MaxGapMS)
			s.attGaps = append(s.attGaps, e.MaxAttGapMS)
			s.actions = append(s.actions, e.ActionMS)
			if e.LatencyMS != nil {
				s.lat = append(s.lat, *e.LatencyMS)
			}
			if e.OldLastMS != nil {
				s.oldLast = append(s.oldLast, *e.OldLastMS)
			}
		}
	}
	var out []*reloadCellStats
	for _, c := range reloadOrder {
		if s, ok := m[c]; ok {
			out = append(out, s)
			delete(m, c)
		}
	}
	slices.Sort(names)
	for _, c := range names {
		if s, ok := m[c]; ok {
			out = append(out, s)
		}
	}
	return out
}

// rlQuantile: nearest-rank quantile q of xs.
func rlQuantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func classCell(by map[string]int64) string {
	var parts []string
	for _, c := range reloadClasses {
		if by[c] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", by[c], c))
		}
	}
	if len(parts) == 0 {
		return "–"
	}
	return strings.Join(parts, ", ")
}

func reloadTables(f *resultFile) string {
	runs, err := readReloadRuns(f.Path)
	if err != nil {
		return "(could not read the reload rows: " + err.Error() + ")\n"
	}
	stats := reloadStats(runs)
	var b strings.Builder
	b.WriteString("\n(a) Failed connections under the churn, all repetitions together (per event: median and worst; gap: the longest time without a successful new connection in an event's window, median and worst over events; client stall: the longest time the client itself started no connection, worst over events, so a gap about as long is the load CPU's, not the proxy's):\n\n")
	b.WriteString("| Cell | Events | Failed conns | Per event, med (max) | By class | Longest gap ms, med (max) | Client stall ms, max | Stream breaks | Streams closed cleanly (idle / `Connection: close`) | Update latency ms p50 / p99 | Churn conn/s, med (range) | Missed slots | SUT CPU |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range stats {
		name := s.cell
		if t, ok := reloadText[s.cell]; ok {
			name = t
		}
		if s.unavailable != "" && len(s.rate) == 0 {
			fmt.Fprintf(&b, "| %s | not available: %s | | | | | | | | | | | |\n", name, strings.ReplaceAll(s.unavailable, "|", "/"))
			continue
		}
		if len(s.rate) == 0 {
			fmt.Fprintf(&b, "| %s | no result | | | | | | | | | | | |\n", name)
			continue
		}
		per, gap, stall, lat := "–", "–", "–", "–"
		if len(s.perEvent) > 0 {
			per = fmt.Sprintf("%.0f (%.0f)", summarize(s.perEvent).Med, rlQuantile(s.perEvent, 1))
			gap = fmt.Sprintf("%.0f (%.0f)", summarize(s.gaps).Med, rlQuantile(s.gaps, 1))
			stall = fmt.Sprintf("%.0f", rlQuantile(s.attGaps, 1))
		}
		if len(s.lat) > 0 {
			lat = fmt.Sprintf("%.0f / %.0f (%d updates)", rlQuantile(s.lat, 0.5), rlQuantile(s.lat, 0.99), len(s.lat))
		}
		util := "–"
		if len(s.util) > 0 {
			util = fmt.Sprintf("%.0f %%", summarize(s.util).Med*100)
		}
		fmt.Fprintf(&b, "| %s | %d | **%d** | %s | %s | %s | %s | %d | %d / %d | %s | %s | %s | %s |\n",
			name, s.events, s.failed, per, classCell(s.byClass), gap, stall, s.breaks, s.idle, s.grace, lat,
			summarize(s.rate).fmtRange("%.0f"), summarize(s.missed).fmtRange("%.0f"), util)
	}
	b.WriteString("\n(b) Each event's failed connections, in order, one list per repetition; how long the action took from the controller's side (the signal or start until the new process or worker listens; an LDS update's is 0, its instant is the rename's start); for updates, how long after the rename the old version still answered (connections already open on the old filter chain, until they drain):\n\n")
	b.WriteString("| Cell | Failed per event | Action ms, med (max) | Old version's last response, ms after the rename, med (max) |\n|---|---|---|---|\n")
	for _, s := range stats {
		if len(s.perEvent) == 0 {
			continue
		}
		var reps []string
		for _, r := range s.runs {
			var xs []string
			for _, e := range r.Events {
				x := fmt.Sprint(e.Failed)
				if strings.HasSuffix(e.Name, "-failed") {
					x = "(failed)"
				}
				xs = append(xs, x)
			}
			if len(xs) > 0 {
				reps = append(reps, strings.Join(xs, " "))
			}
		}
		old := "–"
		if len(s.oldLast) > 0 {
			old = fmt.Sprintf("%.0f (%.0f)", summarize(s.oldLast).Med, rlQuantile(s.oldLast, 1))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f (%.0f) | %s |\n", s.cell, strings.Join(reps, " · "), summarize(s.actions).Med, rlQuantile(s.actions, 1), old)
	}
	var notes []string
	for _, s := range stats {
		for _, fl := range s.failures {
			notes = append(notes, fmt.Sprintf("%s, %s", s.cell, fl))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nRuns that did not complete as planned:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "* %s\n", n)
		}
	}
	return b.String()
}

// drawReloadChart: failed new connections per timeline bucket over each cell's first
// repetition, on a log scale (1 + failures, so that a bucket without any sits on the
// floor): a cold restart's outage and a reload's few resets both show.
func drawReloadChart(f *resultFile, dir string) ([]string, error) {
	runs, err := readReloadRuns(f.Path)
	if err != nil {
		return nil, err
	}
	p := plot.New()
	p.Title.Text = "reload: failed new connections per 100 ms, first repetition of each cell (1 + count, log scale)"
	p.X.Label.Text = "s since the churn started"
	p.Y.Label.Text = "1 + failed"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	n := 0
	for _, s := range reloadStats(runs) {
		if len(s.rate) == 0 {
			continue
		}
		var r *reloadRun
		for i := range s.runs {
			if len(s.runs[i].Timeline.Failed) > 0 {
				r = &s.runs[i]
				break
			}
		}
		if r == nil {
			continue
		}
		xy := make(plotter.XYs, len(r.Timeline.Failed))
		for i, v := range r.Timeline.Failed {
			xy[i] = plotter.XY{X: float64(i) * r.Timeline.BucketMS / 1000, Y: float64(v) + 1}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(n)
		l.Dashes = plotutil.Dashes(n)
		p.Add(l)
		p.Legend.Add(s.cell, l)
		n++
	}
	if n == 0 {
		return nil, nil
	}
	p.Legend.Top = true
	p.Y.Min = 1
	name := filepath.Join(dir, "reload-timeline.png")
	if err := p.Save(8*vg.Inch, 3.5*vg.Inch, name); err != nil {
		return nil, err
	}
	return []string{name}, nil
}
