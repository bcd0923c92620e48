package accesslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-proxy/portico/engine"
)

// maxPending caps the bytes waiting for the flusher in all the worker buffers of a Writer
// together: each of n buffers holds up to maxPending/n, but at least minShardPending (so
// past 16 workers the total is n × 256 KiB). Past it lines are dropped (and counted) rather
// than blocking a worker on a slow disk.
const (
	maxPending      = 4 << 20
	minShardPending = 256 << 10
	// maxShards bounds the buffers of one Writer; larger worker ids share them.
	maxShards = 1024
)

// DefaultCloseTimeout bounds Close: how long it waits for the last lines to be written.
const DefaultCloseTimeout = 2 * time.Second

// StdoutPath names standard output in stats, as Envoy's stdout logger does.
const StdoutPath = "/dev/stdout"

// Writer is a Logger that formats on the worker and writes from its own goroutine. Each
// worker formats into a buffer of its own (Entry.Worker picks it), under a lock that only
// the flusher contends, so workers never wait for one another. The flusher takes each
// buffer in turn and writes it with one Write: a line is never split between writes, and
// lines of one worker keep their order.
//
// A Writer is an engine.StatsSource: Envoy's file access-log stats (filesystem.*) for its
// path, per worker buffer, and dropped_lines for what the bound refused.
type Writer struct {
	path   string // for stats and errors
	format *Format
	out    io.Writer
	set    atomic.Pointer[shardSet]
	growMu sync.Mutex
	kick   chan struct{} // wakes the flusher before its tick when a buffer is half full
	stop   chan struct{}
	done   chan struct{}
	// stopOnce and outOnce make Close idempotent; outErr is what closing out returned.
	stopOnce, outOnce sync.Once
	outErr            error
	// maxPending and minShardPending are the constants, as fields for tests.
	maxPending, minShardPending int
}

// shard is one worker's pending lines, and their stats (Envoy's names).
type shard struct {
	mu      sync.Mutex
	pending []byte
	kicked  bool // the flusher was woken for this buffer and has not taken it yet

	writeBuffered  engine.Counter // lines taken into the buffer
	droppedLines   engine.Counter // lines refused because the buffer was full
	writeCompleted engine.Counter // Writes of this buffer that succeeded
	writeFailed    engine.Counter // Writes that returned an error (their lines are lost)
	flushedByTimer engine.Counter // Writes done on the flush tick (the others: half full, Close)
	totalBuffered  engine.Gauge   // bytes logged and not yet written, with those being written
	_              [64]byte       // keeps two workers' shards off one cache line
}

// shardSet is replaced, never changed, when a new worker id shows up.
type shardSet struct {
	shards []*shard
	limit  int // bytes one shard may hold
}

// NewFile opens (appends to) path, as envoy.access_loggers.file does.
func NewFile(path, format string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("access log %s: %w", path, err)
	}
	return newWriter(path, f, format)
}

// CheckFile reports whether NewFile could open path, without creating it: an existing
// file must be writable, otherwise its directory must exist and be writable. For
// validating a configuration with no side effects.
func CheckFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("access log %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("access log %s: directory: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("access log %s: %s is not a directory", path, dir)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("access log %s: directory %s: %w", path, dir, err)
	}
	return nil
}

// Discard is a Logger that drops every entry (what a configuration loaded only to be
// checked gets instead of real writers).
type Discard struct{}

// Log implements Logger.
func (Discard) Log(*Entry) {}

// NewStdout logs to standard output (envoy.access_loggers.stdout).
func NewStdout(format string) (*Writer, error) { return newWriter(StdoutPath, os.Stdout, format) }

// NewWriter logs to any writer; path names it in stats and errors. Close closes out if it
// is an io.Closer (and not os.Stdout).
func NewWriter(path string, out io.Writer, format string) (*Writer, error) {
	return newWriter(path, out, format)
}

func newWriter(path string, out io.Writer, format string) (*Writer, error) {
	f, err := Compile(format)
	if err != nil {
		return nil, err
	}
	w := &Writer{path: path, format: f, out: out, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{}), maxPending: maxPending, minShardPending: minShardPending}
	w.set.Store(&shardSet{})
	go w.run()
	return w, nil
}

