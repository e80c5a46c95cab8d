package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildServer builds clusterchat/cmd/chatserver into dir and returns the
// binary's path. Extra go build flags (such as "-race") come first.
func BuildServer(ctx context.Context, dir string, buildFlags ...string) (string, error) {
	bin := filepath.Join(dir, "chatserver")
	args := append([]string{"build"}, buildFlags...)
	args = append(args, "-o", bin, "clusterchat/cmd/chatserver")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build chatserver: %w\n%s", err, out)
	}
	return bin, nil
}

// FreePort returns a free loopback address "127.0.0.1:PORT".
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("release free port: %w", err)
	}
	return addr, nil
}

// ServerOptions configure one chatserver process. Empty Listen/Admin pick
// free ports; empty Store/Bus/Node are left to the server's defaults.
type ServerOptions struct {
	Bin    string   // the chatserver binary
	Dir    string   // working directory (and where the log file goes)
	Listen string   // --listen
	Admin  string   // --admin
	Store  string   // --store
	Bus    string   // --bus
	Node   string   // --node
	Flags  []string // more flags, appended last (so they win)
	Env    []string // extra environment ("CHAT_LIMITS_MAX_FRAME=1024")
}

// lockedBuffer is a bytes.Buffer safe for the process's stderr copier and readers.
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

// ServerProc is one running (or stopped) chatserver process. Its methods may
// be called from any goroutine, but not concurrently with each other.
type ServerProc struct {
	Opts ServerOptions
	Args []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logs    *lockedBuffer
	starts  int
}

// StartServer starts chatserver with opts and waits until its listen port
// accepts (at most 20 s, or until ctx ends).
func StartServer(ctx context.Context, opts ServerOptions) (*ServerProc, error) {
	var err error
	if opts.Listen == "" {
		if opts.Listen, err = FreePort(); err != nil {
			return nil, err
		}
	}
	// A port just released can be handed out again: the admin port must
	// not be the listen port picked a moment before (seen once in a test run:
	// "admin listen ...: address already in use").
	for opts.Admin == "" || opts.Admin == opts.Listen {
		if opts.Admin, err = FreePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"--listen", opts.Listen, "--admin", opts.Admin, "--bcrypt-cost", "4"}
	if opts.Store != "" {
		args = append(args, "--store", opts.Store)
	}
	if opts.Bus != "" {
		args = append(args, "--bus", opts.Bus)
	}
	if opts.Node != "" {
		args = append(args, "--node", opts.Node)
	}
	args = append(args, opts.Flags...)
	s := &ServerProc{Opts: opts, Args: args, logs: &lockedBuffer{}}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Start (re)starts the process with the same arguments and waits until it is ready.
func (s *ServerProc) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.cmd != nil && !s.exited() {
		s.mu.Unlock()
		return errors.New("chatserver already running")
	}
	s.starts++
	fmt.Fprintf(s.logs, "=== start #%d: chatserver %s\n", s.starts, strings.Join(s.Args, " "))
	cmd := exec.Command(s.Opts.Bin, s.Args...)
	cmd.Dir = s.Opts.Dir
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	cmd.Env = append(os.Environ(), s.Opts.Env...)
	// A test binary that dies (a panic, a timeout) takes its servers along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("start chatserver: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Unlock()
	return s.waitReady(ctx, 20*time.Second)
}

func (s *ServerProc) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *ServerProc) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("chatserver exited before it was ready (%v); log:\n%s", s.WaitErr(), s.Logs())
		default:
		}
		c, err := net.DialTimeout("tcp", s.Opts.Listen, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chatserver not accepting on %s after %v: %w; log:\n%s", s.Opts.Listen, within, err, s.Logs())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for chatserver: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Healthz reports whether GET http://ADMIN/healthz answers 200.
func (s *ServerProc) Healthz(ctx context.Context) error {
	_, err := s.AdminGet(ctx, "/healthz")
	return err
}

// AdminGet fetches path from the admin endpoint and returns the body; a
// status other than 200 is an error.
func (s *ServerProc) AdminGet(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Opts.Admin+path, nil)
	if err != nil {
		return "", fmt.Errorf("admin request %s: %w", path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: read body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: status %s", path, resp.Status)
	}
	return string(body), nil
}

// Addr is the listen address.
func (s *ServerProc) Addr() string { return s.Opts.Listen }

// Logs returns everything the process wrote so far (all starts).
func (s *ServerProc) Logs() string { return s.logs.String() }

// WaitErr is the result of the last exit (nil while running or after exit 0).
func (s *ServerProc) WaitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitErr
}

// Running reports whether the process is alive.
func (s *ServerProc) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil && !s.exited()
}

// Kill sends SIGKILL and waits for the exit.
func (s *ServerProc) Kill() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill chatserver: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("chatserver did not die after SIGKILL")
	}
}

// Terminate sends SIGTERM and waits up to within for the exit; it returns
// how long the exit took and the exit error (nil for exit status 0). When the
// process outlives within it is killed and an error returned.
func (s *ServerProc) Terminate(within time.Duration) (time.Duration, error) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return 0, errors.New("chatserver not started")
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("SIGTERM chatserver: %w", err)
	}
	select {
	case <-done:
		return time.Since(start), s.WaitErr()
	case <-time.After(within):
		_ = s.Kill()
		return time.Since(start), fmt.Errorf("chatserver still running %v after SIGTERM (killed)", within)
	}
}

// Stop ends the process if it still runs (SIGTERM, then SIGKILL after 5 s),
// for cleanups.
func (s *ServerProc) Stop() {
	if s.Running() {
		_, _ = s.Terminate(5 * time.Second)
	}
}

// Trouble returns the first data race report or panic in the process's log
// (all starts), or "" when there is none.
func (s *ServerProc) Trouble() string {
	logs := s.Logs()
	for _, marker := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if i := strings.Index(logs, marker); i >= 0 {
			end := min(len(logs), i+6000)
			return logs[i:end]
		}
	}
	return ""
}
