package sqlstore

import (
	"context"
	"fmt"

	"clusterchat/model"
)

// Coalesced friendship reads. AreFriends costs a round trip and a
// statement, as many as the whole batch writer spends on ten messages; a
// server of a cluster once asked it for every direct message, which now
// sets NewMessage.FriendsOnly instead (the batch checks its pairs with the
// same SELECT, checkFriends). Concurrent calls are still answered
// together (a sole server asks when its cache misses): a reader goroutine
// takes every call queued, reads all their pairs with one SELECT and
// answers each. A call is only answered by a read issued after it was
// queued, so it sees every change committed before it began, as before.

// friendReaders is the number of coalescing reader goroutines (reads in
// flight at once).
const friendReaders = 2

// friendReq is a queued AreFriends call; a < b.
type friendReq struct {
	a, b int64
	res  chan friendRes // buffered: the reader never blocks on it
}

type friendRes struct {
	ok  bool
	err error
}

// friendsSQL returns the multi-pair SELECT of friends for n pairs.
func friendsSQL(d *Dialect, n int) string {
	if d.RowValuesIn {
		return "SELECT a, b, state FROM friends FORCE INDEX (PRIMARY) WHERE (a, b) IN (" + repeatJoin("(?, ?)", n) + ")"
	}
	return "SELECT a, b, state FROM friends WHERE " + repeatSep("(a = ? AND b = ?)", " OR ", n)
}

// areFriendsQueued answers AreFriends for a < b through the readers.
func (s *Store) areFriendsQueued(ctx context.Context, a, b int64) (bool, error) {
	req := &friendReq{a: a, b: b, res: make(chan friendRes, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return false, model.ErrClosed
	}
	select {
	case s.friendReqs <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return false, fmt.Errorf("queue: %w", ctx.Err())
	}
	select {
	case res := <-req.res:
		return res.ok, res.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// friendReader answers queued AreFriends calls until friendReqs is closed
// and drained.
func (s *Store) friendReader() {
	defer s.wg.Done()
	largest := chunkSizes[len(chunkSizes)-1]
	batch := make([]*friendReq, 0, largest)
	seen := make(map[[2]int64]int8, largest)
	for {
		first, ok := <-s.friendReqs
		if !ok {
			return
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < largest {
			select {
			case q, ok := <-s.friendReqs:
				if !ok {
					break drain
				}
				batch = append(batch, q)
			default:
				break drain
			}
		}
		s.readFriends(batch, seen)
		clear(batch)
	}
}

// readFriends answers batch (at most the largest chunk size) with one
// SELECT; seen is scratch space.
func (s *Store) readFriends(batch []*friendReq, seen map[[2]int64]int8) {
	clear(seen)
	ids := make([]int64, 0, 2*len(batch))
	for _, q := range batch {
		k := [2]int64{q.a, q.b}
		if _, dup := seen[k]; !dup {
			seen[k] = 0
			ids = append(ids, q.a, q.b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	_, err := s.readPairs(ctx, runner{c: s.rs}, ids, nil, seen)
	for _, q := range batch {
		if err != nil {
			q.res <- friendRes{err: err}
			continue
		}
		q.res <- friendRes{ok: seen[[2]int64{q.a, q.b}] == stateFriends}
	}
}

// readPairs reads the friendship states of the pairs in ids (a, b after
// one another, a < b, each pair once) on r into seen, with one SELECT per
// chunk padded to its prepared size by repeating the last pair. args is
// scratch space, returned for reuse.
func (s *Store) readPairs(ctx context.Context, r runner, ids []int64, args []any, seen map[[2]int64]int8) ([]any, error) {
	for len(ids) > 0 {
		n, size := padded(len(ids) / 2)
		args = args[:0]
		for i := range chunkSizes[size] {
			j := 2 * min(i, n-1)
			args = append(args, ids[j], ids[j+1])
		}
		if err := scanFriends(ctx, r, s.bsql.friends[size], args, seen); err != nil {
			return args, err
		}
		ids = ids[2*n:]
	}
	return args, nil
}

// scanFriends runs query, a multi-pair SELECT of friends, with args on r
// and notes each pair's state in seen.
func scanFriends(ctx context.Context, r runner, query string, args []any, seen map[[2]int64]int8) error {
	n := len(args) / 2
	rows := r.query(ctx, query, args...)
	if rows.err != nil {
		return fmt.Errorf("read %d pairs: %w", n, rows.err)
	}
	defer rows.rows.Close()
	for rows.rows.Next() {
		var k [2]int64
		var state int8
		if err := rows.rows.Scan(&k[0], &k[1], &state); err != nil {
			return fmt.Errorf("read %d pairs: %w", n, err)
		}
		seen[k] = state
	}
	if err := rows.rows.Err(); err != nil {
		return fmt.Errorf("read %d pairs: %w", n, err)
	}
	return nil
}
