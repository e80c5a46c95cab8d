package main

import (
	"fmt"
	"strconv"
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
// limit) when the store or the bus is reached over the network (MySQL,
// Redis): Go code still has all the cores when the loops are idle, and the
// loops cannot take them away when they are. Measured on the 2-core box
// (cluster of two servers, MariaDB, Redis, chatbench pairs crossing servers;
// docs/benchmarks.md): send→delivery p99 at 1,000 msg/s 142-168 ms with
// GOMAXPROCS=2 against 8-11 ms with 4, and at 5,000 msg/s 67-375 ms
// against 32-65 ms. A one-node server (SQLite, memory bus) waits on no
// connection in its hot path and keeps the runtime's default: with 4 Ps its
// group fan-out cost 8 % more CPU per message (705-716 -> 764-774 us at
// 2,000 messages/s to groups of 500) and its 1:1 figures did not change.

// parseProcs reads runtime.procs: "auto", or an integer >= 1 for
// GOMAXPROCS itself. An empty value means the GOMAXPROCS environment
// variable if it is set (the runtime already applied it), else "auto". It
// returns the GOMAXPROCS to set, or 0 to leave the runtime's.
// defaultProcs is the runtime's own default, loops the server's event
// loops, networked whether the store or the bus is a network service.
func parseProcs(s string, defaultProcs, loops int, networked bool) (int, error) {
	s, fromEnv := runtimeSetting(s, "GOMAXPROCS")
	switch {
	case fromEnv || (s == "auto" && !networked):
		return 0, nil
	case s == "auto":
		return defaultProcs + loops, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("runtime.procs = %q: want auto or an integer >= 1", s)
	}
	return n, nil
}
