package chatservice

import (
	"context"
	"sync"

	"clusterchat/model"
)

// memberCache tells whom a group message is pushed to. It only picks
// recipients: the store checks the sender's membership inside the storing
// transaction, and GROUP_MEMBERS reads the store.
//
// Recipients are the members whose joined_seq is below the message's seq
// (a member sees nothing sent before it joined), read after the message was
// stored: whoever left before it is not in the list, whoever joined after
// it is filtered out. Only a member leaving between the commit and the read
// misses the push (it left anyway).
//
// With enabled (one server alone on its store), member lists are cached:
// every change of a group happens in this process under the group's lock,
// which also orders its messages, and drops the entry, so the cache is
// exact. With several servers on one store, another server's change is not
// seen in time, so every message reads the list.
type memberCache struct {
	enabled bool
	max     int
	mu      sync.Mutex
	entries map[int64][]model.Member
}

func newMemberCache(enabled bool, max int) *memberCache {
	return &memberCache{enabled: enabled, max: max, entries: make(map[int64][]model.Member)}
}

// recipients returns the users to push message seq of group gid to.
func (c *memberCache) recipients(ctx context.Context, store model.Store, gid, seq int64) ([]int64, error) {
	ms, err := c.members(ctx, store, gid)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(ms))
	for _, m := range ms {
		if m.JoinedSeq < seq {
			ids = append(ids, m.User.ID)
		}
	}
	return ids, nil
}

func (c *memberCache) members(ctx context.Context, store model.Store, gid int64) ([]model.Member, error) {
	if c.enabled {
		c.mu.Lock()
		ms, ok := c.entries[gid]
		c.mu.Unlock()
		if ok {
			return ms, nil
		}
	}
	ms, err := store.GroupMembers(ctx, gid)
	if err != nil || !c.enabled {
		return ms, err
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[gid] = ms
	c.mu.Unlock()
	return ms, nil
}

// drop forgets a group. The caller holds the group's lock.
func (c *memberCache) drop(gid int64) {
	if !c.enabled {
		return
	}
	c.mu.Lock()
	delete(c.entries, gid)
	c.mu.Unlock()
}
