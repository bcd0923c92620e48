package main

import (
	"fmt"
	"slices"
	"strings"
)

// serverOrder fixes the row order; anything unknown sorts after.
var serverOrder = []string{"portico", "portico-base", "gnet", "netpoll", "net"}

func orderedServers(runs []run) []string {
	seen := map[string]bool{}
	for i := range runs {
		seen[runs[i].server()] = true
	}
	var out []string
	for _, s := range serverOrder {
		if seen[s] {
			out = append(out, s)
			delete(seen, s)
		}
	}
	var rest []string
	for s := range seen {
		rest = append(rest, s)
	}
	slices.Sort(rest)
	return append(out, rest...)
}

type cellKey struct{ Size, Conns int }

// cellStats aggregates one contender in one cell over its repetitions.
// Only runs that completed messages count towards the figures; failed runs
// are counted and their last error kept, so gaps stay visible.
type cellStats struct {
	Server                         string
	MsgsPS, P50, P99, P999         spread
	CPUPerMsg, Util, LGUtil, Other spread
	CtxPerMsg                      spread
	BytesPerConn, RSSBefore        spread
	RSSWith                        spread
	Runs, Failed, Errors           int
	ConnsOKMin                     int
	LastErr                        string
}

func aggregate(runs []run) (map[cellKey][]*cellStats, []cellKey) {
	type acc struct {
		st                                                *cellStats
		mps, p50, p99, p999, cpu, ut, lg, bpc, other, ctx []float64
		rb, rw                                            []float64
	}
	accs := map[cellKey]map[string]*acc{}
	var keys []cellKey
	for i := range runs {
		r := &runs[i]
		k := cellKey{r.Size, r.Conns}
		if accs[k] == nil {
			accs[k] = map[string]*acc{}
			keys = append(keys, k)
		}
		a := accs[k][r.server()]
		if a == nil {
			a = &acc{st: &cellStats{Server: r.server(), ConnsOKMin: -1}}
			accs[k][r.server()] = a
		}
		st := a.st
		st.Runs++
		st.Errors += int(r.errCount())
		if r.Errors.Last != "" {
			st.LastErr = r.Errors.Last
		}
		if r.Failure != "" {
			st.LastErr = r.Failure
		}
		if st.ConnsOKMin < 0 || r.ConnsOK < st.ConnsOKMin {
			st.ConnsOKMin = r.ConnsOK
		}
		switch {
		case r.Mode == "pingpong" && r.Msgs > 0 && r.Failure == "":
			a.mps = append(a.mps, r.MsgsPS)
			a.p50 = append(a.p50, r.Lat.P50)
			a.p99 = append(a.p99, r.Lat.P99)
			a.p999 = append(a.p999, r.Lat.P999)
			a.lg = append(a.lg, r.LGUtil)
			a.other = append(a.other, r.OtherUtil)
			if r.Server != nil {
				a.cpu = append(a.cpu, r.Server.CPUPerMsg)
				a.ut = append(a.ut, r.Server.Util)
				a.ctx = append(a.ctx, r.Server.CtxPerMsg)
			}
		case r.Mode == "idle" && r.Mem != nil && r.Failure == "":
			a.bpc = append(a.bpc, r.Mem.BytesPerConn)
			a.rb = append(a.rb, float64(r.Mem.RSSBefore)/(1<<20))
			a.rw = append(a.rw, float64(r.Mem.RSSWith)/(1<<20))
		default:
			st.Failed++
		}
	}
	slices.SortFunc(keys, func(a, b cellKey) int {
		if a.Size != b.Size {
			return a.Size - b.Size
		}
		return a.Conns - b.Conns
	})
	out := map[cellKey][]*cellStats{}
	for _, k := range keys {
		for _, s := range orderedServers(runs) {
			a := accs[k][s]
			if a == nil {
				continue
			}
			st := a.st
			st.MsgsPS, st.P50, st.P99, st.P999 = summarize(a.mps), summarize(a.p50), summarize(a.p99), summarize(a.p999)
			st.CPUPerMsg, st.Util, st.LGUtil = summarize(a.cpu), summarize(a.ut), summarize(a.lg)
			st.Other = summarize(a.other)
			st.CtxPerMsg = summarize(a.ctx)
			st.BytesPerConn, st.RSSBefore, st.RSSWith = summarize(a.bpc), summarize(a.rb), summarize(a.rw)
			out[k] = append(out[k], st)
		}
	}
	return out, keys
}

func refOf(cells []*cellStats, ref string) *cellStats {
	for _, c := range cells {
		if c.Server == ref {
			return c
		}
	}
	return &cellStats{}
}

func fmtSize(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func fmtErrors(c *cellStats) string {
	if c.Errors == 0 && c.Failed == 0 {
		return "0"
	}
	s := fmt.Sprintf("%d", c.Errors)
	if c.Failed > 0 {
		s += fmt.Sprintf(", %d/%d runs failed", c.Failed, c.Runs)
	}
	if c.LastErr != "" {
		e := c.LastErr
		if len(e) > 60 {
			e = e[:60] + "…"
		}
		s += ": " + strings.ReplaceAll(e, "|", "/")
	}
	return s
}

func echoTable(f *resultFile, ref string) string {
	cells, keys := aggregate(f.Runs)
	var b strings.Builder
	fmt.Fprintf(&b, "| Size | Conns | Server | msg/s median (min–max) | msg/s vs %s | p50 µs | p99 µs | p99.9 µs | SUT CPU µs/msg median (min–max) | CPU/msg vs %s | SUT ctx switches/msg | SUT CPU util | loadgen CPU util | other CPU | errors |\n", ref, ref)
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, k := range keys {
		r := refOf(cells[k], ref)
		for _, c := range cells[k] {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				fmtSize(k.Size), k.Conns, c.Server,
				c.MsgsPS.fmtRange("%.0f"), ratio(c.MsgsPS, r.MsgsPS),
				c.P50.fmtRange("%.0f"), c.P99.fmtRange("%.0f"), c.P999.fmtRange("%.0f"),
				c.CPUPerMsg.fmtRange("%.2f"), ratio(c.CPUPerMsg, r.CPUPerMsg),
				ctxFmt(c.CtxPerMsg), pct(c.Util), pct(c.LGUtil), pct(c.Other), fmtErrors(c))
		}
	}
	return b.String()
}

func pct(s spread) string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", s.Med*100)
}

func idleTable(f *resultFile, ref string) string {
	cells, keys := aggregate(f.Runs)
	var b strings.Builder
	fmt.Fprintf(&b, "| Idle conns | Server | conns open (min) | RSS before MiB | RSS with MiB | bytes/conn median (min–max) | vs %s | errors |\n", ref)
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---|\n")
	for _, k := range keys {
		r := refOf(cells[k], ref)
		for _, c := range cells[k] {
			fmt.Fprintf(&b, "| %d | %s | %d | %s | %s | %s | %s | %s |\n",
				k.Conns, c.Server, c.ConnsOKMin,
				c.RSSBefore.fmtRange("%.1f"), c.RSSWith.fmtRange("%.1f"),
				c.BytesPerConn.fmtRange("%.0f"), ratio(c.BytesPerConn, r.BytesPerConn), fmtErrors(c))
		}
	}
	return b.String()
}

// ctxFmt prints a dash for results recorded before the harness sampled
// context switches.
func ctxFmt(s spread) string {
	if s.N == 0 || s.Max == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", s.Med)
}
