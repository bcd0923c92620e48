package accesslog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxPending caps the bytes waiting for the flusher; past it lines are dropped (and
// counted) rather than blocking a worker on a slow disk.
const maxPending = 4 << 20

// Writer is a Logger that formats on the worker and writes from its own goroutine.
type Writer struct {
	format  *Format
	out     io.Writer
	mu      sync.Mutex
	pending []byte
	dropped uint64
	stop    chan struct{}
	done    chan struct{}
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
	w := &Writer{format: f, out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// Log implements Logger.
func (w *Writer) Log(e *Entry) {
	w.mu.Lock()
	if len(w.pending) > maxPending {
		w.dropped++
	} else {
		w.pending = w.format.Append(w.pending, e)
	}
	w.mu.Unlock()
}

// Dropped counts lines lost because the writer fell behind.
func (w *Writer) Dropped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

func (w *Writer) run() {
	defer close(w.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	var buf []byte
	for {
		select {
		case <-t.C:
		case <-w.stop:
			w.flush(&buf)
			return
		}
		w.flush(&buf)
	}
}

func (w *Writer) flush(buf *[]byte) {
	w.mu.Lock()
	*buf, w.pending = w.pending, (*buf)[:0]
	w.mu.Unlock()
	if len(*buf) > 0 {
		w.out.Write(*buf)
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
