// Command xdsbench is the xds scenario of scripts/bench.sh (issue 14): how
// long a fleet of Portico proxies takes to take a new configuration from a
// real control plane, and what holding and updating a large one costs them.
//
// It runs go-control-plane's ADS server in-process (pkg/server/v3 over a
// pkg/cache/v3 SnapshotCache with ads=true, one snapshot per node id) on
// 127.0.0.1:0, writes a bootstrap per proxy (node proxy-<i>, ADS over gRPC to
// that server, LDS and CDS over ADS) and starts -proxies Portico processes
// pinned to -sut-cpu with taskset. Each proxy gets its own loopback address,
// 127.0.1.<i>, so that all of them bind the same ports; the port range is
// checked free on every address first.
//
// For each size in -sizes (listeners per proxy; as many clusters, each
// STATIC with one endpoint), per repetition and in an order rotated by the
// repetition, it sets the size's first snapshot ("initial": from whatever the
// proxies ran before), then -updates updates of the -kinds in turn:
//
//   - chain: every listener's tcp_proxy names another existing cluster and
//     gets a new stat_prefix, a filter-chain-only change; only LDS changes.
//   - clusters: every cluster is replaced by one of a new name (SotW CDS
//     removes the old ones) and every listener follows: LDS and CDS change.
//   - one: listener 0 alone changes (LDS): state of the world still sends
//     every listener, delta only that one.
//
// -delta makes the proxies use delta xDS (DELTA_GRPC); an ACK then carries
// no version and is matched to the version through its response_nonce.
//
// An update's time runs from just before the first SetSnapshot to the moment
// the last proxy has ACKed the new version of every type that changed (the
// server's OnStreamRequest: version_info equal to it, a response_nonce, no
// error_detail; of several types, the last). A NACK fails the update at
// once, with the proxy's error_detail. After each update a sample of every
// proxy's listeners is connected to: each must answer with the banner of the
// backend its new cluster points at, so an ACK without a working listener,
// or one still on the old chain, shows up (first try, and how long until it
// was right, bounded).
//
// Each proxy's CPU (utime+stime from /proc/PID/stat, and the scheduler's
// run time from schedstat for ms resolution) is read around every update, to
// the ACK and to the end of the update's window; the control plane's own
// (this process: the gRPC server, the cache, the snapshot building is done
// before the clock starts) separately. After each size's updates, RSS, HWM
// (/proc/PID/status) and PSS (smaps_rollup) at steady state, and the idle
// CPU over a short window.
//
// -standin replaces the processes with in-process config/xds clients that
// ACK without applying: the protocol and control plane alone, and a way to
// run this before the binary speaks xDS.
//
// Everything is bounded: every wait has a deadline, the run stops scheduling
// at -max-duration. One JSON object per line goes to -out.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/portico-proxy/portico/bench/internal/jsonline"
	"github.com/portico-proxy/portico/bench/internal/procstat"
)

type options struct {
	portico     string
	proxies     int
	sizes       []int
	reps        int
	updates     int
	sutCPU      string
	standin     bool
	out         string
	dir         string
	maxDuration time.Duration
	ackTimeout  time.Duration
	gap         time.Duration
	settle      time.Duration
	idleWindow  time.Duration
	samples     int
	kinds       []string // the update kinds after the initial one, in turn
	stablePfx   bool     // stat_prefix the same in every version (diagnosis)
	proxyArgs   []string // more flags for every proxy
	delta       bool     // ads_config api_type DELTA_GRPC
	clkTck      float64
	labels      jsonline.Labels
	// standinHandler, for tests, replaces the stand-ins' ACK-everything handler.
	standinHandler func(typeURL, version string) error
}

