package accesslog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portico-proxy/portico/engine"
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
	w, err := NewWriter("test", sink, testFormat)
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
	w, err := NewWriter("test", sink, testFormat)
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
	w, err := NewWriter("test", sink, "%UPSTREAM_CLUSTER%\n")
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

// stats reads a Writer's stats for worker, by name.
func stats(w *Writer, worker int) map[string]float64 {
	m := map[string]float64{}
	w.VisitStats(worker, func(name string, _ engine.StatKind, v float64) { m[name] = v })
	return m
}

// waitFor polls cond for up to 20 s (a bound, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blockingSink's Write never returns; entered is closed when the first one starts.
type blockingSink struct {
	once    sync.Once
	entered chan struct{}
}

func (b *blockingSink) Write(p []byte) (int, error) {
	b.once.Do(func() { close(b.entered) })
	select {} // a write(2) into a pipe nobody reads
}

// TestCloseDeadline: a Write that never returns does not hold Close past its deadline;
// Close says what was not written and leaves the flusher where it is.
func TestCloseDeadline(t *testing.T) {
	sink := &blockingSink{entered: make(chan struct{})}
	w, err := NewWriter("blocked", sink, "%UPSTREAM_CLUSTER%\n")
	if err != nil {
		t.Fatal(err)
	}
	w.Log(&Entry{UpstreamCluster: "first"})
	<-sink.entered // the flusher is stuck in its Write of "first\n"
	w.Log(&Entry{UpstreamCluster: "second"})
	for _, close := range []struct {
		name string
		f    func() error
	}{
		{"CloseContext", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			return w.CloseContext(ctx)
		}},
		{"Close", w.Close}, // DefaultCloseTimeout; a second Close must not panic either
	} {
		res := make(chan error, 1)
		go func() { res <- close.f() }()
		select {
		case err := <-res:
			if err == nil || !strings.Contains(err.Error(), "13 bytes not written") ||
				!errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: %v, want 13 bytes not written, deadline exceeded", close.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still blocked after 30 s: it waits on the stuck Write", close.name)
		}
	}
	if got := stats(w, 0)["write_total_buffered"]; got != 13 {
		t.Errorf("write_total_buffered %v, want 13", got)
	}
}

// erroringSink fails its first writes with the given errors, then succeeds.
type erroringSink struct {
	mu   sync.Mutex
	errs []error
	b    bytes.Buffer
}

func (e *erroringSink) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) > 0 {
		err := e.errs[0]
		e.errs = e.errs[1:]
		return 0, err
	}
	return e.b.Write(p)
}

// TestWriteErrorsCounted: failing writes of real files and pipes (ENOSPC, EPIPE, EBADF)
// are counted in write_failed; the flusher goes on, and writes again once it can.
func TestWriteErrorsCounted(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close() // nobody will ever read: EPIPE
	readOnly, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full:", err)
	}
	for _, tc := range []struct {
		name  string
		out   io.Writer
		errno syscall.Errno
	}{
		{"ENOSPC /dev/full", full, syscall.ENOSPC},
		{"EPIPE pipe without reader", pw, syscall.EPIPE},
		{"EBADF read-only file", readOnly, syscall.EBADF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.out.Write([]byte("x")); !errors.Is(err, tc.errno) {
				t.Fatalf("the sink fails with %v, want %v", err, tc.errno)
			}
			w, err := NewWriter(tc.name, tc.out, "%UPSTREAM_CLUSTER%\n")
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				w.Log(&Entry{UpstreamCluster: "line"})
				waitFor(t, fmt.Sprintf("write_failed = %d", i), func() bool { return stats(w, 0)["write_failed"] == float64(i) })
			}
			w.Close()
			st := stats(w, 0)
			if st["write_buffered"] != 3 || st["write_completed"] != 0 || st["write_total_buffered"] != 0 {
				t.Errorf("stats %v", st)
			}
		})
	}
	t.Run("recovers", func(t *testing.T) {
		sink := &erroringSink{errs: []error{syscall.EPIPE, syscall.EBADF, syscall.ENOSPC}}
		w, err := NewWriter("flaky", sink, "%UPSTREAM_CLUSTER%\n")
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 4; i++ {
			w.Log(&Entry{UpstreamCluster: strconv.Itoa(i)})
			waitFor(t, "the line to be written or fail", func() bool {
				st := stats(w, 0)
				return st["write_failed"]+st["write_completed"] == float64(i)
			})
		}
		w.Close()
		st := stats(w, 0)
		if sink.b.String() != "4\n" || st["write_failed"] != 3 || st["write_completed"] != 1 {
			t.Errorf("wrote %q, stats %v", sink.b.String(), st)
		}
	})
}

// TestStats: Envoy's filesystem.* names, per worker buffer.
func TestStats(t *testing.T) {
	sink := &lineSink{}
	w, err := NewWriter("/var/log/a.log", sink, "%UPSTREAM_CLUSTER%\n")
	if err != nil {
		t.Fatal(err)
	}
	if w.StatsFamily() != "filesystem" || fmt.Sprint(w.StatsLabels()) != "[[path /var/log/a.log]]" {
		t.Errorf("family %q, labels %v", w.StatsFamily(), w.StatsLabels())
	}
	w.Log(&Entry{Worker: 1, UpstreamCluster: "a"})
	w.Log(&Entry{Worker: 1, UpstreamCluster: "b"})
	if st := stats(w, 1); st["write_total_buffered"] != 4 && st["write_completed"] == 0 {
		t.Errorf("before the flush: %v", st)
	}
	w.Close()
	want := map[string]float64{"write_buffered": 2, "write_completed": 1, "write_failed": 0,
		"dropped_lines": 0, "write_total_buffered": 0}
	st := stats(w, 1)
	for k, v := range want {
		if st[k] != v {
			t.Errorf("worker 1: %s = %v, want %v (%v)", k, st[k], v, st)
		}
	}
	if _, ok := st["flushed_by_timer"]; !ok || len(st) != 6 {
		t.Errorf("names %v", st)
	}
	if st := stats(w, 0); st["write_buffered"] != 0 || len(st) != 6 {
		t.Errorf("worker 0 (never logged): %v", st)
	}
	if st := stats(w, 7); len(st) != 6 {
		t.Errorf("worker 7 (no buffer): %v", st)
	}
}
