// Package bench is chatbench: the load generator of ClusterChat. It
// registers its own users, sets up friendships or groups, drives one of four
// scenarios (pairs, group, conns, storm) through the client library, checks
// every message (lost, duplicated, out of order) and reports throughput,
// latency percentiles (HdrHistogram) and the servers' RSS and CPU time.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/client"
)

// ErrCheckFailed: the run completed but messages were lost, duplicated or
// delivered out of order (exit status 3).
var ErrCheckFailed = errors.New("chatbench: delivery check failed")

// stats are the live counters of a run (atomics: written by many goroutines).
type stats struct {
	sent, acked, failed   atomic.Int64
	expected              atomic.Int64 // deliveries owed: acked × recipients
	delivered, unique     atomic.Int64
	duplicated            atomic.Int64
	outOfOrder            atomic.Int64
	otherPushes           atomic.Int64
	badPushes             atomic.Int64
	dupAcks               atomic.Int64 // an ack with a seq already acknowledged
	lastAck, lastDelivery atomic.Int64 // run clock, ns

	errMu sync.Mutex
	errs  map[string]int64
}

func (s *stats) addErr(err error) { s.addErrKey(errKey(err)) }

// addErrKey counts a failed send by its errKey.
func (s *stats) addErrKey(key string) {
	s.failed.Add(1)
	s.errMu.Lock()
	s.errs[key]++
	s.errMu.Unlock()
}

func (s *stats) errCount() int64 { return s.failed.Load() }

func (s *stats) errMap() map[string]int64 {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	m := make(map[string]int64, len(s.errs))
	for k, v := range s.errs {
		m[k] = v
	}
	return m
}

// errKey classifies an error: its errno ("429"), or "timeout", "closed",
// "other".
func errKey(err error) string {
	if n := client.Errno(err); n != 0 {
		return strconv.Itoa(n)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, client.ErrClosed):
		return "closed"
	}
	return "other"
}

// run is the state of one benchmark run.
type run struct {
	cfg    Config
	stderr io.Writer
	epoch  time.Time
	prefix string

	st      stats
	polls   *pollSet // reads the traffic connections (nil: a goroutine each)
	ackHist *shardedHist
	delHist *shardedHist
	lagHist *shardedHist // pacer lag: actual send − scheduled send

	progMu sync.Mutex
	phase  string
	extra  func() string // scenario-specific progress text
}

// now is the run's monotonic clock.
func (r *run) now() time.Duration { return time.Since(r.epoch) }

func (r *run) logf(format string, a ...any) {
	fmt.Fprintf(r.stderr, "chatbench: "+format+"\n", a...)
}

func (r *run) setPhase(p string, extra func() string) {
	r.progMu.Lock()
	r.phase, r.extra = p, extra
	r.progMu.Unlock()
}

