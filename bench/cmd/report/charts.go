package main

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// drawCharts writes grouped bar charts (one bar per contender, medians) for
// a result file and returns their paths. The size is kept small so the
// committed PNGs stay well under 100 KB.
func drawCharts(f *resultFile, dir string) ([]string, error) {
	cells, keys := aggregate(f.Runs)
	servers := orderedServers(f.Runs)
	type chart struct {
		file, title, ylabel string
		value               func(*cellStats) float64
	}
	var charts []chart
	switch f.Scenario {
	case "echo":
		charts = []chart{
			{"echo-throughput.png", "Echo ping-pong: messages/s (median, higher is better)", "msg/s",
				func(c *cellStats) float64 { return c.MsgsPS.Med }},
			{"echo-cpu.png", "Echo: server CPU µs per message (median, lower is better)", "µs/msg",
				func(c *cellStats) float64 { return c.CPUPerMsg.Med }},
			{"echo-p99.png", "Echo: p99 latency µs (median, lower is better)", "µs",
				func(c *cellStats) float64 { return c.P99.Med }},
		}
	case "idle-mem":
		charts = []chart{
			{"idle-mem.png", "Idle connections: server RSS bytes per connection (median)", "bytes/conn",
				func(c *cellStats) float64 { return c.BytesPerConn.Med }},
		}
	}
	var out []string
	for _, ch := range charts {
		p := plot.New()
		p.Title.Text = ch.title
		p.Y.Label.Text = ch.ylabel
		var labels []string
		for _, k := range keys {
			if f.Scenario == "echo" {
				labels = append(labels, fmt.Sprintf("%s×%d", fmtSize(k.Size), k.Conns))
			} else {
				labels = append(labels, fmt.Sprintf("%d conns", k.Conns))
			}
		}
		// Each group gets ~80 % of its slot of the 8-inch width.
		slot := 8 * 72 * 0.8 / float64(len(keys)+1)
		w := vg.Points(0.8 * slot / float64(max(len(servers), 1)))
		top := 0.0
		for si, s := range servers {
			vals := make(plotter.Values, len(keys))
			for ki, k := range keys {
				for _, c := range cells[k] {
					if c.Server == s {
						vals[ki] = ch.value(c)
						top = max(top, vals[ki])
					}
				}
			}
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, err
			}
			bars.LineStyle.Width = 0
			bars.Color = plotutil.Color(si)
			bars.Offset = w * vg.Length(float64(si)-float64(len(servers)-1)/2)
			p.Add(bars)
			p.Legend.Add(s, bars)
		}
		p.Legend.Top = true
		p.Y.Min = 0
		p.Y.Max = top * 1.25 // headroom for the legend
		p.NominalX(labels...)
		path := filepath.Join(dir, ch.file)
		if err := p.Save(8*vg.Inch, 3.5*vg.Inch, path); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}
