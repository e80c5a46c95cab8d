package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"time"
)

// ErrMissingBinary is wrapped by every error caused by a program that is not
// installed; the message says to run `make deps`.
var ErrMissingBinary = errors.New("testenv: required program not installed (run `make deps`)")

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is chosen by the kernel from the ephemeral range, so it is never one
// of the standard service ports. Another process may take it before the
// caller binds it; the Start functions retry with a new port when that
// happens. Safe for concurrent use.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portAddr returns "127.0.0.1:port".
func portAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// WaitTCP polls addr until a TCP connection is accepted or ctx is done.
func WaitTCP(ctx context.Context, addr string) error {
	return poll(ctx, func(ctx context.Context) error {
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// poll calls check every few milliseconds (backing off up to 100ms) until it
// returns nil or ctx is done; the error then includes check's last error.
func poll(ctx context.Context, check func(ctx context.Context) error) error {
	delay := 5 * time.Millisecond
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// lookBinary finds name in PATH or in the given fallback locations (sbin
// directories are often missing from a non-root PATH).
func lookBinary(name string, fallbacks ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, f := range fallbacks {
		if p, err := exec.LookPath(f); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found in PATH or %v", ErrMissingBinary, name, fallbacks)
}
