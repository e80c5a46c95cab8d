package chatservice

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// wire is a minimal raw client for in-package tests.
type wire struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialWire(t *testing.T, addr string) *wire {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &wire{t: t, conn: c, r: bufio.NewReader(c)}
}

func (w *wire) send(v any) {
	w.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	hdr := make([]byte, 4)
	binary.BigEndian.PutUint32(hdr, uint32(len(body)))
	if _, err := w.conn.Write(append(hdr, body...)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wire) read() gjson.Result {
	w.t.Helper()
	_ = w.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(w.r, hdr); err != nil {
		w.t.Fatalf("read header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr))
	if _, err := io.ReadFull(w.r, body); err != nil {
		w.t.Fatalf("read body: %v", err)
	}
	return gjson.ParseBytes(body)
}

// do sends a request and returns its response, failing on a nonzero errno.
func (w *wire) do(v map[string]any) gjson.Result {
	w.t.Helper()
	w.send(v)
	for {
		r := w.read()
		if r.Get("msgid").Int() == int64(v["msgid"].(int))+100 {
			if r.Get("errno").Int() != 0 {
				w.t.Fatalf("%v answered %s", v, r.Raw)
			}
			return r
		}
	}
}

// startTestService starts svc listening and shuts it down when the test ends.
func startTestService(t *testing.T, svc *Service) *Service {
	t.Helper()
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.server.Shutdown(ctx)
	})
	return svc
}

func TestServiceOneNodeChat(t *testing.T) {
	svc := startTestService(t, newTestService(t))
	a, b := dialWire(t, svc.Addr()), dialWire(t, svc.Addr())
	ida := a.do(map[string]any{"msgid": 2, "name": "ann", "password": "password1"}).Get("user.id").Int()
	idb := b.do(map[string]any{"msgid": 2, "name": "bob", "password": "password2"}).Get("user.id").Int()
	a.do(map[string]any{"msgid": 1, "name": "ANN", "password": "password1"})
	b.do(map[string]any{"msgid": 1, "id": idb, "password": "password2"})
	if st := a.do(map[string]any{"msgid": 6, "friendid": idb}).Get("status").String(); st != "requested" {
		t.Fatalf("status %q", st)
	}
	if p := b.read(); p.Get("msgid").Int() != 203 || p.Get("user.id").Int() != ida {
		t.Fatalf("want FRIEND_REQUEST, got %s", p.Raw)
	}
	b.do(map[string]any{"msgid": 7, "friendid": ida})
	for i := 1; i <= 3; i++ {
		r := a.do(map[string]any{"msgid": 5, "reqid": i, "toid": idb, "msg": "hello", "cid": "c" + string(rune('0'+i))})
		if r.Get("seq").Int() != int64(i) || r.Get("reqid").Int() != int64(i) {
			t.Fatalf("send %d answered %s", i, r.Raw)
		}
	}
	seen := 0
	for seen < 3 {
		p := b.read()
		if p.Get("msgid").Int() == 201 {
			seen++
			if p.Get("seq").Int() != int64(seen) || p.Get("from").Int() != ida || p.Get("fromname").String() != "ann" {
				t.Fatalf("push %d = %s", seen, p.Raw)
			}
		}
	}
}

// A password LOGIN whose bcrypt check outlasts the store timeout (a burst
// of logins queues for the hasher) still succeeds, and a wrong one is still
// counted: the store calls after the check get a deadline of their own.
// The hasher's only slot is held by the test for longer than the store
// timeout, as a burst of other logins would.
func TestLoginSlowHashKeepsStoreDeadline(t *testing.T) {
	const storeTimeout = 50 * time.Millisecond
	svc := startTestService(t, newTestServiceWith(t, Config{Listen: "127.0.0.1:0", BcryptCost: 4, HashWorkers: 1,
		SoleServer: true, StoreTimeout: storeTimeout}))
	w := dialWire(t, svc.Addr())
	id := w.do(map[string]any{"msgid": 2, "name": "ann", "password": "password1"}).Get("user.id").Int()
	login := func(password string) gjson.Result {
		t.Helper()
		svc.hasher.slots <- struct{}{} // the pool is busy
		w.send(map[string]any{"msgid": 1, "id": id, "password": password})
		waitFor(t, "the LOGIN waiting for the hasher", func() bool { return len(svc.hasher.wait) == 1 })
		time.Sleep(3 * storeTimeout)
		<-svc.hasher.slots
		return w.read()
	}
	if r := login("password1"); r.Get("msgid").Int() != 101 || r.Get("errno").Int() != 0 || r.Get("token").String() == "" {
		t.Fatalf("LOGIN after waiting %v for the hasher answered %s", 3*storeTimeout, r.Raw)
	}
	// A wrong password after as long a wait is answered 401 and counted (a
	// 503 with nothing recorded would be a guess the throttle never saw).
	if r := login("wrong-password"); r.Get("errno").Int() != 401 {
		t.Fatalf("wrong password after waiting for the hasher: %s; want 401", r.Raw)
	}
	f, err := svc.store.LoginFailures(context.Background(), id, time.Time{})
	if err != nil || len(f) != 1 {
		t.Fatalf("failures recorded after a slow wrong password: %v, %v; want 1", f, err)
	}
}

// TestLoginThrottleParallel: 30 wrong passwords for one account sent at
// once on 30 connections get 10 answers 401 and 20 answers 429, however
// they interleave (an attempt counts while its hash runs), and then the
// right password gets 429 too (PROTOCOL.md §3).
func TestLoginThrottleParallel(t *testing.T) {
	svc := startTestService(t, newTestService(t))
	reg := dialWire(t, svc.Addr())
	id := reg.do(map[string]any{"msgid": 2, "name": "ann", "password": "password1"}).Get("user.id").Int()
	conns := make([]*wire, 30)
	for i := range conns {
		conns[i] = dialWire(t, svc.Addr())
	}
	for _, w := range conns {
		w.send(map[string]any{"msgid": 1, "id": id, "password": "wrong-password"})
	}
	count := map[int64]int{}
	for _, w := range conns {
		r := w.read()
		if r.Get("msgid").Int() != 101 {
			t.Fatalf("answer to LOGIN: %s", r.Raw)
		}
		count[r.Get("errno").Int()]++
	}
	if count[401] != 10 || count[429] != 20 {
		t.Fatalf("30 wrong passwords at once: %v answers by errno; want 10 × 401 and 20 × 429", count)
	}
	reg.send(map[string]any{"msgid": 1, "id": id, "password": "password1"})
	if r := reg.read(); r.Get("errno").Int() != 429 || r.Get("retry_after").Int() <= 0 {
		t.Fatalf("the right password after 10 failures: %s; want 429 with retry_after", r.Raw)
	}
	svc.throttle.mu.Lock()
	n := len(svc.throttle.accounts)
	svc.throttle.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d accounts still tracked by the throttle after every LOGIN was answered", n)
	}
}

