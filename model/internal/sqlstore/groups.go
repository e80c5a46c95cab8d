package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"clusterchat/model"
)

// Groups. A group's conversation row (convs with group_id = the group) is
// created and deleted with the group; every change of membership and every
// message of the group first locks that row, so they are serialised. The
// owner is chat_groups.owner_id; the join order is group_members.mid. A
// deleted group leaves no row behind (members, messages and conversation
// go with it), so every method reports it as not found.

const (
	qInsertGroup    = "INSERT INTO chat_groups (name, name_lower, descr, owner_id, created) VALUES (?, ?, ?, ?, ?)"
	qInsertGroupCnv = "INSERT INTO convs (group_id, a, b, last_seq) VALUES (?, 0, 0, 0)"
	qInsertMember   = "INSERT INTO group_members (group_id, user_id, joined_seq, cur) VALUES (?, ?, ?, ?)"
	qGroupByID      = "SELECT id, name, descr, owner_id, created FROM chat_groups WHERE id = ?"
	qGroupConv      = "SELECT id, last_seq FROM convs WHERE group_id = ? AND a = 0 AND b = 0"
	qIsMember       = "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?"
	qDeleteMember   = "DELETE FROM group_members WHERE group_id = ? AND user_id = ?"
	qMemberIDs      = "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY mid"
	qSetOwner       = "UPDATE chat_groups SET owner_id = ? WHERE id = ?"
	qDelGroupMsgs   = "DELETE FROM messages WHERE conv_id = ?"
	qDelGroupCurs   = "DELETE FROM cursors WHERE conv_id = ?"
	qDelGroupConv   = "DELETE FROM convs WHERE id = ?"
	qDelGroupMems   = "DELETE FROM group_members WHERE group_id = ?"
	qDelGroup       = "DELETE FROM chat_groups WHERE id = ?"
	qMembership     = `SELECT g.id, g.name, g.descr, g.owner_id, g.created, c.last_seq, m.joined_seq, m.cur
FROM chat_groups g
JOIN convs c ON c.group_id = g.id AND c.a = 0 AND c.b = 0
LEFT JOIN group_members m ON m.group_id = g.id AND m.user_id = ?
WHERE g.id = ?`
	qGroupMembers = `SELECT u.id, u.name, u.created, m.joined_seq, g.owner_id
FROM group_members m
JOIN users u ON u.id = m.user_id
JOIN chat_groups g ON g.id = m.group_id
WHERE m.group_id = ?
ORDER BY m.mid`
	qGroupRecipients = "SELECT user_id, joined_seq FROM group_members WHERE group_id = ?"
	qUserGroups      = `SELECT g.id, g.name, g.descr, g.owner_id, g.created, c.last_seq, m.joined_seq, m.cur
FROM group_members m
JOIN chat_groups g ON g.id = m.group_id
JOIN convs c ON c.group_id = g.id AND c.a = 0 AND c.b = 0
WHERE m.user_id = ?
ORDER BY g.id`
	qFindGroups = `SELECT g.id, g.name, g.descr, g.owner_id, g.created,
  (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id)
FROM chat_groups g
WHERE g.name_lower LIKE ? ESCAPE '!'
ORDER BY g.id
LIMIT ?`
	maxDescBytes = 4096
)

func scanGroup(sc interface{ Scan(...any) error }, extra ...any) (model.Group, error) {
	var g model.Group
	var created int64
	dest := append([]any{&g.ID, &g.Name, &g.Desc, &g.OwnerID, &created}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return model.Group{}, err
	}
	g.Created = msTime(created)
	return g, nil
}

func role(g model.Group, userID int64) string {
	if g.OwnerID == userID {
		return model.RoleOwner
	}
	return model.RoleMember
}

// lockGroup locks the group's conversation row and returns its id and last
// seq. ErrNotFound when the group does not exist.
func (s *Store) lockGroup(ctx context.Context, r runner, groupID int64) (convID, lastSeq int64, err error) {
	err = r.row(ctx, qGroupConv+s.d.ForUpdate, groupID).Scan(&convID, &lastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("group %d: %w", groupID, model.ErrNotFound)
	}
	return convID, lastSeq, err
}

func (s *Store) isMember(ctx context.Context, r runner, groupID, userID int64) (bool, error) {
	err := r.row(ctx, qIsMember, groupID, userID).Scan(new(int))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// CreateGroup creates a group whose owner is its first member. ErrNotFound
// when the owner does not exist.
func (s *Store) CreateGroup(ctx context.Context, ownerID int64, name, desc string) (model.Group, error) {
	if err := checkName(name); err != nil {
		return model.Group{}, s.errorf("create group: %w", err)
	}
	if len(desc) > maxDescBytes || !utf8.ValidString(desc) {
		return model.Group{}, s.errorf("create group: description is not valid UTF-8 of at most %d bytes", maxDescBytes)
	}
	g := model.Group{Name: name, Desc: desc, OwnerID: ownerID, Created: msTime(s.opts.Now().UnixMilli())}
	err := s.writeTx(ctx, "create group", func(r runner) error {
		if err := r.row(ctx, qUserExists, ownerID).Scan(new(int)); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("user %d: %w", ownerID, model.ErrNotFound)
			}
			return err
		}
		res, err := r.exec(ctx, qInsertGroup, name, strings.ToLower(name), desc, ownerID, g.Created.UnixMilli())
		if err != nil {
			return err
		}
		if g.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		if _, err := r.exec(ctx, qInsertGroupCnv, g.ID); err != nil {
			return err
		}
		_, err = r.exec(ctx, qInsertMember, g.ID, ownerID, 0, 0)
		return err
	})
	if err != nil {
		return model.Group{}, err
	}
	return g, nil
}

