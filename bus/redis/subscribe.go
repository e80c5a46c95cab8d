package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"clusterchat/bus"
)

// Subscribe counts one more local session of userID; on the first one it
// subscribes to the user's channel and returns once Redis confirmed it, so a
// payload published after Subscribe returns is delivered.
//
// The call is counted whatever happens, unless the bus is closed
// (bus.ErrClosed): a ctx that ends before the confirmation gives an error,
// but the subscription stays requested and the caller unsubscribes as usual.
// While Redis is unreachable, Subscribe only records the user and returns
// nil: the subscription is made when the connection is back, and OnResync
// then tells the service to re-run the offline push.
func (b *Bus) Subscribe(ctx context.Context, userID int64) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("bus/redis: subscribe user %d: %w", userID, bus.ErrClosed)
	}
	b.counts[userID]++
	if b.ps == nil {
		b.mu.Unlock()
		return nil
	}
	w := b.pending[userID] // a concurrent first Subscribe still waiting
	if b.counts[userID] == 1 {
		// The writes use the bus's context: a caller's cancelled context
		// must not make go-redis drop the shared connection.
		ps := b.ps
		w = b.barrier(ps, userID, ps.Subscribe(b.ctx, b.channel(userID)))
		if w == nil {
			// The connection broke: the manager resubscribes everything.
			b.mu.Unlock()
			return nil
		}
		b.pending[userID] = w
	}
	b.mu.Unlock()
	if w == nil {
		return nil
	}
	select {
	case <-w.done:
		return nil
	case <-b.ctx.Done():
		return fmt.Errorf("bus/redis: subscribe user %d: %w", userID, bus.ErrClosed)
	case <-ctx.Done():
	}
	// Still counted (and still requested): the caller unsubscribes as
	// usual when the session ends.
	return fmt.Errorf("bus/redis: subscribe user %d: not confirmed yet: %w", userID, ctx.Err())
}

// Unsubscribe undoes one Subscribe of userID; after the last one it
// unsubscribes from the channel and returns once Redis confirmed it (on a
// ctx error the subscription is dropped all the same). It returns
// bus.ErrNotSubscribed (wrapped) when there is no Subscribe to undo.
func (b *Bus) Unsubscribe(ctx context.Context, userID int64) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("bus/redis: unsubscribe user %d: %w", userID, bus.ErrClosed)
	}
	if b.counts[userID] == 0 {
		b.mu.Unlock()
		return fmt.Errorf("bus/redis: unsubscribe user %d: %w", userID, bus.ErrNotSubscribed)
	}
	if b.counts[userID]--; b.counts[userID] > 0 || b.ps == nil {
		if b.counts[userID] == 0 {
			delete(b.counts, userID)
		}
		b.mu.Unlock()
		return nil
	}
	delete(b.counts, userID)
	delete(b.pending, userID)
	ps := b.ps
	w := b.barrier(ps, userID, ps.Unsubscribe(b.ctx, b.channel(userID)))
	b.mu.Unlock()
	if w == nil {
		return nil // the next connection will not subscribe it
	}
	select {
	case <-w.done:
		return nil
	case <-b.ctx.Done():
		return fmt.Errorf("bus/redis: unsubscribe user %d: %w", userID, bus.ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("bus/redis: unsubscribe user %d: waiting for confirmation: %w", userID, ctx.Err())
	}
}

// waiter is a barrier: done is closed when Redis answered its PING.
type waiter struct {
	user int64
	done chan struct{}
}

// barrier follows a (UN)SUBSCRIBE of user just written on ps (with error
// err) by a PING with a fresh payload: Redis answers in order, so its PONG
// proves that the command took effect. It returns nil if a write failed.
// Called with b.mu held.
func (b *Bus) barrier(ps *goredis.PubSub, user int64, err error) *waiter {
	if err != nil {
		return nil
	}
	b.nextTok++
	tok := "b:" + strconv.FormatUint(b.nextTok, 10)
	if err := ps.Ping(b.ctx, tok); err != nil {
		return nil
	}
	w := &waiter{user: user, done: make(chan struct{})}
	b.waiters[tok] = w
	return w
}

// release wakes w; called with b.mu held.
func (b *Bus) release(tok string, w *waiter) {
	close(w.done)
	delete(b.waiters, tok)
	if b.pending[w.user] == w {
		delete(b.pending, w.user)
	}
}

