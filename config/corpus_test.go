package config

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/internal/testpki"
)

// The corpus is a folder of whole Envoy bootstraps from public projects, each valid for
// Envoy (see its README.md). TestCorpus reads every one: each must either load, or be
// refused only for features Portico does not implement yet (errors with a Feature), never
// for a misreading of valid Envoy syntax. A few files hold what Envoy refuses too (a
// template's "$proxy_ip" where an address goes): their other errors are listed by hand as
// "invalid:PATH" (path without indexes), each with a comment saying why. What each file
// is refused for is kept in
// testdata/corpus_expect.txt, so that a file refused anew, or for a new reason, fails the
// test; a file accepted anew, or refused for fewer reasons, is reported (update the file
// with PORTICO_CORPUS_UPDATE=1).
const (
	corpusEnv     = "PORTICO_ENVOY_CONFIGS"
	corpusDefault = "../../shared/envoy-configs"
	corpusExpect  = "testdata/corpus_expect.txt"
	corpusUpdate  = "PORTICO_CORPUS_UPDATE"
)

// findCorpus looks for shared/envoy-configs beside the checkout or any folder above it
// (the team's layout: the repository next to ../shared), else returns corpusDefault.
func findCorpus() string {
	d, err := os.Getwd()
	if err != nil {
		return corpusDefault
	}
	for {
		c := filepath.Join(d, "shared", "envoy-configs")
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c
		}
		up := filepath.Dir(d)
		if up == d {
			return corpusDefault
		}
		d = up
	}
}

// corpusFiles lists the bootstraps of the corpus folder, or skips (fails under CI).
func corpusFiles(t *testing.T) (string, []string) {
	dir := os.Getenv(corpusEnv)
	if dir == "" {
		dir = findCorpus()
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the Envoy config corpus is missing (%v): set %s or check out ../shared/envoy-configs", err, corpusEnv)
		}
		t.Skipf("no Envoy config corpus at %s (set %s)", dir, corpusEnv)
	}
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml", "*.json"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no bootstraps in %s", dir)
	}
	return dir, files
}

func absPaths(t *testing.T, files []string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		a, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

// corpusResult is what loading one file gave: the features it was refused for (none if
// accepted) and the errors that are not refusals of a feature (misreadings).
type corpusResult struct {
	features []string
	misreads []*FieldError
}

// invalidKey is the expectation key of an error that is not a missing feature.
func invalidKey(e *FieldError) string { return "invalid:" + featureKey(e.Path, "") }

func loadCorpusFile(path string) (corpusResult, error) {
	var r corpusResult
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	cfg, err := ParseWith(data, 1, Options{CheckOnly: true})
	if err == nil {
		cfg.Close()
		return r, nil
	}
	var es Errors
	if !errors.As(err, &es) {
		return r, err
	}
	for _, e := range es {
		if e.Feature == "" {
			r.misreads = append(r.misreads, e)
			continue
		}
		if !slices.Contains(r.features, e.Feature) {
			r.features = append(r.features, e.Feature)
		}
	}
	sort.Strings(r.features)
	if len(r.features) == 0 && len(r.misreads) == 0 {
		r.misreads = append(r.misreads, &FieldError{Msg: "refused without an error"})
	}
	return r, nil
}

// readCorpusExpect reads the expectations: "FILE: accepted" or "FILE: KEY KEY ...".
func readCorpusExpect(t *testing.T) map[string][]string {
	f, err := os.Open(corpusExpect)
	if err != nil {
		if os.IsNotExist(err) {
			return map[string][]string{}
		}
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line, _, _ = strings.Cut(line, " #") // a comment, kept by writeCorpusExpect
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s: bad line %q", corpusExpect, line)
		}
		keys := strings.Fields(rest)
		if len(keys) == 1 && keys[0] == "accepted" {
			keys = nil
		}
		out[name] = keys
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// corpusComments returns each file's trailing comment in the expectations.
func corpusComments() map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(corpusExpect)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if rest, comment, ok := strings.Cut(line, " #"); ok {
			name, _, _ := strings.Cut(rest, ":")
			out[name] = comment
		}
	}
	return out
}