// GroupByID returns a group. ErrNotFound when absent or deleted.
func (s *Store) GroupByID(ctx context.Context, groupID int64) (model.Group, error) {
	r, err := s.read("group by id")
	if err != nil {
		return model.Group{}, err
	}
	g, err := scanGroup(r.row(ctx, qGroupByID, groupID))
	if errors.Is(err, sql.ErrNoRows) {
		return model.Group{}, s.errorf("group %d: %w", groupID, model.ErrNotFound)
	}
	if err != nil {
		return model.Group{}, s.errorf("group %d: %w", groupID, err)
	}
	return g, nil
}

// JoinGroup adds a member whose joined_seq and cursor start at the group's
// last seq. ErrNotFound (no group or no user), ErrConflict (already a member).
func (s *Store) JoinGroup(ctx context.Context, groupID, userID int64) (model.Membership, error) {
	var m model.Membership
	err := s.writeTx(ctx, "join group", func(r runner) error {
		_, last, err := s.lockGroup(ctx, r, groupID)
		if err != nil {
			return err
		}
		member, err := s.isMember(ctx, r, groupID, userID)
		if err != nil {
			return err
		}
		if member {
			return fmt.Errorf("user %d in group %d: %w", userID, groupID, model.ErrConflict)
		}
		if err := r.row(ctx, qUserExists, userID).Scan(new(int)); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("user %d: %w", userID, model.ErrNotFound)
			}
			return err
		}
		if _, err := r.exec(ctx, qInsertMember, groupID, userID, last, last); err != nil {
			return err
		}
		g, err := scanGroup(r.row(ctx, qGroupByID, groupID))
		if err != nil {
			return err
		}
		m = model.Membership{Group: g, Role: role(g, userID), JoinedSeq: last, LastSeq: last, Cursor: last}
		return nil
	})
	if err != nil {
		return model.Membership{}, err
	}
	return m, nil
}

func (s *Store) memberIDs(ctx context.Context, r runner, groupID int64) ([]int64, error) {
	return collect(r.query(ctx, qMemberIDs, groupID), func(rows *sql.Rows) (int64, error) {
		var id int64
		err := rows.Scan(&id)
		return id, err
	})
}

// dropGroup deletes everything of a group whose conversation is convID.
func (s *Store) dropGroup(ctx context.Context, r runner, groupID, convID int64) error {
	if s.cache != nil {
		// Inside the transaction: no batch can read the entry before the
		// commit (the writer connection is this one).
		s.cache.forget(key{g: groupID})
	}
	for _, q := range []struct {
		sql string
		arg int64
	}{
		{qDelGroupMsgs, convID},
		{qDelGroupCurs, convID},
		{qDelGroupConv, convID},
		{qDelGroupMems, groupID},
		{qDelGroup, groupID},
	} {
		if _, err := r.exec(ctx, q.sql, q.arg); err != nil {
			return err
		}
	}
	return nil
}

// QuitGroup removes a member; ownership passes to the earliest joined
// remaining member; the last member's quit deletes the group. ErrNotFound
// (no group), ErrForbidden (not a member).
func (s *Store) QuitGroup(ctx context.Context, groupID, userID int64) (model.QuitResult, error) {
	var res model.QuitResult
	err := s.writeTx(ctx, "quit group", func(r runner) error {
		res = model.QuitResult{}
		convID, _, err := s.lockGroup(ctx, r, groupID)
		if err != nil {
			return err
		}
		g, err := scanGroup(r.row(ctx, qGroupByID, groupID))
		if err != nil {
			return err
		}
		out, err := r.exec(ctx, qDeleteMember, groupID, userID)
		if err != nil {
			return err
		}
		if n, err := out.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("user %d in group %d: %w", userID, groupID, model.ErrForbidden)
		}
		if res.Remaining, err = s.memberIDs(ctx, r, groupID); err != nil {
			return err
		}
		if len(res.Remaining) == 0 {
			res.Deleted = true
			return s.dropGroup(ctx, r, groupID, convID)
		}
		if g.OwnerID == userID {
			res.NewOwner = res.Remaining[0]
			_, err = r.exec(ctx, qSetOwner, res.NewOwner, groupID)
		}
		return err
	})
	if err != nil {
		return model.QuitResult{}, err
	}
	return res, nil
}

