package netcore

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnContext checks the connection context without a cancelCtx: Err and
// Done before and after the close, contexts derived from it (followed
// through AfterFunc, so they need no goroutine), AfterFunc's stop, and a
// Done channel asked for only after the close.
func TestConnContext(t *testing.T) {
	var conn atomic.Pointer[Conn]
	s := startServer(t, Options{OnConnect: func(c *Conn) { conn.Store(c) }})
	c := dial(t, s)
	waitFor(t, 5*time.Second, "connect", func() bool { return conn.Load() != nil })
	sc := conn.Load()
	ctx := sc.Context()
	if ctx.Err() != nil || ctx.Value("k") != nil {
		t.Fatalf("open conn: Err %v, Value %v", ctx.Err(), ctx.Value("k"))
	}
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("open conn: a deadline")
	}
	done := ctx.Done()
	select {
	case <-done:
		t.Fatal("Done closed while the connection is open")
	default:
	}
	derived, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Derived contexts follow the connection through AfterFunc, not a
	// goroutine each.
	before := runtime.NumGoroutine()
	for range 100 {
		_, cancel := context.WithCancel(ctx)
		defer cancel()
	}
	if n := runtime.NumGoroutine(); n >= before+100 {
		t.Fatalf("100 derived contexts: goroutines %d -> %d", before, n)
	}
	ran := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ran) })
	stop := context.AfterFunc(ctx, func() { t.Error("stopped AfterFunc ran") })
	if !stop() {
		t.Fatal("stop of a pending AfterFunc: false")
	}
	if stop() {
		t.Fatal("second stop: true")
	}

	sc.ForceClose(ReasonForced)
	for _, w := range []struct {
		name string
		ch   <-chan struct{}
	}{{"Done", done}, {"derived context", derived.Done()}, {"AfterFunc", ran}} {
		select {
		case <-w.ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not done after close", w.name)
		}
	}
	if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(derived.Err(), context.Canceled) {
		t.Fatalf("after close: Err %v, derived %v", ctx.Err(), derived.Err())
	}
	if sc.Context().Done() != done {
		t.Fatal("Done after close: a different channel")
	}
	late := make(chan struct{})
	if context.AfterFunc(ctx, func() { close(late) })() {
		t.Fatal("stop of an AfterFunc registered after the close: true")
	}
	select {
	case <-late:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc registered after the close did not run")
	}
	expectClosed(t, c, 5*time.Second)
}

// TestConnContextDoneAfterClose: a Done channel first asked for after the
// close is closed.
func TestConnContextDoneAfterClose(t *testing.T) {
	closed := make(chan *Conn, 1)
	s := startServer(t, Options{
		OnMessage:    func(c *Conn, f []byte) { c.ForceClose(ReasonForced) },
		OnDisconnect: func(c *Conn, r CloseReason, err error) { closed <- c },
	})
	c := dial(t, s)
	if _, err := c.Write(encodeFrame([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	sc := <-closed
	select {
	case <-sc.Context().Done():
	default:
		t.Fatal("Done of a closed connection is not closed")
	}
	if sc.Context().Err() == nil {
		t.Fatal("Err of a closed connection: nil")
	}
}
