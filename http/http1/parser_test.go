package http1

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus.golden from the parser's output")

// TestValidCorpus parses every corpus message in one buffer and compares the transcript
// with testdata/corpus.golden (each transcript reviewed by hand when it was written).
func TestValidCorpus(t *testing.T) {
	var b strings.Builder
	for _, c := range validCorpus {
		fmt.Fprintf(&b, "== %s\n%s\n", c.name, transcript(parseAll(t, c.response, c.lim, one(c.in), c.expect...)))
	}
	const golden = "testdata/corpus.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("line %d:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("transcripts differ in length: got %d lines, want %d", len(gl), len(wl))
	}
}

// splitCorpus is every corpus message plus every policy case: errors must not depend
// on where the input was cut either.
func splitCorpus() []corpusCase {
	out := append([]corpusCase(nil), validCorpus...)
	for _, c := range policyCases {
		out = append(out, corpusCase{name: c.name, response: c.response, lim: c.lim, in: c.in})
	}
	return out
}

// TestSplitEveryByte: fed one byte at a time, and cut in two at every boundary, each
// message yields exactly the one-buffer transcript.
func TestSplitEveryByte(t *testing.T) {
	for _, c := range splitCorpus() {
		want := transcript(parseAll(t, c.response, c.lim, one(c.in), c.expect...))
		if got := transcript(parseAll(t, c.response, c.lim, bytewise(c.in), c.expect...)); got != want {
			t.Errorf("%s: byte at a time:\n%s\nwant:\n%s", c.name, got, want)
		}
		for i := 0; i <= len(c.in); i++ {
			if got := transcript(parseAll(t, c.response, c.lim, splitAt(c.in, i), c.expect...)); got != want {
				t.Errorf("%s: split at %d (%q | %q):\n%s\nwant:\n%s", c.name, i, c.in[:i], c.in[i:], got, want)
				break
			}
		}
	}
}
