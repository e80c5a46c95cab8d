package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"clusterchat/model"
)

// One batch transaction. A batch of n messages costs a handful of
// statements, not 4n: the conversations are read (SQLite: from the
// conversation cache) or locked (MySQL: one SELECT ... FOR UPDATE for all
// of them, which locks in key order), a group's senders are checked with
// one SELECT, the messages go in with multi-row INSERTs, the cursors move
// with one multi-row upsert (a group's with one UPDATE) and last_seq with
// one UPDATE for all the batch's conversations. Multi-row statements are
// prepared for the powers of 2 up to 256 rows, and a run of keys is padded
// to the next size up (chunkSizes); the messages' INSERT for every count up
// to 32 and a few above, and a run of messages is cut into chunks of those
// sizes (insertSizes).
// Each statement is bound to the transaction once (runner.txs).
//
// SQLite (Dialect.MaxInsertRows 1) inserts the messages one prepared
// single-row INSERT each: a statement that writes several rows and may fail
// on a key makes SQLite keep a statement journal, a copy of every page the
// statement changes (memjrnlWrite), which cost more than the per-statement
// overhead of a cgo driver (perf, 256 senders: 10.7% of the process, 0.1%
// with single-row INSERTs). Its other multi-row writes (cursors, last_seq)
// stay: as single-row statements they measured no cheaper.
//
// A multi-row INSERT that fails on a unique key (a retried cid, or one used
// for another message) or a foreign key (a sender that does not exist) is
// undone by the database as a whole; its chunk is then stored row by row,
// as the writer did before, so that the culprit gets its own result and the
// others keep consecutive seqs. Every other guarantee is the old one:
// answered after the commit, seq = the conversation's next with no gap,
// (sender, cid) dedupe, the sender's cursor moved in the same transaction.
//
// Effect, measured on the shared 2-core box with
//
//	go test -run '^$' -bench StoreMessage -benchmem ./model/sqlite (./model/mysql)
//
// run 6 times alternately with the previous writer (7ea291e) and compared
// with benchstat (cpu-ns/op is the process's CPU per message; wall time
// was noisy, other engineers' jobs kept the load at 3-6):
//
//	                               before        after
//	sqlite NORMAL 64 senders own   48.7 µs CPU   26.4 µs CPU (-46%), allocs 83 -> 12
//	sqlite NORMAL 64 senders group 26.4 µs CPU   19.8 µs CPU (-25%)
//	sqlite FULL   64 senders own   92.7 µs wall  67.4 µs wall (-27%), 48.4 -> 28.3 µs CPU
//	mysql         64 senders own   323 µs wall   198 µs wall (-39%), 130 -> 73 µs CPU
//	mysql         64 senders group 190 µs wall   110 µs wall (-42%)
//	1 sender (a commit per message): unchanged within the noise.
//
// And with 256 senders in distinct conversations (sqlite NORMAL, 3 runs
// each alternately at 09:19 UTC with the box quiet, load 1.0): 46-55 µs
// per message before, 24-30 µs after (about 40,000 messages/s from the
// store alone, 2x), CPU 51-60 -> 24-33 µs.
//
// In the server (chatbench --scenario pairs --pairs 500 --rate 0 --inflight
// 1 --duration 10s against one chatserver on SQLite, at 09:18 UTC with load
// ~1): 13,611 acks/s (docs/benchmarks.md had 10,757 before), the writer
// goroutine 47% of the server's CPU samples, ~35 µs of CPU per message;
// the rest of the server ~46 µs and chatbench ~42 µs per message, so the
// 30,000/s target on two cores needs those to shrink too.
//
// What is left is SQLite itself: about two pages of WAL per message in
// distinct conversations (the conversation's leaf of messages and the
// sender's leaf of the (sender, cid) index), written to the WAL (since the
// walbuf shim of model/sqlite, one pwrite(2) per transaction rather than
// two per page), and the B-tree work; the Go side is a few percent.
//
// On the cluster (two chatservers on one MariaDB, chatbench --scenario
// pairs --pairs 500 --rate 0 --inflight 1 across both servers; counters of
// SHOW GLOBAL STATUS and /proc CPU over 5 s of steady sending, box load
// 8-18 from other jobs), from 8b3661c to 196080e:
//
//	                                 before      after
//	messages per commit              ~5          ~20-25
//	row lock waits per message       0.02-0.04   0 (avg wait was ~130 ms)
//	statements per message           1.64        0.31-0.38
//	mariadbd CPU per 1000 messages   124 ms      73-76 ms
//	acks/s (noisy)                   2,800       3,900-6,700
//
// The changes: a conversation's requests go to one writer (route), so a
// store's writers never wait for each other's rows and a writer's queue
// fills while its commit is in flight; the acks' conversations are read
// with one SELECT; idempotent multi-row statements are padded, not cut;
// the multi-key SELECTs FORCE INDEX (a batch of 128+ keys in a small table
// made MariaDB lock every direct conversation) and use row-value IN lists;
// AreFriends calls are coalesced (friendreads.go).

