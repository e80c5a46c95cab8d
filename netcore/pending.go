package netcore

import (
	"context"
	"fmt"
	"time"
)

// Unsent returns the bytes accepted by Send but not yet written to the
// socket: output queued for the loop plus the kernel-refused remainder the
// loop last saw. Any goroutine. The figure lags the loop slightly; use it
// for pacing, not accounting.
func (c *Conn) Unsent() int {
	c.mu.Lock()
	queued := 0
	if c.out != nil {
		queued = len(*c.out)
	}
	flushing := c.flushing.Load()
	c.mu.Unlock()
	return queued + int(flushing) + int(c.unsent.Load())
}

// WaitUnsent blocks until Unsent() <= limit, the connection closes, or ctx
// ends. Any goroutine except the connection's loop. A producer of bulk
// output (a backlog, a file) calls it between chunks so that a reader that
// is slow but alive is paced instead of closed at the high-water mark.
func (c *Conn) WaitUnsent(ctx context.Context, limit int) error {
	c.flags.Or(flagPaced)
	defer c.flags.And(^uint32(flagPaced))
	delay := 200 * time.Microsecond
	for c.Unsent() > limit {
		// Ask the loop for a fresh figure; it keeps watching while paced.
		_ = c.loop.exec(c.refreshUnsent)
		select {
		case <-ctx.Done():
			return fmt.Errorf("netcore: wait for output of conn %d: %w", c.id, ctx.Err())
		case <-c.Context().Done():
			return fmt.Errorf("netcore: wait for output of conn %d: %w", c.id, ErrConnClosed)
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
	return nil
}

// refreshUnsent re-reads gnet's outbound buffer. Loop only.
func (c *Conn) refreshUnsent() {
	if c.state == stateClosed {
		return
	}
	buffered := c.gc.OutboundBuffered()
	c.unsent.Store(int64(buffered))
	if buffered > 0 {
		c.loop.watchAdd(c)
	}
}
