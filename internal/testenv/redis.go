package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RedisOptions tunes StartRedisWith. The zero value is what StartRedis uses.
type RedisOptions struct {
	// Port to listen on (127.0.0.1 only); 0 picks a free port.
	Port int
	// Detach keeps redis-server running after this program exits.
	Detach bool
	// ExtraArgs are appended to the redis-server command line.
	ExtraArgs []string
}

// Redis is a private redis-server on 127.0.0.1:Port with no persistence,
// working in Dir. Methods are safe for concurrent use.
type Redis struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir is the working directory (log file redis.log).
	Dir string

	opts RedisOptions
	bin  string

	mu   sync.Mutex
	proc *Process
}

// StartRedis starts redis-server on a free loopback port in dir and waits
// until it answers PING.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	return StartRedisWith(ctx, dir, RedisOptions{})
}

// StartRedisWith is StartRedis with options.
func StartRedisWith(ctx context.Context, dir string, opts RedisOptions) (*Redis, error) {
	bin, err := lookBinary("redis-server", "/usr/bin/redis-server")
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("testenv: redis dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: redis dir: %w", err)
	}
	r := &Redis{Dir: dir, opts: opts, bin: bin}
	for attempt := 0; ; attempt++ {
		r.Port = opts.Port
		if r.Port == 0 {
			if r.Port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		err = r.start(ctx)
		if err == nil {
			return r, nil
		}
		if opts.Port != 0 || attempt == 2 || !errors.Is(err, ErrExited) {
			return nil, err
		}
	}
}

func (r *Redis) start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil && r.proc.Running() {
		return fmt.Errorf("testenv: redis on port %d is already running (pid %d)", r.Port, r.proc.Pid())
	}
	args := []string{
		"--port", strconv.Itoa(r.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.Dir,
		"--daemonize", "no",
		"--pidfile", filepath.Join(r.Dir, "redis.pid"),
		"--maxclients", "10000",
	}
	args = append(args, r.opts.ExtraArgs...)
	p, err := StartProcess(ProcessSpec{
		Name:    "redis-server",
		Path:    r.bin,
		Args:    args,
		Dir:     r.Dir,
		LogFile: filepath.Join(r.Dir, "redis.log"),
		Detach:  r.opts.Detach,
	})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.WaitReady(rctx, r.ping); err != nil {
		_ = p.Stop()
		return err
	}
	r.proc = p
	return nil
}

// ping sends PING in RESP and expects +PONG.
func (r *Redis) ping(ctx context.Context) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", r.Addr())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Addr returns "127.0.0.1:PORT" (the go-redis Options.Addr form).
func (r *Redis) Addr() string { return portAddr(r.Port) }

// URL returns "redis://127.0.0.1:PORT/0" (the chatserver --bus form).
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Pid returns the pid of the running redis-server, or 0 when stopped.
func (r *Redis) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil || !r.proc.Running() {
		return 0
	}
	return r.proc.Pid()
}

// Process returns the running redis-server process, or nil when stopped.
func (r *Redis) Process() *Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// Stop sends SIGTERM to this redis-server (its own pid) and waits until it
// has exited. Stop on a stopped server is a no-op.
func (r *Redis) Stop() error {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Stop(); err != nil {
		return fmt.Errorf("testenv: stop redis on port %d: %w", r.Port, err)
	}
	return nil
}

// Kill sends SIGKILL to this redis-server and waits until it has exited.
func (r *Redis) Kill() error {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Restart stops the server if it is running and starts it again on the same
// port (empty: there is no persistence), waiting until it answers PING.
func (r *Redis) Restart(ctx context.Context) error {
	if err := r.Stop(); err != nil {
		return err
	}
	if err := r.start(ctx); err != nil {
		return fmt.Errorf("testenv: restart redis on port %d: %w", r.Port, err)
	}
	return nil
}
