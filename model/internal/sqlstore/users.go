package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"clusterchat/model"
)

// Users and tokens. Names are stored as given in name and lower-cased with
// strings.ToLower in name_lower, which has a unique index: that index is the
// case-insensitive uniqueness and serves lookups and prefix search. Lists
// (FindUsers, Friends, FriendRequests, GroupMembers) leave User.PassHash nil.

const (
	qInsertUser     = "INSERT INTO users (name, name_lower, pass_hash, created) VALUES (?, ?, ?, ?)"
	qUserByID       = "SELECT id, name, pass_hash, created FROM users WHERE id = ?"
	qUserByName     = "SELECT id, name, pass_hash, created FROM users WHERE name_lower = ?"
	qUserExists     = "SELECT 1 FROM users WHERE id = ?"
	qRenameUser     = "UPDATE users SET name = ?, name_lower = ? WHERE id = ?"
	qFindUsers      = "SELECT id, name, created FROM users WHERE name_lower LIKE ? ESCAPE '!' AND id <> ? ORDER BY id LIMIT ?"
	qInsertToken    = "INSERT INTO tokens (hash, user_id, expires) VALUES (?, ?, ?)"
	qHasExpiredTok  = "SELECT 1 FROM tokens WHERE user_id = ? AND expires <= ? LIMIT 1"
	qPurgeTokens    = "DELETE FROM tokens WHERE user_id = ? AND expires <= ?"
	qTokenUser      = "SELECT user_id FROM tokens WHERE hash = ? AND expires > ?"
	qDeleteToken    = "DELETE FROM tokens WHERE hash = ?"
	maxNameBytes    = 1024
	maxPrefixBytes  = 1024
	maxTokenBytes   = 255
	errEmptyName    = "empty name"
	errLongName     = "name longer than 1024 bytes"
	errBadTokenHash = "token hash must be 1-255 bytes"
)

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New(errEmptyName)
	case len(name) > maxNameBytes:
		return errors.New(errLongName)
	case !utf8.ValidString(name):
		return errors.New("name is not valid UTF-8")
	}
	return nil
}

