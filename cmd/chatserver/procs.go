package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Processor policy (setting runtime.procs).
//
// Each netcore event loop is a gnet poller that waits in a blocking
// epoll_wait(2). A goroutine in a system call keeps its P (the runtime's
// right to run Go code) until sysmon takes it back, which can take up to
// 10 ms when the process has been quiet, and the runtime's own network
// poller (database and Redis connections, the admin server) runs only on a
// P. With GOMAXPROCS equal to the number of cores and one loop per core,
// the idle loops can hold every P: a goroutine whose MariaDB or Redis
// reply has arrived waits for sysmon before it runs, once per round trip.
//
// "auto", the default unless GOMAXPROCS is set, therefore adds one P per
// event loop to the runtime's default (the cores, or the container's CPU
// limit): Go code still has all the cores when the loops are idle, and the
// loops cannot take them away when they are. Measured on the 2-core box
// (cluster of two servers, MariaDB, Redis, chatbench pairs crossing servers;
// docs/benchmarks.md): send→delivery p99 at 1,000 msg/s 93 ms with
// GOMAXPROCS=2 against 11-14 ms with 3 or 4, and at 5,000 msg/s 132-342 ms
// against 33-49 ms; the one-node (SQLite) figures did not change.

// parseProcs reads runtime.procs: "auto", or an integer >= 1 for
// GOMAXPROCS itself. An empty value means the GOMAXPROCS environment
// variable if it is set (the runtime already applied it), else "auto". It
// returns the GOMAXPROCS to set, or 0 to leave the runtime's.
// defaultProcs is the runtime's own default, loops the server's event
// loops.
func parseProcs(s string, defaultProcs, loops int) (int, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" && os.Getenv("GOMAXPROCS") != "":
		return 0, nil
	case s == "" || s == "auto":
		return defaultProcs + loops, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("runtime.procs = %q: want auto or an integer >= 1", s)
	}
	return n, nil
}
