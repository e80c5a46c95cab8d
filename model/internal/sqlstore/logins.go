package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"clusterchat/model"
)

// Failed password logins, for the cluster-wide login throttle (PROTOCOL.md
// §3). Table login_failures (user_id, at_ms), indexed by (user_id, at_ms):
// recording a failure also deletes that user's failures older than the
// window, so a user has at most about a window's worth of rows.

const (
	qPurgeLoginFailures = "DELETE FROM login_failures WHERE user_id = ? AND at_ms < ?"
	qInsertLoginFailure = "INSERT INTO login_failures (user_id, at_ms) VALUES (?, ?)"
	qLoginFailuresSince = "SELECT at_ms FROM login_failures WHERE user_id = ? AND at_ms > ? ORDER BY at_ms"
)

// RecordLoginFailure notes a failed password login of userID at t (to the
// millisecond) and deletes the user's failures older than t-window, in one
// transaction. ErrNotFound when the user does not exist.
func (s *Store) RecordLoginFailure(ctx context.Context, userID int64, at time.Time, window time.Duration) error {
	if userID <= 0 {
		return s.errorf("record login failure: invalid user %d", userID)
	}
	if window < 0 {
		return s.errorf("record login failure: negative window %v", window)
	}
	ms := at.UnixMilli()
	cut := at.Add(-window).UnixMilli()
	return s.writeTx(ctx, "record login failure", func(r runner) error {
		if _, err := r.exec(ctx, qPurgeLoginFailures, userID, cut); err != nil {
			return fmt.Errorf("purge old failures of %d: %w", userID, err)
		}
		if _, err := r.exec(ctx, qInsertLoginFailure, userID, ms); err != nil {
			if s.d.IsForeignKey(err) {
				return fmt.Errorf("user %d: %w", userID, model.ErrNotFound)
			}
			return fmt.Errorf("insert failure of %d: %w", userID, err)
		}
		return nil
	})
}

// LoginFailures returns the times (UTC, to the millisecond) of userID's
// failed password logins after since, ascending. The result is never nil.
func (s *Store) LoginFailures(ctx context.Context, userID int64, since time.Time) ([]time.Time, error) {
	r, err := s.read("login failures")
	if err != nil {
		return nil, err
	}
	out, err := collect(r.query(ctx, qLoginFailuresSince, userID, since.UnixMilli()),
		func(rows *sql.Rows) (time.Time, error) {
			var ms int64
			err := rows.Scan(&ms)
			return msTime(ms), err
		})
	if err != nil {
		return nil, s.errorf("login failures of %d: %w", userID, err)
	}
	return out, nil
}
