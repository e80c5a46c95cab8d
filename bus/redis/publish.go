package redis

import (
	"context"
	"fmt"

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

// Publish sends payload to each of userIDs' channels in one pipelined round
// trip. It returns once Redis accepted every PUBLISH; when Redis is
// unreachable it fails within the timeouts and ctx.
func (b *Bus) Publish(ctx context.Context, userIDs []int64, payload []byte) error {
	if b.isClosed() {
		return fmt.Errorf("bus/redis: publish to %d users: %w", len(userIDs), bus.ErrClosed)
	}
	switch len(userIDs) {
	case 0:
		return nil
	case 1:
		if err := b.pub.Publish(ctx, b.channel(userIDs[0]), b.envelope(payload)).Err(); err != nil {
			return fmt.Errorf("bus/redis: publish to user %d: %w", userIDs[0], err)
		}
		return nil
	}
	env := b.envelope(payload)
	pipe := b.pub.Pipeline()
	for _, id := range userIDs {
		pipe.Publish(ctx, b.channel(id), env)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("bus/redis: publish to %d users: %w", len(userIDs), err)
	}
	return nil
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