// chunkSizes are the row counts of the prepared multi-row statements
// other than the messages' INSERT, powers of 2. Those statements are
// idempotent in their rows (a key locked, read, checked or set to the same
// value twice is the same as once), so a run of keys goes in one statement
// of the next size up, its last key repeated to fill it: one statement per
// 256 keys, at most twice as many placeholders as keys. (With powers of 4
// cut into chunks, a batch of 15 took 6 statements of each kind; padded to
// powers of 4, a batch of 65 keys cost MariaDB a 256-key statement.)
var chunkSizes = [...]int{1, 2, 4, 8, 16, 32, 64, 128, 256}

// insertSizes are the row counts of the prepared messages' INSERTs: every
// count up to 32, then steps of a quarter of the next power of 2 up to 256.
// Rows cannot be repeated there, so a run of n rows takes one statement of
// the largest size at most n, then the rest: a batch of up to 32 messages,
// the common size on a server, is one INSERT (with powers of 2 it took one
// per bit of n, on the cluster 1.4 INSERTs per batch of ~6).
var insertSizes = func() []int {
	var sizes []int
	for n := 1; n <= 32; n++ {
		sizes = append(sizes, n)
	}
	for p := 64; p <= 256; p *= 2 {
		for n := p * 5 / 8; n <= p; n += p / 8 {
			sizes = append(sizes, n)
		}
	}
	return sizes
}()

// padded returns how many of a run of n > 0 keys the next statement takes
// (at most the largest size) and the index in chunkSizes of the size it
// is padded to.
func padded(n int) (take, size int) {
	take = min(n, chunkSizes[len(chunkSizes)-1])
	for i, c := range chunkSizes {
		if c >= take {
			return take, i
		}
	}
	panic("unreachable")
}

// insertChunk returns the rows of the next INSERT of a run of n > 0 rows
// (the largest of insertSizes that is at most n) and its index.
// The dialect's MaxInsertRows bounds it (maxSize: the index of the largest
// size prepared).
func insertChunk(n, maxSize int) (rows, size int) {
	i, found := slices.BinarySearch(insertSizes, n)
	if !found {
		i-- // the largest below n (n >= 1 = insertSizes[0])
	}
	size = min(i, maxSize)
	return insertSizes[size], size
}

// batchSQL holds the multi-row statements for each size in chunkSizes
// (insertMsgs: in insertSizes).
type batchSQL struct {
	insertMsgs   []string // (conv_id, seq, sender, from_name, body, cid, sent_at) x n
	upsertCursor []string // (user_id, conv_id, seq) x n
	setLastSeq   []string // (id, last_seq) x n, then the ids
	members      []string // group_id, then user_id x n
	moveMembers  []string // (user_id, cur) x n, group_id, then the user_ids
	lockConvs    []string // (group_id, a, b) x n
	readConvs    []string // lockConvs without the lock (acks' conversations)
	friends      []string // (a, b) x n: the pairs' friendship states
}

