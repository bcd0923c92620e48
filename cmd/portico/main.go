// Command portico runs the Portico proxy from an Envoy v3 bootstrap file, validates such
// a file, or explains which listener and filter chain would serve a connection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portico-proxy/portico/admin"
	"github.com/portico-proxy/portico/config"
	"github.com/portico-proxy/portico/engine"
	"github.com/portico-proxy/portico/engine/sockmap"
	"github.com/portico-proxy/portico/manager"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage:
  portico -c FILE [--concurrency N] [--log-level LEVEL] [--drain-time-s N]
          [--drain-strategy gradual|immediate] [--disable-splice] [--reject-ignored]
          [--restart-epoch N] [--base-id N] [--parent-shutdown-time-s N]
          [--enable-sockmap] [--disable-sockmap]
  portico restart -c FILE [flags as above]   (hot-restarts on SIGHUP; see docs/hot-restart.md)
  portico validate -c FILE [--reject-ignored]   (FILE: a bootstrap, or an LDS/CDS file)
  portico explain -c FILE --listener NAME --dst IP:PORT [--src IP:PORT] [--direct-src IP:PORT]
                  [--sni NAME] [--transport tls|raw_buffer] [--alpn p1,p2]
                  [--host HOST [--path PATH] [--method M] [--header "Name: value"]...]
  portico --version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "validate":
			return validate(args[1:], stdout, stderr)
		case "explain":
			return explain(args[1:], stdout, stderr)
		case "restart":
			return restart(args[1:], stderr)
		case "run":
			args = args[1:]
		}
	}
	return serve(args, stdout, stderr)
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

// printConfigErrors prints each problem of a bad file on its own line.
func printConfigErrors(w io.Writer, path string, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintf(w, "%s: %s\n", path, e)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

const rejectIgnoredUsage = "refuse a configuration with fields Portico accepts but ignores (its warnings become errors)"

// rejectIgnored prints the warnings of a configuration loaded with --reject-ignored as
// errors; it reports whether there were any.
func rejectIgnored(w io.Writer, path string, cfg *config.Config) bool {
	for _, warning := range cfg.Warnings {
		fmt.Fprintf(w, "%s: %s (ignored by Portico; refused with --reject-ignored)\n", path, warning)
	}
	return len(cfg.Warnings) > 0
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", stderr)
	path := fs.String("c", "", "bootstrap file (Envoy v3 YAML or JSON)")
	fs.StringVar(path, "config-path", "", "same as -c")
	reject := fs.Bool("reject-ignored", false, rejectIgnoredUsage)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "validate: -c FILE is required")
		return 2
	}
	if config.IsResourceFile(*path) {
		return validateResources(*path, *reject, stdout, stderr)
	}
	cfg, err := config.LoadWith(*path, 1, config.Options{CheckOnly: true})
	if err != nil {
		printConfigErrors(stderr, *path, err)
		return 1
	}
	defer cfg.Close()
	if *reject && rejectIgnored(stderr, *path, cfg) {
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", *path, w)
	}
	// The LDS and CDS files dynamic_resources names, as read at start: a rejected
	// resource would not stop Envoy from starting, but validate is there to find it.
	ok := true
	if cfg.CDS != nil {
		ok = printUpdate(stdout, stderr, cfg.CDS.Path, cfg.CDSError, cfg.InitialCDS.Problems(), *reject) && ok
	}
	if cfg.LDS != nil {
		ok = printUpdate(stdout, stderr, cfg.LDS.Path, cfg.LDSError, cfg.InitialLDS.Problems(), *reject) && ok
	}
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n", *path)
	return 0
}

// defaultTermDrain is how long the SIGTERM/SIGINT drain lasts unless --drain-time-s is
// given.
const defaultTermDrain = 5 * time.Second

func parseDrainStrategy(s string) (engine.DrainStrategy, error) {
	switch strings.ToLower(s) {
	case "gradual":
		return engine.Gradual, nil
	case "immediate":
		return engine.Immediate, nil
	}
	return 0, fmt.Errorf("unknown drain strategy %q (gradual, immediate)", s)
}

