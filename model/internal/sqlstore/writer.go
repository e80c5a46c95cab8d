package sqlstore

import (
	"context"
	"database/sql"
	"errors"
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
	qSetLastSeq  = "UPDATE convs SET last_seq = ? WHERE id = ?"
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
	case s.reqs <- req:
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

// writer is the goroutine that stores the queued messages, until reqs is
// closed and drained.
func (s *Store) writer() {
	defer s.wg.Done()
	linger := false
	batch := make([]*msgReq, 0, s.opts.MaxBatch)
	for {
		first, ok := <-s.reqs
		if !ok {
			return
		}
		batch = s.gather(append(batch[:0], first), linger)
		s.runBatch(batch)
		linger = len(batch) > 1
		clear(batch)
	}
}

// gather adds the queued requests to batch and, when linger is set, waits
// for more: until MaxBatch, BatchWindow after the start, or a pause of a
// tenth of the window without a new request (the senders have all
// resubmitted), whichever comes first.
func (s *Store) gather(batch []*msgReq, linger bool) []*msgReq {
	for len(batch) < s.opts.MaxBatch {
		select {
		case r, ok := <-s.reqs:
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
		case r, ok := <-s.reqs:
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
func (s *Store) runBatch(batch []*msgReq) {
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
	results := make([]msgRes, len(live))
	err := s.retryTx(ctx, func(r runner) error { return s.storeBatch(ctx, r, live, results) })
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

// convState is a conversation locked by the batch transaction.
type convState struct {
	id, last int64
	dirty    bool
}

// storeBatch stores reqs in the transaction of r, filling results. An error
// it returns fails the whole transaction.
func (s *Store) storeBatch(ctx context.Context, r runner, reqs []*msgReq, results []msgRes) error {
	convs := make(map[key]*convState)
	order := make([]*convState, 0, 4)
	for i, q := range reqs {
		var res msgRes
		var err error
		if q.acks != nil {
			res, err = s.ackOne(ctx, r, q, convs)
		} else {
			res, err = s.storeOne(ctx, r, q, convs, &order)
		}
		if err != nil {
			return err
		}
		results[i] = res
	}
	for _, c := range order {
		if !c.dirty {
			continue
		}
		if _, err := r.exec(ctx, qSetLastSeq, c.last, c.id); err != nil {
			return fmt.Errorf("set last seq: %w", err)
		}
	}
	return nil
}

// byCID looks for the sender's message with the request's cid: found with
// the request's result (the original, or ErrCIDConflict) when there is one.
func (s *Store) byCID(ctx context.Context, r runner, q *msgReq) (msgRes, bool, error) {
	var k key
	m := model.Message{From: q.m.From, CID: q.m.CID}
	err := r.row(ctx, qMessageByCID, q.m.From, q.m.CID).Scan(&k.g, &k.a, &k.b, &m.Seq, &m.FromName, &m.Body, &m.Time)
	if errors.Is(err, sql.ErrNoRows) {
		return msgRes{}, false, nil
	}
	if err != nil {
		return msgRes{}, false, fmt.Errorf("look up cid: %w", err)
	}
	if k != q.k || m.Body != q.m.Body {
		return msgRes{err: fmt.Errorf("sender %d cid %q is message %d of %v: %w",
			q.m.From, q.m.CID, m.Seq, k, model.ErrCIDConflict)}, true, nil
	}
	m.Conv = k.conv()
	return msgRes{msg: m, dup: true}, true, nil
}

// storeOne stores one request. A result's err is the request's own
// failure; the returned error fails the transaction.
//
// The common case costs a conversation lock (once per batch), the INSERT
// (for a group an INSERT ... SELECT from the sender's membership row, so
// that it is also the membership check) and the cursor move: a retried cid
// is found by the INSERT's unique violation on (sender, cid), and only then
// looked up.
func (s *Store) storeOne(ctx context.Context, r runner, q *msgReq, convs map[key]*convState, order *[]*convState) (msgRes, error) {
	c := convs[q.k]
	if c == nil {
		id, last, found, err := s.convRow(ctx, r, q.k, true)
		if err != nil {
			return msgRes{}, fmt.Errorf("lock %v: %w", q.k, err)
		}
		if !found {
			if q.k.g != 0 { // a deleted group's messages went with it
				return msgRes{err: fmt.Errorf("%v: %w", q.k, model.ErrNotFound)}, nil
			}
			if _, err := r.exec(ctx, s.d.InsertConvIgnore, 0, q.k.a, q.k.b); err != nil {
				return msgRes{}, fmt.Errorf("create %v: %w", q.k, err)
			}
			if id, last, found, err = s.convRow(ctx, r, q.k, true); err != nil || !found {
				return msgRes{}, fmt.Errorf("lock new %v: found %v: %w", q.k, found, err)
			}
		}
		c = &convState{id: id, last: last}
		convs[q.k] = c
		*order = append(*order, c)
	}
	if q.k.g == 0 && q.m.From != q.k.a && q.m.From != q.k.b {
		return msgRes{err: fmt.Errorf("user %d in %v: %w", q.m.From, q.k, model.ErrForbidden)}, nil
	}
	m := model.Message{Conv: q.k.conv(), Seq: c.last + 1, From: q.m.From, FromName: q.m.FromName,
		Body: q.m.Body, CID: q.m.CID, Time: q.m.Time}
	var res sql.Result
	var err error
	if q.k.g != 0 { // inserted only when the sender is a member
		res, err = r.exec(ctx, qInsertGroupMessage, c.id, m.Seq, m.From, m.FromName, m.Body, m.CID, m.Time, q.k.g, m.From)
	} else {
		res, err = r.exec(ctx, qInsertMessage, c.id, m.Seq, m.From, m.FromName, m.Body, m.CID, m.Time)
	}
	if err != nil {
		switch {
		case s.d.IsUnique(err): // the cid is taken: a retry, or a conflict
			res, found, err2 := s.byCID(ctx, r, q)
			if err2 != nil || found {
				return res, err2
			}
			return msgRes{}, fmt.Errorf("insert message: %w", err)
		case s.d.IsForeignKey(err):
			return msgRes{err: fmt.Errorf("sender %d: %w", q.m.From, model.ErrNotFound)}, nil
		}
		return msgRes{}, fmt.Errorf("insert message: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return msgRes{}, fmt.Errorf("insert message: %w", err)
	} else if n == 0 { // not a member
		// A retry of a message stored before the sender left still gets
		// the original.
		if res, found, err := s.byCID(ctx, r, q); err != nil || (found && res.dup) {
			return res, err
		}
		return msgRes{err: fmt.Errorf("user %d in %v: %w", q.m.From, q.k, model.ErrForbidden)}, nil
	}
	c.last, c.dirty = m.Seq, true
	if err := s.moveCursor(ctx, r, m.From, q.k, c.id, m.Seq); err != nil {
		return msgRes{}, err
	}
	return msgRes{msg: m}, nil
}

// ackOne runs one AckMessages call: it checks every conversation, then
// moves the cursors, or none when one check fails. A conversation that the
// batch has locked gives its last seq from convs.
func (s *Store) ackOne(ctx context.Context, r runner, q *msgReq, convs map[key]*convState) (msgRes, error) {
	ids := make([]int64, len(q.acks))
	for i, a := range q.acks {
		var last int64
		if c := convs[a.k]; c != nil {
			ids[i], last = c.id, c.last
		} else {
			id, l, found, err := s.convRow(ctx, r, a.k, false)
			if err != nil {
				return msgRes{}, fmt.Errorf("read %v: %w", a.k, err)
			}
			if !found && a.k.g != 0 {
				return msgRes{err: fmt.Errorf("%v: %w", a.k, model.ErrNotFound)}, nil
			}
			ids[i], last = id, l
		}
		if a.seq > last {
			return msgRes{err: fmt.Errorf("%v: seq %d beyond %d: %w", a.k, a.seq, last, model.ErrSeqBeyond)}, nil
		}
	}
	for i, a := range q.acks {
		if a.seq <= 0 {
			continue
		}
		if err := s.moveCursor(ctx, r, q.user, a.k, ids[i], a.seq); err != nil {
			return msgRes{}, err
		}
	}
	return msgRes{}, nil
}