func repeatJoin(s string, n int) string {
	return repeatSep(s, ", ", n)
}

func repeatSep(s, sep string, n int) string {
	return strings.TrimSuffix(strings.Repeat(s+sep, n), sep)
}

func newBatchSQL(d *Dialect) batchSQL {
	var b batchSQL
	for _, n := range insertSizes {
		if d.MaxInsertRows > 0 && n > d.MaxInsertRows {
			break
		}
		b.insertMsgs = append(b.insertMsgs,
			"INSERT INTO messages (conv_id, seq, sender, from_name, body, cid, sent_at) VALUES "+repeatJoin("(?, ?, ?, ?, ?, ?, ?)", n))
	}
	for _, n := range chunkSizes {
		b.upsertCursor = append(b.upsertCursor,
			"INSERT INTO cursors (user_id, conv_id, seq) VALUES "+repeatJoin("(?, ?, ?)", n)+" "+d.UpsertCursorTail)
		b.setLastSeq = append(b.setLastSeq,
			"UPDATE convs SET last_seq = CASE id"+strings.Repeat(" WHEN ? THEN ?", n)+" END WHERE id IN ("+repeatJoin("?", n)+")")
		b.members = append(b.members,
			"SELECT user_id FROM group_members WHERE group_id = ? AND user_id IN ("+repeatJoin("?", n)+")")
		b.moveMembers = append(b.moveMembers,
			"UPDATE group_members SET cur = "+d.Greatest+"(cur, CASE user_id"+strings.Repeat(" WHEN ? THEN ?", n)+
				" END) WHERE group_id = ? AND user_id IN ("+repeatJoin("?", n)+")")
		sel := "SELECT id, group_id, a, b, last_seq FROM convs" + d.ConvsByKey + " WHERE " +
			repeatSep("(group_id = ? AND a = ? AND b = ?)", " OR ", n)
		if d.RowValuesIn {
			sel = "SELECT id, group_id, a, b, last_seq FROM convs" + d.ConvsByKey +
				" WHERE (group_id, a, b) IN (" + repeatJoin("(?, ?, ?)", n) + ")"
		}
		b.lockConvs = append(b.lockConvs, sel+d.ForUpdate)
		b.readConvs = append(b.readConvs, sel)
		b.friends = append(b.friends, friendsSQL(d, n))
	}
	return b
}

func (b batchSQL) all() []string {
	var out []string
	for _, l := range [][]string{b.insertMsgs, b.upsertCursor, b.setLastSeq, b.members, b.moveMembers, b.lockConvs, b.readConvs, b.friends} {
		out = append(out, l...)
	}
	return out
}

// convState is a conversation read or locked by the batch transaction.
type convState struct {
	k        key
	id, last int64
	plan     int64 // the last seq handed out to the chunk being built
	dirty    bool
}

// memberKey names a group member.
type memberKey struct{ g, user int64 }

// directCursor is a direct conversation's cursor to move.
type directCursor struct{ user, conv int64 }

// batchState is a writer goroutine's reusable scratch space.
type batchState struct {
	convs   map[key]*convState
	order   []*convState
	pending []int // indexes of the messages to insert in multi-row chunks
	conv    []*convState
	members map[memberKey]bool // group senders checked by this batch
	absent  map[key]bool       // acked conversations read and not found
	direct  map[directCursor]int64
	group   map[memberKey]int64
	pairs   map[[2]int64]int8 // FriendsOnly pairs read by this batch: their state
	args    []any
	ids     []int64
	keys    []key
}

func newBatchState() *batchState {
	return &batchState{
		convs:   make(map[key]*convState),
		members: make(map[memberKey]bool),
		absent:  make(map[key]bool),
		direct:  make(map[directCursor]int64),
		group:   make(map[memberKey]int64),
		pairs:   make(map[[2]int64]int8),
	}
}