func main() {
	o := options{labels: jsonline.Labels{}}
	sizes := flag.String("sizes", "10,100,1000", "listeners per proxy, comma-separated")
	flag.StringVar(&o.portico, "portico", os.Getenv("PORTICO_BIN"), "the Portico binary (default $PORTICO_BIN)")
	flag.IntVar(&o.proxies, "proxies", 3, "Portico processes in the fleet")
	flag.IntVar(&o.reps, "reps", 3, "repetitions (sizes interleaved, order rotated per repetition)")
	flag.IntVar(&o.updates, "updates", 12, "updates per size and repetition after the initial one, of the -kinds in turn")
	flag.StringVar(&o.sutCPU, "sut-cpu", "1", "CPU list the proxies are pinned to (taskset); empty: unpinned")
	flag.BoolVar(&o.delta, "delta", false, "the proxies use delta xDS (ads_config api_type DELTA_GRPC) instead of state of the world")
	flag.BoolVar(&o.standin, "standin", false, "in-process config/xds clients instead of Portico processes")
	flag.StringVar(&o.out, "out", "", "JSON lines output (default stdout)")
	flag.StringVar(&o.dir, "dir", "", "directory for bootstraps and proxy logs (default: a new temporary one)")
	flag.DurationVar(&o.maxDuration, "max-duration", 15*time.Minute, "no update starts after this")
	flag.DurationVar(&o.ackTimeout, "ack-timeout", 60*time.Second, "bound on one update's ACKs")
	flag.DurationVar(&o.gap, "gap", 300*time.Millisecond, "pause after an update's serve check, inside its CPU window")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "pause before a size's steady-state sample")
	flag.DurationVar(&o.idleWindow, "idle-window", 2*time.Second, "window of the steady-state idle CPU")
	flag.IntVar(&o.samples, "samples", 4, "listeners per proxy the serve check connects to after each update")
	proxyArgs := flag.String("proxy-args", "", "more flags for every Portico process, blank-separated (e.g. \"--drain-time-s 1\")")
	kinds := flag.String("kinds", "chain,clusters,one", "update kinds after each size's initial one, taken in turn (chain, clusters, one)")
	flag.BoolVar(&o.stablePfx, "stable-stat-prefix", false, "keep each listener's tcp_proxy stat_prefix across versions (to tell per-name state from per-version state)")
	flag.Float64Var(&o.clkTck, "clk-tck", 100, "USER_HZ (getconf CLK_TCK)")
	flag.Var(o.labels, "label", "key=value added to every row's labels (repeatable)")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatal(fmt.Errorf("bad -sizes %q", *sizes))
		}
		o.sizes = append(o.sizes, n)
	}
	o.proxyArgs = strings.Fields(*proxyArgs)
	for _, k := range strings.Split(*kinds, ",") {
		if k != "chain" && k != "clusters" && k != "one" {
			fatal(fmt.Errorf("bad -kinds %q", *kinds))
		}
		o.kinds = append(o.kinds, k)
	}
	if o.delta && o.standin {
		fatal(errors.New("-delta: the stand-ins speak state of the world only"))
	}
	if !o.standin && o.portico == "" {
		fatal(errors.New("no Portico binary: -portico or PORTICO_BIN (or -standin)"))
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "xdsbench-")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	rows, err := run(o)
	if werr := writeRows(o.out, rows); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "xdsbench:", err)
	os.Exit(1)
}

