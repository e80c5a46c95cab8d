package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"clusterchat/model"
)

// Messages, conversations and cursors. A conversation row is keyed by
// (group_id, a, b): (group, 0, 0) for a group, (0, a, b) with a < b for the
// direct conversation of two users. Messages are keyed by (conv_id, seq) and
// (sender, cid) is unique. A direct conversation's cursors are in cursors; a
// group member's cursor is group_members.cur, so it goes with the membership.

const (
	qConvByKey     = "SELECT id, last_seq FROM convs WHERE group_id = ? AND a = ? AND b = ?"
	qMessagesRange = `SELECT seq, sender, from_name, body, cid, sent_at FROM messages
WHERE conv_id = ? AND seq > ? AND seq < ?
ORDER BY seq DESC
LIMIT ?`
	qMemberCursor = "SELECT cur FROM group_members WHERE group_id = ? AND user_id = ?"
	qDirectCursor = `SELECT k.seq FROM cursors k JOIN convs c ON c.id = k.conv_id
WHERE c.group_id = 0 AND c.a = ? AND c.b = ? AND k.user_id = ?`
)

// key is a conversation's row key.
type key struct{ g, a, b int64 }

func (k key) less(o key) bool {
	if k.g != o.g {
		return k.g < o.g
	}
	if k.a != o.a {
		return k.a < o.a
	}
	return k.b < o.b
}

func (k key) conv() model.Conv {
	if k.g != 0 {
		return model.GroupConv(k.g)
	}
	return model.Conv{A: k.a, B: k.b}
}

func (k key) String() string {
	if k.g != 0 {
		return fmt.Sprintf("group %d", k.g)
	}
	return fmt.Sprintf("direct %d-%d", k.a, k.b)
}

// convKey validates c and returns its row key.
func convKey(c model.Conv) (key, error) {
	switch {
	case c.Group > 0:
		return key{g: c.Group}, nil
	case c.Group == 0 && c.A > 0 && c.A < c.B:
		return key{a: c.A, b: c.B}, nil
	}
	return key{}, fmt.Errorf("invalid conversation %+v", c)
}

// convRow reads a conversation's id and last seq; found is false when it
// has no row (a direct conversation without messages, a group that does not
// exist).
func (s *Store) convRow(ctx context.Context, r runner, k key, lock bool) (id, last int64, found bool, err error) {
	q := qConvByKey
	if lock {
		q += s.d.ForUpdate
	}
	err = r.row(ctx, q, k.g, k.a, k.b).Scan(&id, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, false, nil
	}
	return id, last, err == nil, err
}

// Messages returns the newest limit messages of conv with after < seq <
// before (before <= 0: no upper bound), ascending. ErrNotFound for a group
// that does not exist.
func (s *Store) Messages(ctx context.Context, conv model.Conv, after, before int64, limit int) ([]model.Message, error) {
	k, err := convKey(conv)
	if err != nil {
		return nil, s.errorf("messages: %w", err)
	}
	r, err := s.read("messages")
	if err != nil {
		return nil, err
	}
	id, _, found, err := s.convRow(ctx, r, k, false)
	switch {
	case err != nil:
		return nil, s.errorf("messages of %v: %w", k, err)
	case !found && k.g != 0:
		return nil, s.errorf("messages of %v: %w", k, model.ErrNotFound)
	case !found || limit <= 0:
		return []model.Message{}, nil
	}
	if before <= 0 {
		before = math.MaxInt64
	}
	ms, err := collect(r.query(ctx, qMessagesRange, id, after, before, limit),
		func(rows *sql.Rows) (model.Message, error) {
			m := model.Message{Conv: k.conv()}
			err := rows.Scan(&m.Seq, &m.From, &m.FromName, &m.Body, &m.CID, &m.Time)
			return m, err
		})
	if err != nil {
		return nil, s.errorf("messages of %v: %w", k, err)
	}
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	return ms, nil
}

// LastSeq returns the conversation's last seq (0 when it has none).
// ErrNotFound for a group that does not exist.
func (s *Store) LastSeq(ctx context.Context, conv model.Conv) (int64, error) {
	k, err := convKey(conv)
	if err != nil {
		return 0, s.errorf("last seq: %w", err)
	}
	r, err := s.read("last seq")
	if err != nil {
		return 0, err
	}
	_, last, found, err := s.convRow(ctx, r, k, false)
	switch {
	case err != nil:
		return 0, s.errorf("last seq of %v: %w", k, err)
	case !found && k.g != 0:
		return 0, s.errorf("last seq of %v: %w", k, model.ErrNotFound)
	}
	return last, nil
}

// Cursor returns the user's cursor in conv (0 when never moved, or when the
// user is not a member of the group). ErrNotFound for a group that does not
// exist.
func (s *Store) Cursor(ctx context.Context, userID int64, conv model.Conv) (int64, error) {
	k, err := convKey(conv)
	if err != nil {
		return 0, s.errorf("cursor: %w", err)
	}
	r, err := s.read("cursor")
	if err != nil {
		return 0, err
	}
	var cur int64
	if k.g == 0 {
		err = r.row(ctx, qDirectCursor, k.a, k.b, userID).Scan(&cur)
	} else {
		err = r.row(ctx, qMemberCursor, k.g, userID).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			_, _, found, ferr := s.convRow(ctx, r, k, false)
			if ferr == nil && !found {
				return 0, s.errorf("cursor in %v: %w", k, model.ErrNotFound)
			}
			err = ferr
			if err == nil {
				err = sql.ErrNoRows
			}
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.errorf("cursor of %d in %v: %w", userID, k, err)
	}
	return cur, nil
}
