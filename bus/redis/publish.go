package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"clusterchat/bus"
)

// The envelope is one byte holding the origin node's length, the node name,
// then the payload: parsing it is two slice operations.

func (b *Bus) envelope(payload []byte) []byte {
	env := make([]byte, 0, 1+len(b.node)+len(payload))
	env = append(env, byte(len(b.node)))
	env = append(env, b.node...)
	return append(env, payload...)
}

func parseEnvelope(s string) (origin, payload string, ok bool) {
	if len(s) < 1 || len(s) < 1+int(s[0]) {
		return "", "", false
	}
	n := 1 + int(s[0])
	return s[1:n], s[n:], true
}

// Publish sends payload to each of userIDs' channels. It returns once Redis
// accepted every PUBLISH; when Redis is unreachable it fails within the
// timeouts and ctx.
//
// Concurrent calls share round trips, as a database's group commit does:
// a call that finds no pipeline in flight starts one at once (on a
// goroutine of its own, so every call returns when its ctx ends); calls
// made meanwhile queue, and the next pipeline carries all of them (one write(2) and one read for the lot,
// instead of a write, a read and a pool connection each). Calls are sent
// in the order they queued, so one caller's publishes stay in order.
func (b *Bus) Publish(ctx context.Context, userIDs []int64, payload []byte) error {
	if b.isClosed() {
		return fmt.Errorf("bus/redis: publish to %d users: %w", len(userIDs), bus.ErrClosed)
	}
	if len(userIDs) == 0 {
		return nil
	}
	req := &pubReq{ctx: ctx, users: userIDs, env: b.envelope(payload), done: make(chan error, 1)}
	b.pubMu.Lock()
	if b.pubDone {
		b.pubMu.Unlock()
		return fmt.Errorf("bus/redis: publish to %d users: %w", len(userIDs), bus.ErrClosed)
	}
	b.pubQueue = append(b.pubQueue, req)
	lead := !b.pubBusy
	b.pubBusy = true
	if lead {
		b.wg.Add(1) // under pubMu: before Close's wg.Wait, or not at all
	}
	b.pubMu.Unlock()
	if lead {
		// The pipeline runs on its own goroutine so that this call, like
		// every other, returns when its ctx ends even if Redis does not
		// answer.
		go b.flushPublishes()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("bus/redis: publish to %d users: %w", len(userIDs), ctx.Err())
	}
}

// pubReq is a queued Publish call.
type pubReq struct {
	ctx   context.Context
	users []int64
	env   []byte
	cmds  []*goredis.IntCmd
	done  chan error // buffered: the flusher never blocks on it
}

// flushPublishes sends the queued calls in pipelines, one at a time, until
// the queue is empty. Close waits for it.
func (b *Bus) flushPublishes() {
	defer b.wg.Done()
	for {
		b.pubMu.Lock()
		if len(b.pubQueue) == 0 {
			b.pubBusy = false
			b.pubMu.Unlock()
			return
		}
		batch := b.pubQueue
		b.pubQueue, b.pubSpare = b.pubSpare[:0], nil // never the slice in flight
		b.pubMu.Unlock()
		b.execPublishes(batch)
		clear(batch)
		b.pubMu.Lock()
		b.pubSpare = batch[:0]
		b.pubMu.Unlock()
	}
}

// execPublishes sends the PUBLISHes of batch in one pipeline and answers
// each call. The pipeline runs until the latest deadline of the batch's
// calls (none if one has none) or Close, within the client's timeouts: a
// call whose own ctx ends first has returned already.
func (b *Bus) execPublishes(batch []*pubReq) {
	live := batch[:0:0]
	var deadline time.Time
	unbounded := false
	for _, r := range batch {
		if b.ctx.Err() != nil { // Close
			r.done <- fmt.Errorf("bus/redis: publish to %d users: %w", len(r.users), bus.ErrClosed)
			continue
		}
		if err := r.ctx.Err(); err != nil {
			r.done <- fmt.Errorf("bus/redis: publish to %d users: %w", len(r.users), err)
			continue
		}
		live = append(live, r)
		if dl, ok := r.ctx.Deadline(); !ok {
			unbounded = true
		} else if dl.After(deadline) {
			deadline = dl
		}
	}
	if len(live) == 0 {
		return
	}
	ctx := b.ctx
	if !unbounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	pipe := b.pub.Pipeline()
	for _, r := range live {
		r.cmds = make([]*goredis.IntCmd, len(r.users))
		for i, id := range r.users {
			r.cmds[i] = pipe.Publish(ctx, b.channel(id), r.env)
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for _, r := range live {
		var err error
		for i, c := range r.cmds {
			if cerr := c.Err(); cerr != nil {
				if b.ctx.Err() != nil { // Close cancelled the pipeline
					cerr = bus.ErrClosed
				}
				if len(r.users) == 1 {
					err = fmt.Errorf("bus/redis: publish to user %d: %w", r.users[i], cerr)
				} else {
					err = fmt.Errorf("bus/redis: publish to %d users: %w", len(r.users), cerr)
				}
				break
			}
		}
		r.done <- err
	}
}

// Online asks Redis, in one PUBSUB NUMSUB, whether some node subscribes to
// each of userIDs.
func (b *Bus) Online(ctx context.Context, userIDs []int64) ([]bool, error) {
	if b.isClosed() {
		return nil, fmt.Errorf("bus/redis: online of %d users: %w", len(userIDs), bus.ErrClosed)
	}
	out := make([]bool, len(userIDs))
	if len(userIDs) == 0 {
		return out, nil
	}
	chans := make([]string, len(userIDs))
	for i, id := range userIDs {
		chans[i] = b.channel(id)
	}
	counts, err := b.pub.PubSubNumSub(ctx, chans...).Result()
	if err != nil {
		return nil, fmt.Errorf("bus/redis: online of %d users: %w", len(userIDs), err)
	}
	for i, ch := range chans {
		out[i] = counts[ch] > 0
	}
	return out, nil
}
