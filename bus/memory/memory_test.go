package memory_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"clusterchat/bus"
	"clusterchat/bus/bustest"
	"clusterchat/bus/memory"
)

func TestSuite(t *testing.T) {
	bustest.Run(t, func(t *testing.T) func(bus.Options) bus.Bus {
		hub := memory.NewHub()
		return func(opts bus.Options) bus.Bus {
			b := hub.Bus(opts)
			t.Cleanup(func() { _ = b.Close() })
			return b
		}
	})
}

func TestSingleNode(t *testing.T) {
	ctx := bustest.Ctx(t)
	rec := bustest.NewRecorder(10)
	b := memory.New(bus.Options{Node: "solo", Handler: rec.Handle})
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Subscribe(ctx, 1); err != nil {
		t.Fatal(err)
	}
	bustest.CheckOnline(t, b, []int64{1, 2}, []bool{true, false})
	// Every session is local: nothing comes back to the only node.
	if err := b.Publish(ctx, []int64{1}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.Delivered != 0 || s.Dropped != 0 {
		t.Fatalf("stats = %+v, want zero", s)
	}
	rec.ExpectNone(t)
}

// A handler that does not return must not block publishers: the queue
// fills, then payloads are dropped and counted.
func TestSlowHandlerDrops(t *testing.T) {
	ctx := bustest.Ctx(t)
	hub := memory.NewHub(memory.WithQueueSize(4))
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := hub.Bus(bus.Options{Node: "slow", Handler: func(int64, []byte) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}})
	pub := hub.Bus(bus.Options{Node: "pub"})
	t.Cleanup(func() { _ = pub.Close() })
	if err := slow.Subscribe(ctx, 1); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100; i++ {
			if err := pub.Publish(ctx, []int64{1}, []byte("x")); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(bustest.Timeout):
		t.Fatal("Publish blocked behind a slow handler")
	}
	<-entered
	s := slow.Stats()
	// One in the handler, at most 4 queued.
	if s.Dropped < 95 {
		t.Fatalf("dropped %d, want >= 95", s.Dropped)
	}
	close(release)
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
	if s := slow.Stats(); s.Delivered+s.Dropped != 100 {
		t.Fatalf("delivered %d + dropped %d != 100", s.Delivered, s.Dropped)
	}
	if d := bus.DropCounter(slow).DroppedPayloads(); d != slow.Stats().Dropped {
		t.Fatalf("DroppedPayloads %d, Stats().Dropped %d", d, slow.Stats().Dropped)
	}
}

// BenchmarkPublishFanOut500 publishes one payload to 500 users held by
// another node of the hub.
func BenchmarkPublishFanOut500(b *testing.B) {
	ctx := context.Background()
	hub := memory.NewHub(memory.WithQueueSize(1 << 16))
	sub := hub.Bus(bus.Options{Node: "sub", Handler: func(int64, []byte) {}})
	pub := hub.Bus(bus.Options{Node: "pub"})
	b.Cleanup(func() { _ = sub.Close(); _ = pub.Close() })
	users := make([]int64, 500)
	for i := range users {
		users[i] = int64(i + 1)
		if err := sub.Subscribe(ctx, users[i]); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, 200)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := pub.Publish(ctx, users, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// An idle session's subscription must stay small: 19,000 of them are
// held by one server (the previous map of maps cost ~270 B each).
func TestSubscriptionFootprint(t *testing.T) {
	const users = 20000
	ctx := context.Background()
	b := memory.New(bus.Options{Node: "solo"})
	t.Cleanup(func() { _ = b.Close() })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for id := int64(1); id <= users; id++ {
		if err := b.Subscribe(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / users
	t.Logf("%.0f B of live heap per subscribed user", per)
	if per > 64 {
		t.Fatalf("%.0f B of live heap per subscribed user, want at most 64", per)
	}
	bustest.CheckOnline(t, b, []int64{1, users, users + 1}, []bool{true, true, false})
}
