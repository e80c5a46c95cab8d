package netcore

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
)

// ExecutorOptions configures an Executor.
type ExecutorOptions struct {
	// Workers is the size of the goroutine pool; default
	// 4 * runtime.GOMAXPROCS(0).
	Workers int
	// QueueLen is the most tasks one Queue may hold (waiting or running);
	// default 256.
	QueueLen int
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
type Executor struct {
	opts ExecutorOptions
	log  *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	ready   []*Queue // queues with tasks and no worker, FIFO
	head    int
	busy    int // queues being run
	closed  bool
	workers sync.WaitGroup
}

// Queue is one ordered stream of tasks of an Executor.
type Queue struct {
	e       *Executor
	tasks   []func() // guarded by e.mu
	head    int
	running bool // in ready or being run
}

// NewExecutor starts an Executor's workers. Any goroutine.
func NewExecutor(opts ExecutorOptions) *Executor {
	if opts.Workers <= 0 {
		opts.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 256
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Executor{opts: opts, log: opts.Logger}
	e.cond = sync.NewCond(&e.mu)
	e.workers.Add(opts.Workers)
	for range opts.Workers {
		go e.work()
	}
	return e
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
		e.cond.Signal()
	}
	return nil
}

// Len returns the number of tasks queued or running. Any goroutine.
func (q *Queue) Len() int {
	q.e.mu.Lock()
	defer q.e.mu.Unlock()
	return len(q.tasks) - q.head
}

func (e *Executor) work() {
	defer e.workers.Done()
	e.mu.Lock()
	for {
		for e.head == len(e.ready) && !e.closed {
			e.cond.Wait()
		}
		if e.head == len(e.ready) { // closed and nothing left
			e.mu.Unlock()
			return
		}
		q := e.ready[e.head]
		e.ready[e.head] = nil
		e.head++
		if e.head == len(e.ready) {
			e.ready, e.head = e.ready[:0], 0
		}
		e.busy++
		fn := q.tasks[q.head]
		e.mu.Unlock()

		e.run(fn)

		e.mu.Lock()
		e.busy--
		q.tasks[q.head] = nil
		q.head++
		if q.head == len(q.tasks) {
			q.tasks, q.head = q.tasks[:0], 0
			if cap(q.tasks) > 64 {
				q.tasks = nil
			}
			q.running = false
		} else {
			// More work: go to the back of the line, for fairness.
			e.ready = append(e.ready, q)
			e.cond.Signal()
		}
		if e.closed && e.busy == 0 && e.head == len(e.ready) {
			e.cond.Broadcast()
		}
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
	e.closed = true
	e.cond.Broadcast()
	e.mu.Unlock()
	done := make(chan struct{})
	go func() {
		e.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("netcore: close executor: %w", ctx.Err())
	}
}