// Run executes the configured scenario and writes the report: a human
// summary (stdout, or stderr with JSON) and, with cfg.JSON, one JSON line on
// stdout. It returns ErrCheckFailed when messages were lost, duplicated or
// reordered.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r := &run{
		cfg:     cfg,
		stderr:  stderr,
		epoch:   time.Now(),
		ackHist: newShardedHist(),
		delHist: newShardedHist(),
		lagHist: newShardedHist(),
	}
	r.st.errs = make(map[string]int64)
	r.prefix = cfg.Prefix
	if r.prefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		r.prefix = "b" + hex.EncodeToString(b[:])
	}
	if lim, err := raiseNoFile(); err != nil {
		r.logf("warning: %v", err)
	} else if need := r.connsNeeded(); uint64(need)+64 > lim {
		r.logf("warning: %d connections need more file descriptors than RLIMIT_NOFILE %d", need, lim)
	}
	for _, pid := range cfg.PIDs {
		if _, err := readProc(pid); err != nil {
			return fmt.Errorf("%w: --server-pid: %w", ErrUsage, err)
		}
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	rep := &Report{
		Scenario: cfg.Scenario,
		Addrs:    cfg.Addrs,
		Started:  r.epoch.UTC().Format(time.RFC3339),
		Prefix:   r.prefix,
	}
	stopProgress := r.startProgress()
	var err error
	switch cfg.Scenario {
	case ScenarioPairs, ScenarioGroup:
		if !cfg.goroutineReaders {
			r.polls = newPollSet(r)
		}
		err = r.traffic(ctx, rep)
		r.polls.close()
	case ScenarioConns:
		err = r.conns(ctx, rep)
	case ScenarioStorm:
		err = r.storm(ctx, rep)
	}
	stopProgress()
	rep.BenchCPUS = roundTo(selfCPU().Seconds(), 2)
	if self, err := readProc(os.Getpid()); err == nil {
		rep.BenchPeakRSSKiB = self.hwmKiB
	}
	rep.ElapsedS = roundTo(r.now().Seconds(), 2)
	if err != nil && !errors.Is(err, ErrCheckFailed) {
		return err
	}
	human := stdout
	if cfg.JSON {
		human = stderr
	}
	rep.writeHuman(human)
	if cfg.JSON {
		if err := rep.writeJSON(stdout); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if rep.Lost > 0 || rep.Duplicated > 0 || rep.OutOfOrder > 0 {
		return fmt.Errorf("%w: %d lost, %d duplicated, %d out of order", ErrCheckFailed, rep.Lost, rep.Duplicated, rep.OutOfOrder)
	}
	return nil
}

// connsNeeded is how many client connections the scenario opens.
func (r *run) connsNeeded() int {
	switch r.cfg.Scenario {
	case ScenarioPairs:
		return 2 * r.cfg.Pairs
	case ScenarioGroup:
		return r.cfg.GroupSize * r.cfg.Groups
	case ScenarioConns:
		return r.cfg.Conns
	default:
		return r.cfg.Storm
	}
}

// startProgress prints a line to stderr every second until the returned
// func is called.
func (r *run) startProgress() func() {
	if r.cfg.Quiet {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var ps, pa, pd int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			s, a, d := r.st.sent.Load(), r.st.acked.Load(), r.st.delivered.Load()
			r.progMu.Lock()
			phase, extra := r.phase, r.extra
			r.progMu.Unlock()
			line := fmt.Sprintf("[%5.1fs] %-8s", r.now().Seconds(), phase)
			if s > 0 || d > 0 {
				line += fmt.Sprintf(" sent %d (%d/s) acked %d (%d/s) delivered %d (%d/s) errors %d",
					s, s-ps, a, a-pa, d, d-pd, r.st.errCount())
			}
			if extra != nil {
				line += " " + extra()
			}
			line += r.rssText()
			fmt.Fprintln(r.stderr, line)
			ps, pa, pd = s, a, d
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (r *run) rssText() string {
	out := ""
	for _, pid := range r.cfg.PIDs {
		if s, err := readProc(pid); err == nil {
			out += fmt.Sprintf(" rss[%d] %.1f MiB", pid, float64(s.rssKiB)/1024)
		}
	}
	return out
}

// sampleServers reads every --server-pid.
func (r *run) sampleServers() []procSample {
	out := make([]procSample, len(r.cfg.PIDs))
	for i, pid := range r.cfg.PIDs {
		s, err := readProc(pid)
		if err != nil {
			r.logf("warning: %v", err)
		}
		out[i] = s
	}
	return out
}

// serverReport turns samples at the start and end of the measured window
// into the report's per-server figures.
func (r *run) serverReport(before, after []procSample, window time.Duration) []ServerStat {
	out := make([]ServerStat, len(r.cfg.PIDs))
	for i, pid := range r.cfg.PIDs {
		cpu := after[i].cpu - before[i].cpu
		out[i] = ServerStat{
			PID:    pid,
			RSSKiB: after[i].rssKiB,
			HWMKiB: after[i].hwmKiB,
			CPUS:   roundTo(cpu.Seconds(), 2),
		}
		if window > 0 {
			out[i].CPUPct = roundTo(100*cpu.Seconds()/window.Seconds(), 1)
		}
	}
	return out
}

func roundTo(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

func sortedKeys(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