func (b *batchState) reset(n int) {
	clear(b.convs)
	clear(b.order)
	b.order = b.order[:0]
	b.pending = b.pending[:0]
	clear(b.conv)
	if cap(b.conv) < n {
		b.conv = make([]*convState, n)
	}
	b.conv = b.conv[:n]
	clear(b.members)
	clear(b.absent)
	clear(b.direct)
	clear(b.group)
	clear(b.pairs)
	clear(b.args)
	b.args = b.args[:0]
}

// moveCursor notes that user's cursor in c moves to max(cursor, seq) when
// the batch flushes its cursors.
func (b *batchState) moveCursor(user int64, c *convState, seq int64) {
	if c.k.g != 0 {
		mk := memberKey{c.k.g, user}
		b.group[mk] = max(b.group[mk], seq)
		return
	}
	dk := directCursor{user, c.id}
	b.direct[dk] = max(b.direct[dk], seq)
}

// storeBatch stores reqs in the transaction of r, filling results. An error
// it returns fails the whole transaction (and leaves results to be
// overwritten by the next attempt).
func (s *Store) storeBatch(ctx context.Context, r runner, reqs []*msgReq, results []msgRes, b *batchState) error {
	b.reset(len(reqs))
	clear(results)
	if s.cache != nil {
		if err := s.cache.check(ctx, r, s.d.DataVersion); err != nil {
			return err
		}
	} else if err := s.lockConvs(ctx, r, reqs, b); err != nil {
		return err
	}
	if err := s.checkFriends(ctx, r, reqs, results, b); err != nil {
		return err
	}
	// The conversations, in key order (reqs are sorted), and the checks
	// that need no statement of their own.
	for i, q := range reqs {
		if q.acks != nil || results[i].err != nil {
			continue
		}
		c, res, err := s.batchConv(ctx, r, q.k, b)
		if err != nil {
			return err
		}
		if res.err != nil {
			results[i] = res
			continue
		}
		if q.k.g == 0 && q.m.From != q.k.a && q.m.From != q.k.b {
			results[i] = msgRes{err: fmt.Errorf("user %d in %v: %w", q.m.From, q.k, model.ErrForbidden)}
			continue
		}
		b.conv[i] = c
	}
	if err := s.checkSenders(ctx, r, reqs, b); err != nil {
		return err
	}
	for i, q := range reqs {
		c := b.conv[i]
		if c == nil {
			continue
		}
		if q.k.g != 0 && !b.members[memberKey{q.k.g, q.m.From}] {
			// Not a member, or not checked (a lone message of its group):
			// the row-by-row path checks, and tells a retry of a message
			// stored before the sender left from a forbidden one.
			res, err := s.storeRow(ctx, r, q, c, b)
			if err != nil {
				return err
			}
			results[i] = res
			continue
		}
		b.pending = append(b.pending, i)
	}
	if err := s.insertPending(ctx, r, reqs, results, b); err != nil {
		return err
	}
	if s.cache == nil {
		if err := s.readAckConvs(ctx, r, reqs, b); err != nil {
			return err
		}
	}
	for i, q := range reqs {
		if q.acks == nil {
			continue
		}
		res, err := s.ackOne(ctx, r, q, b)
		if err != nil {
			return err
		}
		results[i] = res
	}
	if err := s.flushCursors(ctx, r, b); err != nil {
		return err
	}
	if err := s.flushLastSeqs(ctx, r, b); err != nil {
		return err
	}
	if s.cache != nil {
		// Still inside the transaction, which holds the only writer
		// connection: nothing else can change a conversation before the
		// commit (runBatch clears the cache when the commit fails).
		s.cache.store(b.order)
	}
	return nil
}

