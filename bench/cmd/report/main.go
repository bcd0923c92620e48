// Command report turns bench/results/*.json into the tables of
// BENCHMARKS.md and PNG charts, and prints one-line run summaries for the
// harness. Tables live between <!-- bench:NAME:begin --> and
// <!-- bench:NAME:end --> markers, so the prose around them is left alone.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	summary := flag.String("summary", "", "print a one-line summary of one loadgen result file and exit")
	dir := flag.String("results", "bench/results", "directory holding <scenario>-<time>.json")
	md := flag.String("md", "", "markdown file whose marked sections are regenerated")
	charts := flag.String("charts", "", "directory for PNG charts (empty: none)")
	print := flag.Bool("print", false, "print the generated sections to stdout")
	ref := flag.String("ref", "net", "reference contender for ratios")
	only := flag.String("only", "", "comma-separated scenarios to regenerate (default: all)")
	flag.Parse()
	if *only != "" {
		scenarios = strings.Split(*only, ",")
	}

	if *summary != "" {
		s, err := summaryLine(*summary)
		if err != nil {
			fail(err)
		}
		fmt.Println(s)
		return
	}
	base := "."
	if *md != "" {
		base = filepath.Dir(*md)
	}
	sections := map[string]string{}
	for _, sc := range scenarios {
		f, err := latest(*dir, sc)
		if err != nil {
			fail(err)
		}
		if f == nil {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Source: `%s` (%s). Machine: %s.\n\n", filepath.ToSlash(relOrAbs(base, f.Path)), f.Date, machineLine(f.Machine))
		switch sc {
		case "echo":
			b.WriteString(echoTable(f, *ref))
		case "idle-mem":
			b.WriteString(idleTable(f, *ref))
		default:
			b.WriteString(proxyTables(f))
		}
		if *charts != "" {
			draw := drawCharts
			if sc != "echo" && sc != "idle-mem" {
				draw = drawProxyCharts
			}
			names, err := draw(f, *charts)
			if err != nil {
				fail(err)
			}
			for _, n := range names {
				fmt.Fprintf(&b, "\n![%s](%s)\n", strings.TrimSuffix(filepath.Base(n), ".png"), filepath.ToSlash(relOrAbs(base, n)))
			}
		}
		sections[sc] = b.String()
	}
	if *print {
		for _, sc := range scenarios {
			if s, ok := sections[sc]; ok {
				fmt.Printf("## %s\n\n%s\n", sc, s)
			}
		}
	}
	if *md != "" {
		if err := rewrite(*md, sections); err != nil {
			fail(err)
		}
	}
}

var scenarios = []string{"echo", "idle-mem", "l4-proxy", "l7-proxy", "sni", "syscalls", "drip", "balance", "tls", "reload", "xds"}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

// relOrAbs makes p relative to base (the markdown file's directory, so
// image links work wherever the generator was run from), else absolute.
func relOrAbs(base, p string) string {
	ab, err1 := filepath.Abs(base)
	ap, err2 := filepath.Abs(p)
	if err1 != nil || err2 != nil {
		return p
	}
	if r, err := filepath.Rel(ab, ap); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return ap
}

// rewrite replaces the body between each section's markers; sections
// without markers in the file are left out rather than appended blindly.
func rewrite(path string, sections map[string]string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for name, body := range sections {
		begin := []byte("<!-- bench:" + name + ":begin -->\n")
		end := []byte("<!-- bench:" + name + ":end -->")
		i := bytes.Index(b, begin)
		j := bytes.Index(b, end)
		if i < 0 || j < i {
			fmt.Fprintf(os.Stderr, "report: no markers for %s in %s; skipped\n", name, path)
			continue
		}
		var nb []byte
		nb = append(nb, b[:i+len(begin)]...)
		nb = append(nb, body...)
		nb = append(nb, b[j:]...)
		b = nb
	}
	return os.WriteFile(path, b, 0o644)
}

func summaryLine(path string) (string, error) {
	f, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var rf resultFile
	if err := jsonLines(f, &rf.Runs); err != nil || len(rf.Runs) == 0 {
		return "", fmt.Errorf("%s: no result (%v)", path, err)
	}
	r := rf.Runs[0]
	var s string
	switch r.Mode {
	case "idle":
		if r.Mem != nil {
			s = fmt.Sprintf("%s: %d/%d idle conns, RSS %.1f → %.1f MiB, %.0f B/conn",
				r.server(), r.ConnsOK, r.Conns, float64(r.Mem.RSSBefore)/(1<<20), float64(r.Mem.RSSWith)/(1<<20), r.Mem.BytesPerConn)
		}
	default:
		cpu, util, ctx := 0.0, 0.0, 0.0
		if r.Server != nil {
			cpu, util, ctx = r.Server.CPUPerMsg, r.Server.Util, r.Server.CtxPerMsg
		}
		s = fmt.Sprintf("%s: %.0f msg/s, p50 %.0f µs, p99 %.0f µs, %.2f CPU µs/msg, %.3f ctxsw/msg (SUT %.0f %%, loadgen %.0f %%, other %.0f %%), %d/%d conns",
			r.server(), r.MsgsPS, r.Lat.P50, r.Lat.P99, cpu, ctx, util*100, r.LGUtil*100, r.OtherUtil*100, r.ConnsOK, r.Conns)
	}
	if n := r.errCount(); n > 0 {
		s += fmt.Sprintf(", errors %d (%s%s)", n, r.Failure, r.Errors.Last)
	}
	return s, nil
}
