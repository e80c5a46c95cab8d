package netcore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestExecutorOrderPerQueue(t *testing.T) {
	e := NewExecutor(ExecutorOptions{Workers: 8, QueueLen: 1000})
	const queues, perQ = 50, 500
	var mu sync.Mutex
	got := make([][]int, queues)
	var wg sync.WaitGroup
	wg.Add(queues * perQ)
	for q := range queues {
		queue := e.NewQueue()
		go func() {
			for i := range perQ {
				for {
					err := queue.Submit(func() {
						mu.Lock()
						got[q] = append(got[q], i)
						mu.Unlock()
						wg.Done()
					})
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						panic(err)
					}
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	for q := range got {
		for i, v := range got[q] {
			if v != i {
				t.Fatalf("queue %d: position %d ran task %d", q, i, v)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExecutorSerialWithinParallelAcross(t *testing.T) {
	e := NewExecutor(ExecutorOptions{Workers: 4, QueueLen: 10})
	defer e.Close(context.Background())
	var inQ [4]atomic.Int32
	var maxPar, cur atomic.Int32
	var wg sync.WaitGroup
	for q := range 4 {
		queue := e.NewQueue()
		for range 5 {
			wg.Add(1)
			if err := queue.Submit(func() {
				defer wg.Done()
				if inQ[q].Add(1) != 1 {
					panic("two tasks of one queue at once")
				}
				n := cur.Add(1)
				for {
					m := maxPar.Load()
					if n <= m || maxPar.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(20 * time.Millisecond)
				cur.Add(-1)
				inQ[q].Add(-1)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if maxPar.Load() < 2 {
		t.Fatalf("queues did not run in parallel (max %d)", maxPar.Load())
	}
}

func TestExecutorQueueFullAndClose(t *testing.T) {
	e := NewExecutor(ExecutorOptions{Workers: 1, QueueLen: 3})
	q := e.NewQueue()
	release := make(chan struct{})
	var ran atomic.Int32
	for range 3 {
		if err := q.Submit(func() { <-release; ran.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Submit(func() {}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("4th Submit: %v, want ErrQueueFull", err)
	}
	if q.Len() != 3 {
		t.Fatalf("Len %d", q.Len())
	}
	// Another queue is not affected by the full one.
	if err := e.NewQueue().Submit(func() { ran.Add(1) }); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Close(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with blocked task: %v", err)
	}
	if err := q.Submit(func() {}); !errors.Is(err, ErrExecutorClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
	close(release)
	ctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ran.Load() != 4 {
		t.Fatalf("ran %d tasks, want 4 (queued work finishes)", ran.Load())
	}
}

func TestExecutorRecoversPanics(t *testing.T) {
	e := NewExecutor(ExecutorOptions{Workers: 1, Logger: slog.New(slog.DiscardHandler)})
	defer e.Close(context.Background())
	q := e.NewQueue()
	done := make(chan struct{})
	_ = q.Submit(func() { panic("boom") })
	_ = q.Submit(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("queue stuck after a panic")
	}
}

// TestExecutorWorkersStartAndStop: workers start with the work (up to
// Workers, all in parallel when queues are blocked), stop after IdleTimeout,
// and start again for new work.
func TestExecutorWorkersStartAndStop(t *testing.T) {
	e := NewExecutor(ExecutorOptions{Workers: 8, IdleTimeout: 50 * time.Millisecond})
	workers := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.workers
	}
	if n := workers(); n != 0 {
		t.Fatalf("%d workers before any task", n)
	}
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(8)
	for range 12 { // 12 blocked queues, 8 workers: 8 run at once
		q := e.NewQueue()
		if err := q.Submit(func() { started.Done(); <-release }); err != nil {
			t.Fatal(err)
		}
	}
	waited := make(chan struct{})
	go func() { started.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("8 blocked tasks did not run in parallel")
	}
	if n := workers(); n != 8 {
		t.Fatalf("%d workers, want 8", n)
	}
	started.Add(4) // the other 4 run after the first 8
	close(release)
	started.Wait()
	waitFor(t, 5*time.Second, "idle workers stop", func() bool { return workers() == 0 })

	done := make(chan struct{})
	if err := e.NewQueue().Submit(func() { close(done) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no worker started for a task after the others stopped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := workers(); n != 0 {
		t.Fatalf("%d workers after Close", n)
	}
}
