// Command chatbench is ClusterChat's load generator: it registers its own
// users, drives one scenario (pairs, group, conns, storm) against one or
// more chatservers, checks every message and reports throughput, latency
// percentiles and the servers' RSS. See docs/benchmarks.md.
//
// Exit status: 0 ok, 1 the run failed, 2 bad command line, 3 the checks
// failed (messages lost, duplicated or out of order; idle connections
// dropped; storm clients not logged in).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"clusterchat/cmd/chatbench/bench"
)

func main() {
	cfg, err := bench.ParseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = bench.Run(ctx, cfg, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, bench.ErrCheckFailed):
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(3)
	case errors.Is(err, bench.ErrUsage):
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		stop()
		os.Exit(1)
	}
}
