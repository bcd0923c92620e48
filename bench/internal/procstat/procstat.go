// Package procstat samples another process's CPU time and memory from /proc.
// The harness measures the system under test from outside, so it works the
// same for Portico and for every peer without instrumenting any of them.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPU is utime+stime of a whole process (all threads) in clock ticks.
type CPU struct {
	UserTicks, SysTicks uint64
	Threads             int
	State               byte // R, S, D, Z (zombie: exited, not yet reaped), ...
}

// ReadCPU parses /proc/PID/stat. Fields are counted after the ")" closing
// comm, because comm may itself contain spaces or parentheses.
func ReadCPU(pid int) (CPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return CPU{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (CPU, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return CPU{}, fmt.Errorf("procstat: malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime=14, stime=15, num_threads=20.
	if len(f) < 18 {
		return CPU{}, fmt.Errorf("procstat: short stat (%d fields)", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	th, err3 := strconv.Atoi(f[17])
	if err1 != nil || err2 != nil || err3 != nil {
		return CPU{}, fmt.Errorf("procstat: bad stat numbers")
	}
	return CPU{UserTicks: u, SysTicks: s, Threads: th, State: f[0][0]}, nil
}

// Mem holds the resident set from /proc/PID/status, in bytes.
type Mem struct {
	RSS, HWM int64
}

// ReadMem parses VmRSS and VmHWM from /proc/PID/status.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (Mem, error) {
	var m Mem
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &m.RSS
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &m.HWM
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return m, fmt.Errorf("procstat: bad line %q", line)
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return m, err
		}
		*dst = kb * 1024
		found++
	}
	if found < 2 {
		return m, fmt.Errorf("procstat: VmRSS/VmHWM missing")
	}
	return m, nil
}

// Alive reports whether pid still runs. A zombie counts as gone: the harness
// is its parent and may not have reaped it yet.
func Alive(pid int) bool {
	c, err := ReadCPU(pid)
	return err == nil && c.State != 'Z' && c.State != 'X'
}

// MachineBusyTicks sums the non-idle time of all CPUs from /proc/stat (user,
// nice, system, irq, softirq, steal). Comparing it with the server's and the
// load generator's own CPU time shows how much other work (a compiler, a test
// run) shared the machine during a measurement.
func MachineBusyTicks() (busy, steal uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("procstat: unexpected /proc/stat")
	}
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	// user nice system idle iowait irq softirq steal
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return busy, v[7], nil
}

// CtxSwitches sums voluntary and involuntary context switches over all
// threads of pid. Per message, it exposes scheduler churn (a runtime thread
// waking on the server's pinned CPU, a P handed off during a syscall) that
// CPU time alone only shows as "more sys time".
func CtxSwitches(pid int) (vol, invol uint64, err error) {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, d.Name()))
		if err != nil {
			continue // thread exited between ReadDir and ReadFile
		}
		for _, line := range strings.Split(string(b), "\n") {
			var dst *uint64
			switch {
			case strings.HasPrefix(line, "voluntary_ctxt_switches:"):
				dst = &vol
			case strings.HasPrefix(line, "nonvoluntary_ctxt_switches:"):
				dst = &invol
			default:
				continue
			}
			f := strings.Fields(line)
			if len(f) == 2 {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				*dst += n
			}
		}
	}
	return vol, invol, nil
}

// RunTime sums the time every thread of pid has spent on a CPU, in nanoseconds, from
// /proc/PID/task/*/schedstat (the scheduler's sum_exec_runtime). Unlike utime+stime
// (whole clock ticks, 10 ms each at USER_HZ 100) it resolves the few milliseconds an
// almost idle server spends; a thread that exits takes its share with it.
func RunTime(pid int) (ns uint64, err error) {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, d.Name()))
		if err != nil {
			continue // thread exited between ReadDir and ReadFile
		}
		v, err := parseSchedstat(b)
		if err != nil {
			return 0, err
		}
		ns += v
	}
	return ns, nil
}

func parseSchedstat(b []byte) (uint64, error) {
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, fmt.Errorf("procstat: empty schedstat")
	}
	return strconv.ParseUint(f[0], 10, 64)
}