func writeRows(path string, rows []any) error {
	var b strings.Builder
	for _, r := range rows {
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("xdsbench: %w", err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if path == "" {
		_, err := os.Stdout.WriteString(b.String())
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// serveResult is an update's serve check over every proxy's sample.
type serveResult struct {
	Checked   int     `json:"checked"`
	FirstOK   int     `json:"first_ok"` // right at the first connection after the ACK
	OK        int     `json:"ok"`       // right within the bound
	Stale     int     `json:"stale"`    // answered with another backend's banner at first (old chain or cluster)
	Failed    int     `json:"failed"`   // never right within the bound
	MaxLateMS float64 `json:"max_late_ms"`
	LastError string  `json:"last_error,omitempty"`
	// FirstError is the first wrong answer or error, kept even when the
	// listener was right later (an ACK ahead of the workers shows here).
	FirstError string `json:"first_error,omitempty"`
}

// updateRow is one update.
type updateRow struct {
	Mode      string            `json:"mode"` // "xds-update"
	Labels    map[string]string `json:"labels"`
	Listeners int               `json:"listeners"`
	Kind      string            `json:"kind"`
	Seq       int               `json:"seq"`
	Types     []string          `json:"types"`
	// SetMS is how long the SetSnapshot calls for every node took.
	SetMS float64 `json:"set_ms"`
	// AckMS: from before the first SetSnapshot to the last proxy's last ACK.
	AckMS      float64   `json:"ack_ms"`
	ProxyAckMS []float64 `json:"proxy_ack_ms"`
	// ProxySentMS: to the server's last response of the update to the proxy;
	// ProxyApplyMS: from each response to its ACK, the longest of the types.
	ProxySentMS  []float64 `json:"proxy_sent_ms"`
	ProxyApplyMS []float64 `json:"proxy_apply_ms"`
	// TypeAckMS: per type, from t0 to the last proxy's ACK of it.
	TypeAckMS map[string]float64 `json:"type_ack_ms"`
	// ProxyWaitMS: per proxy, the time its threads were runnable but not
	// running (schedstat's run-queue wait) from t0 to the ACK: an update
	// slower than its CPU time either waited for the CPU (here) or for
	// something of its own (not here).
	ProxyWaitMS []float64 `json:"proxy_wait_ms,omitempty"`
	// Proxy CPU from t0 to the update's ACK, and to the end of its window
	// (serve check and gap included): utime+stime, and schedstat run time.
	ProxyCPUMS       []float64 `json:"proxy_cpu_ms,omitempty"`
	ProxyRunMS       []float64 `json:"proxy_run_ms,omitempty"`
	ProxyCPUWindowMS []float64 `json:"proxy_cpu_window_ms,omitempty"`
	ProxyRunWindowMS []float64 `json:"proxy_run_window_ms,omitempty"`
	WindowMS         float64   `json:"window_ms"`
	// OtherCPUMS: every CPU's busy time from t0 to the ACK less the
	// proxies' and the control plane's: other jobs sharing the machine.
	OtherCPUMS float64 `json:"other_cpu_ms"`
	// The control plane's (this process's) CPU from t0 to the ACK.
	CPCPUMS float64      `json:"cp_cpu_ms"`
	CPRunMS float64      `json:"cp_run_ms"`
	Serve   *serveResult `json:"serve,omitempty"`
	Failure string       `json:"failure"`
}

// steadyRow is one size's steady state after its updates.
type steadyRow struct {
	Mode      string            `json:"mode"` // "xds-steady"
	Labels    map[string]string `json:"labels"`
	Listeners int               `json:"listeners"`
	RSSKiB    []int64           `json:"rss_kib,omitempty"`
	HWMKiB    []int64           `json:"hwm_kib,omitempty"`
	PSSKiB    []int64           `json:"pss_kib,omitempty"`
	Threads   []int             `json:"threads,omitempty"`
	// Idle CPU over IdleMS at steady state, per proxy.
	IdleCPUMS []float64 `json:"idle_cpu_ms,omitempty"`
	IdleRunMS []float64 `json:"idle_run_ms,omitempty"`
	IdleMS    float64   `json:"idle_ms"`
	// The size's whole phase (initial update through the last update's
	// window): proxies' utime+stime, and the control plane's.
	PhaseMS       float64                       `json:"phase_ms"`
	PhaseUpdates  int                           `json:"phase_updates"`
	PhaseCPUMS    []float64                     `json:"phase_cpu_ms,omitempty"`
	PhaseCPCPUMS  float64                       `json:"phase_cp_cpu_ms"`
	CPRSSKiB      int64                         `json:"cp_rss_kib"`
	AdminCounters map[string]map[string]float64 `json:"admin,omitempty"`
	Failure       string                        `json:"failure"`
}

// metaRow describes the run; Unavailable says why nothing was measured.
type metaRow struct {
	Mode        string            `json:"mode"` // "xds-meta"
	Labels      map[string]string `json:"labels"`
	Proxies     int               `json:"proxies"`
	Standin     bool              `json:"standin"`
	Sizes       []int             `json:"sizes"`
	Reps        int               `json:"reps"`
	Updates     int               `json:"updates"`
	PortBase    int               `json:"port_base"`
	Backends    int               `json:"backends"`
	ControlCPU  string            `json:"control_plane_cpus"`
	ElapsedS    float64           `json:"elapsed_s"`
	LoadStart   string            `json:"loadavg_start"`
	LoadEnd     string            `json:"loadavg_end"`
	Unavailable string            `json:"unavailable,omitempty"`
	Note        string            `json:"note,omitempty"`
	Failure     string            `json:"failure"`
}

func (o *options) rowLabels(rep int, test, cell string) map[string]string {
	l := map[string]string{"scenario": "xds", "server": "portico", "rep": strconv.Itoa(rep), "test": test, "cell": cell,
		"proxies": strconv.Itoa(o.proxies), "protocol": "sotw"}
	if o.delta {
		l["protocol"] = "delta"
	}
	if o.standin {
		l["server"] = "standin"
	}
	for k, v := range o.labels {
		l[k] = v
	}
	return l
}

const nBackends = 3

// fleet is what one run holds: the control plane, the proxies, the backends.
type fleet struct {
	o        *options
	cp       *controlPlane
	proxies  []*proxy
	back     *backends
	portBase int
	seq      int
	state    fleetState
}

func run(o options) ([]any, error) {
	start := time.Now()
	meta := &metaRow{Mode: "xds-meta", Labels: o.rowLabels(0, "meta", "meta"), Proxies: o.proxies, Standin: o.standin,
		Sizes: o.sizes, Reps: o.reps, Updates: o.updates, Backends: nBackends, ControlCPU: cpusAllowed()}
	rows := []any{meta}
	meta.LoadStart = loadAvg()
	defer func() { meta.ElapsedS, meta.LoadEnd = time.Since(start).Seconds(), loadAvg() }()

	ips := make([]string, o.proxies)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.0.1.%d", i+1)
	}
	maxN := slices.Max(o.sizes)
	base, err := pickPortBase(ips, maxN)
	if err != nil {
		meta.Failure = err.Error()
		return rows, nil
	}
	meta.PortBase = base

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := startControlPlane(ctx)
	if err != nil {
		return rows, err
	}
	defer cp.stop()
	back, err := startBackends(nBackends)
	if err != nil {
		return rows, err
	}
	defer back.stop()

	f := &fleet{o: &o, cp: cp, back: back, portBase: base}
	if o.standin {
		s, ps := startStandins(o.proxies, cp.addr, o.standinHandler)
		defer s.stop()
		f.proxies = ps
	} else {
		ps, err := startProxies(o.portico, o.proxies, o.sutCPU, apiType(o.delta), cp.addr, o.dir, o.proxyArgs)
		defer stopProxies(ps)
		if err != nil {
			return rows, err
		}
		f.proxies = ps
	}
	var nodes []string
	for _, p := range f.proxies {
		nodes = append(nodes, p.node)
	}
	if err := cp.track.waitStreams(ctx, nodes, time.Now().Add(15*time.Second)); err != nil {
		meta.Unavailable = f.whyNoStream(err)
		return rows, nil
	}

	deadline := start.Add(o.maxDuration)
	for rep := 1; rep <= o.reps; rep++ {
		for _, n := range rotate(o.sizes, rep-1) {
			if time.Now().After(deadline) {
				meta.Note = fmt.Sprintf("stopped at the time bound (%s) before rep %d size %d", o.maxDuration, rep, n)
				return rows, nil
			}
			rs, st, err := f.phase(ctx, rep, n, deadline)
			for _, r := range rs {
				rows = append(rows, r)
			}
			if st != nil {
				rows = append(rows, st)
			}
			if err != nil {
				meta.Failure = err.Error()
				return rows, nil
			}
		}
	}
	return rows, nil
}

// whyNoStream says why the proxies opened no ADS stream: the binary rejected
// the bootstrap or exited (the feature is not there yet), or it runs and
// does not connect.
func (f *fleet) whyNoStream(err error) string {
	for _, p := range f.proxies {
		if !p.alive() {
			return fmt.Sprintf("%s exited (%v): %s", p.node, p.err, lastLines(p.log, 3))
		}
	}
	if len(f.proxies) > 0 && f.proxies[0].log != "" {
		return fmt.Sprintf("%v; %s's log: %s", err, f.proxies[0].node, lastLines(f.proxies[0].log, 3))
	}
	return err.Error()
}

func rotate(xs []int, k int) []int {
	out := make([]int, len(xs))
	for i := range xs {
		out[i] = xs[(i+k)%len(xs)]
	}
	return out
}

// phase is one size in one repetition: the initial update, the updates,
// the steady-state sample.
func (f *fleet) phase(ctx context.Context, rep, n int, deadline time.Time) ([]*updateRow, *steadyRow, error) {
	o := f.o
	t0 := time.Now()
	cpu0 := f.proxyTicks()
	cp0 := selfTicks()
	var rows []*updateRow
	kinds := []string{"initial"}
	for i := 0; i < o.updates; i++ {
		kinds = append(kinds, o.kinds[i%len(o.kinds)])
	}
	for _, kind := range kinds {
		if kind != "initial" && time.Now().After(deadline) {
			break
		}
		r, err := f.update(ctx, rep, n, kind)
		rows = append(rows, r)
		if err != nil {
			return rows, nil, err
		}
	}
	st := &steadyRow{Mode: "xds-steady", Labels: o.rowLabels(rep, "steady", strconv.Itoa(n)), Listeners: n}
	st.PhaseMS = ms(time.Since(t0))
	st.PhaseUpdates = len(rows)
	cpu1 := f.proxyTicks()
	for i := range cpu1 {
		if o.standin {
			break
		}
		st.PhaseCPUMS = append(st.PhaseCPUMS, f.ticksMS(cpu1[i]-cpu0[i]))
	}
	st.PhaseCPCPUMS = f.ticksMS(selfTicks() - cp0)
	time.Sleep(o.settle)
	if !o.standin {
		i0, r0 := f.proxyTicks(), f.proxyRun()
		t := time.Now()
		time.Sleep(o.idleWindow)
		i1, r1 := f.proxyTicks(), f.proxyRun()
		st.IdleMS = ms(time.Since(t))
		for i, p := range f.proxies {
			st.IdleCPUMS = append(st.IdleCPUMS, f.ticksMS(i1[i]-i0[i]))
			st.IdleRunMS = append(st.IdleRunMS, float64(r1[i]-r0[i])/1e6)
			m, err := procstat.ReadMem(p.pid)
			c, _ := procstat.ReadCPU(p.pid)
			if err != nil {
				st.Failure = fmt.Sprintf("%s: %v", p.node, err)
			}
			st.RSSKiB = append(st.RSSKiB, m.RSS/1024)
			st.HWMKiB = append(st.HWMKiB, m.HWM/1024)
			st.PSSKiB = append(st.PSSKiB, readPSSKiB(p.pid))
			st.Threads = append(st.Threads, c.Threads)
		}
		st.AdminCounters = map[string]map[string]float64{}
		for _, p := range f.proxies {
			st.AdminCounters[p.node] = adminStats(p.admin, adminNames)
		}
	}
	if m, err := procstat.ReadMem(os.Getpid()); err == nil {
		st.CPRSSKiB = m.RSS / 1024
	}
	return rows, st, nil
}

// adminNames are the proxies' own counters kept with each steady sample, a
// cross-check of the ACK count (Envoy's names).
var adminNames = []string{
	"control_plane.connected_state",
	"listener_manager.lds.update_success", "listener_manager.lds.update_rejected",
	"cluster_manager.cds.update_success", "cluster_manager.cds.update_rejected",
	"listener_manager.total_listeners_active", "cluster_manager.active_clusters",
	"listener_manager.listener_in_place_updated", "listener_manager.listener_modified",
	"listener_manager.total_listeners_draining", "listener_manager.total_filter_chains_draining",
}

// next returns the state after an update of kind at size n.
func (f *fleet) next(kind string, n int) (fleetState, []string) {
	f.seq++
	s := f.state
	s.seq = f.seq
	s.stablePfx = f.o.stablePfx
	var types []string
	switch kind {
	case "initial":
		s.n, s.shift, s.oneShift, s.gen, s.chainSeq = n, 0, 0, s.gen+1, f.seq
		types = []string{cdsType, ldsType}
	case "chain":
		s.shift++
		s.chainSeq = f.seq
		types = []string{ldsType}
	case "clusters":
		s.gen++
		s.chainSeq = f.seq
		types = []string{cdsType, ldsType}
	case "one":
		// Only listener 0's tcp_proxy changes (it moves on by one cluster):
		// state of the world still sends every listener, delta only that one.
		s.oneShift++
		types = []string{ldsType}
	}
	for _, t := range types {
		v := fmt.Sprintf("u%d", f.seq)
		if t == ldsType {
			s.ldsVersion = v
		} else {
			s.cdsVersion = v
		}
	}
	return s, types
}

// update performs one update and measures it.
func (f *fleet) update(ctx context.Context, rep, n int, kind string) (*updateRow, error) {
	o := f.o
	for _, p := range f.proxies {
		if !p.alive() {
			err := fmt.Errorf("%s exited (%v): %s", p.node, p.err, lastLines(p.log, 3))
			return &updateRow{Mode: "xds-update", Labels: o.rowLabels(rep, kind, strconv.Itoa(n)), Listeners: n, Kind: kind, Failure: err.Error()}, err
		}
	}
	s, typs := f.next(kind, n)
	r := &updateRow{Mode: "xds-update", Labels: o.rowLabels(rep, kind, strconv.Itoa(n)), Listeners: n, Kind: kind, Seq: s.seq}
	for _, t := range typs {
		r.Types = append(r.Types, shortType(t))
	}
	// The snapshots are built before the clock starts: what is timed is the
	// control plane's serving of them and the proxies' taking them.
	snaps := make([]cachev3.ResourceSnapshot, len(f.proxies))
	for i, p := range f.proxies {
		snap, err := s.snapshot(p.ip, f.portBase, f.back.ports)
		if err != nil {
			r.Failure = err.Error()
			return r, err
		}
		snaps[i] = snap
	}
	var wants []want
	for _, p := range f.proxies {
		for _, t := range typs {
			v := s.cdsVersion
			if t == ldsType {
				v = s.ldsVersion
			}
			wants = append(wants, want{p.node, t, v})
		}
	}
	cpu0, run0, wait0 := f.proxyTicks(), f.proxyRun(), f.proxyWait()
	cp0, cpr0 := selfTicks(), selfRun()
	m0, _, _ := procstat.MachineBusyTicks()
	t0 := time.Now()
	for i, p := range f.proxies {
		if err := f.cp.cache.SetSnapshot(ctx, p.node, snaps[i]); err != nil {
			r.Failure = fmt.Sprintf("SetSnapshot %s: %v", p.node, err)
			return r, errors.New(r.Failure)
		}
	}
	r.SetMS = ms(time.Since(t0))
	evs, err := f.cp.track.wait(ctx, wants, t0.Add(o.ackTimeout))
	m1, _, _ := procstat.MachineBusyTicks()
	cpu1, run1, wait1 := f.proxyTicks(), f.proxyRun(), f.proxyWait()
	cp1 := selfTicks()
	r.CPCPUMS, r.CPRunMS = f.ticksMS(cp1-cp0), float64(selfRun()-cpr0)/1e6
	other := int64(m1-m0) - int64(cp1-cp0)
	for i := range cpu1 {
		other -= int64(cpu1[i] - cpu0[i])
	}
	r.OtherCPUMS = f.ticksMS(uint64(max(other, 0)))
	f.state = s
	if err != nil {
		// A NACK (errNack) or a missing ACK ends the run: what the proxies
		// run is then no longer what the serve check would expect.
		r.Failure = err.Error()
		return r, err
	}
	perType := len(typs)
	r.TypeAckMS = map[string]float64{}
	var last time.Time
	for i := range f.proxies {
		var ack, sent time.Time
		apply := 0.0
		for k := 0; k < perType; k++ {
			e := evs[i*perType+k]
			if e.acked.After(ack) {
				ack = e.acked
			}
			if e.sent.After(sent) {
				sent = e.sent
			}
			if !e.sent.IsZero() {
				apply = max(apply, ms(e.acked.Sub(e.sent)))
			}
			tn := shortType(typs[k])
			r.TypeAckMS[tn] = max(r.TypeAckMS[tn], ms(e.acked.Sub(t0)))
		}
		r.ProxyAckMS = append(r.ProxyAckMS, ms(ack.Sub(t0)))
		r.ProxySentMS = append(r.ProxySentMS, ms(sent.Sub(t0)))
		r.ProxyApplyMS = append(r.ProxyApplyMS, apply)
		if ack.After(last) {
			last = ack
		}
	}
	r.AckMS = ms(last.Sub(t0))
	if !o.standin {
		for i := range f.proxies {
			r.ProxyCPUMS = append(r.ProxyCPUMS, f.ticksMS(cpu1[i]-cpu0[i]))
			r.ProxyRunMS = append(r.ProxyRunMS, float64(run1[i]-run0[i])/1e6)
			r.ProxyWaitMS = append(r.ProxyWaitMS, float64(wait1[i]-wait0[i])/1e6)
		}
		r.Serve = f.serveCheck(ctx, s)
		if r.Serve.Failed > 0 {
			r.Failure = fmt.Sprintf("serve check: %d of %d listeners never answered right: %s", r.Serve.Failed, r.Serve.Checked, r.Serve.LastError)
		}
	}
	time.Sleep(o.gap)
	if !o.standin {
		cpu2, run2 := f.proxyTicks(), f.proxyRun()
		for i := range f.proxies {
			r.ProxyCPUWindowMS = append(r.ProxyCPUWindowMS, f.ticksMS(cpu2[i]-cpu0[i]))
			r.ProxyRunWindowMS = append(r.ProxyRunWindowMS, float64(run2[i]-run0[i])/1e6)
		}
	}
	r.WindowMS = ms(time.Since(t0))
	return r, nil
}

// serveCheck connects to -samples listeners of every proxy (the first, the
// last, the others at random) and wants the banner of the backend state s
// routes each to. A wrong or failed answer is retried every 20 ms for up to
// 3 s: how late it became right is kept.
func (f *fleet) serveCheck(ctx context.Context, s fleetState) *serveResult {
	res := &serveResult{}
	js := []int{0}
	if s.n > 1 {
		js = append(js, s.n-1)
	}
	for len(js) < min(f.o.samples, s.n) {
		j := rand.IntN(s.n)
		if !slices.Contains(js, j) {
			js = append(js, j)
		}
	}
	start := time.Now()
	for _, p := range f.proxies {
		for _, j := range js {
			res.Checked++
			want := banner(s.backendOf(j, nBackends))
			addr := fmt.Sprintf("%s:%d", p.ip, f.portBase+j)
			first := true
			end := time.Now().Add(3 * time.Second)
			for {
				got, err := probe(ctx, addr)
				if err == nil && got == want {
					res.OK++
					if first {
						res.FirstOK++
					} else {
						res.MaxLateMS = max(res.MaxLateMS, ms(time.Since(start)))
					}
					break
				}
				if first && err == nil && strings.HasPrefix(got, "xdsbench-backend-") {
					res.Stale++
				}
				first = false
				if err != nil {
					res.LastError = fmt.Sprintf("%s (l%d): %v", addr, j, err)
				} else {
					res.LastError = fmt.Sprintf("%s (l%d): got %q, want %q", addr, j, strings.TrimSpace(got), strings.TrimSpace(want))
				}
				if res.FirstError == "" {
					res.FirstError = fmt.Sprintf("%s after the ACK: %s", time.Since(start).Round(time.Millisecond), res.LastError)
				}
				if time.Now().After(end) {
					res.Failed++
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if res.Failed == 0 {
		res.LastError = ""
	}
	return res
}

func (f *fleet) proxyTicks() []uint64 {
	out := make([]uint64, len(f.proxies))
	if f.o.standin {
		return out
	}
	for i, p := range f.proxies {
		if c, err := procstat.ReadCPU(p.pid); err == nil {
			out[i] = c.UserTicks + c.SysTicks
		}
	}
	return out
}

func (f *fleet) proxyRun() []uint64 {
	out := make([]uint64, len(f.proxies))
	if f.o.standin {
		return out
	}
	for i, p := range f.proxies {
		out[i], _ = procstat.RunTime(p.pid)
	}
	return out
}

// proxyWait is each proxy's run-queue wait so far, in ns.
func (f *fleet) proxyWait() []uint64 {
	out := make([]uint64, len(f.proxies))
	if f.o.standin {
		return out
	}
	for i, p := range f.proxies {
		out[i] = runQueueWait(p.pid)
	}
	return out
}

// runQueueWait sums the second field of /proc/PID/task/*/schedstat: the
// time every thread has spent runnable, waiting for a CPU, in ns.
func runQueueWait(pid int) uint64 {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var ns uint64
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, d.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			ns += v
		}
	}
	return ns
}

func selfTicks() uint64 {
	c, _ := procstat.ReadCPU(os.Getpid())
	return c.UserTicks + c.SysTicks
}

func selfRun() uint64 {
	ns, _ := procstat.RunTime(os.Getpid())
	return ns
}

func (f *fleet) ticksMS(t uint64) float64 { return float64(t) / f.o.clkTck * 1000 }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// readPSSKiB is the Pss line of /proc/PID/smaps_rollup (0 when unreadable).
func readPSSKiB(pid int) int64 {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func apiType(delta bool) string {
	if delta {
		return "DELTA_GRPC"
	}
	return "GRPC"
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// cpusAllowed is this process's CPU list (where the harness pinned the
// control plane).
func cpusAllowed() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