// batchConv returns the batch's state of the conversation k, reading it
// (SQLite: from the cache), locking it and creating a direct one as
// needed. A missing group is the request's own ErrNotFound.
func (s *Store) batchConv(ctx context.Context, r runner, k key, b *batchState) (*convState, msgRes, error) {
	if c := b.convs[k]; c != nil {
		return c, msgRes{}, nil
	}
	var id, last int64
	found := false
	if s.cache != nil {
		id, last, found = s.cache.get(k)
	}
	if !found {
		var err error
		id, last, found, err = s.convRow(ctx, r, k, true)
		if err != nil {
			return nil, msgRes{}, fmt.Errorf("lock %v: %w", k, err)
		}
	}
	if !found {
		if k.g != 0 { // a deleted group's messages went with it
			return nil, msgRes{err: fmt.Errorf("%v: %w", k, model.ErrNotFound)}, nil
		}
		if _, err := r.exec(ctx, s.d.InsertConvIgnore, 0, k.a, k.b); err != nil {
			return nil, msgRes{}, fmt.Errorf("create %v: %w", k, err)
		}
		var err error
		if id, last, found, err = s.convRow(ctx, r, k, true); err != nil || !found {
			return nil, msgRes{}, fmt.Errorf("lock new %v: found %v: %w", k, found, err)
		}
	}
	c := &convState{k: k, id: id, last: last, plan: last}
	b.convs[k] = c
	b.order = append(b.order, c)
	return c, msgRes{}, nil
}

// lockConvs reads and locks the existing conversations of the batch's
// messages with one SELECT ... FOR UPDATE per chunk of keys, rather than
// one per conversation (a round trip each on a server). The rows are
// locked in index order, which is key order, the order of every batch;
// batchConv then finds them in b and creates the missing direct ones.
func (s *Store) lockConvs(ctx context.Context, r runner, reqs []*msgReq, b *batchState) error {
	b.keys = b.keys[:0]
	for i, q := range reqs {
		if q.acks == nil && (i == 0 || q.k != reqs[i-1].k) {
			b.keys = append(b.keys, q.k)
		}
	}
	return s.readConvRows(ctx, r, s.bsql.lockConvs, "lock", b)
}

// readAckConvs reads, without locking them, the conversations of the
// batch's acks that the batch has not read yet, with one SELECT per chunk
// of keys rather than one each; ackOne then finds them in b (or in
// b.absent).
func (s *Store) readAckConvs(ctx context.Context, r runner, reqs []*msgReq, b *batchState) error {
	b.keys = b.keys[:0]
	for _, q := range reqs {
		for _, a := range q.acks {
			if b.convs[a.k] == nil && !b.absent[a.k] {
				b.absent[a.k] = true // until found
				b.keys = append(b.keys, a.k)
			}
		}
	}
	if len(b.keys) == 0 {
		return nil
	}
	if err := s.readConvRows(ctx, r, s.bsql.readConvs, "read", b); err != nil {
		return err
	}
	for _, k := range b.keys {
		if b.convs[k] != nil {
			delete(b.absent, k)
		}
	}
	return nil
}

// readConvRows runs stmts (lockConvs or readConvs) for b.keys, chunk by
// chunk, and adds the conversations found to b.
func (s *Store) readConvRows(ctx context.Context, r runner, stmts []string, what string, b *batchState) error {
	for keys := b.keys; len(keys) > 0; {
		n, size := padded(len(keys))
		b.args = b.args[:0]
		for i := range chunkSizes[size] {
			k := keys[min(i, n-1)]
			b.args = append(b.args, k.g, k.a, k.b)
		}
		rows := r.query(ctx, stmts[size], b.args...)
		if rows.err != nil {
			return fmt.Errorf("%s %d conversations: %w", what, n, rows.err)
		}
		for rows.rows.Next() {
			c := &convState{}
			if err := rows.rows.Scan(&c.id, &c.k.g, &c.k.a, &c.k.b, &c.last); err != nil {
				rows.rows.Close()
				return fmt.Errorf("%s %d conversations: %w", what, n, err)
			}
			c.plan = c.last
			b.convs[c.k] = c
			b.order = append(b.order, c)
		}
		err := rows.rows.Err()
		rows.rows.Close()
		if err != nil {
			return fmt.Errorf("%s %d conversations: %w", what, n, err)
		}
		keys = keys[n:]
	}
	return nil
}