// Log implements Logger.
func (w *Writer) Log(e *Entry) {
	s, limit := w.shard(e.Worker)
	s.mu.Lock()
	if len(s.pending) > limit {
		s.mu.Unlock()
		s.droppedLines.Inc()
		return
	}
	n := len(s.pending)
	s.pending = w.format.Append(s.pending, e)
	grown := len(s.pending) - n
	kick := !s.kicked && len(s.pending) > limit/2
	if kick {
		s.kicked = true
	}
	s.mu.Unlock()
	s.writeBuffered.Inc()
	s.totalBuffered.Add(int64(grown))
	if kick {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// shard finds worker id's buffer, and how much it may hold.
func (w *Writer) shard(id int) (*shard, int) {
	set := w.set.Load()
	if uint(id) < uint(len(set.shards)) {
		return set.shards[id], set.limit
	}
	return w.grow(id)
}

// grow adds buffers up to worker id's, the first time that worker logs.
func (w *Writer) grow(id int) (*shard, int) {
	if id < 0 {
		id = 0
	}
	id %= maxShards
	w.growMu.Lock()
	defer w.growMu.Unlock()
	set := w.set.Load()
	if id < len(set.shards) {
		return set.shards[id], set.limit
	}
	shards := make([]*shard, id+1)
	copy(shards, set.shards)
	for i := len(set.shards); i < len(shards); i++ {
		shards[i] = new(shard)
	}
	set = &shardSet{shards: shards, limit: max(w.maxPending/len(shards), w.minShardPending)}
	w.set.Store(set)
	return shards[id], set.limit
}

// Dropped counts lines refused because the writer fell behind.
func (w *Writer) Dropped() uint64 {
	var n uint64
	for _, s := range w.set.Load().shards {
		n += s.droppedLines.Value()
	}
	return n
}

// Unwritten is how many bytes were logged and are not written yet.
func (w *Writer) Unwritten() int64 {
	var n int64
	for _, s := range w.set.Load().shards {
		n += s.totalBuffered.Value()
	}
	return n
}

// StatsFamily implements engine.StatsSource: Envoy roots the file access-log stats at
// filesystem.
func (*Writer) StatsFamily() string { return "filesystem" }

// StatsLabels implements engine.StatsSource.
func (w *Writer) StatsLabels() [][2]string { return [][2]string{{"path", w.path}} }

// VisitStats implements engine.StatsSource: worker's buffer (zeros until it logs).
func (w *Writer) VisitStats(worker int, v engine.StatVisitor) {
	s := &shard{}
	if set := w.set.Load(); uint(worker) < uint(len(set.shards)) {
		s = set.shards[worker]
	}
	c := func(name string, x *engine.Counter) { v(name, engine.KindCounter, float64(x.Value())) }
	c("write_buffered", &s.writeBuffered)
	c("write_completed", &s.writeCompleted)
	c("write_failed", &s.writeFailed)
	c("flushed_by_timer", &s.flushedByTimer)
	c("dropped_lines", &s.droppedLines)
	v("write_total_buffered", engine.KindGauge, float64(s.totalBuffered.Value()))
}

func (w *Writer) run() {
	defer close(w.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var spare []byte
	for {
		byTimer := false
		select {
		case <-t.C:
			byTimer = true
		case <-w.kick:
		case <-w.stop:
			w.flushAll(&spare, false)
			return
		}
		w.flushAll(&spare, byTimer)
	}
}

// flush writes what is pending; for the benchmark, which stands in for the flusher.
func (w *Writer) flush(spare *[]byte) { w.flushAll(spare, false) }

// flushAll writes each worker's pending lines, one Write per worker buffer. The buffer
// taken is replaced by *spare, and becomes the spare once written. A failed Write (EPIPE,
// EBADF, ENOSPC ...) is counted and its lines are lost; the next flush tries again.
func (w *Writer) flushAll(spare *[]byte, byTimer bool) {
	for _, s := range w.set.Load().shards {
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			continue
		}
		buf := s.pending
		s.pending = (*spare)[:0]
		s.kicked = false
		s.mu.Unlock()
		if _, err := w.out.Write(buf); err != nil {
			s.writeFailed.Inc()
		} else {
			s.writeCompleted.Inc()
		}
		if byTimer {
			s.flushedByTimer.Inc()
		}
		s.totalBuffered.Add(-int64(len(buf)))
		*spare = buf[:0]
	}
}

// Close flushes what is pending and stops the writer, waiting at most
// DefaultCloseTimeout (see CloseContext).
func (w *Writer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCloseTimeout)
	defer cancel()
	return w.CloseContext(ctx)
}

// CloseContext flushes what is pending, stops the writer and closes its file. If ctx ends
// first, because a Write blocks (standard output is a pipe nobody reads, a disk hangs), it
// returns an error saying how much is unwritten and leaves the flusher in its Write, with
// the file open: meant for a process about to exit. Lines logged after Close are not
// written.
func (w *Writer) CloseContext(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
	case <-ctx.Done():
		return fmt.Errorf("access log %s: %d bytes not written when closing: %w", w.path, w.Unwritten(), context.Cause(ctx))
	}
	w.outOnce.Do(func() {
		if c, ok := w.out.(io.Closer); ok && w.out != os.Stdout {
			w.outErr = c.Close()
		}
	})
	return w.outErr
}
