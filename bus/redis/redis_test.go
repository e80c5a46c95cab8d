package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"clusterchat/bus"
	"clusterchat/bus/bustest"
	busredis "clusterchat/bus/redis"
	"clusterchat/internal/testenv"
)

// newNode starts a node on r with test-friendly timings and closes it at
// the end of t.
func newNode(t testing.TB, url string, opts busredis.Options) *busredis.Bus {
	t.Helper()
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 200 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 100 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := busredis.New(ctx, url, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", opts.Node, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestSuite(t *testing.T) {
	r := testenv.RedisForTest(t)
	var n atomic.Int64
	bustest.Run(t, func(t *testing.T) func(bus.Options) bus.Bus {
		// One Redis for the suite; each test has channels of its own.
		prefix := fmt.Sprintf("t%d:user:", n.Add(1))
		return func(opts bus.Options) bus.Bus {
			return newNode(t, r.URL(), busredis.Options{Options: opts, Prefix: prefix})
		}
	})
}

type resyncs chan struct{}

func (c resyncs) fn() { c <- struct{}{} }

func (c resyncs) wait(t *testing.T, who string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(bustest.Timeout):
		t.Fatalf("%s: no OnResync within %v", who, bustest.Timeout)
	}
}

// After Redis restarts (empty), both nodes reconnect, resubscribe, call
// OnResync, and delivery and presence work again, including for a user
// subscribed while Redis was down.
func TestRedisRestart(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	recA := bustest.NewRecorder(100)
	resA, resB := make(resyncs, 4), make(resyncs, 4)
	a := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "a", Handler: recA.Handle, OnResync: resA.fn}})
	b := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "b", OnResync: resB.fn}})
	if err := a.Subscribe(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, []int64{1}, []byte("before")); err != nil {
		t.Fatal(err)
	}
	recA.Expect(t, bustest.Delivery{UserID: 1, Payload: "before"})

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	// While Redis is down: Subscribe is recorded and returns at once;
	// Publish and Online fail within their deadline.
	start := time.Now()
	if err := a.Subscribe(ctx, 2); err != nil {
		t.Fatalf("Subscribe while down: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Subscribe while down took %v", d)
	}
	for _, op := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"Publish", func(ctx context.Context) error { return b.Publish(ctx, []int64{1}, []byte("lost")) }},
		{"Publish fan-out", func(ctx context.Context) error { return b.Publish(ctx, []int64{1, 2, 3}, []byte("lost")) }},
		{"Online", func(ctx context.Context) error { _, err := b.Online(ctx, []int64{1}); return err }},
	} {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		start := time.Now()
		err := op.fn(dctx)
		cancel()
		if err == nil {
			t.Fatalf("%s while Redis is down: no error", op.name)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Fatalf("%s while Redis is down took %v (deadline 500ms): %v", op.name, d, err)
		}
	}

	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	resA.wait(t, "a")
	resB.wait(t, "b")
	bustest.CheckOnline(t, b, []int64{1, 2, 3}, []bool{true, true, false})
	if err := b.Publish(ctx, []int64{1, 2}, []byte("after")); err != nil {
		t.Fatal(err)
	}
	recA.Expect(t, bustest.Delivery{UserID: 1, Payload: "after"})
	recA.Expect(t, bustest.Delivery{UserID: 2, Payload: "after"})
	if s := a.Stats(); s.Reconnects != 1 || s.Resyncs != 1 || s.Users != 2 {
		t.Fatalf("a stats = %+v", s)
	}
}

// A subscription connection killed by Redis (CLIENT KILL) is replaced and
// announced like a restart.
func TestConnectionKilled(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	recA := bustest.NewRecorder(10)
	resA := make(resyncs, 4)
	a := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "a", Handler: recA.Handle, OnResync: resA.fn}})
	b := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "b"}})
	if err := a.Subscribe(ctx, 9); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Protocol: 2})
	defer raw.Close()
	if n, err := raw.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n < 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v", n, err)
	}
	resA.wait(t, "a")
	if err := b.Publish(ctx, []int64{9}, []byte("again")); err != nil {
		t.Fatal(err)
	}
	recA.Expect(t, bustest.Delivery{UserID: 9, Payload: "again"})
}

