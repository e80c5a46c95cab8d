package netcore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// watchInterval is how often a loop polls connections whose output is still
// queued in gnet (gnet has no "output drained" event).
const watchInterval = 2 * time.Millisecond

// loop is netcore's state for one gnet event loop. Fields marked "loop" are
// touched only on that loop.
type loop struct {
	srv   *Server
	el    gnet.EventLoop
	stats loopStats

	wheel *wheel             // loop; nil when IdleTimeout == 0
	watch map[*Conn]struct{} // loop; conns waiting for gnet's output to drain

	watching      atomic.Int32 // len(watch), for the driver goroutine
	tickScheduled atomic.Bool
	kick          chan struct{}
	done          chan struct{}

	// Connections with output queued by Send from other goroutines, drained
	// by one loop task (flushTask) however many connections joined: a fan-out
	// to N connections of a loop costs one Execute, not N.
	fmu        sync.Mutex
	flushes    []*Conn // guarded by fmu
	spare      []*Conn // guarded by fmu; the drained list, reused
	flushTaskQ bool    // guarded by fmu: flushTask is queued
	flushTask  gnet.RunnableFunc
}

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{
		srv:   s,
		el:    el,
		watch: make(map[*Conn]struct{}),
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	if s.opts.IdleTimeout > 0 {
		l.wheel = newWheel(s.opts.IdleTimeout, time.Now())
	}
	l.flushTask = func(context.Context) error {
		l.drainFlushes()
		return nil
	}
	return l
}

// scheduleFlush queues c's output for the loop. Any goroutine; the caller
// has set c.flushQueued, so c is in the list at most once.
func (l *loop) scheduleFlush(c *Conn) error {
	l.fmu.Lock()
	l.flushes = append(l.flushes, c)
	queue := !l.flushTaskQ
	l.flushTaskQ = true
	l.fmu.Unlock()
	if !queue {
		return nil
	}
	if err := l.el.Execute(context.Background(), l.flushTask); err != nil {
		l.fmu.Lock()
		l.flushTaskQ = false
		l.fmu.Unlock()
		return err
	}
	return nil
}

// drainFlushes flushes every connection queued by scheduleFlush. Loop only.
func (l *loop) drainFlushes() {
	l.fmu.Lock()
	list := l.flushes
	l.flushes, l.spare = l.spare[:0], nil
	l.flushTaskQ = false
	l.fmu.Unlock()
	for _, c := range list {
		c.flush()
	}
	clear(list)
	if cap(list) > 4096 {
		list = nil // after a burst, do not keep a large list forever
	}
	l.fmu.Lock()
	if l.spare == nil {
		l.spare = list[:0]
	}
	l.fmu.Unlock()
}

// exec runs fn on the loop. Safe from any goroutine.
func (l *loop) exec(fn func()) error {
	return l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		fn()
		return nil
	}))
}

// drive is the loop's clock: it wakes the loop for idle scans and output
// polling. gnet's OnTick runs on its own goroutine, so the work itself is
// sent to the loop with Execute.
func (l *loop) drive() {
	t := time.NewTimer(l.interval())
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.kick:
		case <-t.C:
			if l.tickScheduled.CompareAndSwap(false, true) {
				if err := l.exec(l.onTick); err != nil {
					l.tickScheduled.Store(false)
				}
			}
		}
		t.Reset(l.interval())
	}
}

func (l *loop) interval() time.Duration {
	d := time.Hour
	if l.wheel != nil {
		d = l.wheel.tick
	}
	if l.watching.Load() > 0 {
		d = min(d, watchInterval)
	}
	return d
}

// onTick runs on the loop.
func (l *loop) onTick() {
	l.tickScheduled.Store(false)
	if l.wheel != nil {
		l.wheel.advance(time.Now(), func(c *Conn) { c.closeOnLoop(ReasonIdle) })
	}
	for c := range l.watch {
		c.checkOutput()
	}
}

func (l *loop) watchAdd(c *Conn) {
	if _, ok := l.watch[c]; ok {
		return
	}
	l.watch[c] = struct{}{}
	if l.watching.Add(1) == 1 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

func (l *loop) watchDel(c *Conn) {
	if _, ok := l.watch[c]; ok {
		delete(l.watch, c)
		l.watching.Add(-1)
	}
}
