package netcore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holder is a child process holding client connections.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

// startHolder runs this test binary in hold mode with n connections to addr
// and waits until all of them have echoed a frame.
func startHolder(tb testing.TB, addr string, n int) *holder {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETCORE_HOLD_ADDR="+addr, "NETCORE_HOLD_CONNS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { h.done <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-h.done
		}
	})
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			tb.Fatalf("holder: %q", line)
		}
	case err := <-h.done:
		tb.Fatalf("holder exited: %v", err)
	case <-time.After(120 * time.Second):
		tb.Fatal("holder not ready")
	}
	return h
}

// release closes the holder's connections and waits for it to exit.
func (h *holder) release(tb testing.TB) {
	tb.Helper()
	_ = h.stdin.Close()
	select {
	case err := <-h.done:
		h.done <- err
		if err != nil {
			tb.Fatalf("holder: %v", err)
		}
	case <-time.After(30 * time.Second):
		tb.Fatal("holder did not exit")
	}
}

// rssBytes returns this process's resident set size.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

func settledRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rssBytes()
}

func TestTenThousandConns(t *testing.T) {
	const n = 10000
	s := startServer(t, echoOpts())
	before := settledRSS()
	h := startHolder(t, s.Addr().String(), n)
	waitFor(t, 30*time.Second, "10,000 connections", func() bool { return s.Stats().Conns == n })
	after := settledRSS()
	st := s.Stats()
	if st.Accepted != n || st.FramesIn != n || st.FramesOut != n {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("RSS %d -> %d bytes: %d bytes per connection (race detector on: %v)",
		before, after, (after-before)/n, raceEnabled)
	// Broadcast to every connection from outside the loops.
	var visited int
	s.Range(func(c *Conn) bool {
		visited++
		return c.Send([]byte("hi")) == nil
	})
	if visited != n {
		t.Fatalf("Range visited %d", visited)
	}
	waitFor(t, 30*time.Second, "broadcast sent", func() bool { return s.Stats().FramesOut == 2*n })
	h.release(t)
	waitFor(t, 30*time.Second, "all closed", func() bool { return s.Stats().Conns == 0 })
	if got := s.Stats().Closes[ReasonPeer]; got != n {
		t.Fatalf("Closes[peer] = %d", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(fmt.Errorf("shutdown: %w", err))
	}
}

func numGoroutine() int { return runtime.NumGoroutine() }
