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
	entries map[int64]*memberList
}

// memberList is a cached member list with the ids of its members, shared
// (read-only) by the messages sent while it is cached.
type memberList struct {
	members   []model.Recipient
	ids       []int64 // every member
	maxJoined int64   // the largest JoinedSeq
}

func newMemberList(ms []model.Recipient) *memberList {
	l := &memberList{members: ms, ids: make([]int64, len(ms))}
	for i, m := range ms {
		l.ids[i] = m.UserID
		l.maxJoined = max(l.maxJoined, m.JoinedSeq)
	}
	return l
}

func newMemberCache(enabled bool, max int) *memberCache {
	return &memberCache{enabled: enabled, max: max, entries: make(map[int64]*memberList)}
}

// recipients returns the users to push message seq of group gid to. The
// slice may be shared with other callers: it must not be modified.
func (c *memberCache) recipients(ctx context.Context, store model.Store, gid, seq int64) ([]int64, error) {
	l, err := c.members(ctx, store, gid)
	if err != nil {
		return nil, err
	}
	if l.maxJoined < seq {
		return l.ids, nil // the common case: everyone joined before the message
	}
	ids := make([]int64, 0, len(l.members))
	for _, m := range l.members {
		if m.JoinedSeq < seq {
			ids = append(ids, m.UserID)
		}
	}
	return ids, nil
}

func (c *memberCache) members(ctx context.Context, store model.Store, gid int64) (*memberList, error) {
	if c.enabled {
		c.mu.Lock()
		l, ok := c.entries[gid]
		c.mu.Unlock()
		if ok {
			return l, nil
		}
	}
	ms, err := store.GroupRecipients(ctx, gid)
	if err != nil {
		return nil, err
	}
	l := newMemberList(ms)
	if !c.enabled {
		return l, nil
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[gid] = l
	c.mu.Unlock()
	return l, nil
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
