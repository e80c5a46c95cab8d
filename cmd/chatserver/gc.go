package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// GC policy (settings runtime.gc_percent and runtime.memory_limit).
//
// A chat server's heap is mostly its connections, which are mostly idle:
// much live heap, little allocation. Go's default GOGC=100 lets the heap
// grow to twice the live heap between collections, and the runtime keeps
// about that much resident, so each idle connection costs about twice its
// live bytes. The default policy, "auto", gives the heap headroom of half
// the live heap but at least autoMinHeadroom: a server whose live heap is
// below autoMinHeadroom collects exactly as with GOGC=100 (a busy server
// with few connections pays no extra GC CPU), GOGC falls from 100 to 50
// between autoMinHeadroom and 2*autoMinHeadroom of live heap, and is 50
// above (19,000 idle connections: ~18 MiB live, 2,839 -> 2,372 B of RSS
// each). More collections cost CPU in proportion to the allocation rate,
// which on an idle-connection heap is small; the pairs benchmark (live heap
// ~4 MiB) keeps GOGC=100.
const (
	autoMinHeadroom = 8 << 20
	autoMinPercent  = 50
	autoMaxPercent  = 100
	autoInterval    = 500 * time.Millisecond
)

// gcPolicy is the parsed runtime.gc_percent setting.
type gcPolicy struct {
	auto    bool // adjust GOGC to the live heap (autoPercent)
	percent int  // fixed GOGC when !auto (-1: off)
}

// parseGCPolicy reads runtime.gc_percent: "auto", "off", or an integer
// >= 1. An empty value means the GOGC environment variable if it is set
// (the runtime already applied it), else "auto".
func parseGCPolicy(s string) (gcPolicy, bool, error) {
	s, fromEnv := runtimeSetting(s, "GOGC")
	switch {
	case fromEnv:
		return gcPolicy{}, false, nil // GOGC as the runtime read it
	case s == "auto":
		return gcPolicy{auto: true}, true, nil
	case s == "off":
		return gcPolicy{percent: -1}, true, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return gcPolicy{}, false, fmt.Errorf("runtime.gc_percent = %q: want auto, off or an integer >= 1", s)
	}
	return gcPolicy{percent: n}, true, nil
}

// runtimeSetting normalises a runtime.* setting whose empty value defers
// to the runtime's environment variable env: fromEnv when s is empty and
// env is set (the runtime already applied it), else s trimmed, "auto" when
// empty.
func runtimeSetting(s, env string) (value string, fromEnv bool) {
	s = strings.TrimSpace(s)
	if s == "" && os.Getenv(env) != "" {
		return "", true
	}
	if s == "" {
		s = "auto"
	}
	return s, false
}

// parseMemoryLimit reads runtime.memory_limit: bytes with an optional
// KiB/MiB/GiB/TiB suffix (as GOMEMLIMIT), or empty/0 for none beyond
// GOMEMLIMIT's.
func parseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("runtime.memory_limit = %q: want bytes, optionally with KiB, MiB, GiB or TiB", s)
	}
	return n * mult, nil
}

// autoPercent is the GOGC that gives a live heap of live bytes the auto
// policy's headroom.
func autoPercent(live uint64) int {
	if live == 0 {
		return autoMaxPercent
	}
	headroom := max(live/2, autoMinHeadroom)
	p := int(min(headroom*100/live, autoMaxPercent))
	return max(p, autoMinPercent)
}

// applyGC applies the GC settings; with the auto policy it runs the tuner
// until ctx ends.
func applyGC(ctx context.Context, p gcPolicy, set bool, memLimit int64, log *slog.Logger) {
	if memLimit > 0 {
		debug.SetMemoryLimit(memLimit)
	}
	if !set {
		return
	}
	if !p.auto {
		debug.SetGCPercent(p.percent)
		return
	}
	debug.SetGCPercent(autoMaxPercent)
	go tuneGC(ctx, log)
}

// tuneGC sets GOGC from the live heap after each collection (checked every
// autoInterval: the live heap changes only at a collection).
func tuneGC(ctx context.Context, log *slog.Logger) {
	samples := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(autoInterval)
	defer t.Stop()
	var cycles uint64
	cur := autoMaxPercent
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(samples)
		if samples[0].Value.Kind() != metrics.KindUint64 || samples[1].Value.Kind() != metrics.KindUint64 {
			log.Warn("gc tuner: runtime metrics unavailable; GOGC stays 100")
			return
		}
		if c := samples[0].Value.Uint64(); c == cycles {
			continue
		} else {
			cycles = c
		}
		if p := autoPercent(samples[1].Value.Uint64()); p != cur {
			debug.SetGCPercent(p)
			cur = p
		}
	}
}
