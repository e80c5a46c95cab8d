// Package servertest builds and runs real chatserver processes for the
// end-to-end tests of the client library and chatclient.
package servertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles the package pkg (e.g. "clusterchat/cmd/chatserver") into
// dir and returns the binary's path.
func Build(ctx context.Context, dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// ServerBinary returns the chatserver binary to test: $CHATSERVER_BIN when
// set (a prebuilt binary), else cmd/chatserver built into dir.
func ServerBinary(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv("CHATSERVER_BIN"); bin != "" {
		return bin, nil
	}
	return Build(ctx, dir, "clusterchat/cmd/chatserver")
}

// FreeAddr returns a free loopback address "127.0.0.1:PORT".
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Server is a running chatserver.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{}

	waitErr error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Pid returns the server's process id (for RSS and CPU readings).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Logs returns what the server wrote to stderr and stdout.
func (s *Server) Logs() string { return s.logs.String() }

// Start runs bin with --listen on a free port, --store sqlite in dir and
// --bcrypt-cost 4 plus extra flags, waits until it accepts connections and
// registers a cleanup that stops it (SIGTERM, then SIGKILL) by its pid.
func Start(t testing.TB, bin, dir string, extra ...string) *Server {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return StartAt(t, bin, dir, addr, extra...)
}

// StartAt is Start on a given address (to restart a server in place).
func StartAt(t testing.TB, bin, dir, addr string, extra ...string) *Server {
	t.Helper()
	args := append([]string{"--listen", addr, "--store", "sqlite:" + filepath.Join(dir, "chat.db"), "--bcrypt-cost", "4"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	s := &Server{Addr: addr, cmd: cmd, logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chatserver: %v", err)
	}
	go func() { s.waitErr = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("chatserver logs:\n%s", s.Logs())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("chatserver exited before listening: %s", s.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatserver not listening on %s after 30 s: %s", addr, s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM, waits up to 10 s for the exit (then SIGKILL) and
// returns the process's exit error. It may be called more than once.
func (s *Server) Stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return s.waitErr
}
