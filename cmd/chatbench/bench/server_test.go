package bench

import (
	"context"
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
	pid := srv.Pid()

	t.Run("pairs", func(t *testing.T) {
		cfg := fakeConfig(srv.Addr, ScenarioPairs)
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
		cfg := fakeConfig(srv.Addr, ScenarioGroup)
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
		cfg := fakeConfig(srv.Addr, ScenarioConns)
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
		cfg := fakeConfig(srv.Addr, ScenarioStorm)
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

// startServer runs bin on a free port with the benchmark settings; it is
// stopped when the test ends.
func startServer(t *testing.T, bin, dir string) *servertest.Server {
	t.Helper()
	return servertest.Start(t, bin, dir, "--msg-rate", "0", "--msg-burst", "0", "--log-level", "warn")
}