// validateResources validates an LDS or CDS file given on its own.
func validateResources(path string, reject bool, stdout, stderr io.Writer) int {
	rc, err := config.CheckResourceFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if !printUpdate(stdout, stderr, path, nil, config.UpdateProblems{Errors: rc.Errors, Warnings: rc.Warnings}, reject) {
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK (%d %ss, version %q)\n", path, len(rc.Names), rc.Kind, rc.Version)
	return 0
}

// printUpdate prints a resource file's problems, each prefixed by the file; it reports
// whether there were none (warnings count with --reject-ignored).
func printUpdate(stdout, stderr io.Writer, path string, fileErr error, p config.UpdateProblems, reject bool) bool {
	if fileErr != nil {
		fmt.Fprintln(stderr, fileErr) // a config.FileError names the file on each line
		return false
	}
	for i := range p.Errors {
		for _, line := range strings.Split(p.Errors[i].Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", path, line)
		}
	}
	for _, w := range p.Warnings {
		if reject {
			fmt.Fprintf(stderr, "%s: %s (ignored by Portico; refused with --reject-ignored)\n", path, w)
		} else {
			fmt.Fprintf(stderr, "%s: warning: %s\n", path, w)
		}
	}
	return len(p.Errors) == 0 && (!reject || len(p.Warnings) == 0)
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "critical", "off":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (trace, debug, info, warning, error, critical, off)", s)
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("portico", stderr)
	path := fs.String("c", "", "bootstrap file (Envoy v3 YAML or JSON)")
	fs.StringVar(path, "config-path", "", "same as -c")
	concurrency := fs.Int("concurrency", 0, "number of workers (default: the CPU count)")
	level := fs.String("log-level", "info", "log level: trace, debug, info, warning, error, critical, off")
	drain := fs.Int("drain-time-s", 600, "how long connections of an updated or removed listener (LDS) and of a hot-restarted parent may take to finish, as in Envoy; on SIGTERM/SIGINT the drain lasts this long only if the flag is given, else 5 s")
	strategy := fs.String("drain-strategy", "gradual", "how draining HTTP connections are asked to close: gradual (more of them as the drain time passes) or immediate")
	noSplice := fs.Bool("disable-splice", false, "tcp_proxy: keep bulk transfers on read/write instead of splice(2)")
	useSockmap := fs.Bool("enable-sockmap", false, "tcp_proxy: let the kernel forward the bytes of connections whose chain is a lone tcp_proxy (BPF sockmap; root or CAP_BPF). Experimental: on Linux 6.18 the kernel now and then delivers a segment twice under backpressure (docs/sockmap.md, trap 17)")
	noSockmap := fs.Bool("disable-sockmap", false, "tcp_proxy: keep every connection on the userspace path (the default; overrides --enable-sockmap)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	reject := fs.Bool("reject-ignored", false, rejectIgnoredUsage)
	hr := hotRestartFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := hr.resolve(fs, *drain); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "portico %s\n", version)
		return 0
	}
	if *path == "" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	lvl, err := parseLevel(*level)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	drainStrategy, err := parseDrainStrategy(*strategy)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *drain < 0 {
		fmt.Fprintln(stderr, "--drain-time-s must not be negative")
		return 2
	}
	// Envoy does not drain on SIGTERM at all; Portico does, for a short time unless told
	// otherwise (a 600 s default would make every stop take ten minutes).
	termDrain := defaultTermDrain
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "drain-time-s" {
			termDrain = time.Duration(*drain) * time.Second
		}
	})
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if strings.EqualFold(*level, "off") {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// SIGHUP is caught from here on (its default action kills the process): Envoy's
	// hot-restarter turns it into a new epoch; the process itself says so and goes on.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP)
	// A write to a closed pipe fails with EPIPE (counted by the access log that made it)
	// instead of killing the process, as in Envoy; on stdout or stderr it would be fatal.
	signal.Ignore(syscall.SIGPIPE)

	// The kernel path is opt-in: on the kernels tried (6.18) it duplicates a held segment
	// now and then (docs/sockmap.md, trap 17), and it is not faster here. Where it cannot
	// load (not root, no BPF, a kernel without sockmap) the proxy runs on the userspace
	// path: a faster byte path is not worth refusing to start. One Map serves every worker
	// (it is safe for concurrent use), so its cost does not grow with --concurrency.
	var kernelPairs engine.KernelPairs
	switch {
	case !*useSockmap:
	case *noSockmap:
		log.Info("sockmap: disabled by --disable-sockmap")
	default:
		m, err := sockmap.Open(0)
		if err != nil {
			log.Warn("sockmap unavailable: tcp_proxy stays on the userspace path", "error", err)
			break
		}
		defer m.Close() // after the server: deferred before srv.Close
		kernelPairs = m
		log.Warn("sockmap: on (experimental); a lone tcp_proxy's bytes are forwarded in the kernel, which on Linux 6.18 now and then delivers a segment twice under backpressure (docs/sockmap.md, trap 17)")
	}
	srv, err := engine.NewServer(engine.ServerOptions{Concurrency: *concurrency, Logger: log, DisableSplice: *noSplice,
		DrainTime: max(time.Duration(*drain)*time.Second, time.Millisecond), DrainStrategy: drainStrategy,
		InheritSocket: hr.inherit, KernelPairs: kernelPairs})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cfg, err := config.LoadWith(*path, srv.Concurrency(), config.Options{Clusters: srv.ClusterRegistry()})
	if err != nil {
		printConfigErrors(stderr, *path, err)
		return 1
	}
	if *reject && rejectIgnored(stderr, *path, cfg) {
		cfg.Close()
		srv.Close()
		return 1
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	// Hot restart: a child connects to its parent only now that its configuration loaded.
	defer hr.close()
	if err := hr.connect(log); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Everything that can fail binds here, on the main goroutine, before any worker runs.
	for _, c := range cfg.Clusters {
		if err := srv.AddCluster(c); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	for _, src := range cfg.StatsSources {
		srv.AddStatsSource(src)
	}
	for _, lc := range cfg.Listeners {
		if _, err := srv.AddListener(lc); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	// The files' resources (LDS, CDS) join the static ones before the workers start.
	mgr := manager.New(srv, cfg, log, time.Duration(*drain)*time.Second)
	mgr.ApplyInitial()
	hr.steer(srv)
	srv.AddStatsSource(hr.statsSource())
	adm := admin.New(srv, admin.Options{Logger: log, Control: mgr.Control(), CarriedCounters: hr.carried})
	if cfg.Admin.IsValid() && !hr.adoptAdmin(cfg.Admin) {
		addr, err := adm.Start(cfg.Admin)
		if err != nil {
			srv.Close()
			fmt.Fprintln(stderr, err)
			return 1
		}
		log.Info("admin listening", "address", addr.String())
	}

	spareP(srv.Concurrency(), log)
	// The runners (DNS resolvers, health checkers) start before the workers, so that the
	// DNS clusters' first answers are in before the first connection (Envoy's cluster
	// warm-up, wait_for_warm_on_init): their updates are applied directly until Start.
	setLoggers(cfg, log)
	runCtx, stopRunners := context.WithCancel(context.Background())
	var runners sync.WaitGroup
	for _, r := range cfg.Runners {
		runners.Add(1)
		go func() {
			defer runners.Done()
			r.Run(runCtx)
		}()
	}
	waitWarm(cfg, log)
	// xDS: the management servers' first versions are applied before the workers start,
	// as Envoy's server waits for its initial fetches (CDS, EDS, LDS, RDS), each for at
	// most its initial_fetch_timeout.
	if err := mgr.StartXDS(version); err != nil {
		stopRunners()
		srv.Close()
		fmt.Fprintln(stderr, err)
		return 1
	}
	if mgr.HasXDS() {
		start := time.Now()
		late := mgr.WaitInitial()
		for _, typ := range late {
			log.Warn("xds: initial fetch timed out; starting without those resources", "type_url", typ)
		}
		log.Info("xds: initial fetch done", "took", time.Since(start).Round(time.Millisecond).String(), "timed_out", len(late))
	}
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	srv.Start()
	mgr.Start()
	adm.SetState(admin.Live)
	for _, l := range srv.Listeners() {
		log.Info("listener started", "listener", l.Name(), "address", l.Address().String(),
			"bind_to_port", !l.Config().NoBindToPort, "reuse_port", !l.Config().NoReusePort)
	}
	log.Info("portico started", "version", version, "workers", srv.Concurrency(), "config", *path)
	hr.serving(srv, adm, cfg.Admin, sigs)

	exit := 0
	drainTime := termDrain
	if sig, err := nextSignal(sigs, srv.Fatal(), log); err != nil {
		// A worker's event loop failed: its sockets are closed and the other workers go
		// on, but a proxy short of a worker is not what was configured. Drain and exit
		// non-zero, so the supervisor (systemd, Kubernetes) restarts it whole; /ready
		// says DRAINING meanwhile, so load balancers stop sending new connections.
		log.Error("a worker failed; draining and exiting", "err", err, "drain_time", drainTime)
		exit = 1
	} else {
		if hr.handingOver(sig) {
			drainTime = hr.restartDrain
		}
		log.Info("draining", "signal", sig.String(), "drain_time", drainTime)
	}
	adm.SetState(admin.Draining)
	// No update applies from here on: the drain owns the listeners.
	mgr.Stop()
	// Every step is bounded and a signal cuts it short, so that shutdown ends within the
	// drain time and a few seconds whatever a connection or an access-log sink does.
	st := &stopper{sigs: sigs, log: log}
	var drained bool
	if st.step("drain", hr.stepLimit(drainTime), true, func(context.Context) { drained = hr.drain(srv, drainTime) }) && !drained {
		log.Warn("drain time over; closing remaining connections", "active", srv.ActiveConnections())
	}
	st.step("stop resolvers and health checkers", stopStepTimeout, false, func(context.Context) {
		stopRunners()
		runners.Wait()
	})
	st.step("close connections", stopStepTimeout, false, func(context.Context) { srv.Close() })
	st.step("close admin", stopStepTimeout, false, func(context.Context) { adm.Close() })
	st.step("flush access logs", stopStepTimeout, false, func(ctx context.Context) {
		closeAll(ctx, append(cfg.Closers, mgr.Closers()...), log)
	})
	hr.exit()
	log.Info("portico stopped", "exit_code", exit)
	return exit
}

// stopStepTimeout bounds each shutdown step after the drain; hurryTimeout is what the
// remaining steps get in all once a second signal has come; cancelGrace is how long a step
// may take to return once its context is cancelled.
const (
	stopStepTimeout = 2 * time.Second
	hurryTimeout    = time.Second
	cancelGrace     = 100 * time.Millisecond
)

// stopper runs the steps of a shutdown while it keeps reading signals. The first SIGTERM
// or SIGINT after the one that started the shutdown cuts a drain short and leaves
// hurryTimeout to all the steps that remain; one more and nothing more is waited for.
type stopper struct {
	sigs    <-chan os.Signal
	log     *slog.Logger
	hurryBy time.Time // zero until a second signal
	abort   bool
}

// step runs f on its own goroutine and waits for it at most limit (less when hurried).
// It reports whether f returned. At the deadline f's context is cancelled and f has
// cancelGrace to return (a Writer then reports what it could not write); after that it is
// left running: the process is about to exit. cutShort gives up at the second signal.
func (s *stopper) step(name string, limit time.Duration, cutShort bool, f func(ctx context.Context)) bool {
	if s.abort {
		return false
	}
	deadline := time.Now().Add(limit)
	if !s.hurryBy.IsZero() && s.hurryBy.Before(deadline) {
		deadline = s.hurryBy
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case <-done:
			return true
		case <-timer.C:
			if ctx.Err() == nil {
				cancel(fmt.Errorf("shutdown step %q out of time", name))
				timer.Reset(cancelGrace)
				continue
			}
			s.log.Warn("shutdown step not finished in time; going on", "step", name)
			return false
		case sig := <-s.sigs:
			if sig == syscall.SIGHUP {
				logSIGHUP(s.log)
				continue
			}
			if !s.hurryBy.IsZero() {
				s.log.Warn("another signal; exiting now", "signal", sig.String(), "step", name)
				s.abort = true
				return false
			}
			s.hurryBy = time.Now().Add(hurryTimeout)
			s.log.Warn("second signal; closing now", "signal", sig.String(), "step", name)
			if cutShort {
				return false
			}
			if ctx.Err() == nil && s.hurryBy.Before(deadline) {
				deadline = s.hurryBy
				timer.Reset(time.Until(deadline))
			}
		}
	}
}

// closeAll closes what the configuration opened, all at once so that a stuck sink does
// not use up the time of the others; a closer that takes a context (an access-log
// Writer) is given ctx, the others are waited for by the step.
func closeAll(ctx context.Context, closers []io.Closer, log *slog.Logger) {
	var wg sync.WaitGroup
	for _, c := range closers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if cc, ok := c.(interface{ CloseContext(context.Context) error }); ok {
				err = cc.CloseContext(ctx)
			} else {
				err = c.Close()
			}
			if err != nil {
				log.Warn("closing", "error", err)
			}
		}()
	}
	wg.Wait()
}

