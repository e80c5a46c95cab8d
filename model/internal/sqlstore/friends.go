package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"clusterchat/model"
)

// Friends. One row per pair (a < b) with a state: a pending request (and
// who asked) or a friendship. The pair's direct conversation lives in convs
// and outlives the friendship, so friends who part and meet again continue
// it with their cursors.

const (
	stateRequested = 1
	stateFriends   = 2
)

const (
	qInsertFriend  = "INSERT INTO friends (a, b, state, requester) VALUES (?, ?, ?, ?)"
	qSetFriends    = "UPDATE friends SET state = 2 WHERE a = ? AND b = ?"
	qDeleteFriend  = "DELETE FROM friends WHERE a = ? AND b = ?"
	qFriendState   = "SELECT state, requester FROM friends WHERE a = ? AND b = ?"
	qFriendsOfUser = `SELECT u.id, u.name, u.created, COALESCE(c.last_seq, 0), COALESCE(k.seq, 0)
FROM friends f
JOIN users u ON u.id = CASE WHEN f.a = ? THEN f.b ELSE f.a END
LEFT JOIN convs c ON c.group_id = 0 AND c.a = f.a AND c.b = f.b
LEFT JOIN cursors k ON k.conv_id = c.id AND k.user_id = ?
WHERE (f.a = ? OR f.b = ?) AND f.state = 2
ORDER BY u.id`
	qRequestsToUser = `SELECT u.id, u.name, u.created
FROM friends f JOIN users u ON u.id = f.requester
WHERE (f.a = ? OR f.b = ?) AND f.state = 1 AND f.requester <> ?
ORDER BY u.id`
)

func pair(u1, u2 int64) (int64, int64) {
	if u1 > u2 {
		return u2, u1
	}
	return u1, u2
}

// friendState reads (and, in a write transaction, locks) the pair's row;
// state 0 when there is none.
func (s *Store) friendState(ctx context.Context, r runner, a, b int64) (state int, requester int64, err error) {
	q := qFriendState
	if r.tx != nil {
		q += s.d.ForUpdate
	}
	err = r.row(ctx, q, a, b).Scan(&state, &requester)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return state, requester, err
}

// RequestFriend records a request from -> to, or makes both friends when to
// had already asked from. ErrConflict when already friends, already asked
// or from == to; ErrNotFound when to does not exist.
func (s *Store) RequestFriend(ctx context.Context, from, to int64) (model.FriendStatus, error) {
	if from == to {
		return 0, s.errorf("request friend: user %d asks itself: %w", from, model.ErrConflict)
	}
	a, b := pair(from, to)
	var status model.FriendStatus
	err := s.writeTx(ctx, "request friend", func(r runner) error {
		for _, id := range []int64{to, from} {
			if err := r.row(ctx, qUserExists, id).Scan(new(int)); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("user %d: %w", id, model.ErrNotFound)
				}
				return err
			}
		}
		state, requester, err := s.friendState(ctx, r, a, b)
		if err != nil {
			return err
		}
		switch {
		case state == 0:
			if _, err := r.exec(ctx, qInsertFriend, a, b, stateRequested, from); err != nil {
				if s.d.IsUnique(err) {
					return errRetry // the other asked at the same moment
				}
				return err
			}
			status = model.FriendRequested
			return nil
		case state == stateFriends:
			return fmt.Errorf("users %d and %d are friends already: %w", from, to, model.ErrConflict)
		case requester == from:
			return fmt.Errorf("user %d asked %d already: %w", from, to, model.ErrConflict)
		default:
			status = model.FriendAccepted
			return s.befriend(ctx, r, a, b)
		}
	})
	if err != nil {
		return 0, err
	}
	return status, nil
}

// befriend turns the pair's request into a friendship and makes sure their
// conversation exists.
func (s *Store) befriend(ctx context.Context, r runner, a, b int64) error {
	if _, err := r.exec(ctx, qSetFriends, a, b); err != nil {
		return err
	}
	_, err := r.exec(ctx, s.d.InsertConvIgnore, 0, a, b)
	return err
}

// AcceptFriend accepts the pending request from -> me. ErrConflict when
// already friends, ErrNotFound when there is no such request.
func (s *Store) AcceptFriend(ctx context.Context, me, from int64) error {
	a, b := pair(me, from)
	return s.writeTx(ctx, "accept friend", func(r runner) error {
		state, requester, err := s.friendState(ctx, r, a, b)
		switch {
		case err != nil:
			return err
		case state == stateFriends:
			return fmt.Errorf("users %d and %d are friends already: %w", me, from, model.ErrConflict)
		case state == 0 || requester != from || me == from:
			return fmt.Errorf("no request from %d to %d: %w", from, me, model.ErrNotFound)
		}
		return s.befriend(ctx, r, a, b)
	})
}

// DeleteFriend ends a friendship or removes a pending request in either
// direction; the conversation and cursors stay. ErrNotFound when neither.
func (s *Store) DeleteFriend(ctx context.Context, me, other int64) (model.Removed, error) {
	a, b := pair(me, other)
	var removed model.Removed
	err := s.writeTx(ctx, "delete friend", func(r runner) error {
		state, _, err := s.friendState(ctx, r, a, b)
		switch {
		case err != nil:
			return err
		case state == 0:
			return fmt.Errorf("users %d and %d: %w", me, other, model.ErrNotFound)
		case state == stateFriends:
			removed = model.RemovedFriendship
		default:
			removed = model.RemovedRequest
		}
		_, err = r.exec(ctx, qDeleteFriend, a, b)
		return err
	})
	if err != nil {
		return 0, err
	}
	return removed, nil
}

// AreFriends reports whether a and b are friends.
func (s *Store) AreFriends(ctx context.Context, u1, u2 int64) (bool, error) {
	a, b := pair(u1, u2)
	if s.friendReqs != nil { // with the concurrent calls: friendreads.go
		ok, err := s.areFriendsQueued(ctx, a, b)
		if err != nil {
			return false, s.errorf("are friends %d, %d: %w", u1, u2, err)
		}
		return ok, nil
	}
	r, err := s.read("are friends")
	if err != nil {
		return false, err
	}
	state, _, err := s.friendState(ctx, r, a, b)
	if err != nil {
		return false, s.errorf("are friends %d, %d: %w", u1, u2, err)
	}
	return state == stateFriends, nil
}

// Friends lists a user's friends ascending by id with their conversation's
// last seq and the user's cursor in it.
func (s *Store) Friends(ctx context.Context, userID int64) ([]model.Friend, error) {
	r, err := s.read("friends")
	if err != nil {
		return nil, err
	}
	fs, err := collect(r.query(ctx, qFriendsOfUser, userID, userID, userID, userID),
		func(rows *sql.Rows) (model.Friend, error) {
			var f model.Friend
			var created int64
			err := rows.Scan(&f.User.ID, &f.User.Name, &created, &f.LastSeq, &f.Cursor)
			f.User.Created = msTime(created)
			return f, err
		})
	if err != nil {
		return nil, s.errorf("friends of %d: %w", userID, err)
	}
	return fs, nil
}

// FriendRequests lists the users with a pending request to userID,
// ascending by id.
func (s *Store) FriendRequests(ctx context.Context, userID int64) ([]model.User, error) {
	r, err := s.read("friend requests")
	if err != nil {
		return nil, err
	}
	us, err := collect(r.query(ctx, qRequestsToUser, userID, userID, userID),
		func(rows *sql.Rows) (model.User, error) { return scanUserNoHash(rows) })
	if err != nil {
		return nil, s.errorf("friend requests to %d: %w", userID, err)
	}
	return us, nil
}
