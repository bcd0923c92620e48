package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
)

// TestNextSignalWorkerFailure: a failed worker ends the wait like a signal does, with its
// error, so serve drains and exits 1 (defect 14); SIGHUP does not end it.
func TestNextSignalWorkerFailure(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sigs := make(chan os.Signal, 2)
	fatal := make(chan error, 1)
	sigs <- syscall.SIGHUP
	fatal <- errors.New("worker 1: epoll_wait: invalid argument")
	if sig, err := nextSignal(sigs, fatal, log); sig != nil || err == nil {
		t.Fatalf("got %v, %v; want the worker's error", sig, err)
	}
	sigs <- syscall.SIGTERM
	if sig, err := nextSignal(sigs, fatal, log); sig != syscall.SIGTERM || err != nil {
		t.Fatalf("got %v, %v; want SIGTERM", sig, err)
	}
}
