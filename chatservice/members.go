package chatservice

import (
	"context"
	"sync"
	"time"

	"clusterchat/model"
)

// memberCache keeps the member ids of recently used groups, so that a busy
// group's fan-out does not read its member list for every message. It only
// picks whom to push to: the store checks membership inside the storing
// transaction, and GROUP_MEMBERS reads the store. An entry is dropped when
// this server changes the group or sees a GROUP_EVENT for it, and expires
// after ttl otherwise (another server's change can be missed that long; a
// member it misses finds the message by HISTORY or the offline push).
type memberCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[int64]memberEntry
}

type memberEntry struct {
	ids     []int64
	fetched time.Time
}

func newMemberCache(ttl time.Duration, max int) *memberCache {
	return &memberCache{ttl: ttl, max: max, entries: make(map[int64]memberEntry)}
}

// members returns the group's member ids, from the cache or the store.
func (c *memberCache) members(ctx context.Context, store model.Store, gid int64) ([]int64, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[gid]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < c.ttl {
		return e.ids, nil
	}
	ms, err := store.GroupMembers(ctx, gid)
	if err != nil {
		return nil, err
	}
	ids := memberIDs(ms)
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[gid] = memberEntry{ids: ids, fetched: now}
	c.mu.Unlock()
	return ids, nil
}

// drop forgets a group.
func (c *memberCache) drop(gid int64) {
	c.mu.Lock()
	delete(c.entries, gid)
	c.mu.Unlock()
}
