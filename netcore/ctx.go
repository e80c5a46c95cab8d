package netcore

import (
	"context"
	"strconv"
	"time"
)

// connCtx is a Conn seen as its context.Context: done when the connection
// closes. A context.WithCancel per connection would cost a cancelCtx (and a
// Done channel once watched) for every idle connection; this costs nothing
// until Done or AfterFunc is called, and Err is an atomic load.
type connCtx Conn

// closedChan is returned by Done once the connection is closed before
// anyone asked for the channel. It is closed once, here, and never changes.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// Deadline reports no deadline.
func (x *connCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done returns a channel closed when the connection closes.
func (x *connCtx) Done() <-chan struct{} {
	c := (*Conn)(x)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		if c.extra != nil && c.extra.done != nil {
			return c.extra.done
		}
		return closedChan
	}
	e := c.extraLocked()
	if e.done == nil {
		e.done = make(chan struct{})
	}
	return e.done
}

// Err returns context.Canceled once the connection is closed, else nil.
func (x *connCtx) Err() error {
	if (*Conn)(x).flags.Load()&flagClosed != 0 {
		return context.Canceled
	}
	return nil
}

// Value returns nil: a connection's context carries no values.
func (x *connCtx) Value(any) any { return nil }

// String names the context, as the context package's do.
func (x *connCtx) String() string {
	return "netcore.Conn(" + strconv.FormatUint(x.id, 10) + ").Context"
}

// afterFunc is one AfterFunc registration.
type afterFunc struct{ f func() }

// AfterFunc arranges for f to run in its own goroutine once the connection
// closes (at once if it is closed), as context.AfterFunc does. The context
// package finds this method, so a context derived from a connection's
// (context.WithCancel, WithTimeout) needs no goroutine to follow it.
// stop unregisters f and reports whether it did so before f was started.
func (x *connCtx) AfterFunc(f func()) (stop func() bool) {
	c := (*Conn)(x)
	a := &afterFunc{f: f}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		go f()
		return func() bool { return false }
	}
	e := c.extraLocked()
	if e.afters == nil {
		e.afters = make(map[*afterFunc]struct{})
	}
	e.afters[a] = struct{}{}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.extra == nil {
			return false
		}
		if _, ok := c.extra.afters[a]; !ok {
			return false
		}
		delete(c.extra.afters, a)
		return true
	}
}

// closeCtxLocked marks the context done: closes the Done channel and
// starts the AfterFunc functions. c.mu must be held; c.closed was just set.
func (c *Conn) closeCtxLocked() {
	c.flags.Or(flagClosed)
	e := c.extra
	if e == nil {
		return
	}
	if e.done != nil {
		close(e.done)
	}
	for a := range e.afters {
		go a.f()
	}
	e.afters = nil
}