func TestNewErrors(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	down := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	for _, tc := range []struct {
		name, url, node, want string
	}{
		{"no node", down, "", "node name"},
		{"long node", down, strings.Repeat("n", 256), "node name"},
		{"bad url", "http://x", "s1", "parse url"},
		{"unreachable", down, "s1", "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			b, err := busredis.New(ctx, tc.url, busredis.Options{Options: bus.Options{Node: tc.node}})
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("New took %v", d)
			}
		})
	}
}

// Messages that are not ours (bad channel, bad envelope) are counted and
// dropped, never delivered and never a crash.
func TestMalformed(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	rec := bustest.NewRecorder(10)
	a := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "a", Handler: rec.Handle}})
	b := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "b"}})
	if err := a.Subscribe(ctx, 4); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Protocol: 2})
	defer raw.Close()
	for _, p := range []string{"", "\x09short"} {
		if err := raw.Publish(ctx, "user:4", p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Publish(ctx, []int64{4}, []byte("good")); err != nil {
		t.Fatal(err)
	}
	rec.Expect(t, bustest.Delivery{UserID: 4, Payload: "good"})
	if s := a.Stats(); s.Malformed != 2 {
		t.Fatalf("malformed = %d, want 2", s.Malformed)
	}
}

// A handler that does not return fills the queue; the rest is dropped and
// counted while the subscription connection keeps being read.
func TestSlowHandlerDrops(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	release := make(chan struct{})
	a := newNode(t, r.URL(), busredis.Options{
		Options:   bus.Options{Node: "a", Handler: func(int64, []byte) { <-release }},
		QueueSize: 2,
	})
	b := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "b"}})
	if err := a.Subscribe(ctx, 1); err != nil {
		t.Fatal(err)
	}
	users := make([]int64, 50)
	for i := range users {
		users[i] = 1
	}
	if err := b.Publish(ctx, users, []byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(bustest.Timeout)
	for a.Stats().Dropped < 47 {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v, want >= 47 dropped", a.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The connection is still read: presence and subscribe still work.
	if err := a.Subscribe(ctx, 2); err != nil {
		t.Fatal(err)
	}
	close(release)
}

// A Subscribe whose ctx ends before Redis confirmed it still counts: the
// subscription is made, and one Unsubscribe undoes it.
func TestSubscribeCancelledCtx(t *testing.T) {
	r := testenv.RedisForTest(t)
	a := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "a"}})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Subscribe(cancelled, 1); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with cancelled ctx: %v", err)
	}
	if s := a.Stats(); s.Users != 1 {
		t.Fatalf("users = %d, want 1", s.Users)
	}
	bustest.WaitOnline(t, a, []int64{1}, []bool{true})
	if err := a.Unsubscribe(cancelled, 1); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Unsubscribe with cancelled ctx: %v", err)
	}
	if s := a.Stats(); s.Users != 0 {
		t.Fatalf("users = %d, want 0", s.Users)
	}
	bustest.WaitOnline(t, a, []int64{1}, []bool{false})
}

// A subscription connection that stops answering (Redis paused: the TCP
// connection stays up) is noticed by the health loop and replaced.
func TestSilentConnectionReplaced(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	rec := bustest.NewRecorder(10)
	res := make(resyncs, 4)
	a := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "a", Handler: rec.Handle, OnResync: res.fn}, HealthInterval: 100 * time.Millisecond})
	b := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "b"}})
	if err := a.Subscribe(ctx, 3); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Protocol: 2})
	defer raw.Close()
	// ALL: even PING waits; three health intervals are 300ms.
	if err := raw.Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	res.wait(t, "a")
	if s := a.Stats(); s.Reconnects < 1 {
		t.Fatalf("stats = %+v, want a reconnection", s)
	}
	if err := b.Publish(ctx, []int64{3}, []byte("awake")); err != nil {
		t.Fatal(err)
	}
	rec.Expect(t, bustest.Delivery{UserID: 3, Payload: "awake"})
}

