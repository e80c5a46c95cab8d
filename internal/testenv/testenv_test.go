package testenv

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testCtx returns a context that ends with the test or after d.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitGone polls until pid no longer runs exe.
func waitGone(t *testing.T, pid int, exe string) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	err := poll(ctx, func(context.Context) error {
		if PidAlive(pid, exe) {
			return context.DeadlineExceeded
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s pid %d still running: %v", exe, pid, err)
	}
}

func TestMariaDB(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	m := MariaDBForTest(t)
	if m.Port == 3306 {
		t.Fatalf("private mariadb on the standard port")
	}
	if err := m.CreateDatabase(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateDatabase(ctx, "bad-name;"); err == nil {
		t.Fatal("CreateDatabase accepted a bad name")
	}
	db, err := sql.Open("mysql", m.DSN("chat"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(20)) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1, ?)", "héllo ✓"); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		var s string
		if err := db.QueryRowContext(ctx, "SELECT s FROM t WHERE id = 1").Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s != "héllo ✓" {
			t.Fatalf("got %q", s)
		}
	}
	check()

	pid := m.Pid()
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, "mariadbd")
	if m.Pid() != 0 {
		t.Fatalf("Pid after Stop = %d", m.Pid())
	}
	port := m.Port
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Port != port {
		t.Fatalf("restart moved port %d -> %d", port, m.Port)
	}
	check() // data survived; the pool reconnects

	// The server options: and a commit survives SIGKILL of mariadbd with
	// innodb_flush_log_at_trx_commit=2.
	var flush, logBin int
	var threads string
	if err := db.QueryRowContext(ctx, "SELECT @@innodb_flush_log_at_trx_commit, @@log_bin, @@thread_handling").Scan(&flush, &logBin, &threads); err != nil {
		t.Fatal(err)
	}
	if flush != 2 || logBin != 0 || threads != "pool-of-threads" {
		t.Fatalf("flush_log_at_trx_commit %d, log_bin %d, thread_handling %q; want 2, 0, pool-of-threads", flush, logBin, threads)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (2, 'committed')"); err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := db.QueryRowContext(ctx, "SELECT s FROM t WHERE id = 2").Scan(&s); err != nil || s != "committed" {
		t.Fatalf("row committed before SIGKILL: %q, %v", s, err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, m.proc.Pid(), "mariadbd")
}

func TestRedisPubSub(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	r := RedisForTest(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	opt, err := redis.ParseURL(r.URL())
	if err != nil || opt.Addr != r.Addr() {
		t.Fatalf("URL %q: %v %v", r.URL(), opt, err)
	}

	roundTrip := func() {
		t.Helper()
		sub := rdb.Subscribe(ctx, "user:42")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // subscription confirmed
			t.Fatal(err)
		}
		n, err := rdb.Publish(ctx, "user:42", "hello").Result()
		if err != nil || n != 1 {
			t.Fatalf("publish: %d receivers, %v", n, err)
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Channel != "user:42" || msg.Payload != "hello" {
			t.Fatalf("got %+v", msg)
		}
	}
	roundTrip()

	pid := r.Pid()
	port := r.Port
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, "redis-server")
	if r.Port != port {
		t.Fatalf("restart moved port %d -> %d", port, r.Port)
	}
	roundTrip()
	pid = r.Pid()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, "redis-server")
}

func TestPidAlive(t *testing.T) {
	r := RedisForTest(t)
	pid := r.Pid()
	if !PidAlive(pid, "redis-server") || !PidAlive(pid, "") {
		t.Fatalf("PidAlive(%d, redis-server) = false for a running redis", pid)
	}
	if PidAlive(pid, "mariadbd") {
		t.Fatalf("PidAlive(%d, mariadbd) = true for redis", pid)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if PidAlive(pid, "redis-server") || PidAlive(pid, "") {
		t.Fatalf("PidAlive true after Stop")
	}
	if PidAlive(0, "") || PidAlive(-1, "") {
		t.Fatal("PidAlive true for pid <= 0")
	}
}
