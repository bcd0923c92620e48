package http1

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestWriteFuzzSeeds (WRITE_FUZZ_SEEDS=1) writes the corpus and the smuggling vectors as
// committed seed files under testdata/fuzz/<FuzzName>/, so `go test -fuzz` starts from
// them and plain `go test` replays them.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set WRITE_FUZZ_SEEDS=1 to regenerate")
	}
	write := func(target string, lines ...string) {
		body := "go test fuzz v1\n"
		for _, l := range lines {
			body += l + "\n"
		}
		sum := sha256.Sum256([]byte(body))
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%x", sum[:8])), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := func(s string) string { return "[]byte(" + strconv.Quote(s) + ")" }
	for i, c := range splitCorpus() {
		if c.response {
			write("FuzzParseResponse", b(c.in))
		} else {
			write("FuzzParseRequest", b(c.in))
			write("FuzzDifferentialNetHTTP", b(c.in))
		}
		write("FuzzSplit", b(c.in), fmt.Sprintf("uint16(%d)", i*7), fmt.Sprintf("uint16(%d)", i*13), "bool("+strconv.FormatBool(c.response)+")")
	}
	for _, v := range loadVectors(t, "testdata/smuggling.txt") {
		write("FuzzParseRequest", b(v.in))
		write("FuzzDifferentialNetHTTP", b(v.in))
	}
}