// nextSignal waits for SIGTERM or SIGINT (returned), or for a worker to fail (its error);
// SIGHUP is logged and ignored.
func nextSignal(sigs <-chan os.Signal, fatal <-chan error, log *slog.Logger) (os.Signal, error) {
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				return sig, nil
			}
			logSIGHUP(log)
		case err := <-fatal:
			return nil, err
		}
	}
}

// logSIGHUP: as in Envoy, a running process does not reload on SIGHUP: LDS/CDS files are
// applied when they are replaced, and `portico restart` turns SIGHUP into a hot restart.
func logSIGHUP(log *slog.Logger) {
	log.Warn("SIGHUP received; ignoring (LDS/CDS files apply when replaced; `portico restart` hot-restarts on SIGHUP)")
}

// spareP gives the Go scheduler one P more than there are workers, unless GOMAXPROCS was
// set by the user. Each worker keeps a P and blocks in epoll_wait through a syscall. With
// no P to spare (GOMAXPROCS equals the worker count, as under taskset or a CPU quota with
// the default concurrency), sysmon takes a blocked worker's P after 20 µs and the worker
// must win it back, with futex calls and context switches, on every wake-up. In the SNI
// benchmark that was 27 % of the proxy's CPU per TLS handshake (508 → 369 µs).
func spareP(workers int, log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n := runtime.GOMAXPROCS(0); n < workers+1 {
		runtime.GOMAXPROCS(workers + 1)
		log.Debug("GOMAXPROCS raised for a spare P", "from", n, "to", workers+1)
	}
}