// Concurrent Publish calls share pipelines: 50 callers publishing while
// Redis is paused are sent on one or two connections (one per call would
// open 50), and every payload arrives, each caller's in order.
func TestConcurrentPublishShared(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	const callers, each = 50, 20
	got := make(chan string, callers*each)
	a := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "a", Handler: func(_ int64, p []byte) { got <- string(p) }}, QueueSize: callers * each})
	b := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "b"}})
	for u := int64(1); u <= callers; u++ {
		if err := a.Subscribe(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Protocol: 2})
	defer raw.Close()
	if err := raw.Do(ctx, "CLIENT", "PAUSE", "300", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, callers)
	for c := range callers {
		go func() {
			var err error
			for i := 0; i < each && err == nil; i++ {
				err = b.Publish(ctx, []int64{int64(c + 1)}, fmt.Appendf(nil, "%d-%d", c, i))
			}
			errs <- err
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	next := make([]int, callers)
	for range callers * each {
		select {
		case p := <-got:
			var c, i int
			if _, err := fmt.Sscanf(p, "%d-%d", &c, &i); err != nil || c < 0 || c >= callers {
				t.Fatalf("payload %q", p)
			}
			if i != next[c] {
				t.Fatalf("caller %d: got %d, want %d", c, i, next[c])
			}
			next[c]++
		case <-time.After(bustest.Timeout):
			t.Fatalf("delivered %v of %d each", next, each)
		}
	}
	list, err := raw.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Node a holds two connections (subscription, publish pool), b its
	// subscription and what its publishes needed.
	if n := strings.Count(list, "name=clusterchat-bus"); n > 6 {
		t.Fatalf("%d bus connections after concurrent publishes, want at most 6:\n%s", n, list)
	}
}

// A Publish that starts a pipeline returns when its own ctx ends, also
// when Redis does not answer (paused), not after the client's timeouts.
func TestPublishReturnsAtItsDeadline(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	b := newNode(t, r.URL(), busredis.Options{Options: bus.Options{Node: "b"}})
	pauseAfterWarmup(t, r, b, "1500")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Publish(short, []int64{1}, []byte("late"))
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish to a paused Redis with a 50ms deadline: %v, want DeadlineExceeded", err)
	}
	if took > 500*time.Millisecond {
		t.Fatalf("Publish with a 50ms deadline returned after %v", took)
	}
}

// TestPublishDuringClose: Publish calls racing Close return nil (sent) or
// ErrClosed, never the cancelled context or a closed client, and Close
// waits for the pipeline in flight.
func TestPublishDuringClose(t *testing.T) {
	r := testenv.RedisForTest(t)
	ctx := bustest.Ctx(t)
	b, err := busredis.New(ctx, r.URL(), busredis.Options{Options: bus.Options{Node: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	pauseAfterWarmup(t, r, b, "500") // Redis holds the pipeline, so that Close finds it in flight
	const n = 200
	errs := make(chan error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- b.Publish(ctx, []int64{int64(i), int64(i + n)}, []byte("x"))
		}()
	}
	close(start)
	time.Sleep(50 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, bus.ErrClosed) {
			t.Fatalf("Publish during Close: %v, want nil or ErrClosed", err)
		}
	}
}

// pauseAfterWarmup publishes once through b (so that its pool's connection
// is open), then pauses every Redis client for ms milliseconds.
func pauseAfterWarmup(t *testing.T, r *testenv.Redis, b *busredis.Bus, ms string) {
	t.Helper()
	ctx := bustest.Ctx(t)
	if err := b.Publish(ctx, []int64{1}, []byte("warm")); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Protocol: 2})
	defer raw.Close()
	if err := raw.Do(ctx, "CLIENT", "PAUSE", ms, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
}
