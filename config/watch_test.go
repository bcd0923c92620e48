//go:build linux

package config

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// watchRecorder runs a Watcher and records what it saw.
type watchRecorder struct {
	mu     sync.Mutex
	events []watchEvent
	seen   chan string // each event's name, in order
	fired  chan struct{}
	done   chan error
}

type watchEvent struct {
	name  string
	fired bool
}

func startWatch(t *testing.T, src *FileSource) *watchRecorder {
	t.Helper()
	w, err := NewWatcher(src)
	if err != nil {
		t.Fatal(err)
	}
	r := &watchRecorder{seen: make(chan string, 100), fired: make(chan struct{}, 100), done: make(chan error, 1)}
	w.trace = func(name string, mask uint32, fired bool) {
		r.mu.Lock()
		r.events = append(r.events, watchEvent{name, fired})
		r.mu.Unlock()
		r.seen <- name
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- w.Run(ctx, func() { r.fired <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// await waits for the event of the given name (bounded: a watch that sees nothing fails
// the test rather than hanging it) and returns the events up to it.
func (r *watchRecorder) await(t *testing.T, name string) []watchEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case n := <-r.seen:
			if n == name {
				r.mu.Lock()
				defer r.mu.Unlock()
				return append([]watchEvent(nil), r.events...)
			}
		case <-deadline:
			t.Fatalf("no event for %q", name)
		}
	}
}

func renameInto(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func TestWatchRenameIntoPlace(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "lds.yaml", "v1")
	r := startWatch(t, &FileSource{Path: path, Field: "dynamic_resources.lds_config"})

	// Edits in place: ignored, as in Envoy (a reader could see them half done).
	if err := os.WriteFile(path, []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" more")
	f.Close()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	// Another file renamed into the directory: not ours.
	renameInto(t, dir, "cds.yaml", "x")
	// Then the file renamed into place: that fires.
	renameInto(t, dir, "lds.yaml", "v2")
	evs := r.await(t, "lds.yaml")
	for _, e := range evs[:len(evs)-1] {
		if e.fired {
			t.Errorf("event %q fired", e.name)
		}
	}
	if !evs[len(evs)-1].fired {
		t.Error("the rename into place did not fire")
	}
	<-r.fired
	// And again for the next version.
	renameInto(t, dir, "lds.yaml", "v3")
	if evs := r.await(t, "lds.yaml"); !evs[len(evs)-1].fired {
		t.Error("the second rename did not fire")
	}
	<-r.fired
}

// Kubernetes mounts a ConfigMap as symlinks through `..data`, itself a symlink that the
// kubelet replaces by renaming a new one over it: with watched_directory, that move fires.
func TestWatchWatchedDirectory(t *testing.T) {
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..v1")
	if err := os.Mkdir(v1, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, v1, "lds.yaml", "v1")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lds.yaml")
	if err := os.Symlink("..data/lds.yaml", path); err != nil {
		t.Fatal(err)
	}
	r := startWatch(t, &FileSource{Path: path, WatchedDirectory: dir})

	v2 := filepath.Join(dir, "..v2")
	if err := os.Mkdir(v2, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, v2, "lds.yaml", "v2")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if evs := r.await(t, "..data"); !evs[len(evs)-1].fired {
		t.Error("the ..data swap did not fire")
	}
	<-r.fired
	if b, err := os.ReadFile(path); err != nil || string(b) != "v2" {
		t.Errorf("read %q %v", b, err)
	}
}

func TestWatchErrors(t *testing.T) {
	if _, err := NewWatcher(&FileSource{Path: "/nonexistent-dir/lds.yaml", Field: "dynamic_resources.lds_config"}); err == nil {
		t.Error("watching a missing directory")
	}
	// The directory removed: Run ends with an error.
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(&FileSource{Path: filepath.Join(sub, "lds.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), func() {}) }()
	if err := os.Remove(sub); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run returned nil after the directory went away")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the directory went away")
	}
}
