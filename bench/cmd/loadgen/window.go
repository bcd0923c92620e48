package main

import (
	"syscall"
	"time"

	"github.com/portico-proxy/portico/bench/internal/procstat"
)

// window is a snapshot taken at one edge of the measured interval: wall
// clock, the server's CPU ticks (utime+stime from /proc/PID/stat) and the
// load generator's own CPU time, so a result shows which side was the
// bottleneck.
type window struct {
	at      time.Time
	srv     procstat.CPU
	srvOK   bool
	selfCPU time.Duration
	busy    uint64 // all CPUs, ticks
	steal   uint64
	ctxVol  uint64 // server, summed over threads
	ctxInv  uint64
}

func sampleWindow(pid int) window {
	w := window{at: time.Now()}
	if pid > 0 {
		if c, err := procstat.ReadCPU(pid); err == nil {
			w.srv, w.srvOK = c, true
		}
		w.ctxVol, w.ctxInv, _ = procstat.CtxSwitches(pid)
	}
	w.busy, w.steal, _ = procstat.MachineBusyTicks()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		w.selfCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return w
}

func (r *result) fillWindow(a, b window, clkTck int) {
	r.MeasuredSeconds = b.at.Sub(a.at).Seconds()
	if r.MeasuredSeconds <= 0 {
		return
	}
	lg := (b.selfCPU - a.selfCPU).Seconds()
	r.LoadgenCPUSeconds = lg
	r.LoadgenCPUUtil = lg / r.MeasuredSeconds
	machine := float64(b.busy-a.busy) / float64(clkTck)
	r.MachineUtil = machine / r.MeasuredSeconds
	r.StealUtil = float64(b.steal-a.steal) / float64(clkTck) / r.MeasuredSeconds
	if !a.srvOK || !b.srvOK {
		r.OtherUtil = (machine - lg) / r.MeasuredSeconds
		return
	}
	ticks := func(c procstat.CPU) float64 { return float64(c.UserTicks + c.SysTicks) }
	user := float64(b.srv.UserTicks-a.srv.UserTicks) / float64(clkTck)
	sys := float64(b.srv.SysTicks-a.srv.SysTicks) / float64(clkTck)
	cpu := (ticks(b.srv) - ticks(a.srv)) / float64(clkTck)
	r.Server = &serverCPU{
		PID:        r.Server.pidOr(0),
		CPUSeconds: cpu,
		UserSec:    user,
		SysSec:     sys,
		Util:       cpu / r.MeasuredSeconds,
		Threads:    b.srv.Threads,
	}
	// What neither the server nor the load generator used: interference.
	r.OtherUtil = (machine - lg - cpu) / r.MeasuredSeconds
	// Threads that exited inside the window take their counts with them, so
	// guard against a negative difference.
	if b.ctxVol >= a.ctxVol && b.ctxInv >= a.ctxInv {
		r.Server.CtxSwitchesVol = b.ctxVol - a.ctxVol
		r.Server.CtxSwitchesInvol = b.ctxInv - a.ctxInv
	}
	if r.Messages > 0 {
		r.Server.CtxSwitchesPerMsg = float64(r.Server.CtxSwitchesVol+r.Server.CtxSwitchesInvol) / float64(r.Messages)
		r.Server.CPUMicrosPerMsg = cpu * 1e6 / float64(r.Messages)
	}
}