// checkFriends fails the FriendsOnly direct messages of reqs whose users
// are not friends (ErrForbidden in results), reading all their pairs with
// one SELECT per chunk inside the batch's transaction: the check costs no
// round trip of its own, where the chat service's AreFriends call before
// StoreMessage cost one per message or two on a server. It runs before the
// conversations are created, so a refused message leaves no row behind.
func (s *Store) checkFriends(ctx context.Context, r runner, reqs []*msgReq, results []msgRes, b *batchState) error {
	b.ids = b.ids[:0]
	for _, q := range reqs {
		if !q.friendsOnly() {
			continue
		}
		p := [2]int64{q.k.a, q.k.b}
		if _, dup := b.pairs[p]; !dup {
			b.pairs[p] = 0
			b.ids = append(b.ids, p[0], p[1])
		}
	}
	var err error
	if b.args, err = s.readPairs(ctx, r, b.ids, b.args, b.pairs); err != nil {
		return err
	}
	for i, q := range reqs {
		if q.friendsOnly() && b.pairs[[2]int64{q.k.a, q.k.b}] != stateFriends {
			results[i] = msgRes{err: fmt.Errorf("users %d and %d are not friends: %w", q.k.a, q.k.b, model.ErrForbidden)}
		}
	}
	return nil
}

// checkSenders fills b.members with the senders of the batch's group
// messages that are members, one SELECT per group (and chunk), for groups
// with more than one message in the batch. The group's
// row is locked (or the transaction exclusive), and every membership change
// locks it too, so the answer holds until the commit.
func (s *Store) checkSenders(ctx context.Context, r runner, reqs []*msgReq, b *batchState) error {
	for lo := 0; lo < len(reqs); {
		q := reqs[lo]
		if q.acks != nil || q.k.g == 0 || b.conv[lo] == nil {
			lo++
			continue
		}
		g := q.k.g
		b.ids = b.ids[:0]
		hi := lo
		for ; hi < len(reqs) && reqs[hi].acks == nil && reqs[hi].k.g == g; hi++ {
			if b.conv[hi] == nil {
				continue
			}
			mk := memberKey{g, reqs[hi].m.From}
			if _, seen := b.members[mk]; !seen {
				b.members[mk] = false
				b.ids = append(b.ids, mk.user)
			}
		}
		one := hi-lo == 1
		lo = hi
		if one {
			// A lone message: its INSERT ... SELECT (storeRow) is both the
			// check and the insert, one statement instead of two.
			continue
		}
		for ids := b.ids; len(ids) > 0; {
			n, size := padded(len(ids))
			b.args = append(b.args[:0], g)
			for i := range chunkSizes[size] {
				b.args = append(b.args, ids[min(i, n-1)])
			}
			rows := r.query(ctx, s.bsql.members[size], b.args...)
			if rows.err != nil {
				return fmt.Errorf("check members of group %d: %w", g, rows.err)
			}
			for rows.rows.Next() {
				var id int64
				if err := rows.rows.Scan(&id); err != nil {
					rows.rows.Close()
					return fmt.Errorf("check members of group %d: %w", g, err)
				}
				b.members[memberKey{g, id}] = true
			}
			err := rows.rows.Err()
			rows.rows.Close()
			if err != nil {
				return fmt.Errorf("check members of group %d: %w", g, err)
			}
			ids = ids[n:]
		}
	}
	return nil
}