// manage keeps one confirmed subscription connection until Close.
func (b *Bus) manage() {
	defer b.wg.Done()
	backoff := minBackoff
	failing := false
	for b.ctx.Err() == nil {
		ps, users, err := b.connect()
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			if !failing {
				b.log.Warn("bus/redis: cannot connect; retrying", "err", err)
				failing = true
			}
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, b.opts.MaxBackoff)
			continue
		}
		if failing {
			b.log.Info("bus/redis: reconnected; resubscribing", "users", users)
			failing = false
		}
		backoff = minBackoff
		err = b.receive(ps)
		b.lose(ps)
		if b.ctx.Err() != nil {
			return
		}
		b.log.Warn("bus/redis: subscription connection lost", "err", err)
		failing = true
	}
}

// connect dials a new subscription connection, subscribes it to every
// recorded user and sends the PING whose PONG confirms it; from then on
// Subscribe and Unsubscribe write to it.
func (b *Bus) connect() (*goredis.PubSub, int, error) {
	ps := b.sub.Subscribe(b.ctx)                   // no channels: no I/O yet
	if err := ps.Ping(b.ctx, "dial"); err != nil { // dials (DialTimeout)
		_ = ps.Close()
		return nil, 0, fmt.Errorf("bus/redis: dial subscription connection: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = ps.Close()
		return nil, 0, bus.ErrClosed
	}
	chans := make([]string, 0, len(b.counts))
	for id := range b.counts {
		chans = append(chans, b.channel(id))
	}
	var err error
	if len(chans) > 0 {
		err = ps.Subscribe(b.ctx, chans...)
	}
	b.nextTok++
	tok := "r:" + strconv.FormatUint(b.nextTok, 10)
	if err == nil {
		err = ps.Ping(b.ctx, tok)
	}
	if err != nil {
		_ = ps.Close()
		return nil, 0, fmt.Errorf("bus/redis: resubscribe %d users: %w", len(chans), err)
	}
	b.ps, b.up, b.resyncTok = ps, false, tok
	b.lastRecv.Store(time.Now().UnixNano())
	return ps, len(chans), nil
}

// receive reads ps until it fails (or is closed).
func (b *Bus) receive(ps *goredis.PubSub) error {
	for {
		msg, err := ps.Receive(b.ctx)
		if err != nil {
			return err
		}
		b.lastRecv.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *goredis.Message:
			b.deliver(m)
		case *goredis.Pong:
			b.pong(ps, m.Payload)
		case *goredis.Subscription:
			// The barrier PONG that follows tells more.
		}
	}
}

func (b *Bus) deliver(m *goredis.Message) {
	id, ok := b.userOf(m.Channel)
	if !ok {
		b.malformed.Add(1)
		return
	}
	origin, payload, ok := parseEnvelope(m.Payload)
	if !ok {
		b.malformed.Add(1)
		return
	}
	if origin == b.node {
		b.own.Add(1)
		return
	}
	b.queue.Push(id, []byte(payload))
}

func (b *Bus) pong(ps *goredis.PubSub, payload string) {
	b.mu.Lock()
	if b.ps == ps && !b.up && payload == b.resyncTok {
		// Every recorded subscription is in place: so are those that
		// waiters are waiting for.
		b.up = true
		for tok, w := range b.waiters {
			b.release(tok, w)
		}
		first := !b.everUp
		b.everUp = true
		b.mu.Unlock()
		if first {
			close(b.firstUp)
			return
		}
		b.reconnects.Add(1)
		select {
		case b.resyncCh <- struct{}{}:
		default: // one is pending already
		}
		return
	}
	if w, ok := b.waiters[payload]; ok {
		b.release(payload, w)
	}
	b.mu.Unlock()
}

func (b *Bus) lose(ps *goredis.PubSub) {
	b.mu.Lock()
	if b.ps == ps {
		b.ps, b.up = nil, false
	}
	b.mu.Unlock()
	_ = ps.Close()
}

// health pings an idle subscription connection and closes one that stopped
// answering (half-open TCP), so that manage replaces it.
func (b *Bus) health() {
	defer b.wg.Done()
	every := b.opts.HealthInterval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		ps := b.ps
		b.mu.Unlock()
		if ps == nil {
			continue
		}
		idle := time.Since(time.Unix(0, b.lastRecv.Load()))
		switch {
		case idle > 3*every:
			b.log.Warn("bus/redis: subscription connection silent; replacing it", "idle", idle)
			_ = ps.Close()
		case idle >= every:
			_ = ps.Ping(b.ctx, "hc") // a broken connection shows in receive
		}
	}
}

// resyncLoop calls OnResync, off the receive goroutine, after each
// confirmed reconnection (coalescing those that come while it runs).
func (b *Bus) resyncLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.resyncCh:
		}
		b.resyncs.Add(1)
		b.log.Info("bus/redis: subscriptions restored; resyncing")
		if b.opts.OnResync != nil {
			b.opts.OnResync()
		}
	}
}
