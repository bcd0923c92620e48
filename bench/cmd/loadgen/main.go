// Command loadgen drives the echo benchmarks. In ping-pong mode every
// connection runs a closed loop (send -size bytes, wait for the whole echo,
// repeat) for -warmup, then for a measured -duration, and reports one JSON
// object: messages/s, latency percentiles, errors, and — given -pid — the CPU
// time the server spent per message, read from /proc at the window edges.
// In -idle mode it opens -conns connections, exchanges one message on each,
// and reports the server's RSS before and with them open.
//
// It always stops by itself: every socket carries a deadline of
// warmup+duration+grace (or hold+grace in idle mode).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/portico-proxy/portico/bench/internal/procstat"
)

type opts struct {
	addr        string
	conns       int
	size        int
	duration    time.Duration
	warmup      time.Duration
	grace       time.Duration
	idle        bool
	warm        int
	settle      time.Duration
	hold        time.Duration
	pid         int
	clkTck      int
	sources     int
	dialPar     int
	dialTimeout time.Duration
	out         string
	labels      labelFlag
}

// labelFlag collects repeated -label k=v pairs; the harness uses them to tag
// each result with scenario, server name and repetition.
type labelFlag map[string]string

func (l labelFlag) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", s)
	}
	l[k] = v
	return nil
}

type latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

type errorsOut struct {
	Dial     int64  `json:"dial"`
	IO       int64  `json:"io"`
	Mismatch int64  `json:"mismatch"`
	Stuck    bool   `json:"stuck,omitempty"`
	Last     string `json:"last,omitempty"`
}

type serverCPU struct {
	PID             int     `json:"pid"`
	CPUSeconds      float64 `json:"cpu_s"`
	UserSec         float64 `json:"user_s"`
	SysSec          float64 `json:"sys_s"`
	Util            float64 `json:"util"`
	Threads         int     `json:"threads"`
	CPUMicrosPerMsg float64 `json:"cpu_us_per_msg,omitempty"`
	// Context switches of all server threads in the window.
	CtxSwitchesVol    uint64  `json:"ctxsw_vol"`
	CtxSwitchesInvol  uint64  `json:"ctxsw_invol"`
	CtxSwitchesPerMsg float64 `json:"ctxsw_per_msg,omitempty"`
}

func (s *serverCPU) pidOr(d int) int {
	if s == nil {
		return d
	}
	return s.PID
}

type memOut struct {
	RSSBefore    int64   `json:"rss_before"`
	RSSWith      int64   `json:"rss_with"`
	HWM          int64   `json:"hwm"`
	BytesPerConn float64 `json:"bytes_per_conn"`
}

type result struct {
	Mode              string            `json:"mode"`
	Labels            map[string]string `json:"labels,omitempty"`
	Addr              string            `json:"addr"`
	Conns             int               `json:"conns"`
	ConnsOK           int               `json:"conns_ok"`
	Size              int               `json:"size"`
	DialSeconds       float64           `json:"dial_s"`
	MeasuredSeconds   float64           `json:"measured_s,omitempty"`
	Messages          uint64            `json:"messages,omitempty"`
	MsgsPerSec        float64           `json:"msgs_per_s,omitempty"`
	MBPerSec          float64           `json:"mb_per_s,omitempty"`
	LatencyUS         latency           `json:"latency_us,omitzero"`
	Server            *serverCPU        `json:"server,omitempty"`
	Mem               *memOut           `json:"mem,omitempty"`
	LoadgenCPUSeconds float64           `json:"loadgen_cpu_s,omitempty"`
	LoadgenCPUUtil    float64           `json:"loadgen_cpu_util,omitempty"`
	MachineUtil       float64           `json:"machine_cpu_util,omitempty"` // all CPUs, 2.0 = two busy cores
	OtherUtil         float64           `json:"other_cpu_util,omitempty"`   // machine - server - loadgen
	StealUtil         float64           `json:"steal_util,omitempty"`
	Errors            errorsOut         `json:"errors"`
	ServerExited      bool              `json:"server_exited,omitempty"`
	Failure           string            `json:"failure,omitempty"`
}

func parseFlags() *opts {
	o := &opts{labels: labelFlag{}}
	flag.StringVar(&o.addr, "addr", "127.0.0.1:10000", "server address")
	flag.IntVar(&o.conns, "conns", 100, "connections")
	flag.IntVar(&o.size, "size", 64, "message size in bytes (idle mode: one message per connection, 0 for none)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured window")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up after all connections are open")
	flag.DurationVar(&o.grace, "grace", 5*time.Second, "how long to wait for in-flight messages after the window")
	flag.BoolVar(&o.idle, "idle", false, "idle mode: open connections, report server RSS, close")
	flag.IntVar(&o.warm, "warm", 64, "idle mode: connections opened, used once and closed before the baseline RSS is read")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "idle mode: wait before reading RSS")
	flag.DurationVar(&o.hold, "hold", 0, "idle mode: keep connections open this much longer after reading RSS")
	flag.IntVar(&o.pid, "pid", 0, "server PID to sample in /proc (CPU per message, RSS)")
	flag.IntVar(&o.clkTck, "clk-tck", 100, "USER_HZ of /proc/PID/stat (getconf CLK_TCK)")
	flag.IntVar(&o.sources, "sources", 0, "source addresses 127.0.0.1..N (0: one per 8000 connections)")
	flag.IntVar(&o.dialPar, "dial-parallel", 128, "handshakes in flight at once")
	flag.DurationVar(&o.dialTimeout, "dial-timeout", 60*time.Second, "bound on the whole dial phase")
	flag.StringVar(&o.out, "out", "", "write the JSON result here instead of stdout")
	flag.Var(o.labels, "label", "key=value tag copied into the result (repeatable)")
	flag.Parse()
	return o
}

func main() {
	o := parseFlags()
	res := &result{Mode: "pingpong", Labels: o.labels, Addr: o.addr, Conns: o.conns, Size: o.size}
	if o.pid > 0 {
		res.Server = &serverCPU{PID: o.pid}
	}
	var err error
	if o.idle {
		res.Mode = "idle"
		err = runIdle(o, res)
	} else {
		if o.size <= 0 {
			fmt.Fprintln(os.Stderr, "loadgen: -size must be > 0 in ping-pong mode")
			os.Exit(2)
		}
		err = runPingPong(o, res)
	}
	if o.pid > 0 && !procstat.Alive(o.pid) {
		res.ServerExited = true
		if err == nil {
			err = fmt.Errorf("server (pid %d) exited during the run", o.pid)
		}
	}
	if err != nil {
		res.Failure = err.Error()
	}
	if werr := writeResult(o.out, res); werr != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", werr)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func writeResult(path string, res *result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
