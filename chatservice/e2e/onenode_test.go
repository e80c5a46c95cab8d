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

// TestHealthz checks the admin endpoint of the run contract (§7).
func TestHealthz(t *testing.T) {
	n := startNode(t).(*nodeTarget)
	if err := n.proc.Healthz(t.Context()); err != nil {
		t.Fatal(err)
	}
}
