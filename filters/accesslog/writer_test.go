package accesslog

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lineSink collects what a Writer writes and checks that every Write holds whole lines.
type lineSink struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
	split  int // writes that did not end with a newline
	gate   chan struct{}
}

func (s *lineSink) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if len(p) > 0 && p[len(p)-1] != '\n' {
		s.split++
	}
	return s.b.Write(p)
}

// testFormat makes every line say who logged it and its sequence number, with padding so
// that buffers fill quickly.
const testFormat = "%UPSTREAM_CLUSTER% %BYTES_SENT% " + "padding-padding-padding-padding-padding" + "\n"

// logFromWorkers has n goroutines, as workers 0..n-1, log m entries each.
func logFromWorkers(w *Writer, n, m int) {
	var wg sync.WaitGroup
	for wi := 0; wi < n; wi++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := Entry{Worker: wi, UpstreamCluster: "w" + strconv.Itoa(wi)}
			for i := 0; i < m; i++ {
				e.BytesSent = uint64(i)
				w.Log(&e)
			}
		}()
	}
	wg.Wait()
}

// checkLines parses the sink's lines: each must be intact, logged once, and in its
// worker's order. It returns how many there are.
func checkLines(t *testing.T, out string, n, m int) int {
	t.Helper()
	last := make([]int, n)
	for i := range last {
		last[i] = -1
	}
	lines := strings.Split(out, "\n")
	if lines[len(lines)-1] != "" {
		t.Fatalf("output does not end with a newline: %q", lines[len(lines)-1])
	}
	lines = lines[:len(lines)-1]
	for _, l := range lines {
		var wi, seq int
		var pad string
		if k, err := fmt.Sscanf(l, "w%d %d %s", &wi, &seq, &pad); err != nil || k != 3 ||
			pad != "padding-padding-padding-padding-padding" || wi < 0 || wi >= n || seq >= m {
			t.Fatalf("broken line %q (%v)", l, err)
		}
		if seq <= last[wi] {
			t.Fatalf("worker %d: line %d after line %d (repeated or out of order)", wi, seq, last[wi])
		}
		last[wi] = seq
	}
	return len(lines)
}

// TestLogWorkersConcurrently: workers log at once while the flusher writes; every line
// arrives whole, once, in its worker's order, and none is dropped with a sink that keeps
// up. Run it with -race.
func TestLogWorkersConcurrently(t *testing.T) {
	const n, m = 8, 20000
	sink := &lineSink{}
	w, err := NewWriter(sink, testFormat)
	if err != nil {
		t.Fatal(err)
	}
	logFromWorkers(w, n, m)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := checkLines(t, sink.b.String(), n, m)
	if d := w.Dropped(); got+int(d) != n*m || sink.split > 0 {
		t.Fatalf("%d lines written + %d dropped, want %d; %d of %d writes split a line", got, d, n*m, sink.split, sink.writes)
	}
}

// TestLogDropsPastTheBound: while the sink blocks, each worker's buffer fills to its share
// of the bound and further lines are dropped and counted; once the sink moves again what
// was kept is written, whole and once: written + dropped = logged.
func TestLogDropsPastTheBound(t *testing.T) {
	const n, m = 4, 5000
	sink := &lineSink{gate: make(chan struct{})}
	w, err := NewWriter(sink, testFormat)
	if err != nil {
		t.Fatal(err)
	}
	w.maxPending, w.minShardPending = 64<<10, 4<<10 // 16 KiB per worker: ~300 lines of m
	logFromWorkers(w, n, m)
	close(sink.gate)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := checkLines(t, sink.b.String(), n, m)
	d := w.Dropped()
	if got+int(d) != n*m || d == 0 || sink.split > 0 {
		t.Fatalf("%d lines written + %d dropped, want %d with some dropped; %d of %d writes split a line", got, d, n*m, sink.split, sink.writes)
	}
	// What a worker may hold is bounded: its buffer, plus the one the flusher was writing.
	line := len("w0 4999 padding-padding-padding-padding-padding\n")
	if max := n * 2 * (16<<10 + line); got*line > max {
		t.Errorf("%d lines (%d bytes) kept, more than the bound allows (%d)", got, got*line, max)
	}
}

// TestLogWorkerIDs: ids out of range (negative, huge) still log, into shared buffers.
func TestLogWorkerIDs(t *testing.T) {
	sink := &lineSink{}
	w, err := NewWriter(sink, "%UPSTREAM_CLUSTER%\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{-1, 0, 3, maxShards + 3, 1 << 30} {
		w.Log(&Entry{Worker: id, UpstreamCluster: strconv.Itoa(id)})
	}
	w.Close()
	if got := sink.b.String(); strings.Count(got, "\n") != 5 {
		t.Fatalf("got %q", got)
	}
	if n := len(w.set.Load().shards); n > maxShards {
		t.Fatalf("%d buffers", n)
	}
}
