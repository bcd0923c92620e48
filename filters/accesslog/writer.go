package accesslog

import (
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
)

// maxPending caps the bytes waiting for the flusher in all the worker buffers of a Writer
// together: each of n buffers holds up to maxPending/n, but at least minShardPending. Past
// it lines are dropped (and counted) rather than blocking a worker on a slow disk.
const (
	maxPending      = 4 << 20
	minShardPending = 256 << 10
	// maxShards bounds the buffers of one Writer; larger worker ids share them.
	maxShards = 1024
)

// Writer is a Logger that formats on the worker and writes from its own goroutine. Each
// worker formats into a buffer of its own (Entry.Worker picks it), under a lock that only
// the flusher contends, so workers never wait for one another. The flusher takes each
// buffer in turn and writes it with one Write: a line is never split between writes, and
// lines of one worker keep their order.
type Writer struct {
	format *Format
	out    io.Writer
	set    atomic.Pointer[shardSet]
	growMu sync.Mutex
	kick   chan struct{} // wakes the flusher before its tick when a buffer is half full
	stop   chan struct{}
	done   chan struct{}
	// maxPending and minShardPending are the constants, as fields for tests.
	maxPending, minShardPending int
}

// shard is one worker's pending lines.
type shard struct {
	mu      sync.Mutex
	pending []byte
	kicked  bool // the flusher was woken for this buffer and has not taken it yet
	dropped atomic.Uint64
	_       [64]byte // keeps two workers' shards off one cache line
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
	return newWriter(f, format)
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
func NewStdout(format string) (*Writer, error) { return newWriter(os.Stdout, format) }

// NewWriter logs to any writer; for tests.
func NewWriter(out io.Writer, format string) (*Writer, error) { return newWriter(out, format) }

func newWriter(out io.Writer, format string) (*Writer, error) {
	f, err := Compile(format)
	if err != nil {
		return nil, err
	}
	w := &Writer{format: f, out: out, kick: make(chan struct{}, 1), stop: make(chan struct{}),
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
		s.dropped.Add(1)
		return
	}
	s.pending = w.format.Append(s.pending, e)
	kick := !s.kicked && len(s.pending) > limit/2
	if kick {
		s.kicked = true
	}
	s.mu.Unlock()
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

// Dropped counts lines lost because the writer fell behind.
func (w *Writer) Dropped() uint64 {
	var n uint64
	for _, s := range w.set.Load().shards {
		n += s.dropped.Load()
	}
	return n
}

func (w *Writer) run() {
	defer close(w.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var spare []byte
	for {
		select {
		case <-t.C:
		case <-w.kick:
		case <-w.stop:
			w.flush(&spare)
			return
		}
		w.flush(&spare)
	}
}

// flush writes each worker's pending lines, one Write per worker buffer. The buffer taken
// is replaced by *spare, and becomes the spare once written.
func (w *Writer) flush(spare *[]byte) {
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
		w.out.Write(buf)
		*spare = buf[:0]
	}
}

// Close flushes what is pending and stops the writer.
func (w *Writer) Close() error {
	close(w.stop)
	<-w.done
	if c, ok := w.out.(io.Closer); ok && w.out != os.Stdout {
		return c.Close()
	}
	return nil
}