// TestShutdownAnswersQueuedRequests: a request in flight when Shutdown
// starts is answered before GOAWAY, and those sent meanwhile get 503 in
// their turn: on the same connection after the one in flight.
func TestShutdownAnswersQueuedRequests(t *testing.T) {
	svc := startTestService(t, newTestServiceWith(t, Config{Listen: "127.0.0.1:0", BcryptCost: 4, HashWorkers: 1, SoleServer: true}))
	w, other := dialWire(t, svc.Addr()), dialWire(t, svc.Addr())
	id := w.do(map[string]any{"msgid": 2, "name": "ann", "password": "password1"}).Get("user.id").Int()
	other.do(map[string]any{"msgid": 2, "name": "bob", "password": "password2"})
	done := drainBehindLogin(t, svc, w, id)
	w.send(map[string]any{"msgid": 4, "reqid": 8}) // PING, behind the LOGIN
	other.send(map[string]any{"msgid": 2, "name": "cid", "password": "password3", "reqid": 7})
	if r := other.read(); r.Get("msgid").Int() != 102 || r.Get("errno").Int() != 503 || r.Get("reqid").Int() != 7 {
		t.Fatalf("a REG sent during shutdown answered %s; want 503 with its reqid", r.Raw)
	}
	<-svc.hasher.slots
	if r := w.read(); r.Get("msgid").Int() != 101 || r.Get("errno").Int() != 0 || r.Get("token").String() == "" {
		t.Fatalf("the LOGIN in flight at shutdown answered %s; want its response first", r.Raw)
	}
	if r := w.read(); r.Get("msgid").Int() != 104 || r.Get("errno").Int() != 503 || r.Get("reqid").Int() != 8 {
		t.Fatalf("the PING sent during shutdown answered %s; want 503 after the LOGIN's response", r.Raw)
	}
	for {
		r := w.read()
		if r.Get("msgid").Int() == 290 {
			break // GOAWAY
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// drainBehindLogin sends user id's LOGIN on w while the test holds the
// hasher's slot, starts Shutdown once the LOGIN waits for it, and returns
// when Shutdown drains (waiting for the LOGIN). The caller releases the
// slot with <-svc.hasher.slots; Shutdown's result comes on the channel.
func drainBehindLogin(t *testing.T, svc *Service, w *wire, id int64) <-chan error {
	t.Helper()
	svc.hasher.slots <- struct{}{}
	w.send(map[string]any{"msgid": 1, "id": id, "password": "password1"})
	waitFor(t, "the LOGIN waiting for the hasher", func() bool { return len(svc.hasher.wait) == 1 })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- svc.Shutdown(ctx)
	}()
	waitFor(t, "Shutdown draining", svc.draining.Load)
	return done
}

// waitFor polls cond every millisecond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestShutdownAnswersEveryRequestOfTheDrain: requests that arrive during
// the drain, queued behind a request in flight (one worker), each get
// their 503 before the connections close.
func TestShutdownAnswersEveryRequestOfTheDrain(t *testing.T) {
	svc := startTestService(t, newTestServiceWith(t, Config{Listen: "127.0.0.1:0", BcryptCost: 4, HashWorkers: 1, Workers: 1, SoleServer: true}))
	w := dialWire(t, svc.Addr())
	id := w.do(map[string]any{"msgid": 2, "name": "ann", "password": "password1"}).Get("user.id").Int()
	conns := make([]*wire, 100)
	for i := range conns {
		conns[i] = dialWire(t, svc.Addr())
	}
	done := drainBehindLogin(t, svc, w, id) // the LOGIN holds the only worker
	for _, c := range conns {
		c.send(map[string]any{"msgid": 4})
	}
	waitFor(t, "the PINGs counted", func() bool { return svc.inFlight.Load() == int64(1+len(conns)) })
	<-svc.hasher.slots
	for i, c := range conns {
		if r := c.read(); r.Get("msgid").Int() != 104 || r.Get("errno").Int() != 503 {
			t.Fatalf("PING %d during the drain answered %s; want 503 before GOAWAY", i, r.Raw)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
