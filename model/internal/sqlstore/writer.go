package sqlstore

import (
	"context"
	"fmt"
	"sort"
	"time"
	"unicode/utf8"

	"clusterchat/model"
)

// The batching writer. StoreMessage queues a request; a writer goroutine
// (Options.Writers of them) takes whatever is queued (up to MaxBatch,
// lingering BatchWindow for more while senders are concurrent), stores the
// batch in one transaction and answers
// every request after the commit. Inside the transaction each request is
// checked on its own (dedupe, conversation, membership), so one bad request
// gets its own error and the others are stored; only a failure of the
// transaction itself (the database is down, the commit failed) fails them
// all, and then nothing of the batch was stored.

const (
	qMessageByCID = `SELECT c.group_id, c.a, c.b, m.seq, m.from_name, m.body, m.sent_at
FROM messages m JOIN convs c ON c.id = m.conv_id
WHERE m.sender = ? AND m.cid = ?`
	qInsertMessage      = "INSERT INTO messages (conv_id, seq, sender, from_name, body, cid, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
	qInsertGroupMessage = `INSERT INTO messages (conv_id, seq, sender, from_name, body, cid, sent_at)
SELECT ?, ?, ?, ?, ?, ?, ? FROM group_members WHERE group_id = ? AND user_id = ?`
	maxCIDBytes  = 255
	maxBodyBytes = 1 << 20
)

// msgReq is a StoreMessage call, or an AckMessages call when acks is set.
type msgReq struct {
	ctx  context.Context
	m    model.NewMessage
	k    key
	acks []ackItem // the AckMessages call of user, one per conversation
	user int64
	res  chan msgRes // buffered: the writer never blocks on it
}

// friendsOnly reports whether req is a direct message to store only
// between friends (NewMessage.FriendsOnly).
func (req *msgReq) friendsOnly() bool {
	return req.acks == nil && req.m.FriendsOnly && req.k.g == 0
}

type ackItem struct {
	k   key
	seq int64
}

type msgRes struct {
	msg model.Message
	dup bool
	err error
}

// StoreMessage stores a message under its conversation's next seq and moves
// the sender's cursor to it, in a transaction shared with concurrent calls;
// it returns after the commit. A retry (same sender and cid, same
// conversation and body) stores nothing and returns the original with dup =
// true; the same cid with another conversation or body gives ErrCIDConflict.
// ErrForbidden when the sender is not a member of the group (or not one of
// the direct conversation's users), ErrNotFound when the group is gone. It
// returns ctx's error as soon as ctx is done; the message may then still be
// stored, and a retry with the same cid tells.
func (s *Store) StoreMessage(ctx context.Context, m model.NewMessage) (model.Message, bool, error) {
	k, err := convKey(m.Conv)
	switch {
	case err != nil:
		return model.Message{}, false, s.errorf("store message: %w", err)
	case m.From <= 0:
		return model.Message{}, false, s.errorf("store message: invalid sender %d", m.From)
	case m.CID == "" || len(m.CID) > maxCIDBytes:
		return model.Message{}, false, s.errorf("store message: cid must be 1-%d bytes", maxCIDBytes)
	case len(m.Body) > maxBodyBytes:
		return model.Message{}, false, s.errorf("store message: body longer than %d bytes", maxBodyBytes)
	case !utf8.ValidString(m.Body):
		// Checked here, not by the database, so that it cannot fail a batch.
		return model.Message{}, false, s.errorf("store message: body is not valid UTF-8")
	case len(m.FromName) > maxNameBytes || !utf8.ValidString(m.FromName):
		return model.Message{}, false, s.errorf("store message: sender name is not valid UTF-8 of at most %d bytes", maxNameBytes)
	}
	if m.Time == 0 {
		m.Time = s.opts.Now().UnixMilli()
	}
	res, err := s.submit(ctx, &msgReq{ctx: ctx, m: m, k: k, res: make(chan msgRes, 1)})
	if err != nil {
		return model.Message{}, false, s.errorf("store message: %w", err)
	}
	return res.msg, res.dup, nil
}

// submit queues req for the writers and waits for its result, or for ctx.
func (s *Store) submit(ctx context.Context, req *msgReq) (msgRes, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return msgRes{}, model.ErrClosed
	}
	select {
	case s.route(req) <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return msgRes{}, fmt.Errorf("queue: %w", ctx.Err())
	}
	select {
	case res := <-req.res:
		return res, res.err
	case <-ctx.Done():
		return msgRes{}, ctx.Err()
	}
}