// insertPending inserts the messages of b.pending, in order, with
// multi-row INSERTs; a chunk that breaks a key is stored row by row.
func (s *Store) insertPending(ctx context.Context, r runner, reqs []*msgReq, results []msgRes, b *batchState) error {
	for p := b.pending; len(p) > 0; {
		n, size := insertChunk(len(p), len(s.bsql.insertMsgs)-1)
		part := p[:n]
		p = p[n:]
		b.args = b.args[:0]
		for _, i := range part {
			q, c := reqs[i], b.conv[i]
			c.plan++
			b.args = append(b.args, c.id, c.plan, q.m.From, q.m.FromName, q.m.Body, q.m.CID, q.m.Time)
		}
		_, err := r.exec(ctx, s.bsql.insertMsgs[size], b.args...)
		if err != nil && !s.d.IsUnique(err) && !s.d.IsForeignKey(err) {
			return fmt.Errorf("insert %d messages: %w", n, err)
		}
		if err != nil { // nothing of the chunk was stored: row by row
			for _, i := range part {
				b.conv[i].plan = b.conv[i].last
			}
			for _, i := range part {
				res, err := s.storeRow(ctx, r, reqs[i], b.conv[i], b)
				if err != nil {
					return err
				}
				results[i] = res
			}
			continue
		}
		for _, i := range part {
			q, c := reqs[i], b.conv[i]
			c.last++
			c.dirty = true
			results[i] = msgRes{msg: model.Message{Conv: q.k.conv(), Seq: c.last, From: q.m.From,
				FromName: q.m.FromName, Body: q.m.Body, CID: q.m.CID, Time: q.m.Time}}
			b.moveCursor(q.m.From, c, c.last)
		}
	}
	return nil
}

