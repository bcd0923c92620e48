//go:build linux

package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watching a resource file as Envoy does (its filesystem subscription): a new version is
// announced by a rename into place (`mv lds.yaml.tmp lds.yaml`, an inotify IN_MOVED_TO of
// the file's name in its directory), never by writes to the file, which a reader could
// see half done. With watched_directory, any move into that directory announces it
// (Kubernetes swaps a ConfigMap's `..data` symlink there, and the file is a symlink
// through it), and the file is then read again at its path.
//
// This talks to inotify itself rather than through fsnotify: fsnotify reports a rename
// into place and the creation of a new file under the name alike (Create), and a file
// created in place is exactly the half-written one Envoy's rule keeps out.

// Watcher watches one FileSource; make it with NewWatcher and run it with Run.
type Watcher struct {
	f    *os.File // the inotify descriptor, in Go's poller
	name string   // the file's name in the watched directory; "" for any move
	dir  string
	// trace, when set (tests), is told of every event read and whether it fired.
	trace func(name string, mask uint32, fired bool)
}

// NewWatcher starts watching src: moves into place after it returns are seen by Run.
func NewWatcher(src *FileSource) (*Watcher, error) {
	w := &Watcher{}
	if src.WatchedDirectory != "" {
		w.dir = src.WatchedDirectory
	} else {
		abs, err := filepath.Abs(src.Path)
		if err != nil {
			return nil, fmt.Errorf("watch %s (%s): %w", src.Path, src.Field, err)
		}
		w.dir, w.name = filepath.Split(abs)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch %s (%s): inotify_init1: %w", src.Path, src.Field, err)
	}
	// IN_MOVED_TO only, as Envoy; the directory itself going away ends the watch
	// (IN_DELETE_SELF, IN_MOVE_SELF, then IN_IGNORED).
	if _, err := unix.InotifyAddWatch(fd, w.dir, unix.IN_MOVED_TO|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_ONLYDIR); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s (%s): directory %s: %w", src.Path, src.Field, w.dir, err)
	}
	// A non-blocking descriptor goes into Go's poller: Read parks the goroutine, and
	// Close wakes it.
	w.f = os.NewFile(uintptr(fd), "inotify:"+w.dir)
	return w, nil
}

// Run calls changed (on Run's goroutine, one call at a time) for each batch of events
// announcing a new version, until ctx is done (it returns nil then) or the watch fails.
// It closes the watch when it returns.
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		w.f.Close()
	}()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch %s: %w", w.dir, err)
		}
		fire, gone := w.events(buf[:n])
		if fire {
			changed()
		}
		if gone {
			return fmt.Errorf("watch %s: the directory was removed or moved", w.dir)
		}
	}
}

// events reads a batch of inotify events: fire when one announces a new version (or
// some were lost: the queue overflowed), gone when the directory went away.
func (w *Watcher) events(b []byte) (fire, gone bool) {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		hit := false
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			hit = true // a move may be among the lost events: read again
		case ev.Mask&unix.IN_MOVED_TO != 0:
			hit = w.name == "" || name == w.name
		case ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0:
			gone = true
		}
		if w.trace != nil {
			w.trace(name, ev.Mask, hit)
		}
		fire = fire || hit
	}
	return fire, gone
}

// Close stops a watch that was never run.
func (w *Watcher) Close() error { return w.f.Close() }

// Watch watches src until ctx is done, calling changed for each new version (see Watcher);
// run it on a goroutine of its own. It returns nil when ctx is done, or the error that
// stopped it.
func Watch(ctx context.Context, src *FileSource, changed func()) error {
	if src == nil {
		return errors.New("watch: no file source")
	}
	w, err := NewWatcher(src)
	if err != nil {
		return err
	}
	return w.Run(ctx, changed)
}