// CreateUser adds an account. ErrNameTaken on a clash.
func (s *Store) CreateUser(ctx context.Context, name string, passHash []byte) (model.User, error) {
	if err := checkName(name); err != nil {
		return model.User{}, s.errorf("create user: %w", err)
	}
	if passHash == nil {
		passHash = []byte{}
	}
	u := model.User{Name: name, PassHash: passHash, Created: msTime(s.opts.Now().UnixMilli())}
	err := s.writeTx(ctx, "create user", func(r runner) error {
		res, err := r.exec(ctx, qInsertUser, name, strings.ToLower(name), passHash, u.Created.UnixMilli())
		if err != nil {
			if s.d.IsUnique(err) {
				return fmt.Errorf("%q: %w", name, model.ErrNameTaken)
			}
			return err
		}
		u.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return model.User{}, err
	}
	return u, nil
}

func scanUser(sc interface{ Scan(...any) error }) (model.User, error) {
	var u model.User
	var created int64
	if err := sc.Scan(&u.ID, &u.Name, &u.PassHash, &created); err != nil {
		return model.User{}, err
	}
	u.Created = msTime(created)
	return u, nil
}

func scanUserNoHash(sc interface{ Scan(...any) error }) (model.User, error) {
	var u model.User
	var created int64
	if err := sc.Scan(&u.ID, &u.Name, &created); err != nil {
		return model.User{}, err
	}
	u.Created = msTime(created)
	return u, nil
}

// UserByID returns a user. ErrNotFound when absent.
func (s *Store) UserByID(ctx context.Context, id int64) (model.User, error) {
	r, err := s.read("user by id")
	if err != nil {
		return model.User{}, err
	}
	u, err := scanUser(r.row(ctx, qUserByID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return model.User{}, s.errorf("user %d: %w", id, model.ErrNotFound)
	}
	if err != nil {
		return model.User{}, s.errorf("user %d: %w", id, err)
	}
	return u, nil
}

// UserByName looks a user up by name, case-insensitively. ErrNotFound.
func (s *Store) UserByName(ctx context.Context, name string) (model.User, error) {
	r, err := s.read("user by name")
	if err != nil {
		return model.User{}, err
	}
	u, err := scanUser(r.row(ctx, qUserByName, strings.ToLower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return model.User{}, s.errorf("user %q: %w", name, model.ErrNotFound)
	}
	if err != nil {
		return model.User{}, s.errorf("user %q: %w", name, err)
	}
	return u, nil
}

// SetUserName renames a user. ErrNameTaken when another user has the name
// (case-insensitively), ErrNotFound when the user is gone. A change of case
// only is allowed; the old name is free once this returns.
func (s *Store) SetUserName(ctx context.Context, id int64, name string) (model.User, error) {
	if err := checkName(name); err != nil {
		return model.User{}, s.errorf("set user name: %w", err)
	}
	var u model.User
	err := s.writeTx(ctx, "set user name", func(r runner) error {
		if _, err := r.exec(ctx, qRenameUser, name, strings.ToLower(name), id); err != nil {
			if s.d.IsUnique(err) {
				return fmt.Errorf("%q: %w", name, model.ErrNameTaken)
			}
			return err
		}
		var err error
		u, err = scanUser(r.row(ctx, qUserByID, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %d: %w", id, model.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return model.User{}, err
	}
	return u, nil
}

// FindUsers returns users whose lower-cased name starts with
// strings.ToLower(prefix), ascending by id, leaving out excludeID, at most
// limit (none when limit <= 0).
func (s *Store) FindUsers(ctx context.Context, prefix string, excludeID int64, limit int) ([]model.User, error) {
	if limit <= 0 {
		return []model.User{}, nil
	}
	if len(prefix) > maxPrefixBytes {
		return []model.User{}, nil // longer than any stored name
	}
	r, err := s.read("find users")
	if err != nil {
		return nil, err
	}
	users, err := collect(r.query(ctx, qFindUsers, likePrefix(strings.ToLower(prefix)), excludeID, limit),
		func(rows *sql.Rows) (model.User, error) { return scanUserNoHash(rows) })
	if err != nil {
		return nil, s.errorf("find users %q: %w", prefix, err)
	}
	return users, nil
}

func checkTokenHash(h []byte) error {
	if len(h) == 0 || len(h) > maxTokenBytes {
		return errors.New(errBadTokenHash)
	}
	return nil
}

// CreateToken stores a token hash valid until expires (exclusive), and drops
// the user's expired tokens. ErrConflict when the hash exists already;
// ErrNotFound when the user does not exist.
func (s *Store) CreateToken(ctx context.Context, userID int64, tokenHash []byte, expires time.Time) error {
	if err := checkTokenHash(tokenHash); err != nil {
		return s.errorf("create token: %w", err)
	}
	now := s.opts.Now().UnixMilli()
	return s.writeTx(ctx, "create token", func(r runner) error {
		if err := r.row(ctx, qUserExists, userID).Scan(new(int)); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("user %d: %w", userID, model.ErrNotFound)
			}
			return err
		}
		// The DELETE runs only when there is something to purge: on
		// InnoDB a DELETE locks the index range it scans, so concurrent
		// logins of one user waited for each other's uncommitted token
		// (~280 row-lock waits in a chatbench setup of 1,000 users); the
		// plain SELECT is a non-locking read.
		var one int
		switch err := r.row(ctx, qHasExpiredTok, userID, now).Scan(&one); {
		case err == nil:
			if _, err := r.exec(ctx, qPurgeTokens, userID, now); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := r.exec(ctx, qInsertToken, tokenHash, userID, expires.UnixMilli()); err != nil {
			if s.d.IsUnique(err) {
				return fmt.Errorf("token: %w", model.ErrConflict)
			}
			return err
		}
		return nil
	})
}

// TokenUser returns the user of a token that exists and has not expired at
// now (now < expires). ErrNotFound otherwise.
func (s *Store) TokenUser(ctx context.Context, tokenHash []byte, now time.Time) (int64, error) {
	if checkTokenHash(tokenHash) != nil {
		return 0, s.errorf("token: %w", model.ErrNotFound)
	}
	r, err := s.read("token user")
	if err != nil {
		return 0, err
	}
	var id int64
	err = r.row(ctx, qTokenUser, tokenHash, now.UnixMilli()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, s.errorf("token: %w", model.ErrNotFound)
	}
	if err != nil {
		return 0, s.errorf("token user: %w", err)
	}
	return id, nil
}

// DeleteToken revokes a token. Deleting an absent token is not an error.
func (s *Store) DeleteToken(ctx context.Context, tokenHash []byte) error {
	if checkTokenHash(tokenHash) != nil {
		return nil
	}
	return s.writeTx(ctx, "delete token", func(r runner) error {
		_, err := r.exec(ctx, qDeleteToken, tokenHash)
		return err
	})
}