// storeRow stores one message by itself. A result's err is the request's
// own failure; the returned error fails the transaction.
//
// For a group it is an INSERT ... SELECT from the sender's membership row,
// so that it is also the membership check. A retried cid is found by the
// INSERT's unique violation on (sender, cid), and only then looked up.
func (s *Store) storeRow(ctx context.Context, r runner, q *msgReq, c *convState, b *batchState) (msgRes, error) {
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
	c.last, c.plan, c.dirty = m.Seq, m.Seq, true
	b.moveCursor(m.From, c, m.Seq)
	return msgRes{msg: m}, nil
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

// ackOne runs one AckMessages call: it checks every conversation, then
// notes the cursor moves, or none when one check fails. A conversation
// that the batch has read gives its last seq (after the batch's messages).
func (s *Store) ackOne(ctx context.Context, r runner, q *msgReq, b *batchState) (msgRes, error) {
	states := make([]*convState, len(q.acks))
	for i, a := range q.acks {
		c := b.convs[a.k]
		if c == nil {
			var id, last int64
			found := false
			if s.cache != nil {
				id, last, found = s.cache.get(a.k)
			}
			if !found && !b.absent[a.k] {
				var err error
				if id, last, found, err = s.convRow(ctx, r, a.k, false); err != nil {
					return msgRes{}, fmt.Errorf("read %v: %w", a.k, err)
				}
			}
			if !found && a.k.g != 0 {
				return msgRes{err: fmt.Errorf("%v: %w", a.k, model.ErrNotFound)}, nil
			}
			c = &convState{k: a.k, id: id, last: last, plan: last}
			if found { // read, not locked: right until the commit for this use
				b.convs[a.k] = c
				b.order = append(b.order, c)
			}
		}
		if a.seq > c.last {
			return msgRes{err: fmt.Errorf("%v: seq %d beyond %d: %w", a.k, a.seq, c.last, model.ErrSeqBeyond)}, nil
		}
		states[i] = c
	}
	for i, a := range q.acks {
		if a.seq > 0 {
			b.moveCursor(q.user, states[i], a.seq)
		}
	}
	return msgRes{}, nil
}

// flushCursors moves the cursors noted by the batch: the direct ones with
// multi-row upserts, a group's members with one UPDATE (per chunk).
func (s *Store) flushCursors(ctx context.Context, r runner, b *batchState) error {
	if len(b.direct) > 0 {
		keys := make([]directCursor, 0, len(b.direct))
		for k := range b.direct {
			keys = append(keys, k)
		}
		// One order of row locks in every transaction (MySQL).
		slices.SortFunc(keys, func(x, y directCursor) int {
			return cmp.Or(cmp.Compare(x.user, y.user), cmp.Compare(x.conv, y.conv))
		})
		for len(keys) > 0 {
			n, size := padded(len(keys))
			b.args = b.args[:0]
			for i := range chunkSizes[size] {
				k := keys[min(i, n-1)]
				b.args = append(b.args, k.user, k.conv, b.direct[k])
			}
			if _, err := r.exec(ctx, s.bsql.upsertCursor[size], b.args...); err != nil {
				return fmt.Errorf("move %d cursors: %w", n, err)
			}
			keys = keys[n:]
		}
	}
	if len(b.group) == 0 {
		return nil
	}
	byGroup := make(map[int64][]int64)
	for mk := range b.group {
		byGroup[mk.g] = append(byGroup[mk.g], mk.user)
	}
	groups := make([]int64, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		users := byGroup[g]
		slices.Sort(users)
		for len(users) > 0 {
			n, size := padded(len(users))
			b.args = b.args[:0]
			for i := range chunkSizes[size] {
				u := users[min(i, n-1)]
				b.args = append(b.args, u, b.group[memberKey{g, u}])
			}
			b.args = append(b.args, g)
			for i := range chunkSizes[size] {
				b.args = append(b.args, users[min(i, n-1)])
			}
			if _, err := r.exec(ctx, s.bsql.moveMembers[size], b.args...); err != nil {
				return fmt.Errorf("move %d cursors in group %d: %w", n, g, err)
			}
			users = users[n:]
		}
	}
	return nil
}

// flushLastSeqs writes the last seq of every conversation that got
// messages, with one UPDATE per chunk.
func (s *Store) flushLastSeqs(ctx context.Context, r runner, b *batchState) error {
	b.ids = b.ids[:0]
	for i, c := range b.order {
		if c.dirty {
			b.ids = append(b.ids, int64(i))
		}
	}
	for idx := b.ids; len(idx) > 0; {
		n, size := padded(len(idx))
		b.args = b.args[:0]
		for j := range chunkSizes[size] {
			c := b.order[idx[min(j, n-1)]]
			b.args = append(b.args, c.id, c.last)
		}
		for j := range chunkSizes[size] {
			b.args = append(b.args, b.order[idx[min(j, n-1)]].id)
		}
		if _, err := r.exec(ctx, s.bsql.setLastSeq[size], b.args...); err != nil {
			return fmt.Errorf("set last seq of %d conversations: %w", n, err)
		}
		idx = idx[n:]
	}
	return nil
}

// maxCachedConvs bounds the conversation cache; past it, it starts over.
const maxCachedConvs = 1 << 20

// convCache maps conversations to their (id, last_seq) across batch
// transactions, for a dialect whose writer connection is the database's
// only writer (SQLite): there last_seq changes only by the batches, which
// keep the cache up to date inside their transactions, and a conversation
// row goes only with its group (dropGroup forgets it). Should another
// connection (another process) write the file anyway, its data_version
// changes and the next batch starts with an empty cache, so the cache is
// exact either way.
type convCache struct {
	mu      sync.Mutex
	m       map[key]convEntry
	version int64
	known   bool
}

type convEntry struct{ id, last int64 }

func newConvCache() *convCache { return &convCache{m: make(map[key]convEntry)} }

// check clears the cache when another connection has written the database
// since the last batch. It runs inside the batch transaction.
func (c *convCache) check(ctx context.Context, r runner, query string) error {
	var v int64
	if err := r.row(ctx, query).Scan(&v); err != nil {
		return fmt.Errorf("read data version: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known || v != c.version {
		clear(c.m)
		c.version, c.known = v, true
	}
	return nil
}

func (c *convCache) get(k key) (id, last int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	return e.id, e.last, ok
}

func (c *convCache) store(states []*convState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+len(states) > maxCachedConvs {
		clear(c.m)
	}
	for _, st := range states {
		c.m[st.k] = convEntry{st.id, st.last}
	}
}

func (c *convCache) forget(k key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}

func (c *convCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
	c.known = false
}