// AckMessages moves the user's cursor in each conversation to max(cursor,
// seq), all or nothing: ErrSeqBeyond (naming the conversation) when a seq is
// beyond that conversation's last seq, ErrNotFound when a group does not
// exist. Two acks of one conversation count as the larger. Membership is
// checked by the caller (a non-member's group ack moves nothing). Like
// StoreMessage, concurrent calls share the writers' transactions.
func (s *Store) AckMessages(ctx context.Context, userID int64, acks []model.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	largest := make(map[key]int64, len(acks))
	for _, a := range acks {
		k, err := convKey(a.Conv)
		if err != nil {
			return s.errorf("ack: %w", err)
		}
		if cur, ok := largest[k]; !ok || a.Seq > cur {
			largest[k] = a.Seq
		}
	}
	items := make([]ackItem, 0, len(largest))
	for k, seq := range largest {
		items = append(items, ackItem{k, seq})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].k.less(items[j].k) }) // one lock order
	if _, err := s.submit(ctx, &msgReq{ctx: ctx, acks: items, user: userID, res: make(chan msgRes, 1)}); err != nil {
		return s.errorf("ack: %w", err)
	}
	return nil
}

// route returns the queue of the writer for req: the one of its
// conversation (an ack's first), by hash. Every message of a conversation
// goes to the same writer, so that two writers of one store do not lock
// the same conversation row or cursor rows of a direct conversation and
// wait for each other's commit; a writer's queue fills while its commit is
// in flight, and its next batch takes it all. An ACK of several
// conversations goes to its first one's writer and may wait on another
// writer for the others' cursor rows (its items are sorted, so the two
// cannot deadlock on them).
func (s *Store) route(req *msgReq) chan *msgReq {
	if len(s.queues) == 1 {
		return s.queues[0]
	}
	k := req.k
	if req.acks != nil {
		k = req.acks[0].k
	}
	h := uint64(k.g)*0x9e3779b97f4a7c15 ^ uint64(k.a)*0xc2b2ae3d27d4eb4f ^ uint64(k.b)*0x165667b19e3779f9
	h ^= h >> 29
	return s.queues[h%uint64(len(s.queues))]
}

// writer is the goroutine that stores the requests of its queue, until
// the queue is closed and drained.
func (s *Store) writer(reqs chan *msgReq) {
	defer s.wg.Done()
	linger := false
	batch := make([]*msgReq, 0, s.opts.MaxBatch)
	st := newBatchState()
	for {
		first, ok := <-reqs
		if !ok {
			return
		}
		batch = s.gather(reqs, append(batch[:0], first), linger)
		s.runBatch(batch, st)
		if s.opts.BetweenBatches != nil {
			s.opts.BetweenBatches(s.w)
		}
		linger = len(batch) > 1
		clear(batch)
	}
}

// gather adds the queued requests to batch and, when linger is set, waits
// for more: until MaxBatch, BatchWindow after the start, or a pause of a
// tenth of the window without a new request (the senders have all
// resubmitted), whichever comes first.
func (s *Store) gather(reqs chan *msgReq, batch []*msgReq, linger bool) []*msgReq {
	for len(batch) < s.opts.MaxBatch {
		select {
		case r, ok := <-reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	if !linger || s.opts.BatchWindow <= 0 || len(batch) >= s.opts.MaxBatch {
		return batch
	}
	end := time.Now().Add(s.opts.BatchWindow)
	pause := s.opts.BatchWindow / 10
	t := time.NewTimer(pause)
	defer t.Stop()
	for len(batch) < s.opts.MaxBatch {
		select {
		case r, ok := <-reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			left := time.Until(end)
			if left <= 0 {
				return batch
			}
			t.Reset(min(pause, left))
		case <-t.C:
			return batch
		}
	}
	return batch
}

// runBatch stores the live requests of batch in one transaction and answers
// them all.
func (s *Store) runBatch(batch []*msgReq, st *batchState) {
	live := batch[:0:0]
	for _, q := range batch {
		if err := q.ctx.Err(); err != nil {
			q.res <- msgRes{err: err} // its caller has given up
			continue
		}
		live = append(live, q)
	}
	if len(live) == 0 {
		return
	}
	// Lock the conversations in one order in every transaction (so two
	// servers' batches cannot deadlock); one conversation keeps arrival
	// order. Acks come after the messages.
	sort.SliceStable(live, func(i, j int) bool {
		if (live[i].acks == nil) != (live[j].acks == nil) {
			return live[i].acks == nil
		}
		return live[i].acks == nil && live[i].k.less(live[j].k)
	})
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	stmtCtx := ctx
	if s.d.Exclusive {
		stmtCtx = context.WithoutCancel(ctx)
	}
	results := make([]msgRes, len(live))
	attempt := 0
	err := s.retryTx(ctx, func(r runner) error {
		if attempt++; attempt > 1 && s.cache != nil {
			s.cache.clear() // the last attempt's commit failed after storing in it
		}
		return s.storeBatch(stmtCtx, r, live, results, st)
	})
	if err != nil && s.cache != nil {
		s.cache.clear()
	}
	s.stats.batches.Add(1)
	if err != nil {
		s.stats.failed.Add(int64(len(live)))
	}
	for i, q := range live {
		switch {
		case err != nil:
			q.res <- msgRes{err: fmt.Errorf("batch of %d: %w", len(live), err)}
			continue
		case q.acks != nil:
			s.stats.acks.Add(1)
		case results[i].dup:
			s.stats.dups.Add(1)
		case results[i].err == nil:
			s.stats.messages.Add(1)
		}
		q.res <- results[i]
	}
}
