package netcore

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// ExecutorOptions configures an Executor.
type ExecutorOptions struct {
	// Workers is the most goroutines the Executor runs tasks on; default
	// 4 * runtime.NumCPU() (the cores, not GOMAXPROCS, which a server may
	// raise above them for its event loops). They are started when there
	// is work for them and stop after IdleTimeout without any.
	Workers int
	// QueueLen is the most tasks one Queue may hold (waiting or running);
	// default 256.
	QueueLen int
	// IdleTimeout is how long a worker may wait for work before it stops;
	// default 5s. A stopped worker frees its stack, which a task may have
	// grown (a burst of logins leaves hundreds of grown stacks behind).
	IdleTimeout time.Duration
	// Logger receives task panics; default slog.Default().
	Logger *slog.Logger
}

// Executor runs blocking work (database, Redis, password hashing) off the
// event loops on a bounded pool of goroutines, in order per Queue.
//
// Each connection (or any other key) gets its own Queue: the tasks of one
// Queue run one after another in submission order, tasks of different
// Queues run in parallel on at most Workers goroutines. Memory is bounded:
// a Queue holds at most QueueLen tasks and Submit returns ErrQueueFull
// beyond that. What to do then is the caller's decision; the intended
// handling for a network connection is to close it (for example
// c.ForceClose(ReasonOverload)), because a client that outpaces its queue
// would otherwise grow memory without limit or stall everyone else.
//
// Workers are started on demand and stop when idle for
// ExecutorOptions.IdleTimeout; the most recently idle worker is woken first,
// so a light load keeps a few workers busy and lets the rest stop.
type Executor struct {
	opts ExecutorOptions
	log  *slog.Logger

	mu       sync.Mutex
	ready    []*Queue // queues with tasks and no worker, FIFO
	head     int
	idle     []*worker // waiting workers; the most recently idle last
	workers  int       // running worker goroutines
	closed   bool
	stopped  chan struct{} // closed when closed and workers == 0
	trimming *time.Timer   // retires idle workers; nil while none are idle
}

// worker is one worker goroutine's wake-up channel and idle time.
type worker struct {
	wake      chan bool // true: run, false: stop
	idleSince time.Time
}

// Queue is one ordered stream of tasks of an Executor.
type Queue struct {
	e       *Executor
	tasks   []func() // guarded by e.mu
	head    int
	running bool // in ready or being run
}

// NewExecutor returns an Executor; its workers start with the first tasks.
// Any goroutine.
func NewExecutor(opts ExecutorOptions) *Executor {
	if opts.Workers <= 0 {
		opts.Workers = 4 * runtime.NumCPU()
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 256
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Executor{opts: opts, log: opts.Logger, stopped: make(chan struct{})}
}

// NewQueue returns a new, empty Queue. Any goroutine.
func (e *Executor) NewQueue() *Queue { return &Queue{e: e} }

// Submit adds fn to the queue. It returns ErrQueueFull if the queue already
// holds QueueLen tasks (fn is not queued; see Executor for what to do) and
// ErrExecutorClosed after Close. Any goroutine; tasks submitted from one
// goroutine run in that order.
func (q *Queue) Submit(fn func()) error {
	e := q.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("netcore: submit: %w", ErrExecutorClosed)
	}
	if len(q.tasks)-q.head >= e.opts.QueueLen {
		return fmt.Errorf("netcore: submit (%d tasks queued): %w", e.opts.QueueLen, ErrQueueFull)
	}
	q.tasks = append(q.tasks, fn)
	if !q.running {
		q.running = true
		e.ready = append(e.ready, q)
		e.dispatchLocked()
	}
	return nil
}

// dispatchLocked finds a worker for a queue just made ready: the most
// recently idle one, else a new one if fewer than Workers run (else the
// queue waits for a busy worker to finish). e.mu must be held.
func (e *Executor) dispatchLocked() {
	if n := len(e.idle); n > 0 {
		w := e.idle[n-1]
		e.idle[n-1] = nil
		e.idle = e.idle[:n-1]
		w.wake <- true // buffered; an idle worker's channel is empty
		return
	}
	if e.workers < e.opts.Workers {
		e.workers++
		go e.work(&worker{wake: make(chan bool, 1)})
	}
}

// Len returns the number of tasks queued or running. Any goroutine.
func (q *Queue) Len() int {
	q.e.mu.Lock()
	defer q.e.mu.Unlock()
	return len(q.tasks) - q.head
}

func (e *Executor) work(w *worker) {
	e.mu.Lock()
	for {
		if e.head == len(e.ready) {
			if e.closed {
				e.exitLocked()
				e.mu.Unlock()
				return
			}
			w.idleSince = time.Now()
			e.idle = append(e.idle, w)
			if e.trimming == nil {
				e.trimming = time.AfterFunc(e.opts.IdleTimeout, e.trim)
			}
			e.mu.Unlock()
			run := <-w.wake
			e.mu.Lock()
			if !run {
				e.exitLocked() // taken off idle by trim or Close
				e.mu.Unlock()
				return
			}
			continue
		}
		q := e.ready[e.head]
		e.ready[e.head] = nil
		e.head++
		if e.head == len(e.ready) {
			e.ready, e.head = e.ready[:0], 0
		}
		fn := q.tasks[q.head]
		e.mu.Unlock()

		e.run(fn)

		e.mu.Lock()
		q.tasks[q.head] = nil
		q.head++
		if q.head == len(q.tasks) {
			q.tasks, q.head = q.tasks[:0], 0
			if cap(q.tasks) > 64 {
				q.tasks = nil
			}
			q.running = false
		} else {
			// More work: go to the back of the line, for fairness. This
			// worker takes the head of the line next, so the number of
			// ready queues and of workers heading for them stays even.
			e.ready = append(e.ready, q)
		}
	}
}

// exitLocked accounts for a worker that stops. e.mu must be held.
func (e *Executor) exitLocked() {
	e.workers--
	if e.closed && e.workers == 0 {
		close(e.stopped)
	}
}

// trim stops the workers idle for IdleTimeout; it runs on a timer while
// some worker is idle.
func (e *Executor) trim() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.trimming = nil
	if e.closed {
		return
	}
	cutoff := time.Now().Add(-e.opts.IdleTimeout)
	n := 0 // the longest idle are first
	for n < len(e.idle) && !e.idle[n].idleSince.After(cutoff) {
		e.idle[n].wake <- false
		n++
	}
	rest := copy(e.idle, e.idle[n:])
	clear(e.idle[rest:])
	e.idle = e.idle[:rest]
	if len(e.idle) > 0 {
		next := e.idle[0].idleSince.Add(e.opts.IdleTimeout)
		e.trimming = time.AfterFunc(max(time.Until(next), time.Millisecond), e.trim)
	}
}

func (e *Executor) run(fn func()) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("netcore: executor task panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	fn()
}

// Close stops accepting tasks, waits for the queued ones to finish and
// stops the workers, or returns ctx's error when ctx ends first (the
// workers then finish the queued tasks in the background). Any goroutine.
func (e *Executor) Close(ctx context.Context) error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		for _, w := range e.idle {
			w.wake <- false
		}
		clear(e.idle)
		e.idle = nil
		if e.trimming != nil {
			e.trimming.Stop()
			e.trimming = nil
		}
		if e.workers == 0 {
			close(e.stopped)
		}
	}
	e.mu.Unlock()
	select {
	case <-e.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("netcore: close executor: %w", ctx.Err())
	}
}