// DeleteGroup deletes a group and returns its members (ids, join order).
// ErrNotFound (no group), ErrForbidden (not the owner).
func (s *Store) DeleteGroup(ctx context.Context, groupID, userID int64) ([]int64, error) {
	var members []int64
	err := s.writeTx(ctx, "delete group", func(r runner) error {
		convID, _, err := s.lockGroup(ctx, r, groupID)
		if err != nil {
			return err
		}
		g, err := scanGroup(r.row(ctx, qGroupByID, groupID))
		if err != nil {
			return err
		}
		if g.OwnerID != userID {
			return fmt.Errorf("user %d is not the owner of group %d: %w", userID, groupID, model.ErrForbidden)
		}
		if members, err = s.memberIDs(ctx, r, groupID); err != nil {
			return err
		}
		return s.dropGroup(ctx, r, groupID, convID)
	})
	if err != nil {
		return nil, err
	}
	return members, nil
}

// Membership returns userID's membership of a group. ErrNotFound (no
// group), ErrForbidden (not a member).
func (s *Store) Membership(ctx context.Context, groupID, userID int64) (model.Membership, error) {
	r, err := s.read("membership")
	if err != nil {
		return model.Membership{}, err
	}
	var m model.Membership
	var joined, cur sql.NullInt64
	m.Group, err = scanGroup(r.row(ctx, qMembership, userID, groupID), &m.LastSeq, &joined, &cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return model.Membership{}, s.errorf("group %d: %w", groupID, model.ErrNotFound)
	case err != nil:
		return model.Membership{}, s.errorf("membership of %d in group %d: %w", userID, groupID, err)
	case !joined.Valid:
		return model.Membership{}, s.errorf("user %d in group %d: %w", userID, groupID, model.ErrForbidden)
	}
	m.Role, m.JoinedSeq, m.Cursor = role(m.Group, userID), joined.Int64, cur.Int64
	return m, nil
}

// GroupMembers lists the members in join order. ErrNotFound (no group).
func (s *Store) GroupMembers(ctx context.Context, groupID int64) ([]model.Member, error) {
	return readMembers(ctx, s, "members", qGroupMembers, groupID, func(rows *sql.Rows) (model.Member, error) {
		var m model.Member
		var created, owner int64
		err := rows.Scan(&m.User.ID, &m.User.Name, &created, &m.JoinedSeq, &owner)
		m.User.Created = msTime(created)
		m.Role = model.RoleMember
		if owner == m.User.ID {
			m.Role = model.RoleOwner
		}
		return m, err
	})
}

// GroupRecipients lists the members' ids and joined seqs, in no particular
// order. ErrNotFound (no group).
func (s *Store) GroupRecipients(ctx context.Context, groupID int64) ([]model.Recipient, error) {
	return readMembers(ctx, s, "recipients", qGroupRecipients, groupID, func(rows *sql.Rows) (model.Recipient, error) {
		var m model.Recipient
		err := rows.Scan(&m.UserID, &m.JoinedSeq)
		return m, err
	})
}

// readMembers reads one row per member of group groupID with query and
// scan; what names the list in errors. ErrNotFound when there is no row: a
// group always has a member, so it is gone.
func readMembers[T any](ctx context.Context, s *Store, what, query string, groupID int64, scan func(*sql.Rows) (T, error)) ([]T, error) {
	r, err := s.read("group " + what)
	if err != nil {
		return nil, err
	}
	out, err := collect(r.query(ctx, query, groupID), scan)
	if err != nil {
		return nil, s.errorf("%s of group %d: %w", what, groupID, err)
	}
	if len(out) == 0 {
		return nil, s.errorf("group %d: %w", groupID, model.ErrNotFound)
	}
	return out, nil
}

// UserGroups lists the groups of a user ascending by group id.
func (s *Store) UserGroups(ctx context.Context, userID int64) ([]model.Membership, error) {
	r, err := s.read("user groups")
	if err != nil {
		return nil, err
	}
	ms, err := collect(r.query(ctx, qUserGroups, userID), func(rows *sql.Rows) (model.Membership, error) {
		var m model.Membership
		var err error
		m.Group, err = scanGroup(rows, &m.LastSeq, &m.JoinedSeq, &m.Cursor)
		m.Role = role(m.Group, userID)
		return m, err
	})
	if err != nil {
		return nil, s.errorf("groups of user %d: %w", userID, err)
	}
	return ms, nil
}

// FindGroups returns groups whose lower-cased name starts with
// strings.ToLower(prefix), ascending by id, at most limit (none when limit
// <= 0), with their member counts.
func (s *Store) FindGroups(ctx context.Context, prefix string, limit int) ([]model.GroupSummary, error) {
	if limit <= 0 || len(prefix) > maxPrefixBytes {
		return []model.GroupSummary{}, nil
	}
	r, err := s.read("find groups")
	if err != nil {
		return nil, err
	}
	gs, err := collect(r.query(ctx, qFindGroups, likePrefix(strings.ToLower(prefix)), limit),
		func(rows *sql.Rows) (model.GroupSummary, error) {
			var g model.GroupSummary
			var err error
			g.Group, err = scanGroup(rows, &g.Members)
			return g, err
		})
	if err != nil {
		return nil, s.errorf("find groups %q: %w", prefix, err)
	}
	return gs, nil
}
