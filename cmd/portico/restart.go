package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// restartKillGrace is how long children may take to exit after SIGKILL before the wrapper
// stops waiting for them.
const restartKillGrace = 5 * time.Second

// restarter is `portico restart`, Portico's take on Envoy's hot-restarter.py: it runs
// `portico FLAGS --restart-epoch 0`, and on each SIGHUP starts the next epoch with the
// same flags (the new process takes the sockets over and tells the old one to drain).
// SIGTERM and SIGINT are forwarded to every child. It exits when the last child has
// exited: 0 if they all exited 0.
//
// A child that exits non-zero ends everything, as in hot-restarter.py (the other children
// are killed and the wrapper exits 1), with one exception: the newest child failing while
// an older one still runs is a failed restart (a bad configuration, a crash before it
// served), and the older one keeps serving; the next SIGHUP tries the same epoch again.
// hot-restarter.py would kill the working process too, which is the outage hot restart is
// meant to avoid.
type restarter struct {
	bin    string
	args   []string
	stderr io.Writer
	// children by pid, and their epochs; newest is the pid started last.
	children  map[int]*exec.Cmd
	epochs    map[int]int
	newest    int
	nextEpoch int
	exited    chan childExit
}

type childExit struct {
	pid  int
	code int // -1: killed by a signal
}

func restart(args []string, stderr io.Writer) int {
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "restart:", err)
		return 1
	}
	r := &restarter{bin: bin, args: stripEpoch(args), stderr: stderr, children: map[int]*exec.Cmd{},
		epochs: map[int]int{}, exited: make(chan childExit, 16)}
	if !hasConfig(r.args) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGPIPE)
	if err := r.start(); err != nil {
		fmt.Fprintln(stderr, "restart:", err)
		return 1
	}
	failed := false
	for len(r.children) > 0 {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				r.logf("SIGHUP: starting epoch %d", r.nextEpoch)
				if err := r.start(); err != nil {
					r.logf("starting epoch %d: %v", r.nextEpoch, err)
				}
			default:
				r.logf("%s: forwarding to %d children", sig, len(r.children))
				for _, c := range r.children {
					c.Process.Signal(sig)
				}
			}
		case e := <-r.exited:
			epoch := r.epochs[e.pid]
			delete(r.children, e.pid)
			delete(r.epochs, e.pid)
			switch {
			case e.code == 0:
				r.logf("epoch %d (pid %d) exited 0", epoch, e.pid)
			case e.pid == r.newest && len(r.children) > 0:
				r.logf("epoch %d (pid %d) exited with %d before taking over; the older process keeps serving", epoch, e.pid, e.code)
				r.nextEpoch = epoch
			default:
				r.logf("epoch %d (pid %d) exited with %d; killing every child and exiting", epoch, e.pid, e.code)
				failed = true
				r.killAll()
			}
		}
	}
	r.logf("no children left; exiting")
	if failed {
		return 1
	}
	return 0
}

// start runs the next epoch.
func (r *restarter) start() error {
	epoch := r.nextEpoch
	cmd := exec.Command(r.bin, append(append([]string{}, r.args...), "--restart-epoch", strconv.Itoa(epoch))...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// A process group of its own: a Ctrl-C at the terminal reaches the wrapper only, which
	// forwards it once. Delivered twice (the terminal's and the forward), the second would
	// cut the child's drain short.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	r.children[pid], r.epochs[pid], r.newest = cmd, epoch, pid
	r.nextEpoch = epoch + 1
	r.logf("started epoch %d (pid %d)", epoch, pid)
	go func() {
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		r.exited <- childExit{pid: pid, code: code}
	}()
	return nil
}

// killAll kills every child still running and waits for them (bounded).
func (r *restarter) killAll() {
	for _, c := range r.children {
		c.Process.Signal(syscall.SIGKILL)
	}
	deadline := time.After(restartKillGrace)
	for len(r.children) > 0 {
		select {
		case e := <-r.exited:
			delete(r.children, e.pid)
		case <-deadline:
			r.logf("%d children did not exit after SIGKILL", len(r.children))
			clear(r.children)
			return
		}
	}
}

func (r *restarter) logf(format string, args ...any) {
	fmt.Fprintf(r.stderr, "portico restart: "+format+"\n", args...)
}

// stripEpoch drops a --restart-epoch the caller gave: the wrapper sets it.
func stripEpoch(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if a == "restart-epoch" && strings.HasPrefix(args[i], "-") {
			i++ // its value
			continue
		}
		if strings.HasPrefix(a, "restart-epoch=") && strings.HasPrefix(args[i], "-") {
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func hasConfig(args []string) bool {
	for _, a := range args {
		switch strings.TrimLeft(a, "-") {
		case "c", "config-path":
			return true
		}
		if t := strings.TrimLeft(a, "-"); strings.HasPrefix(t, "c=") || strings.HasPrefix(t, "config-path=") {
			return true
		}
	}
	return false
}
