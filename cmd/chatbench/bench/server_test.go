package bench

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"clusterchat/client/servertest"
)

// TestRealServer runs every scenario briefly against a real chatserver
// (cmd/chatserver built into a temporary directory, or $CHATSERVER_BIN):
// the server must acknowledge and deliver everything, once and in order.
func TestRealServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := servertest.ServerBinary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, bin, dir)
	pid := srv.pid

	t.Run("pairs", func(t *testing.T) {
		cfg := fakeConfig(srv.addr, ScenarioPairs)
		cfg.PIDs = []int{pid}
		cfg.Duration = time.Second
		rep, err := runBench(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Acked < 700 || rep.Acked != rep.Sent || rep.DeliveredUnique != rep.Acked || rep.Delivered != rep.Acked {
			t.Errorf("sent %d acked %d delivered %d unique %d", rep.Sent, rep.Acked, rep.Delivered, rep.DeliveredUnique)
		}
		if len(rep.Servers) != 1 || rep.Servers[0].RSSKiB <= 0 {
			t.Errorf("servers %+v", rep.Servers)
		}
	})
	t.Run("group", func(t *testing.T) {
		cfg := fakeConfig(srv.addr, ScenarioGroup)
		cfg.GroupSize, cfg.Groups, cfg.Rate = 20, 2, 50
		rep, err := runBench(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Acked == 0 || rep.Expected != 19*rep.Acked || rep.DeliveredUnique != rep.Expected {
			t.Errorf("acked %d expected %d unique %d", rep.Acked, rep.Expected, rep.DeliveredUnique)
		}
	})
	t.Run("conns", func(t *testing.T) {
		cfg := fakeConfig(srv.addr, ScenarioConns)
		cfg.Conns, cfg.PingEvery, cfg.PIDs = 200, 200*time.Millisecond, []int{pid}
		rep, err := runBench(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Conns.Open != 200 || rep.Conns.Pings < 300 || rep.Conns.RSSPerConnB <= 0 {
			t.Errorf("conns %+v", rep.Conns)
		}
	})
	t.Run("storm", func(t *testing.T) {
		cfg := fakeConfig(srv.addr, ScenarioStorm)
		cfg.Storm, cfg.Duration = 200, 20*time.Second
		rep, err := runBench(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Storm.OK != 200 {
			t.Errorf("storm %+v", rep.Storm)
		}
	})
}

type testServer struct {
	addr string
	pid  int
}

// startServer runs bin on a free port with the benchmark settings and
// stops it (SIGTERM, then SIGKILL after 10 s) when the test ends.
func startServer(t *testing.T, bin, dir string) testServer {
	t.Helper()
	addr, err := servertest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", addr, "--store", "sqlite:"+filepath.Join(dir, "chat.db"),
		"--bcrypt-cost", "4", "--msg-rate", "0", "--msg-burst", "0", "--log-level", "warn")
	logs := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chatserver: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("chatserver logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return testServer{addr: addr, pid: cmd.Process.Pid}
		}
		select {
		case <-done:
			t.Fatalf("chatserver exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatserver not listening on %s after 30 s: %s", addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
