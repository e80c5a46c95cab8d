package dispatch

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestOrderAndCounts(t *testing.T) {
	got := make(chan int64, 10)
	q := New(10, func(id int64, p []byte) { got <- id })
	for i := int64(1); i <= 5; i++ {
		if !q.Push(i, nil) {
			t.Fatalf("Push %d refused", i)
		}
	}
	for i := int64(1); i <= 5; i++ {
		select {
		case id := <-got:
			if id != i {
				t.Fatalf("got %d, want %d", id, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
		}
	}
	q.Close()
	if q.Delivered() != 5 || q.Dropped() != 0 {
		t.Fatalf("delivered %d dropped %d", q.Delivered(), q.Dropped())
	}
	if q.Push(6, nil) {
		t.Fatal("Push after Close accepted")
	}
	if q.Dropped() != 1 {
		t.Fatalf("dropped %d after a Push on a closed queue", q.Dropped())
	}
	q.Close() // idempotent
}

// Close drops what is still queued and waits for the running handler call:
// no handler call starts after Close returns.
func TestCloseDropsQueued(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	q := New(4, func(int64, []byte) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	for i := 0; i < 5; i++ {
		q.Push(int64(i), nil)
	}
	<-entered
	closed := make(chan struct{})
	go func() { q.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a handler call was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-closed
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d handler calls, want 1", n)
	}
	if q.Delivered()+q.Dropped() != 5 {
		t.Fatalf("delivered %d + dropped %d != 5", q.Delivered(), q.Dropped())
	}
}

func TestNilHandler(t *testing.T) {
	q := New(0, nil)
	q.Push(1, []byte("x"))
	q.Close()
	if q.Delivered()+q.Dropped() != 1 {
		t.Fatal("payload neither delivered nor dropped")
	}
}
