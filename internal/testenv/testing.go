package testenv

import (
	"context"
	"testing"
	"time"
)

// startTimeout bounds how long a ForTest helper waits for a service.
const startTimeout = 2 * time.Minute

// MariaDBForTest starts a private MariaDB in t.TempDir() and stops it in
// t.Cleanup. It fails the test if the server cannot start.
func MariaDBForTest(t testing.TB) *MariaDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	m, err := StartMariaDB(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("start mariadb: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("stop mariadb: %v", err)
		}
	})
	return m
}

// RedisForTest starts a private Redis in t.TempDir() and stops it in
// t.Cleanup.
func RedisForTest(t testing.TB) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	r, err := StartRedis(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("start redis: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stop redis: %v", err)
		}
	})
	return r
}

// NginxForTest starts a private nginx in t.TempDir() for cfg and stops it in
// t.Cleanup. Unless cfg.Workers is set it runs as a single process
// (master_process off), so nothing can outlive a crashed test.
func NginxForTest(t testing.TB, cfg NginxConfig) *Nginx {
	t.Helper()
	if cfg.Workers == 0 {
		cfg.SingleProcess = true
	}
	if cfg.WorkerConnections == 0 {
		cfg.WorkerConnections = 4096
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	n, err := StartNginx(ctx, t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("stop nginx: %v", err)
		}
	})
	return n
}