func writeCorpusExpect(t *testing.T, results map[string]corpusResult) {
	comments := corpusComments()
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# What each bootstrap of the Envoy config corpus (../shared/envoy-configs) is refused\n")
	b.WriteString("# for: the features Portico lacks, by field path without indexes (=VALUE when only\n")
	b.WriteString("# some values are refused). Checked by TestCorpus; rewrite with\n")
	b.WriteString("# PORTICO_CORPUS_UPDATE=1 go test ./config -run Corpus\n")
	for _, n := range names {
		keys := results[n].features
		for _, e := range results[n].misreads {
			// Written so that the file shows them; a misread stays a failure unless
			// someone checked it is Envoy-invalid input and said so in a comment.
			if k := invalidKey(e); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		line := n + ": accepted"
		if len(keys) > 0 {
			line = n + ": " + strings.Join(keys, " ")
		}
		if c, ok := comments[n]; ok {
			line += " #" + c
		}
		b.WriteString(line + "\n")
	}
	if err := os.WriteFile(corpusExpect, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCorpus(t *testing.T) {
	dir, files := corpusFiles(t)
	expect := readCorpusExpect(t)
	// The bootstraps name certificate files their projects keep beside them: load them in
	// a directory where those (relative) paths hold throwaway ones.
	// Each in its own directory: the files one bootstrap names must come from one CA (an
	// OCSP response names its certificate's serial).
	files = absPaths(t, files)
	load := func(path string) (corpusResult, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return corpusResult{}, err
		}
		work := t.TempDir()
		if _, err := testpki.WriteConfigFiles(work, data); err != nil {
			return corpusResult{}, err
		}
		prev, err := os.Getwd()
		if err != nil {
			return corpusResult{}, err
		}
		if err := os.Chdir(work); err != nil {
			return corpusResult{}, err
		}
		defer os.Chdir(prev)
		return loadCorpusFile(path)
	}
	results := map[string]corpusResult{}
	accepted := 0
	byFeature := map[string]int{} // files refused for it
	for _, path := range files {
		name := filepath.Base(path)
		r, err := load(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		results[name] = r
		if len(r.features) == 0 && len(r.misreads) == 0 {
			accepted++
		}
		for _, f := range r.features {
			byFeature[f]++
		}
		want, known := expect[name]
		for _, e := range r.misreads {
			if !slices.Contains(want, invalidKey(e)) {
				t.Errorf("%s: misread (an error that is not a missing feature): %s", name, e)
			}
		}
		switch {
		case !known:
			t.Errorf("%s: not in %s (run with %s=1 to add it)", name, corpusExpect, corpusUpdate)
		case len(want) == 0 && len(r.features) > 0:
			t.Errorf("%s: was accepted, now refused for %s", name, strings.Join(r.features, " "))
		default:
			var added, gone []string
			for _, f := range r.features {
				if !slices.Contains(want, f) {
					added = append(added, f)
				}
			}
			for _, f := range want {
				if !slices.Contains(r.features, f) && !strings.HasPrefix(f, "invalid:") {
					gone = append(gone, f)
				}
			}
			if len(added) > 0 {
				t.Errorf("%s: refused for new reasons: %s", name, strings.Join(added, " "))
			}
			if len(gone) > 0 {
				if len(r.features) == 0 {
					t.Logf("%s: newly accepted (update %s)", name, corpusExpect)
				} else {
					t.Logf("%s: no longer refused for %s (update %s)", name, strings.Join(gone, " "), corpusExpect)
				}
			}
		}
	}
	for name := range expect {
		if _, ok := results[name]; !ok {
			t.Logf("%s: in %s but not in %s", name, corpusExpect, dir)
		}
	}

	t.Logf("accepted %d/%d", accepted, len(files))
	type count struct {
		feature string
		files   int
	}
	var top []count
	for f, n := range byFeature {
		top = append(top, count{f, n})
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].files != top[j].files {
			return top[i].files > top[j].files
		}
		return top[i].feature < top[j].feature
	})
	var b strings.Builder
	for i, c := range top {
		if i == 40 {
			break
		}
		fmt.Fprintf(&b, "\n%4d  %s", c.files, c.feature)
	}
	t.Logf("top refusal reasons (files refused for each):%s", b.String())

	if os.Getenv(corpusUpdate) != "" {
		writeCorpusExpect(t, results)
		t.Logf("wrote %s", corpusExpect)
	}
}
