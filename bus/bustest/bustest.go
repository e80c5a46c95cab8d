// Package bustest is the behavioural test suite shared by the bus
// implementations: every bus.Bus must pass Run.
package bustest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"clusterchat/bus"
)

// NewCluster starts, for one test, a bus backend private to that test and
// returns a function that adds a node to it. The node must be closed by a
// t.Cleanup registered by the function (the suite also closes some nodes
// itself, so Close must tolerate a second call).
type NewCluster func(t *testing.T) func(opts bus.Options) bus.Bus

// Timeout bounds every wait of the suite.
const Timeout = 10 * time.Second

// Delivery is one handler call.
type Delivery struct {
	UserID  int64
	Payload string
}

// Recorder is a bus.Handler that keeps what it received, for tests.
type Recorder struct {
	ch chan Delivery
}

// NewRecorder returns a recorder that buffers up to n deliveries (more
// would block the bus's delivery goroutine).
func NewRecorder(n int) *Recorder { return &Recorder{ch: make(chan Delivery, n)} }

// Handle is the bus.Handler.
func (r *Recorder) Handle(userID int64, payload []byte) {
	r.ch <- Delivery{UserID: userID, Payload: string(payload)}
}

// Next waits for the next delivery, failing t after Timeout.
func (r *Recorder) Next(t testing.TB) Delivery {
	t.Helper()
	select {
	case d := <-r.ch:
		return d
	case <-time.After(Timeout):
		t.Fatalf("no delivery within %v", Timeout)
		return Delivery{}
	}
}

// Expect waits for the next delivery and fails t unless it is want.
func (r *Recorder) Expect(t testing.TB, want Delivery) {
	t.Helper()
	if got := r.Next(t); got != want {
		t.Fatalf("delivery = %+v, want %+v", got, want)
	}
}

// ExpectNone fails t if a delivery is already buffered.
func (r *Recorder) ExpectNone(t testing.TB) {
	t.Helper()
	select {
	case d := <-r.ch:
		t.Fatalf("unexpected delivery %+v", d)
	default:
	}
}

// Ctx returns a context bounded by Timeout and cancelled at the end of t.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Node adds a node named name whose deliveries go to the returned recorder.
func Node(t testing.TB, add func(bus.Options) bus.Bus, name string) (bus.Bus, *Recorder) {
	t.Helper()
	rec := NewRecorder(4096)
	return add(bus.Options{Node: name, Handler: rec.Handle}), rec
}

