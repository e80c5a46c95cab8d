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
// 10 ms when the process has been quiet. With GOMAXPROCS equal to the
// number of cores and one loop per core, the idle loops can hold every P,
// and whatever becomes runnable meanwhile waits for sysmon: a goroutine
// whose MariaDB or Redis reply has arrived (the runtime's own network
// poller runs only on a P), a worker woken by the store's writer, the
// writer woken by its linger timer.
//
// "auto", the default unless GOMAXPROCS is set, therefore adds one P per
// event loop to the runtime's default (the cores, or the container's CPU
// limit): Go code still has all the cores when the loops are idle, and the
// loops cannot take them away when they are. Measured on the 2-core box:
//
//   - Cluster of two servers (MariaDB, Redis, chatbench pairs crossing
//     servers; docs/benchmarks.md): send→delivery p99 at 1,000 msg/s
//     142-168 ms with GOMAXPROCS=2 against 8-11 ms with 4, and at 5,000
//     msg/s 67-375 ms against 32-65 ms.
//   - One node (SQLite, memory bus), chatbench pairs 500 at 20/s (10,000
//     msg/s), seven alternating runs each: send→ack p99 11.9 / 11.6 / 12.5
//     / 14.6 / 14.2 / 21.1 / 20.7 ms with GOMAXPROCS=2 against 9.1 / 9.0 /
//     11.4 / 11.0 / 14.5 / 13.4 / 15.1 ms with 4 (send→delivery within 0.4
//     ms of each). A build that timed the store writer's batches saw 8-9
//     batches a run whose gathering (a 2 ms linger at most) took 4-19 ms,
//     every worker and the writer waiting for a P held by a loop in
//     epoll_wait; with 4 Ps 0, 0 and 3.
//     Unpaced: 29,007-29,250 acks/s against 29,721-29,869. Groups of 500
//     at 2,000 msgs/s: the same 997,000 pushes/s, p99 107-175 ms against
//     35-41 ms, for 3-4 % more server CPU per message (522-537 against
//     545-554 µs).
//
// (Until round 14 a one-node server kept the runtime's default; the
// measurement then, before the store writer and the executor were what they
// are now, showed no gain in its 1:1 figures.)

// parseProcs reads runtime.procs: "auto", or an integer >= 1 for
// GOMAXPROCS itself. An empty value means the GOMAXPROCS environment
// variable if it is set (the runtime already applied it), else "auto". It
// returns the GOMAXPROCS to set, or 0 to leave the runtime's.
// defaultProcs is the runtime's own default, loops the server's event
// loops.
func parseProcs(s string, defaultProcs, loops int) (int, error) {
	s, fromEnv := runtimeSetting(s, "GOMAXPROCS")
	switch {
	case fromEnv:
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
