package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverBin is the chatserver binary built once by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if bin := os.Getenv("E2E_CHATSERVER"); bin != "" { // a prebuilt binary
		serverBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "chat-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var flags []string
	if os.Getenv("E2E_RACE_SERVER") != "" {
		flags = append(flags, "-race")
	}
	serverBin, err = BuildServer(ctx, dir, flags...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// nodeTarget is one chatserver on SQLite with the in-process bus.
type nodeTarget struct {
	proc *ServerProc
}

func (n *nodeTarget) Addrs() []string { return []string{n.proc.Addr()} }

// Logs returns the server's log so far.
func (n *nodeTarget) Logs() string { return n.proc.Logs() }

func (n *nodeTarget) Crash(t *testing.T) {
	t.Helper()
	if err := n.proc.Kill(); err != nil {
		t.Fatal(err)
	}
}

func (n *nodeTarget) Restart(t *testing.T) {
	t.Helper()
	if err := n.proc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func (n *nodeTarget) Terminate(t *testing.T, within time.Duration) error {
	d, err := n.proc.Terminate(within)
	if err != nil {
		return fmt.Errorf("after %v: %w", d, err)
	}
	return nil
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startNode starts one chatserver on a fresh SQLite file.
func startNode(t *testing.T, flags ...string) Target {
	t.Helper()
	dir := t.TempDir()
	proc, err := StartServer(t.Context(), ServerOptions{
		Bin:   serverBin,
		Dir:   dir,
		Store: "sqlite:" + filepath.Join(dir, "chat.db"),
		Bus:   "memory",
		Node:  "n1",
		Flags: flags,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop()
		if tr := proc.Trouble(); tr != "" {
			t.Errorf("chatserver reported trouble:\n%s", tr)
		}
		if t.Failed() {
			t.Logf("chatserver %v log (tail):\n%s", proc.Args, tailLines(proc.Logs(), 150))
		}
	})
	return &nodeTarget{proc: proc}
}

// TestOneNode runs the whole suite against one chatserver (SQLite + memory bus).
func TestOneNode(t *testing.T) {
	RunSuite(t, startNode)
}

// TestAdmin checks the admin endpoint of the run contract (§7): /healthz
// and Prometheus /metrics.
func TestAdmin(t *testing.T) {
	n := startNode(t).(*nodeTarget)
	// Readiness is "the listen port accepts"; the admin port may follow a moment later.
	var err error
	waitFor(t, 5*time.Second, "GET /healthz 200", func() bool {
		err = n.proc.Healthz(t.Context())
		return err == nil
	})
	c := Dial(t, n.proc.Addr(), "m")
	c.OK(4, nil)
	body, err := n.proc.AdminGet(t.Context(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, "# TYPE ") || !strings.Contains(body, "# HELP ") {
		t.Errorf("/metrics is not Prometheus text: %.300s", body)
	}
}

// TestRunContract checks §7's configuration order: a flag beats the
// environment (CHAT_ + key upper-cased, "." → "_"), which beats the file.
func TestRunContract(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chat.yaml")
	if err := os.WriteFile(cfg, []byte("limits:\n  max_frame: 1024\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// maxFrame reports the limit a server actually enforces: 1024 or 2048 or 4096 (or more).
	probe := func(t *testing.T, opts ServerOptions) int {
		t.Helper()
		opts.Bin, opts.Dir = serverBin, t.TempDir()
		opts.Store = "sqlite:" + filepath.Join(opts.Dir, "chat.db")
		proc, err := StartServer(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer proc.Stop()
		for _, n := range []int{1024, 2048, 4096} {
			c := Dial(t, proc.Addr(), "probe")
			s := `{"msgid":4,"reqid":3,"pad":""}`
			c.Send(`{"msgid":4,"reqid":3,"pad":"` + strings.Repeat("p", n+1-len(s)) + `"}`)
			f := c.TakeFrame(ReqTimeout, "answer", IsResponse)
			c.Close()
			if f.MsgID() == 299 && f.JSON.Get("errno").Int() == 413 {
				return n
			}
		}
		return 1 << 20
	}
	for _, tc := range []struct {
		name string
		opts ServerOptions
		want int
	}{
		{"file", ServerOptions{Flags: []string{"--config", cfg}}, 1024},
		{"env", ServerOptions{Env: []string{"CHAT_LIMITS_MAX_FRAME=2048"}}, 2048},
		{"env_beats_file", ServerOptions{Flags: []string{"--config", cfg}, Env: []string{"CHAT_LIMITS_MAX_FRAME=2048"}}, 2048},
		{"flag_beats_env_and_file", ServerOptions{Flags: []string{"--config", cfg, "--max-frame", "4096"}, Env: []string{"CHAT_LIMITS_MAX_FRAME=2048"}}, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := probe(t, tc.opts); got != tc.want {
				t.Errorf("max frame in force: %d, want %d", got, tc.want)
			}
		})
	}
}
