// Package testenv starts private MariaDB, Redis and nginx processes on free
// loopback ports, in a directory of the caller's choosing, for integration
// tests and for the local cluster (scripts/cluster).
//
// Every process is started by this package, waited for until it really
// answers (a SQL query, a Redis PING, an accepted TCP connection), and stopped
// by its own pid: nothing here ever signals a process it did not start, and
// nothing uses the standard ports (3306, 6379, 80) or a service the machine
// already runs.
//
// The core API (StartMariaDB, StartRedis, StartNginx, StartProcess) takes a
// context and a directory and does not depend on package testing; the
// helpers in testing.go (MariaDBForTest, RedisForTest, NginxForTest) wrap it
// with t.TempDir and t.Cleanup.
//
// When a required binary is missing, the error names it and says to run
// `make deps`.
package testenv
