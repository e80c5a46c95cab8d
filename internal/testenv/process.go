package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrExited is wrapped by the error a Start function returns when the
// process died before it became ready.
var ErrExited = errors.New("testenv: process exited before it was ready")

// ProcessSpec describes a program for StartProcess.
type ProcessSpec struct {
	// Name names the process in errors and log file names (e.g. "redis").
	Name string
	// Path is the executable; Args are its arguments (without argv[0]).
	Path string
	Args []string
	// Dir is the working directory (default: the caller's).
	Dir string
	// Env, when non-nil, is appended to the caller's environment.
	Env []string
	// LogFile receives stdout and stderr (appended; created if missing).
	// Required: a detached process must not write into a pipe.
	LogFile string
	// Detach starts the process in its own session so that it keeps running
	// after this program exits (used by scripts/cluster). Without Detach the
	// process is sent SIGKILL if this program dies without stopping it, so
	// a crashed test leaves nothing running.
	Detach bool
	// StopSignal is sent by Stop (default SIGTERM).
	StopSignal syscall.Signal
	// StopTimeout is how long Stop waits before SIGKILL (default 30s).
	StopTimeout time.Duration
}

// Process is a running program started by StartProcess. Its methods are
// safe for concurrent use.
type Process struct {
	spec ProcessSpec
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	waitErr error
}

// StartProcess starts spec and returns at once; the caller waits for
// readiness (see WaitTCP). The process is reaped by a goroutine; Exited
// reports its end.
func StartProcess(spec ProcessSpec) (*Process, error) {
	if spec.LogFile == "" {
		return nil, fmt.Errorf("testenv: start %s: ProcessSpec.LogFile is required", spec.Name)
	}
	if spec.StopSignal == 0 {
		spec.StopSignal = syscall.SIGTERM
	}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = 30 * time.Second
	}
	logf, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testenv: start %s: open log: %w", spec.Name, err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	if spec.Env != nil {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if spec.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start %s (%s): %w", spec.Name, spec.Path, err)
	}
	p := &Process{spec: spec, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Spec returns the spec the process was started with (defaults filled in).
func (p *Process) Spec() ProcessSpec { return p.spec }

// Exited is closed when the process has ended and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.done }

// ExitErr returns the result of wait(2) once Exited is closed (nil for exit
// status 0), and nil before.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Running reports whether the process has not ended yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process (its own pid only). It is a no-op once the
// process has ended.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testenv: signal %s (pid %d): %w", p.spec.Name, p.Pid(), err)
	}
	return nil
}

// Stop sends StopSignal and waits up to StopTimeout for the process to end,
// then sends SIGKILL and waits again. It returns an error if the process had
// to be killed or did not end; a non-zero exit status after the stop signal
// is not an error. Stop is idempotent.
func (p *Process) Stop() error {
	if err := p.Signal(p.spec.StopSignal); err != nil {
		return err
	}
	t := time.NewTimer(p.spec.StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("testenv: %s (pid %d) ignored %v for %v and was killed", p.spec.Name, p.Pid(), p.spec.StopSignal, p.spec.StopTimeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("testenv: %s (pid %d) did not end after SIGKILL", p.spec.Name, p.Pid())
	}
}

// Kill sends SIGKILL and waits for the process to end (a crash, for fault
// tests).
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("testenv: %s (pid %d) did not end after SIGKILL", p.spec.Name, p.Pid())
	}
}

// exitedError describes an early exit, with the end of the log file.
func (p *Process) exitedError() error {
	return fmt.Errorf("%w: %s (pid %d): %v; log %s ends:\n%s", ErrExited, p.spec.Name, p.Pid(), p.ExitErr(), p.spec.LogFile, tailFile(p.spec.LogFile, 2048))
}

// WaitReady polls check until it succeeds (nil), the process exits (an
// error wrapping ErrExited, with the end of its log), or ctx is done.
func (p *Process) WaitReady(ctx context.Context, check func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := poll(ctx, check)
	if err == nil {
		return nil
	}
	if !p.Running() {
		return p.exitedError()
	}
	return fmt.Errorf("testenv: %s (pid %d) not ready: %w; log %s ends:\n%s", p.spec.Name, p.Pid(), err, p.spec.LogFile, tailFile(p.spec.LogFile, 2048))
}

// tailFile returns up to the last n bytes of a file, or a note why not.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "(" + err.Error() + ")"
	}
	return string(buf)
}

// PidAlive reports whether pid exists and, when exe is not empty, whether it
// runs the program named exe (its comm, the base name it was executed as,
// truncated to 15 bytes by the kernel; or the base name of its executable),
// so that a recycled pid is not mistaken for the process once started.
// A zombie counts as gone once all its threads have ended.
func PidAlive(pid int, exe string) bool {
	if pid <= 0 {
		return false
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return false
	}
	// Field 3, after the parenthesised comm, is the state. A zombie leader
	// of a multi-threaded process may still have threads exiting that hold
	// its files, sockets and locks: it is gone only once it is the last task.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		tasks, err := os.ReadDir(filepath.Join(proc, "task"))
		if err != nil || len(tasks) <= 1 {
			return false
		}
		return true
	}
	if exe == "" {
		return true
	}
	if comm, err := os.ReadFile(filepath.Join(proc, "comm")); err == nil {
		want := exe
		if len(want) > 15 {
			want = want[:15]
		}
		if strings.TrimSpace(string(comm)) == want {
			return true
		}
	}
	if target, err := os.Readlink(filepath.Join(proc, "exe")); err == nil {
		return filepath.Base(strings.TrimSuffix(target, " (deleted)")) == exe
	}
	return false
}

// StopPid stops a process this program did not start itself but whose pid
// it recorded (scripts/cluster after a restart): if pid is alive and runs
// exe, it sends sig, waits up to timeout for the pid to disappear, then
// sends SIGKILL. A pid that is gone, or now runs something else, is left
// alone and reported as stopped.
func StopPid(ctx context.Context, pid int, exe string, sig syscall.Signal, timeout time.Duration) error {
	if !PidAlive(pid, exe) {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("testenv: signal %s pid %d: %w", exe, pid, err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	gone := func(context.Context) error {
		if PidAlive(pid, exe) {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	}
	if err := poll(wctx, gone); err == nil {
		return nil
	}
	if PidAlive(pid, exe) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	kctx, kcancel := context.WithTimeout(ctx, 10*time.Second)
	defer kcancel()
	if err := poll(kctx, gone); err != nil {
		return fmt.Errorf("testenv: %s pid %d did not end after SIGKILL: %w", exe, pid, err)
	}
	return fmt.Errorf("testenv: %s pid %d ignored %v for %v and was killed", exe, pid, sig, timeout)
}
