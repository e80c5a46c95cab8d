package netcore

import (
	"sync/atomic"
	"time"
)

// Timer is a timer created by Conn.RunAfter or Conn.RunEvery. Its function
// runs on the connection's loop, never after the connection closed.
type Timer struct {
	c       *Conn
	fn      func()
	every   time.Duration
	t       *time.Timer
	stopped atomic.Bool
}

// RunAfter runs fn once on the connection's loop after d. Any goroutine.
// The timer is stopped automatically when the connection closes.
func (c *Conn) RunAfter(d time.Duration, fn func()) *Timer {
	return c.addTimer(d, 0, fn)
}

// RunEvery runs fn on the connection's loop every d (d > 0) until the timer
// is stopped or the connection closes. Any goroutine.
func (c *Conn) RunEvery(d time.Duration, fn func()) *Timer {
	if d <= 0 {
		d = time.Millisecond
	}
	return c.addTimer(d, d, fn)
}

func (c *Conn) addTimer(d, every time.Duration, fn func()) *Timer {
	t := &Timer{c: c, fn: fn, every: every}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		t.stopped.Store(true)
		return t
	}
	e := c.extraLocked()
	if e.timers == nil {
		e.timers = make(map[*Timer]struct{})
	}
	e.timers[t] = struct{}{}
	t.t = time.AfterFunc(d, t.fire)
	return t
}

// fire runs on the runtime timer goroutine and hands over to the loop.
func (t *Timer) fire() {
	if t.stopped.Load() {
		return
	}
	if err := t.c.loop.exec(t.run); err != nil {
		t.stopped.Store(true)
	}
}

// run runs on the loop.
func (t *Timer) run() {
	c := t.c
	if t.stopped.Load() || c.state == stateClosed {
		return
	}
	c.mu.Lock()
	if t.every > 0 {
		if !c.closed && !t.stopped.Load() {
			t.t.Reset(t.every)
		}
	} else {
		t.stopped.Store(true)
		c.deleteTimerLocked(t)
	}
	c.mu.Unlock()
	t.fn()
}

// Stop stops the timer; it reports whether the timer was still active. A
// function already handed to the loop does not run after Stop returns on
// the loop, but may run once if Stop is called from another goroutine at
// the same moment. Any goroutine.
func (t *Timer) Stop() bool {
	if t == nil || !t.stopped.CompareAndSwap(false, true) {
		return false
	}
	c := t.c
	c.mu.Lock()
	c.deleteTimerLocked(t)
	if t.t != nil {
		t.t.Stop()
	}
	c.mu.Unlock()
	return true
}

// deleteTimerLocked forgets t; the map goes when its last timer does, so
// that a connection that once had a timer does not keep an empty map.
// c.mu must be held.
func (c *Conn) deleteTimerLocked(t *Timer) {
	if e := c.extra; e != nil && e.timers != nil {
		delete(e.timers, t)
		if len(e.timers) == 0 {
			e.timers = nil
		}
	}
}