// WaitOnline polls b.Online until it answers want for userIDs.
func WaitOnline(t testing.TB, b bus.Bus, userIDs []int64, want []bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		got, err := b.Online(Ctx(t), userIDs)
		if err != nil {
			t.Fatalf("Online(%v): %v", userIDs, err)
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Online(%v) = %v, want %v", userIDs, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CheckOnline fails t unless b.Online answers want right now.
func CheckOnline(t testing.TB, b bus.Bus, userIDs []int64, want []bool) {
	t.Helper()
	got, err := b.Online(Ctx(t), userIDs)
	if err != nil {
		t.Fatalf("Online(%v): %v", userIDs, err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Online(%v) = %v, want %v", userIDs, got, want)
	}
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Run runs the whole suite against the implementation behind newCluster.
func Run(t *testing.T, newCluster NewCluster) {
	tests := []struct {
		name string
		fn   func(t *testing.T, add func(bus.Options) bus.Bus)
	}{
		{"DeliverAcross", testDeliverAcross},
		{"NotToOrigin", testNotToOrigin},
		{"CountedSubscribe", testCountedSubscribe},
		{"UnsubscribeUnknown", testUnsubscribeUnknown},
		{"Online", testOnline},
		{"OnlineAfterClose", testOnlineAfterClose},
		{"FanOut500", testFanOut500},
		{"OrderPerUser", testOrderPerUser},
		{"PayloadCopied", testPayloadCopied},
		{"Empty", testEmpty},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newCluster(t)) })
	}
}

func testDeliverAcross(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, ra := Node(t, add, "a")
	b, rb := Node(t, add, "b")
	must(t, "a.Subscribe", a.Subscribe(ctx, 1))
	must(t, "b.Publish", b.Publish(ctx, []int64{1}, []byte("hello")))
	ra.Expect(t, Delivery{1, "hello"})
	// And back the other way.
	must(t, "b.Subscribe", b.Subscribe(ctx, 2))
	must(t, "a.Publish", a.Publish(ctx, []int64{2}, []byte("back")))
	rb.Expect(t, Delivery{2, "back"})
	ra.ExpectNone(t)
}

func testNotToOrigin(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, ra := Node(t, add, "a")
	b, _ := Node(t, add, "b")
	c, rc := Node(t, add, "c")
	must(t, "a.Subscribe", a.Subscribe(ctx, 7))
	must(t, "c.Subscribe", c.Subscribe(ctx, 7))
	must(t, "a.Publish", a.Publish(ctx, []int64{7}, []byte("own")))
	rc.Expect(t, Delivery{7, "own"})
	// Published after "own" reached c, so a would have seen "own" first.
	must(t, "b.Publish", b.Publish(ctx, []int64{7}, []byte("marker")))
	ra.Expect(t, Delivery{7, "marker"})
	rc.Expect(t, Delivery{7, "marker"})
}

func testCountedSubscribe(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, ra := Node(t, add, "a")
	b, _ := Node(t, add, "b")
	must(t, "Subscribe 1", a.Subscribe(ctx, 1))
	must(t, "Subscribe 1 again", a.Subscribe(ctx, 1))
	must(t, "Unsubscribe 1", a.Unsubscribe(ctx, 1))
	must(t, "Publish", b.Publish(ctx, []int64{1}, []byte("still")))
	ra.Expect(t, Delivery{1, "still"})
	CheckOnline(t, b, []int64{1}, []bool{true})

	must(t, "Unsubscribe 1 again", a.Unsubscribe(ctx, 1))
	must(t, "Subscribe 2", a.Subscribe(ctx, 2))
	// One call: user 1's payload is sent before user 2's, so the marker on
	// user 2 proves that user 1's did not come.
	must(t, "Publish", b.Publish(ctx, []int64{1, 2}, []byte("after")))
	ra.Expect(t, Delivery{2, "after"})
	CheckOnline(t, b, []int64{1, 2}, []bool{false, true})

	// Subscribing again after the count reached zero works.
	must(t, "Subscribe 1 anew", a.Subscribe(ctx, 1))
	must(t, "Publish", b.Publish(ctx, []int64{1}, []byte("anew")))
	ra.Expect(t, Delivery{1, "anew"})
}

func testUnsubscribeUnknown(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, _ := Node(t, add, "a")
	if err := a.Unsubscribe(ctx, 42); !errors.Is(err, bus.ErrNotSubscribed) {
		t.Fatalf("Unsubscribe of unknown user: %v, want ErrNotSubscribed", err)
	}
	must(t, "Subscribe", a.Subscribe(ctx, 42))
	must(t, "Unsubscribe", a.Unsubscribe(ctx, 42))
	if err := a.Unsubscribe(ctx, 42); !errors.Is(err, bus.ErrNotSubscribed) {
		t.Fatalf("second Unsubscribe: %v, want ErrNotSubscribed", err)
	}
}

func testOnline(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, _ := Node(t, add, "a")
	b, _ := Node(t, add, "b")
	users := []int64{11, 12, 13}
	CheckOnline(t, a, users, []bool{false, false, false})
	must(t, "a.Subscribe 11", a.Subscribe(ctx, 11))
	must(t, "b.Subscribe 12", b.Subscribe(ctx, 12))
	for _, n := range []bus.Bus{a, b} {
		CheckOnline(t, n, users, []bool{true, true, false})
	}
	// Duplicates and order are kept.
	CheckOnline(t, a, []int64{13, 12, 12, 11}, []bool{false, true, true, true})
	must(t, "b.Unsubscribe 12", b.Unsubscribe(ctx, 12))
	for _, n := range []bus.Bus{a, b} {
		CheckOnline(t, n, users, []bool{true, false, false})
	}
}

func testOnlineAfterClose(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, _ := Node(t, add, "a")
	b, _ := Node(t, add, "b")
	must(t, "a.Subscribe 21", a.Subscribe(ctx, 21))
	must(t, "b.Subscribe 21", b.Subscribe(ctx, 21))
	must(t, "b.Subscribe 22", b.Subscribe(ctx, 22))
	CheckOnline(t, a, []int64{21, 22}, []bool{true, true})
	must(t, "b.Close", b.Close())
	// Without Unsubscribe: the subscriptions of a closed (or dead) node
	// disappear with it.
	WaitOnline(t, a, []int64{21, 22}, []bool{true, false})
}

func testFanOut500(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, ra := Node(t, add, "a")
	c, rc := Node(t, add, "c")
	b, _ := Node(t, add, "b")
	const n = 500
	users := make([]int64, n)
	for i := range users {
		users[i] = int64(1000 + i)
		node := a
		if i%2 == 1 {
			node = c
		}
		must(t, "Subscribe", node.Subscribe(ctx, users[i]))
	}
	online, err := b.Online(ctx, users)
	must(t, "Online", err)
	for i, on := range online {
		if !on {
			t.Fatalf("user %d offline", users[i])
		}
	}
	must(t, "Publish", b.Publish(ctx, users, []byte("group")))
	seen := make(map[int64]bool, n)
	for i := 0; i < n/2; i++ {
		for _, r := range []*Recorder{ra, rc} {
			d := r.Next(t)
			if d.Payload != "group" || seen[d.UserID] {
				t.Fatalf("bad or duplicate delivery %+v", d)
			}
			seen[d.UserID] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("%d users reached, want %d", len(seen), n)
	}
}

func testOrderPerUser(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, ra := Node(t, add, "a")
	b, _ := Node(t, add, "b")
	must(t, "Subscribe", a.Subscribe(ctx, 5))
	const n = 200
	for i := 0; i < n; i++ {
		must(t, "Publish", b.Publish(ctx, []int64{5}, fmt.Appendf(nil, "m%d", i)))
	}
	for i := 0; i < n; i++ {
		ra.Expect(t, Delivery{5, fmt.Sprintf("m%d", i)})
	}
}

func testPayloadCopied(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, ra := Node(t, add, "a")
	b, _ := Node(t, add, "b")
	must(t, "Subscribe", a.Subscribe(ctx, 3))
	buf := []byte("original")
	must(t, "Publish", b.Publish(ctx, []int64{3}, buf))
	copy(buf, "XXXXXXXX")
	ra.Expect(t, Delivery{3, "original"})
	// Binary and empty payloads go through unchanged.
	bin := []byte{0, 1, 2, '\n', 255, 0}
	must(t, "Publish", b.Publish(ctx, []int64{3}, bin))
	if d := ra.Next(t); !bytes.Equal([]byte(d.Payload), bin) {
		t.Fatalf("binary payload = %q, want %q", d.Payload, bin)
	}
	must(t, "Publish", b.Publish(ctx, []int64{3}, nil))
	ra.Expect(t, Delivery{3, ""})
}

func testEmpty(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, _ := Node(t, add, "a")
	must(t, "Publish to nobody", a.Publish(ctx, nil, []byte("x")))
	must(t, "Publish to an unsubscribed user", a.Publish(ctx, []int64{99}, []byte("x")))
	got, err := a.Online(ctx, nil)
	must(t, "Online(nil)", err)
	if len(got) != 0 {
		t.Fatalf("Online(nil) = %v", got)
	}
}

func testClosed(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	a, _ := Node(t, add, "a")
	must(t, "Subscribe", a.Subscribe(ctx, 1))
	must(t, "Close", a.Close())
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := a.Subscribe(ctx, 1); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := a.Unsubscribe(ctx, 1); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Unsubscribe after Close: %v", err)
	}
	if err := a.Publish(ctx, []int64{1}, nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	if _, err := a.Online(ctx, []int64{1}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Online after Close: %v", err)
	}
}

func testConcurrent(t *testing.T, add func(bus.Options) bus.Bus) {
	ctx := Ctx(t)
	var mu sync.Mutex
	got := make(map[int64]int)
	a := add(bus.Options{Node: "a", Handler: func(id int64, p []byte) {
		mu.Lock()
		got[id]++
		mu.Unlock()
	}})
	b, _ := Node(t, add, "b")
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			id := int64(500 + w)
			for i := 0; i < rounds; i++ {
				if err := a.Subscribe(ctx, id); err != nil {
					errs <- err
					return
				}
				if err := b.Publish(ctx, []int64{id, id + 100}, []byte("x")); err != nil {
					errs <- err
					return
				}
				if _, err := b.Online(ctx, []int64{id}); err != nil {
					errs <- err
					return
				}
				if err := a.Unsubscribe(ctx, id); err != nil {
					errs <- err
					return
				}
			}
			// Leave each user subscribed once, with a final payload.
			if err := a.Subscribe(ctx, id); err != nil {
				errs <- err
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ids := make([]int64, workers)
	for w := range ids {
		ids[w] = int64(500 + w)
	}
	must(t, "final Publish", b.Publish(ctx, ids, []byte("last")))
	deadline := time.Now().Add(Timeout)
	for {
		mu.Lock()
		n := 0
		for _, id := range ids {
			if got[id] > 0 {
				n++
			}
		}
		mu.Unlock()
		if n == workers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d users got the final payload", n, workers)
		}
		time.Sleep(5 * time.Millisecond)
	}
	CheckOnline(t, b, ids, []bool{true, true, true, true, true, true, true, true})
}
